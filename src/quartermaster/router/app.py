"""The router's ASGI application (starlette): an OpenAI-compatible proxy in front of the planned models.

Endpoints

- ``POST /v1/chat/completions``, ``POST /v1/completions`` — routed, budgeted, escalated, forwarded.
- ``GET /v1/models`` — ``auto`` plus every model of the current configuration.
- ``GET /healthz`` — liveness (the process serves HTTP).
- ``GET /readyz`` — 200 once a configuration is loaded (``"status": "ok"``, or ``"degraded"`` while the
  last good configuration is served after a broken update, with ``lastError``); 503 before that.
- ``GET /metrics`` — Prometheus (see :mod:`quartermaster.router.metrics`).
- ``GET /v1/quartermaster/rates`` — per-cluster request rates for the operator's rolling horizon.

Every routed answer carries ``X-Quartermaster-Cluster``, ``X-Quartermaster-Model`` (the model that
produced the answer), ``X-Quartermaster-Escalated`` (``true``/``false``), ``X-Quartermaster-Escalations``
(count) and ``X-Quartermaster-Config`` (the config version). Non-streamed answers of a model on its
cluster's ladder are judged by the quality estimator and re-sent to the next model of the ladder when
rejected; streamed answers pass through untouched (server-sent events, byte for byte).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from quartermaster.router.config import ConfigWatcher
from quartermaster.router.embedder import (
    CLUSTER_HEADER,
    EMBEDDING_HEADER,
    Embedder,
    EmbeddingError,
    NoEmbedder,
    parse_embedding_header,
    query_text,
)
from quartermaster.router.errors import (
    exception_handlers,
    not_ready,
    upstream_timeout,
    upstream_unavailable,
)
from quartermaster.router.escalation import AnswerJudge, Escalator, JudgeFactory, default_judge_factory
from quartermaster.router.metrics import RateTracker, RouterMetrics
from quartermaster.router.openai import REFUSAL_MODEL, read_json_body, refusal_response, validate_request
from quartermaster.router.policy import AUTO_MODELS, Decision, RoutingPolicy
from quartermaster.router.sse import UsageSniffer
from quartermaster.router.table import IndexOptions, ReferenceMounts, RoutingTable
from quartermaster.router.upstream import (
    UpstreamPool,
    UpstreamResponse,
    UpstreamSettings,
    UpstreamStream,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)

logger = logging.getLogger(__name__)

FORWARDED_HEADERS = ("authorization", "x-request-id")


@dataclass(frozen=True)
class RouterSettings:
    """Everything the router process is configured with (the CLI builds this from flags/env)."""

    config_path: Path
    reload_interval_s: float = 2.0
    max_body_bytes: int = 4 * 1024 * 1024
    upstream: UpstreamSettings = field(default_factory=UpstreamSettings)
    mounts: ReferenceMounts = field(default_factory=ReferenceMounts)
    rates_window_s: float = 60.0
    random_state: int | None = None
    index: IndexOptions = field(default_factory=IndexOptions)
    embed_max_chars: int = 4000


EmbedderFactory = Callable[[UpstreamPool], Embedder]


class RouterService:
    """The request path; one instance per app, created by :func:`create_app`."""

    def __init__(
        self,
        settings: RouterSettings,
        *,
        embedder_factory: EmbedderFactory | None = None,
        judge_factory: JudgeFactory | None = None,
        metrics: RouterMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or RouterMetrics()
        self.rates = RateTracker(settings.rates_window_s, clock=clock)
        self.policy = RoutingPolicy(settings.random_state)
        self.pool = UpstreamPool(
            settings.upstream, on_retry=lambda m: self.metrics.upstream_retries.labels(m).inc()
        )
        self.embedder = (embedder_factory or (lambda _pool: NoEmbedder()))(self.pool)
        self.judge_factory = judge_factory or default_judge_factory
        self.judge: AnswerJudge | None = None
        self.watcher = ConfigWatcher(
            settings.config_path,
            metrics=self.metrics,
            mounts=settings.mounts,
            interval_s=settings.reload_interval_s,
            index=settings.index,
            prepare=self._prepare,
            apply=self._apply,
        )
        self.escalator = Escalator(self.pool, self.metrics)

    def _prepare(self, table: RoutingTable) -> AnswerJudge | None:
        return self.judge_factory(table.config.quality_estimator, self.pool)

    def _apply(self, table: RoutingTable, judge: AnswerJudge | None) -> None:
        self.pool.set_endpoints(table.model_urls)
        self.judge = judge

    @property
    def table(self) -> RoutingTable | None:
        return self.watcher.state.table

    # -- lifecycle ---------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        await self.watcher.check()
        self.watcher.start()
        try:
            yield
        finally:
            await self.watcher.stop()
            await self.pool.aclose()

    # -- small endpoints ---------------------------------------------------------------------------
    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def readyz(self, request: Request) -> Response:
        state = self.watcher.state
        return JSONResponse(state.readiness(), status_code=200 if state.ready else 503)

    async def metrics_endpoint(self, request: Request) -> Response:
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def rates_endpoint(self, request: Request) -> Response:
        table = self.table
        return JSONResponse(self.rates.snapshot(None if table is None else table.version))

    async def models(self, request: Request) -> Response:
        table = self._require_table()
        ids = ["auto", *sorted(table.served_models)]
        return JSONResponse(
            {
                "object": "list",
                "data": [{"id": i, "object": "model", "owned_by": "quartermaster"} for i in ids],
            }
        )

    # -- completions -------------------------------------------------------------------------------
    async def chat_completions(self, request: Request) -> Response:
        return await self._complete(request, chat=True)

    async def completions(self, request: Request) -> Response:
        return await self._complete(request, chat=False)

    def _require_table(self) -> RoutingTable:
        table = self.table
        if table is None:
            raise not_ready(self.watcher.state.last_error or "no configuration loaded yet")
        return table

    async def _embedding(
        self, request: Request, body: dict[str, Any], *, chat: bool, table: RoutingTable
    ) -> Any:
        header = request.headers.get(EMBEDDING_HEADER)
        if header is not None:
            return parse_embedding_header(header)
        if isinstance(self.embedder, NoEmbedder):
            return None
        text = query_text(body, chat=chat, max_chars=self.settings.embed_max_chars)
        if not text:
            return None
        try:
            return (await self.embedder.embed([text], model=table.embedding_model))[0]
        except EmbeddingError as exc:
            logger.warning("embedding failed, using the default cluster: %s", exc)
            self.metrics.embedding_failures.inc()
            return None

    async def _complete(self, request: Request, *, chat: bool) -> Response:
        started = time.perf_counter()
        table = self._require_table()
        body = await read_json_body(request, self.settings.max_body_bytes)
        validate_request(body, chat=chat)
        hint = request.headers.get(CLUSTER_HEADER)
        embedding = None if hint is not None else await self._embedding(request, body, chat=chat, table=table)
        t0 = time.perf_counter()
        decision = self.policy.decide(table, body, cluster_hint=hint, embedding=embedding)
        self.metrics.decision_duration.observe(time.perf_counter() - t0)
        if decision.clamped:
            self.metrics.max_tokens_clamped.labels(decision.cluster).inc()
        path = "chat/completions" if chat else "completions"
        forwarded = {k: v for k in FORWARDED_HEADERS if (v := request.headers.get(k)) is not None}
        headers = {
            "X-Quartermaster-Cluster": decision.cluster,
            "X-Quartermaster-Config": table.version,
        }
        if decision.refusal is not None:
            headers.update(self._answer_headers(REFUSAL_MODEL, 0))
            self._finish(decision, REFUSAL_MODEL, "ok", started)
            return refusal_response(
                decision.refusal, chat=chat, stream=bool(body.get("stream")), headers=headers
            )
        upstream_body = dict(body)
        upstream_body["model"] = decision.target.model
        upstream_body[decision.max_tokens_field] = decision.max_tokens
        try:
            if body.get("stream"):
                return await self._stream(
                    decision,
                    path=path,
                    body=upstream_body,
                    forwarded=forwarded,
                    headers=headers,
                    started=started,
                )
            result = await self.escalator.run(
                decision,
                path,
                upstream_body,
                forwarded,
                judge=self.judge,
                question=query_text(body, chat=chat, max_chars=self.settings.embed_max_chars),
                chat=chat,
            )
        except UpstreamUnavailableError as exc:
            self._finish(decision, decision.target.model, "upstream_error", started)
            raise upstream_unavailable(
                exc.model, exc.detail, retry_after=self.settings.upstream.retry_after_seconds
            ) from None
        except UpstreamTimeoutError as exc:
            self._finish(decision, decision.target.model, "upstream_error", started)
            raise upstream_timeout(exc.model, exc.timeout_s) from None
        response = result.response
        outcome = "ok" if response.status_code < 400 else "upstream_error"
        if result.escalations and response.status_code < 400:
            outcome = "escalated"
        self._finish(
            decision,
            result.model,
            outcome,
            started,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            escalations=result.escalations,
            count_tokens=False,
        )
        headers.update(self._answer_headers(result.model, result.escalations))
        return Response(
            response.content,
            status_code=response.status_code,
            media_type=response.content_type,
            headers=headers,
        )

    @staticmethod
    def _answer_headers(model: str, escalations: int) -> dict[str, str]:
        return {
            "X-Quartermaster-Model": model,
            "X-Quartermaster-Escalated": "true" if escalations else "false",
            "X-Quartermaster-Escalations": str(escalations),
        }

    def _finish(
        self,
        decision: Decision,
        model: str,
        outcome: str,
        started: float,
        *,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        escalations: int = 0,
        count_tokens: bool = True,
    ) -> None:
        """Record one finished request (``count_tokens=False`` when the escalator counted per call)."""
        m = self.metrics
        m.requests.labels(decision.cluster, model, outcome).inc()
        m.request_duration.labels(decision.cluster, model).observe(time.perf_counter() - started)
        if count_tokens and prompt_tokens:
            m.tokens.labels(decision.cluster, model, "prompt").inc(prompt_tokens)
        if count_tokens and completion_tokens:
            m.tokens.labels(decision.cluster, model, "completion").inc(completion_tokens)
        self.rates.record(
            decision.cluster, model, completion_tokens=completion_tokens, escalations=escalations
        )

    async def _stream(
        self,
        decision: Decision,
        *,
        path: str,
        body: dict[str, Any],
        forwarded: dict[str, str],
        headers: dict[str, str],
        started: float,
    ) -> Response:
        model = decision.target.model
        t0 = time.perf_counter()
        result = await self.pool.stream(model, path, body, headers=forwarded, prefer=decision.target.url)
        self.metrics.upstream_duration.labels(model).observe(time.perf_counter() - t0)
        headers.update(self._answer_headers(model, 0))
        if isinstance(result, UpstreamResponse):  # the upstream refused (4xx/5xx): pass its answer on
            self._finish(decision, model, "upstream_error", started)
            return Response(
                result.content,
                status_code=result.status_code,
                media_type=result.content_type,
                headers=headers,
            )
        return StreamingResponse(
            self._relay(result, decision, started),
            media_type=result.response.headers.get("content-type", "text/event-stream"),
            headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            background=BackgroundTask(result.response.aclose),
        )

    async def _relay(
        self, stream: UpstreamStream, decision: Decision, started: float
    ) -> AsyncIterator[bytes]:
        sniffer = UsageSniffer()
        outcome = "ok"
        try:
            async for chunk in stream.response.aiter_bytes():
                sniffer.feed(chunk)
                yield chunk
        except Exception as exc:  # the upstream broke mid-stream: end the stream, count it
            outcome = "upstream_error"
            logger.warning("stream from %s broke: %s: %s", stream.endpoint, type(exc).__name__, exc)
        finally:
            await stream.response.aclose()
            self._finish(
                decision,
                decision.target.model,
                outcome,
                started,
                prompt_tokens=sniffer.prompt_tokens,
                completion_tokens=sniffer.completion_tokens,
            )


def create_app(
    settings: RouterSettings,
    *,
    embedder_factory: EmbedderFactory | None = None,
    judge_factory: JudgeFactory | None = None,
    metrics: RouterMetrics | None = None,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """The router ASGI app; the service is reachable as ``app.state.router`` (tests, benchmarks)."""
    service = RouterService(
        settings, embedder_factory=embedder_factory, judge_factory=judge_factory, metrics=metrics, clock=clock
    )
    routes = [
        Route("/v1/chat/completions", service.chat_completions, methods=["POST"]),
        Route("/v1/completions", service.completions, methods=["POST"]),
        Route("/v1/models", service.models, methods=["GET"]),
        Route("/healthz", service.healthz, methods=["GET"]),
        Route("/readyz", service.readyz, methods=["GET"]),
        Route("/metrics", service.metrics_endpoint, methods=["GET"]),
        Route("/v1/quartermaster/rates", service.rates_endpoint, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers=exception_handlers(
            lambda code: service.metrics.rejected.labels(reason=code).inc()
        ),
        lifespan=service.lifespan,
    )
    app.state.router = service
    return app


__all__ = ["AUTO_MODELS", "RouterService", "RouterSettings", "create_app"]
