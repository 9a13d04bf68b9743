"""CLEAR: one shadow price on reasoning tokens, with rational abandonment (arXiv 2606.03092).

Formulation. Items ``i`` (query clusters, or single queries) with weight ``w_i`` (queries) and options ``o``
(models) with a utility curve ``U_io`` (:mod:`quartermaster.routing.utility`) and a price multiplier ``c_io``
per token (1 when all tokens cost the same). Each item either takes one option with ``b_i`` tokens per query
or is *abandoned* to its fallback (policy: refuse, short answer, cheapest model) worth ``u_i^fb`` for
``t_i^fb`` tokens::

    maximise  sum_i w_i U_i(b_i)      subject to   sum_i w_i c_i b_i <= B          (budget)

For a price ``lambda`` each option's best budget is the closed form
``b = tau + x/beta, x = -W_{-1}(-lambda*c/(a*beta))`` (no interior optimum when ``lambda*c >= a*beta/e``);
the item keeps the option with the largest surplus ``U(b) - lambda*c*b``, and is abandoned when no option's
surplus beats the fallback's ``u^fb - lambda*t^fb`` (with ``u^fb = t^fb = 0``: when the surplus is negative).
Consumption is non-increasing in ``lambda``; bisection on ``log lambda`` finds the smallest feasible price.

Because ``U`` is not concave, consumption jumps where an item is abandoned, so the bisected price may leave
budget unused. Every price-``lambda`` allocation is optimal for the budget it consumes (Everett); the repair
step then (1) tries re-admitting each item that the jump removed and (2) water-fills the leftover over the
admitted items at a lower price (option choices fixed), keeping the best. Output per item: tokens (the router
ConfigMap's ``max_tokens``), chosen model or abandonment, expected accuracy (the planner's ``f_i`` is the
token allocation).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from quartermaster.routing import clear_search as cs
from quartermaster.routing.errors import BudgetError
from quartermaster.routing.utility import UtilityCurve

log = logging.getLogger(__name__)
FloatArray = npt.NDArray[np.float64]

PolicyKind = Literal["refuse", "short-answer", "cheapest-model"]


@dataclass(frozen=True)
class AbandonPolicy:
    """What an abandoned item gets.

    ``refuse``: nothing (0 tokens, utility 0). ``short-answer``: its own first option capped at ``tokens``.
    ``cheapest-model``: ``model`` capped at ``tokens``; utility from that model's curve on the item if any,
    else ``accuracy``.
    """

    kind: PolicyKind = "refuse"
    tokens: float = 0.0
    model: str | None = None
    accuracy: float = 0.0

    def __post_init__(self) -> None:
        if self.tokens < 0 or not 0.0 <= self.accuracy <= 1.0:
            raise BudgetError(
                f"abandonment policy tokens={self.tokens}, accuracy={self.accuracy} out of range"
            )
        if self.kind == "cheapest-model" and self.model is None:
            raise BudgetError("abandonment policy cheapest-model needs model=<the cheapest model>")
        if self.kind != "refuse" and self.tokens <= 0:
            raise BudgetError(f"abandonment policy {self.kind} needs tokens > 0 (the short-answer cap)")


@dataclass(frozen=True)
class Option:
    """One model an item may use."""

    model: str
    curve: UtilityCurve
    token_cost: float = 1.0


@dataclass(frozen=True)
class BudgetItem:
    """A cluster (or query) to allocate tokens to; ``max_tokens`` caps its allocation (e.g. context limit)."""

    name: str
    weight: float
    options: tuple[Option, ...]
    max_tokens: float | None = None

    def __post_init__(self) -> None:
        if self.weight < 0 or not math.isfinite(self.weight):
            raise BudgetError(f"item {self.name}: weight={self.weight} must be finite and >= 0")
        if not self.options:
            raise BudgetError(f"item {self.name}: give at least one (model, curve) option")
        if any(o.token_cost <= 0 for o in self.options):
            raise BudgetError(f"item {self.name}: token_cost must be > 0")


@dataclass(frozen=True)
class ItemAllocation:
    """Tokens per query for one item, the model to use (or the fallback) and the expected accuracy."""

    name: str
    model: str | None
    tokens: float
    utility: float
    abandoned: bool
    policy: str | None = None


@dataclass(frozen=True)
class Allocation:
    """A CLEAR allocation. ``accuracy`` is the weighted mean utility; ``tokens_used <= budget``."""

    price: float
    budget: float
    tokens_used: float
    accuracy: float
    abandoned_share: float
    binding: bool
    items: tuple[ItemAllocation, ...] = field(default_factory=tuple)

    def to_json(self) -> str:
        return json.dumps({"kind": "quartermaster.budget/v1", **asdict(self)}, indent=2, allow_nan=False)

    def tokens_by_item(self) -> dict[str, float]:
        return {it.name: it.tokens for it in self.items}


def _fallback(item: BudgetItem, policy: AbandonPolicy) -> tuple[float, float, str | None]:
    """(utility, tokens in budget units, model) of an abandoned item under ``policy``."""
    if policy.kind == "refuse":
        return 0.0, 0.0, None
    if policy.kind == "short-answer":
        opt = item.options[0]
        return float(opt.curve.value(policy.tokens)), policy.tokens * opt.token_cost, opt.model
    for opt in item.options:
        if opt.model == policy.model:
            return float(opt.curve.value(policy.tokens)), policy.tokens * opt.token_cost, opt.model
    return policy.accuracy, policy.tokens, policy.model


def _arrays(items: tuple[BudgetItem, ...], policy: AbandonPolicy) -> cs.PricedArrays:
    n, k = len(items), max(len(it.options) for it in items)
    a, tau = np.zeros((n, k)), np.zeros((n, k))
    beta, c = np.ones((n, k)), np.ones((n, k))
    valid = np.zeros((n, k), dtype=bool)
    for i, it in enumerate(items):
        for j, o in enumerate(it.options):
            a[i, j], beta[i, j], tau[i, j], c[i, j] = o.curve.a, o.curve.beta, o.curve.tau, o.token_cost
            valid[i, j] = True
    fb = [_fallback(it, policy) for it in items]
    return cs.PricedArrays(
        w=np.array([it.weight for it in items], dtype=np.float64),
        a=a,
        beta=beta,
        tau=tau,
        c=c,
        valid=valid,
        cap=np.array([math.inf if it.max_tokens is None else it.max_tokens for it in items]),
        fb_u=np.array([f[0] for f in fb]),
        fb_t=np.array([f[1] for f in fb]),
    )


def allocate(
    items: list[BudgetItem] | tuple[BudgetItem, ...],
    budget: float,
    *,
    policy: AbandonPolicy | None = None,
    repair: bool = True,
    exact_max_items: int = 6,
    max_candidates: int = 16,
) -> Allocation:
    """CLEAR allocation of ``budget`` tokens (summed over weighted queries) to ``items``.

    Instances with at most ``exact_max_items`` items are also solved by enumeration and the better result is
    kept. Raises :class:`BudgetError` when the budget cannot cover every item's fallback tokens.
    """
    its = tuple(items)
    pol = policy or AbandonPolicy()
    if not its:
        raise BudgetError("no items to allocate tokens to")
    if not math.isfinite(budget) or budget < 0:
        raise BudgetError(f"budget={budget} must be a finite number of tokens >= 0")
    ar = _arrays(its, pol)
    floor = float(np.dot(ar.w, ar.fb_t))
    if floor > budget * (1 + 1e-12):
        raise BudgetError(
            f"budget={budget:.6g} tokens cannot cover the abandonment policy's {pol.tokens:g} tokens for "
            f"every query ({floor:.6g}); raise the budget or use policy refuse"
        )
    lam_max = float(np.max(np.where(ar.valid, ar.a * ar.beta / ar.c, 0.0))) * cs.INV_E * (1 + 1e-9)
    if lam_max <= 0:
        log.warning("every utility curve is zero; all items are abandoned")
        lam_max = 1.0
    lo, hi = lam_max * 1e-12, lam_max
    choice, tokens = cs.at_price(ar, lo)
    binding = cs.consumption(ar, choice, tokens) > budget
    if binding:
        choice, tokens = cs.at_price(ar, hi)
        for _ in range(200):
            mid = math.sqrt(lo * hi)
            c_mid, t_mid = cs.at_price(ar, mid)
            if cs.consumption(ar, c_mid, t_mid) <= budget:
                hi, choice, tokens = mid, c_mid, t_mid
            else:
                lo = mid
            if hi / lo < 1 + 1e-10:
                break
        if repair:
            choice, tokens = cs.repair(ar, choice, tokens, lo, hi, budget, max_candidates)
        if len(its) <= exact_max_items:
            exact = cs.exact_small(ar, budget)
            if exact is not None and cs.value(ar, *exact) > cs.value(ar, choice, tokens) + 1e-12:
                choice, tokens = exact
    price = hi if binding else 0.0
    return _result(its, ar, pol, choice, tokens, price, budget, binding)


def _result(
    its: tuple[BudgetItem, ...],
    ar: cs.PricedArrays,
    pol: AbandonPolicy,
    choice: npt.NDArray[np.int64],
    tokens: FloatArray,
    price: float,
    budget: float,
    binding: bool,
) -> Allocation:
    out = []
    for i, it in enumerate(its):
        if choice[i] >= 0:
            opt = it.options[int(choice[i])]
            u = float(opt.curve.value(tokens[i]))
            out.append(ItemAllocation(it.name, opt.model, float(tokens[i]), u, False))
        else:
            _, fb_t, fb_model = _fallback(it, pol)
            out.append(ItemAllocation(it.name, fb_model, float(fb_t), float(ar.fb_u[i]), True, pol.kind))
    wsum = float(ar.w.sum()) or 1.0
    return Allocation(
        price=float(price),
        budget=float(budget),
        tokens_used=cs.consumption(ar, choice, tokens),
        accuracy=cs.value(ar, choice, tokens) / wsum,
        abandoned_share=float(np.dot(ar.w, choice < 0)) / wsum,
        binding=binding,
        items=tuple(out),
    )


def evaluate_tokens(items: list[BudgetItem] | tuple[BudgetItem, ...], tokens: npt.ArrayLike) -> float:
    """Weighted mean utility of giving item ``i`` ``tokens[i]`` with its first option (for baselines)."""
    t = np.asarray(tokens, dtype=np.float64)
    w = np.array([it.weight for it in items])
    u = np.array([float(it.options[0].curve.value(ti)) for it, ti in zip(items, t, strict=True)])
    return float(np.dot(w, u) / w.sum())
