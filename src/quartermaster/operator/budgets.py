"""The pool's global token budget, split across classes by CLEAR before planning (pure).

``spec.tokenBudget`` is output tokens per request averaged over all requests, so the budget is
``tokenBudget x sum_i rate_i`` tokens per second, shared by classes weighted by their rates. Each class's
utility curve (success probability vs output tokens) uses the shifted-surge form of the routing package;
without measured curves Quartermaster uses a documented default: ceiling ``a = 1 - maxError``, emergence
threshold ``tau = 0.2 f`` and ``beta`` such that the curve reaches 90% of its ceiling at the class's mean
output tokens ``f``. A class CLEAR abandons gets ``ABANDONED_MAX_TOKENS`` (short answers, router policy
short-answer). The allocation caps each class's ``outputTokens`` for the planner and becomes its
``maxTokens`` in the router ConfigMap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from quartermaster.api.classes import QueryClassSpec
from quartermaster.api.pool import InferencePoolSpec
from quartermaster.routing.budget import AbandonPolicy, BudgetItem, Option, allocate
from quartermaster.routing.errors import BudgetError
from quartermaster.routing.utility import UtilityCurve

ABANDONED_MAX_TOKENS = 64
_X90 = 3.8897  # (1 + x) e^-x = 0.1


@dataclass(frozen=True)
class TokenCaps:
    max_tokens: dict[str, int]
    abandoned: frozenset[str]
    classes: list[QueryClassSpec]  # output tokens capped by the allocation


def default_curve(cls: QueryClassSpec, max_error: float) -> UtilityCurve:
    f = max(cls.output_tokens, 1.0)
    tau = 0.2 * f
    return UtilityCurve(a=max(0.0, min(1.0, 1.0 - max_error)), beta=_X90 / max(f - tau, 1e-6), tau=tau)


def token_caps(pool: InferencePoolSpec, classes: list[QueryClassSpec]) -> TokenCaps | None:
    """CLEAR caps, or None when the pool has no token budget."""
    if pool.token_budget is None:
        return None
    items = [
        BudgetItem(
            name=c.name,
            weight=max(c.rate, 1e-9),
            options=(
                Option(
                    "any", default_curve(c, c.max_error if c.max_error is not None else pool.slo.max_error)
                ),
            ),
        )
        for c in classes
    ]
    budget = pool.token_budget * sum(max(c.rate, 1e-9) for c in classes)
    try:
        allocation = allocate(
            items, budget, policy=AbandonPolicy("short-answer", tokens=ABANDONED_MAX_TOKENS)
        )
    except BudgetError:
        allocation = allocate(items, budget, policy=AbandonPolicy("refuse"))
    caps: dict[str, int] = {}
    abandoned: set[str] = set()
    for item in allocation.items:
        if item.abandoned:
            abandoned.add(item.name)
            caps[item.name] = ABANDONED_MAX_TOKENS
        else:
            caps[item.name] = max(1, math.ceil(item.tokens))
    capped = [
        c.model_copy(update={"output_tokens": float(min(c.output_tokens, caps[c.name]))}) for c in classes
    ]
    return TokenCaps(caps, frozenset(abandoned), capped)
