"""An OpenAI-compatible stub upstream and a helper to serve ASGI apps on loopback in a thread.

:class:`StubOpenAI` speaks enough of the vLLM/OpenAI HTTP API for the router's tests, benchmarks and
local demos: ``POST /v1/chat/completions`` and ``/v1/completions`` (JSON, or server-sent events with
``stream: true``, with ``usage`` and ``stream_options.include_usage``), ``POST /v1/embeddings``,
``GET /v1/models`` and ``GET /health``. It is a real HTTP server, not a mock of the client: answers are
produced by a callable, and every received request is recorded for assertions. ``fail_status`` makes it
answer every completion with that status (a replica that is overloaded or draining).

:func:`serve` runs any ASGI app with uvicorn on ``127.0.0.1`` on a free port in a daemon thread and
returns a :class:`Server` handle (``url``, ``stop()``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp

Answer = Callable[[str, str], str]
"""``(model, prompt text) -> answer text``."""


def default_answer(model: str, prompt: str) -> str:
    return f"{model} answers: {prompt[:200]}"


def hashed_embedding(text: str, dim: int = 16) -> list[float]:
    """A deterministic unit vector per text (for stub embeddings)."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    v = np.random.default_rng(seed).normal(size=dim)
    return [float(x) for x in v / np.linalg.norm(v)]


def _prompt_text(body: dict[str, Any]) -> str:
    if "messages" in body:
        for m in reversed(body.get("messages") or []):
            if isinstance(m, dict) and isinstance(m.get("content"), str):
                return str(m["content"])
        return ""
    prompt = body.get("prompt", "")
    return prompt if isinstance(prompt, str) else json.dumps(prompt)


@dataclass
class StubOpenAI:
    """Settings and recorded traffic of one stub upstream (build the ASGI app with :meth:`app`)."""

    name: str = "stub"
    answer: Answer = default_answer
    embed: Callable[[str], list[float]] = hashed_embedding
    delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    fail_status: int | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.requests)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/completions", self._completions, methods=["POST"]),
                Route("/v1/embeddings", self._embeddings, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/health", self._health, methods=["GET"]),
            ]
        )

    async def _record(self, request: Request) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(await request.body())
        with self.lock:
            self.requests.append({"path": request.url.path, "body": body, "headers": dict(request.headers)})
        return body

    def _failure(self) -> Response | None:
        if self.fail_status is None:
            return None
        return JSONResponse(
            {
                "error": {
                    "message": f"{self.name} unavailable",
                    "type": "server_error",
                    "param": None,
                    "code": None,
                }
            },
            status_code=self.fail_status,
        )

    async def _chat(self, request: Request) -> Response:
        return await self._complete(request, chat=True)

    async def _completions(self, request: Request) -> Response:
        return await self._complete(request, chat=False)

    async def _complete(self, request: Request, *, chat: bool) -> Response:
        body = await self._record(request)
        failure = self._failure()
        if failure is not None:
            return failure
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        model = str(body.get("model", self.name))
        prompt = _prompt_text(body)
        words = self.answer(model, prompt).split(" ")
        limit = body.get("max_completion_tokens") or body.get("max_tokens") or len(words)
        words = words[: int(limit)]
        finish = "length" if len(words) == limit else "stop"
        usage = {
            "prompt_tokens": len(prompt.split()),
            "completion_tokens": len(words),
            "total_tokens": len(prompt.split()) + len(words),
        }
        rid = f"{'chatcmpl' if chat else 'cmpl'}-{self.name}-{len(self.requests)}"
        created = int(time.time())
        obj = "chat.completion" if chat else "text_completion"
        if not body.get("stream"):
            text = " ".join(words)
            choice: dict[str, Any] = (
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
                if chat
                else {"index": 0, "text": text, "finish_reason": finish}
            )
            return JSONResponse(
                {
                    "id": rid,
                    "object": obj,
                    "created": created,
                    "model": model,
                    "choices": [choice],
                    "usage": usage,
                }
            )
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(
            self._events(
                rid=rid,
                created=created,
                model=model,
                words=words,
                finish=finish,
                usage=usage,
                chat=chat,
                include_usage=include_usage,
            ),
            media_type="text/event-stream",
        )

    async def _events(
        self,
        *,
        rid: str,
        created: int,
        model: str,
        words: list[str],
        finish: str,
        usage: dict[str, int],
        chat: bool,
        include_usage: bool,
    ) -> AsyncIterator[bytes]:
        obj = "chat.completion.chunk" if chat else "text_completion"

        def event(choices: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> bytes:
            doc = {
                "id": rid,
                "object": obj,
                "created": created,
                "model": model,
                "choices": choices,
                **(extra or {}),
            }
            return f"data: {json.dumps(doc)}\n\n".encode()

        for i, word in enumerate(words):
            piece = word if i == 0 else " " + word
            delta: dict[str, Any] = {"delta": {"content": piece}} if chat else {"text": piece}
            yield event([{"index": 0, **delta, "finish_reason": None}])
            if self.chunk_delay_s:
                await asyncio.sleep(self.chunk_delay_s)
        last: dict[str, Any] = {"delta": {}} if chat else {"text": ""}
        yield event([{"index": 0, **last, "finish_reason": finish}])
        if include_usage:
            yield event([], {"usage": usage})
        yield b"data: [DONE]\n\n"

    async def _embeddings(self, request: Request) -> Response:
        body = await self._record(request)
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
        data = [{"object": "embedding", "index": i, "embedding": self.embed(t)} for i, t in enumerate(texts)]
        return JSONResponse({"object": "list", "data": data, "model": body.get("model", self.name)})

    async def _models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": self.name, "object": "model"}]})

    async def _health(self, request: Request) -> Response:
        return Response(status_code=200 if self.fail_status is None else self.fail_status)


class Server:
    """A uvicorn server running an ASGI app on ``127.0.0.1`` in a daemon thread."""

    def __init__(self, app: ASGIApp, *, port: int = 0, startup_timeout_s: float = 10.0) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            log_level="warning",
            lifespan="auto",
            ws="none",
            http="h11",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + startup_timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on {self.url}")
            time.sleep(0.005)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop serving and wait for the thread (connections are closed; the port is released)."""
        self._server.should_exit = True
        self._thread.join(timeout_s)
        self._sock.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(app: ASGIApp, *, port: int = 0) -> Server:
    """Serve ``app`` on ``127.0.0.1:port`` (0 = a free port) in a background thread."""
    return Server(app, port=port)
