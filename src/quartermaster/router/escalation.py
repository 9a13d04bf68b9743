"""The escalation cascade for non-streamed answers.

:class:`Escalator` sends the request to the decided target; when the answer came from a model on the
cluster's ladder, the quality estimator (an :class:`AnswerJudge`) gives its accept probability from
``(question, answer, completion tokens)``. Below the cluster's ``qualityThreshold`` the request is
re-sent to the next model of the ladder (at most ``maxEscalations`` times). If an escalation call fails
(no replica, timeout, an error status) the last good answer is returned rather than an error: the
client asked for an answer, and it has one.

Estimator failures follow the config's ``qualityEstimator.onError``: ``accept`` keeps the answer,
``escalate`` treats it as rejected.

The judges wrap :mod:`quartermaster.routing.quality`: ``qualityEstimator.kind`` = ``heuristic``
(:class:`~quartermaster.routing.quality.HeuristicEstimator`, truncation judged against the request's
budget), ``trained`` (:func:`~quartermaster.routing.quality.load_estimator` of ``artifactPath``, scored in
a worker thread), ``http`` (the same wire format as
:class:`~quartermaster.routing.quality.HttpJudgeEstimator` — ``{"question", "answer", "tokens"}`` in,
``{"accept_probability"}`` or ``{"score"}`` out — but called through the router's async pool) or
``none``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import anyio.to_thread

from quartermaster.api.routerconfig import QualityEstimatorSpec, RouterConfigError
from quartermaster.router.metrics import RouterMetrics
from quartermaster.router.policy import Decision, RoutingPolicy
from quartermaster.router.upstream import (
    UpstreamPool,
    UpstreamResponse,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from quartermaster.routing.errors import EstimatorError
from quartermaster.routing.quality import HeuristicEstimator, QualityEstimator, load_estimator

logger = logging.getLogger(__name__)


@runtime_checkable
class AnswerJudge(Protocol):
    """Async accept probability of one answer (adapts a :mod:`quartermaster.routing` quality estimator)."""

    on_error: Literal["accept", "escalate"]

    async def accept_probability(
        self, question: str, answer: str, completion_tokens: int, max_tokens: int
    ) -> float: ...


JudgeFactory = Callable[[QualityEstimatorSpec, UpstreamPool], "AnswerJudge | None"]


@dataclass(frozen=True)
class EscalationResult:
    """The answer returned to the client and what it took."""

    response: UpstreamResponse
    model: str
    escalations: int
    prompt_tokens: int
    completion_tokens: int
    probabilities: tuple[float, ...]


def answer_of(doc: Any, *, chat: bool) -> tuple[str, int, int]:
    """``(answer text, prompt tokens, completion tokens)`` of an OpenAI answer (first choice)."""
    text = ""
    if isinstance(doc, dict):
        choices = doc.get("choices") or []
        if choices and isinstance(choices[0], dict):
            c = choices[0]
            if chat:
                message = c.get("message") or {}
                text = str(message.get("content") or "") if isinstance(message, dict) else ""
            else:
                text = str(c.get("text") or "")
        usage = doc.get("usage")
        if not isinstance(usage, dict):
            usage = {}
        return text, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    return text, 0, 0


class Escalator:
    """Runs one request through the cascade (see the module docstring)."""

    def __init__(self, pool: UpstreamPool, metrics: RouterMetrics) -> None:
        self.pool = pool
        self.metrics = metrics

    async def _call(
        self,
        model: str,
        url: str,
        *,
        path: str,
        body: dict[str, Any],
        headers: Mapping[str, str],
    ) -> UpstreamResponse:
        t0 = time.perf_counter()
        try:
            return await self.pool.post(model, path, {**body, "model": model}, headers=headers, prefer=url)
        finally:
            self.metrics.upstream_duration.labels(model).observe(time.perf_counter() - t0)

    async def run(
        self,
        decision: Decision,
        path: str,
        body: dict[str, Any],
        headers: Mapping[str, str],
        *,
        judge: AnswerJudge | None,
        question: str,
        chat: bool,
    ) -> EscalationResult:
        target = decision.target
        ladder = list(decision.escalation) if judge is not None else []
        response = await self._call(target.model, target.url, path=path, body=body, headers=headers)
        prompt_total = completion_total = 0
        probabilities: list[float] = []
        escalations = 0
        while True:
            text, p_tokens, c_tokens = ("", 0, 0)
            if response.status_code == 200:
                try:
                    text, p_tokens, c_tokens = answer_of(response.json(), chat=chat)
                except ValueError:
                    ladder = []  # not JSON: nothing to judge
            self._count_tokens(decision.cluster, target.model, p_tokens, c_tokens)
            prompt_total += p_tokens
            completion_total += c_tokens
            if response.status_code != 200 or not ladder or judge is None:
                break
            p = await self._judge(judge, question, text, c_tokens, decision.max_tokens)
            probabilities.append(p)
            if RoutingPolicy.accept(p, decision.quality_threshold):
                break
            self.metrics.quality_rejects.labels(decision.cluster, target.model).inc()
            nxt = ladder.pop(0)
            try:
                escalated = await self._call(nxt.model, nxt.url, path=path, body=body, headers=headers)
            except (UpstreamUnavailableError, UpstreamTimeoutError) as exc:
                logger.warning(
                    "escalation %s -> %s failed (%s); returning the %s answer",
                    target.model,
                    nxt.model,
                    exc,
                    target.model,
                )
                break
            if escalated.status_code != 200:
                logger.warning(
                    "escalation %s -> %s got HTTP %d; returning the %s answer",
                    target.model,
                    nxt.model,
                    escalated.status_code,
                    target.model,
                )
                break
            self.metrics.escalations.labels(decision.cluster, target.model, nxt.model).inc()
            escalations += 1
            response, target = escalated, nxt
        return EscalationResult(
            response, target.model, escalations, prompt_total, completion_total, tuple(probabilities)
        )

    def _count_tokens(self, cluster: str, model: str, prompt: int, completion: int) -> None:
        if prompt:
            self.metrics.tokens.labels(cluster, model, "prompt").inc(prompt)
        if completion:
            self.metrics.tokens.labels(cluster, model, "completion").inc(completion)

    @staticmethod
    async def _judge(judge: AnswerJudge, question: str, answer: str, tokens: int, max_tokens: int) -> float:
        try:
            p = float(await judge.accept_probability(question, answer, tokens, max_tokens))
        except Exception as exc:  # estimator trouble must not fail the request
            logger.warning(
                "quality estimator failed (%s: %s); on_error=%s", type(exc).__name__, exc, judge.on_error
            )
            return 1.0 if judge.on_error == "accept" else 0.0
        if math.isnan(p):
            return 1.0 if judge.on_error == "accept" else 0.0
        return min(max(p, 0.0), 1.0)


class EstimatorJudge:
    """A :class:`~quartermaster.routing.quality.QualityEstimator` as an :class:`AnswerJudge`.

    ``offload`` runs ``score`` in a worker thread (trained estimators take about a millisecond).
    """

    def __init__(
        self,
        estimator: QualityEstimator,
        *,
        offload: bool = False,
        on_error: Literal["accept", "escalate"] = "accept",
    ) -> None:
        self.estimator = estimator
        self.offload = offload
        self.on_error: Literal["accept", "escalate"] = on_error

    async def accept_probability(
        self, question: str, answer: str, completion_tokens: int, max_tokens: int
    ) -> float:
        if self.offload:
            return await anyio.to_thread.run_sync(self.estimator.score, question, answer, completion_tokens)
        return self.estimator.score(question, answer, completion_tokens)


class HeuristicJudge:
    """:class:`~quartermaster.routing.quality.HeuristicEstimator` with the request's budget as
    ``max_tokens`` (an answer that used the whole budget counts as truncated)."""

    def __init__(self, *, on_error: Literal["accept", "escalate"] = "accept") -> None:
        self.on_error: Literal["accept", "escalate"] = on_error

    async def accept_probability(
        self, question: str, answer: str, completion_tokens: int, max_tokens: int
    ) -> float:
        return HeuristicEstimator(max_tokens=max_tokens).score(question, answer, completion_tokens)


class HttpJudge:
    """``qualityEstimator.kind=http`` over the router's async connection pool.

    Wire format of :class:`~quartermaster.routing.quality.HttpJudgeEstimator`: POST
    ``{"question", "answer", "tokens"}``; the hook answers ``{"accept_probability": p}`` (or ``"score"``)
    with ``0 <= p <= 1``. Anything else raises, and the escalator applies ``on_error``.
    """

    def __init__(
        self,
        pool: UpstreamPool,
        url: str,
        *,
        timeout_s: float = 2.0,
        on_error: Literal["accept", "escalate"] = "accept",
    ) -> None:
        self.pool = pool
        self.url = url
        self.timeout_s = timeout_s
        self.on_error: Literal["accept", "escalate"] = on_error

    async def accept_probability(
        self, question: str, answer: str, completion_tokens: int, max_tokens: int
    ) -> float:
        doc = await self.pool.post_json(
            self.url,
            {"question": question, "answer": answer, "tokens": completion_tokens},
            timeout_s=self.timeout_s,
        )
        p = float(doc["accept_probability"] if "accept_probability" in doc else doc["score"])
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"judge {self.url} returned {p!r}, not a probability")
        return p


def default_judge_factory(spec: QualityEstimatorSpec, pool: UpstreamPool) -> AnswerJudge | None:
    """The judge for a config's ``qualityEstimator`` (``kind=none`` disables escalation).

    Runs while a config is loaded (in a worker thread): a trained artefact that cannot be loaded raises
    :class:`~quartermaster.api.routerconfig.RouterConfigError`, so the router keeps its last good config.
    """
    if spec.kind == "none":
        return None
    if spec.kind == "http":
        assert spec.url is not None
        return HttpJudge(pool, spec.url, timeout_s=spec.timeout_seconds, on_error=spec.on_error)
    if spec.kind == "heuristic":
        return HeuristicJudge(on_error=spec.on_error)
    assert spec.artifact_path is not None
    try:
        estimator = load_estimator(spec.artifact_path)
    except EstimatorError as exc:
        raise RouterConfigError(
            f"qualityEstimator.artifactPath={spec.artifact_path}: {exc}; mount the trained estimator there"
        ) from exc
    return EstimatorJudge(estimator, offload=True, on_error=spec.on_error)
