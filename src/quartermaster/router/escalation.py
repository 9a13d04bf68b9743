"""The escalation cascade for non-streamed answers.

:class:`Escalator` sends the request to the decided target; when the answer came from a model on the
cluster's ladder, the quality estimator (an :class:`AnswerJudge`) gives its accept probability from
``(question, answer, completion tokens)``. Below the cluster's ``qualityThreshold`` the request is
re-sent to the next model of the ladder (at most ``maxEscalations`` times). If an escalation call fails
(no replica, timeout, an error status) the last good answer is returned rather than an error: the
client asked for an answer, and it has one.

Estimator failures follow the config's ``qualityEstimator.onError``: ``accept`` keeps the answer,
``escalate`` treats it as rejected.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from quartermaster.api.routerconfig import QualityEstimatorSpec, RouterConfigError
from quartermaster.router.metrics import RouterMetrics
from quartermaster.router.policy import Decision, RoutingPolicy
from quartermaster.router.upstream import (
    UpstreamPool,
    UpstreamResponse,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)

logger = logging.getLogger(__name__)


@runtime_checkable
class AnswerJudge(Protocol):
    """Async accept probability of one answer (wraps a :mod:`quartermaster.routing` quality estimator)."""

    on_error: Literal["accept", "escalate"]

    async def accept_probability(self, question: str, answer: str, completion_tokens: int) -> float: ...


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
            p = await self._judge(judge, question, text, c_tokens)
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
    async def _judge(judge: AnswerJudge, question: str, answer: str, tokens: int) -> float:
        try:
            p = float(await judge.accept_probability(question, answer, tokens))
        except Exception as exc:  # estimator trouble must not fail the request
            logger.warning(
                "quality estimator failed (%s: %s); on_error=%s", type(exc).__name__, exc, judge.on_error
            )
            return 1.0 if judge.on_error == "accept" else 0.0
        if math.isnan(p):
            return 1.0 if judge.on_error == "accept" else 0.0
        return min(max(p, 0.0), 1.0)


class HttpJudge:
    """``qualityEstimator.kind=http``: POST ``{"question", "answer", "completionTokens"}`` to ``url``;
    the hook answers ``{"acceptProbability": p}``."""

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

    async def accept_probability(self, question: str, answer: str, completion_tokens: int) -> float:
        doc = await self.pool.post_json(
            self.url,
            {"question": question, "answer": answer, "completionTokens": completion_tokens},
            timeout_s=self.timeout_s,
        )
        return float(doc["acceptProbability"])


_HEDGES = (
    "i don't know",
    "i do not know",
    "i'm not sure",
    "i am not sure",
    "not sure",
    "i cannot answer",
    "i can't answer",
    "i'm unable",
    "i am unable",
    "as an ai",
)


class HedgeHeuristicJudge:
    """Fallback heuristic (used while no estimator from :mod:`quartermaster.routing` is available):
    an empty answer gets 0, an answer that hedges or refuses (see ``_HEDGES``) 0.2, anything else 0.9."""

    on_error: Literal["accept", "escalate"] = "accept"

    def __init__(self, *, on_error: Literal["accept", "escalate"] = "accept") -> None:
        self.on_error = on_error

    async def accept_probability(self, question: str, answer: str, completion_tokens: int) -> float:
        text = answer.strip().lower()
        if not text:
            return 0.0
        return 0.2 if any(h in text for h in _HEDGES) else 0.9


def default_judge_factory(spec: QualityEstimatorSpec, pool: UpstreamPool) -> AnswerJudge | None:
    """The judge for a config's ``qualityEstimator`` (``kind=none`` disables escalation)."""
    if spec.kind == "none":
        return None
    if spec.kind == "http":
        assert spec.url is not None
        return HttpJudge(pool, spec.url, timeout_s=spec.timeout_seconds, on_error=spec.on_error)
    if spec.kind == "heuristic":
        return HedgeHeuristicJudge(on_error=spec.on_error)
    raise RouterConfigError(
        f"qualityEstimator.kind={spec.kind} is not supported by this router build; "
        "use heuristic, http or none"
    )
