"""The OpenAI wire format at the router's edge: reading and checking request bodies, and answers the
router writes itself (refusals of abandoned clusters, as JSON or as server-sent events).

Only what routing needs is checked (a JSON object; ``messages`` or ``prompt``; ``stream`` a boolean;
the token limits in :func:`quartermaster.router.policy.requested_max_tokens`); everything else is the
model server's business and passes through unchanged.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from quartermaster.router.errors import body_too_large, invalid_request

REFUSAL_MODEL = "quartermaster/refusal"
"""The ``model`` of answers the router writes itself."""


async def read_json_body(request: Request, limit: int) -> dict[str, Any]:
    """The request body as a JSON object: 413 above ``limit`` bytes (checked while reading), 400 if not
    JSON."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise body_too_large(int(declared), limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise body_too_large(size, limit)
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise invalid_request(
            f"We could not parse the JSON body of your request ({exc}). Send a JSON object with "
            "Content-Type: application/json.",
            code="invalid_json",
        ) from None
    if not isinstance(body, dict):
        raise invalid_request("The request body must be a JSON object.", code="invalid_json")
    return body


def validate_request(body: Mapping[str, Any], *, chat: bool) -> None:
    """400 when a chat request lacks ``messages``, a completion lacks ``prompt``, or ``stream`` is not a
    boolean."""
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise invalid_request(
                "'messages' is required: a non-empty array of {role, content} objects.", param="messages"
            )
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str):
                raise invalid_request(
                    f"'messages[{i}]' must be an object with a string 'role'.", param=f"messages[{i}]"
                )
    else:
        prompt = body.get("prompt")
        if not isinstance(prompt, (str, list)) or (isinstance(prompt, list) and not prompt):
            raise invalid_request("'prompt' is required: a string or a non-empty array.", param="prompt")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise invalid_request(f"'stream'={body['stream']!r} must be true or false.", param="stream")


def refusal_response(text: str, *, chat: bool, stream: bool, headers: Mapping[str, str]) -> Response:
    """An OpenAI-shaped answer with ``text`` and no model call (``stream``: one SSE chunk + ``[DONE]``)."""
    created = int(time.time())
    if chat:
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": "stop",
        }
        obj = "chat.completion"
    else:
        choice, obj = {"index": 0, "text": text, "finish_reason": "stop"}, "text_completion"
    doc: dict[str, Any] = {
        "id": f"qm-refusal-{created}",
        "object": obj,
        "created": created,
        "model": REFUSAL_MODEL,
        "choices": [choice],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }
    if not stream:
        return JSONResponse(doc, headers=dict(headers))
    chunk_choice = (
        {"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        if chat
        else choice
    )
    chunk = {**doc, "object": "chat.completion.chunk" if chat else obj, "choices": [chunk_choice]}
    chunk.pop("usage")
    payload = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()
    return Response(payload, media_type="text/event-stream", headers=dict(headers))
