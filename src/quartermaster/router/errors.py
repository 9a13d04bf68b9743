"""OpenAI-style error bodies for the router.

Every error the router returns has the shape clients of the OpenAI API already parse::

    {"error": {"message": "...", "type": "invalid_request_error", "param": "messages", "code": "..."}}

:class:`RouterError` is raised anywhere in the request path and turned into such a response by the
application's exception handler; its message names the field, the value and the fix.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Literal

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

logger = logging.getLogger(__name__)

ErrorType = Literal[
    "invalid_request_error",
    "not_found_error",
    "server_error",
    "service_unavailable",
    "timeout_error",
]


class RouterError(Exception):
    """An error with an HTTP status and an OpenAI-style body.

    ``retry_after`` (seconds) is sent as a ``Retry-After`` header when set.
    """

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        error_type: ErrorType = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.error_type: ErrorType = error_type
        self.param = param
        self.code = code
        self.retry_after = retry_after

    def body(self) -> dict[str, dict[str, str | None]]:
        """The JSON body: ``{"error": {"message", "type", "param", "code"}}``."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }

    def to_response(self, headers: Mapping[str, str] | None = None) -> JSONResponse:
        """The error as a starlette response, with ``Retry-After`` when the client should come back."""
        all_headers = dict(headers or {})
        if self.retry_after is not None:
            all_headers["Retry-After"] = str(self.retry_after)
        return JSONResponse(self.body(), status_code=self.status_code, headers=all_headers)


def invalid_request(message: str, *, param: str | None = None, code: str | None = None) -> RouterError:
    """400: the request body is wrong; ``message`` names the field and the fix."""
    return RouterError(400, message, param=param, code=code or "invalid_request")


def model_not_found(model: str, known: list[str]) -> RouterError:
    """404: the ``model`` field names no model the router serves."""
    choices = ", ".join(sorted(known)) or "(none configured)"
    return RouterError(
        404,
        f"The model {model!r} does not exist on this router. Use 'auto' (or omit 'model') to let the "
        f"router choose, or one of: {choices}.",
        error_type="not_found_error",
        param="model",
        code="model_not_found",
    )


def body_too_large(size: int, limit: int) -> RouterError:
    """413: the body is larger than the router accepts."""
    return RouterError(
        413,
        f"The request body has {size} bytes or more; this router accepts at most {limit} bytes. "
        "Shorten the prompt or raise the router's --max-body-bytes.",
        code="request_too_large",
    )


def upstream_unavailable(model: str, detail: str, *, retry_after: int) -> RouterError:
    """503 + Retry-After: no replica of ``model`` answered."""
    return RouterError(
        503,
        f"No upstream replica of model {model!r} is reachable ({detail}). Retry after {retry_after} s.",
        error_type="service_unavailable",
        code="upstream_unavailable",
        retry_after=retry_after,
    )


def upstream_timeout(model: str, timeout_s: float) -> RouterError:
    """504: the upstream accepted the request but did not answer in time."""
    return RouterError(
        504,
        f"Model {model!r} did not answer within {timeout_s:g} s. Retry with a smaller max_tokens, or "
        "raise the router's --read-timeout.",
        error_type="timeout_error",
        code="upstream_timeout",
    )


def not_ready(detail: str, *, retry_after: int = 5) -> RouterError:
    """503: the router has no valid configuration yet."""
    return RouterError(
        503,
        f"The router has no valid routing configuration yet ({detail}).",
        error_type="service_unavailable",
        code="router_not_ready",
        retry_after=retry_after,
    )


def exception_handlers(on_client_error: Callable[[str], None]) -> dict[Any, Callable[..., Any]]:
    """Starlette exception handlers that answer every error in the OpenAI shape.

    ``on_client_error(code)`` is called for each 4xx :class:`RouterError` (the app counts them).
    Unexpected exceptions become a 500 with a generic message (details go to the log, not the client).
    """

    async def router_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RouterError)
        if 400 <= exc.status_code < 500:
            on_client_error(exc.code or "invalid_request")
        return exc.to_response()

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        err = RouterError(
            exc.status_code,
            f"{request.method} {request.url.path}: {exc.detail}",
            error_type="not_found_error" if exc.status_code == 404 else "invalid_request_error",
            code=str(exc.status_code),
        )
        return err.to_response(exc.headers)

    async def disconnect(request: Request, exc: Exception) -> Response:
        return Response(status_code=499)

    async def unexpected(request: Request, exc: Exception) -> Response:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return RouterError(
            500,
            f"Internal router error ({type(exc).__name__}); see the router logs.",
            error_type="server_error",
            code="internal_error",
        ).to_response()

    return {
        RouterError: router_error,
        HTTPException: http_error,
        ClientDisconnect: disconnect,
        Exception: unexpected,
    }
