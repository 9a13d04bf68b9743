"""Upstream calls to the planned vLLM Services: pooled connections, timeouts, retries, SSE pass-through.

One :class:`UpstreamPool` (one ``httpx.AsyncClient``, i.e. one connection pool) serves every model. Each
model has one or more endpoints (OpenAI base URLs such as ``http://qm-small.ns.svc:8000/v1``: a
Kubernetes Service, or individual replicas behind a headless Service). Calls rotate over the endpoints
(round robin) and move to the next endpoint when an attempt fails *before the upstream produced an
answer*:

- connection refused / reset, connect or pool timeout, or the server closing the connection without a
  response (a replica being drained) — the request never reached a model, so a retry is safe;
- an HTTP 502, 503 or 504 from the upstream (overloaded or starting replica).

An endpoint that failed to connect is ejected for ``eject_seconds`` (passive health checking), so the
next requests go to the others first; when every endpoint is ejected they are all tried anyway. A read
timeout is *not* retried (the model may still be generating; a retry would double the load) and becomes
a 504. When no attempt succeeds the caller gets :class:`UpstreamUnavailableError`, which the app turns into a
503 with ``Retry-After``.

Streaming (``stream: true``) returns the open ``httpx.Response``; the app passes its bytes through as
they arrive (server-sent events are not re-framed) and closes the response when the client is done or
goes away.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

logger = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({502, 503, 504})


@dataclass(frozen=True)
class UpstreamSettings:
    """Timeouts (seconds), pool sizes and retry policy of the upstream client."""

    connect_timeout: float = 2.0
    read_timeout: float = 300.0
    write_timeout: float = 30.0
    pool_timeout: float = 5.0
    max_connections: int = 512
    max_keepalive_connections: int = 128
    keepalive_expiry: float = 30.0
    max_attempts: int = 3
    eject_seconds: float = 5.0
    retry_after_seconds: int = 5


class UpstreamUnavailableError(Exception):
    """No endpoint of a model answered (all attempts failed before an answer)."""

    def __init__(self, model: str, detail: str) -> None:
        super().__init__(f"{model}: {detail}")
        self.model = model
        self.detail = detail


class UpstreamTimeoutError(Exception):
    """The upstream accepted the request but did not answer within the read timeout."""

    def __init__(self, model: str, timeout_s: float) -> None:
        super().__init__(f"{model}: no answer within {timeout_s} s")
        self.model = model
        self.timeout_s = timeout_s


class UnknownUpstreamModelError(KeyError):
    """The pool has no endpoints for the model (config and pool out of sync)."""


@dataclass(frozen=True)
class UpstreamResponse:
    """A complete (non-streamed) upstream answer."""

    status_code: int
    content: bytes
    content_type: str
    endpoint: str
    attempts: int

    def json(self) -> Any:
        return json.loads(self.content)


@dataclass(frozen=True)
class UpstreamStream:
    """An open streamed upstream answer; iterate ``response.aiter_bytes()`` and ``aclose()`` it."""

    response: httpx.Response
    endpoint: str
    attempts: int


def join_url(base: str, path: str) -> str:
    """``base`` (an OpenAI base URL, e.g. ``http://h:8000/v1``) + ``path`` (e.g. ``chat/completions``)."""
    return base.rstrip("/") + "/" + path.lstrip("/")


class UpstreamPool:
    """Connection pool + endpoint rotation for every model the router forwards to.

    ``clock`` (monotonic seconds) is injectable for tests of the ejection logic.
    """

    def __init__(
        self,
        settings: UpstreamSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings or UpstreamSettings()
        s = self.settings
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(
                connect=s.connect_timeout, read=s.read_timeout, write=s.write_timeout, pool=s.pool_timeout
            ),
            limits=httpx.Limits(
                max_connections=s.max_connections,
                max_keepalive_connections=s.max_keepalive_connections,
                keepalive_expiry=s.keepalive_expiry,
            ),
            follow_redirects=False,
            trust_env=False,
        )
        self._clock = clock
        self._on_retry = on_retry
        self._endpoints: dict[str, tuple[str, ...]] = {}
        self._counters: dict[str, itertools.count[int]] = {}
        self._ejected_until: dict[str, float] = {}

    # -- endpoints -------------------------------------------------------------------------------
    def set_endpoints(self, endpoints: Mapping[str, Sequence[str]]) -> None:
        """Replace the model -> endpoints map (on config reload); open connections are kept."""
        self._endpoints = {m: tuple(urls) for m, urls in endpoints.items()}
        for m in self._endpoints:
            self._counters.setdefault(m, itertools.count())

    def endpoints(self, model: str) -> tuple[str, ...]:
        try:
            return self._endpoints[model]
        except KeyError:
            raise UnknownUpstreamModelError(model) from None

    def candidates(self, model: str, prefer: str | None = None) -> list[str]:
        """Endpoints to try for one request, in order: healthy ones, then ejected ones.

        ``prefer`` (the target the policy chose) goes first; the others follow in round-robin order.
        """
        urls = self.endpoints(model)
        if not urls:
            return []
        if prefer is not None and prefer in urls:
            others = [u for u in urls if u != prefer]
            if others:
                k = next(self._counters[model]) % len(others)
                others = others[k:] + others[:k]
            rotated = [prefer, *others]
        else:
            start = next(self._counters[model]) % len(urls)
            rotated = list(urls[start:] + urls[:start])
        now = self._clock()
        healthy = [u for u in rotated if self._ejected_until.get(u, 0.0) <= now]
        ejected = [u for u in rotated if self._ejected_until.get(u, 0.0) > now]
        order = healthy + ejected
        attempts = max(1, self.settings.max_attempts)
        return [order[i % len(order)] for i in range(attempts)]

    def _eject(self, url: str) -> None:
        self._ejected_until[url] = self._clock() + self.settings.eject_seconds

    # -- calls -----------------------------------------------------------------------------------
    async def post(
        self,
        model: str,
        path: str,
        body: Mapping[str, Any],
        *,
        headers: Mapping[str, str] | None = None,
        prefer: str | None = None,
    ) -> UpstreamResponse:
        """POST ``body`` as JSON and read the whole answer (retrying as described in the module doc)."""
        result = await self._send(model, path, body, headers=headers, stream=False, prefer=prefer)
        assert isinstance(result, UpstreamResponse)
        return result

    async def stream(
        self,
        model: str,
        path: str,
        body: Mapping[str, Any],
        *,
        headers: Mapping[str, str] | None = None,
        prefer: str | None = None,
    ) -> UpstreamStream | UpstreamResponse:
        """POST and return the open stream on 200, or the complete answer on an upstream error status."""
        return await self._send(model, path, body, headers=headers, stream=True, prefer=prefer)

    async def _send(
        self,
        model: str,
        path: str,
        body: Mapping[str, Any],
        *,
        headers: Mapping[str, str] | None,
        stream: bool,
        prefer: str | None = None,
    ) -> UpstreamStream | UpstreamResponse:
        content = json.dumps(body, separators=(",", ":")).encode()
        hdrs = {
            "content-type": "application/json",
            "accept": "text/event-stream" if stream else "application/json",
        }
        if headers:
            hdrs.update(headers)
        candidates = self.candidates(model, prefer)
        if not candidates:
            raise UpstreamUnavailableError(model, "the configuration lists no endpoint for it")
        last = "no attempt"
        for attempt, url in enumerate(candidates, start=1):
            if attempt > 1 and self._on_retry is not None:
                self._on_retry(model)
            request = self._client.build_request("POST", join_url(url, path), content=content, headers=hdrs)
            try:
                response = await self._client.send(request, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                self._eject(url)
                last = f"{url}: {type(exc).__name__}: {exc}"
                logger.warning("upstream %s attempt %d failed: %s", model, attempt, last)
                continue
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError, httpx.WriteTimeout) as exc:
                last = f"{url}: connection closed without a response ({type(exc).__name__})"
                logger.warning("upstream %s attempt %d failed: %s", model, attempt, last)
                continue
            except httpx.ReadTimeout:
                raise UpstreamTimeoutError(model, self.settings.read_timeout) from None
            if response.status_code in RETRYABLE_STATUS:
                await response.aclose()
                last = f"{url}: HTTP {response.status_code}"
                logger.warning("upstream %s attempt %d failed: %s", model, attempt, last)
                continue
            if stream and response.status_code == 200:
                return UpstreamStream(response, url, attempt)
            try:
                data = await response.aread()
            except httpx.ReadTimeout:
                raise UpstreamTimeoutError(model, self.settings.read_timeout) from None
            except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
                last = f"{url}: answer cut off ({type(exc).__name__})"
                logger.warning("upstream %s attempt %d failed: %s", model, attempt, last)
                continue
            finally:
                await response.aclose()
            return UpstreamResponse(
                response.status_code,
                data,
                response.headers.get("content-type", "application/json"),
                url,
                attempt,
            )
        raise UpstreamUnavailableError(model, f"{len(candidates)} attempt(s), last: {last}")

    async def get_json(self, url: str) -> Any:
        """GET a JSON document (used for readiness probes of upstreams and embeddings endpoints)."""
        response = await self._client.get(url)
        response.raise_for_status()
        return response.json()

    async def post_json(self, url: str, body: Mapping[str, Any], *, timeout_s: float | None = None) -> Any:
        """POST to an absolute URL and return its JSON (no endpoint rotation; embedder, judge hooks)."""
        timeout = httpx.USE_CLIENT_DEFAULT if timeout_s is None else httpx.Timeout(timeout_s)
        response = await self._client.post(url, json=body, timeout=timeout)
        response.raise_for_status()
        return response.json()

    async def aclose(self) -> None:
        await self._client.aclose()
