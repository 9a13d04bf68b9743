"""GH: the seed's constraint-aware greedy heuristic (single pass).

1. Coverage pre-pass: the most constrained classes (fewest M1-feasible options, at most a quarter of the
   median count) are served first, so that every class keeps a feasible path before bulk demand takes the
   scarce GPUs.
2. The remaining classes in descending arrival rate (or the order a multi-start gives).
3. Each class is served by repeatedly choosing among its M1-feasible options (mechanism **M1**) the one with
   the lowest cost per effective coverage (**M2**): the incremental $/h (new replicas only; spare capacity of
   open replicas is free; plus switching cost in rolling re-planning) divided by the demand (req/s) it
   covers while C2 (capacity), C3 (the class's average error, using the slack of already-placed shares),
   C4 (GPUs of the pool) and C5 (budget) hold.
4. **M3** TP upgrade: before opening new replicas, try moving an open deployment of the same model,
   precision and pool to a larger tensor-parallel degree that also carries the class, when that costs less
   per covered request.
5. A class left partly unserved is acceptable up to ``maxUnservedShare``, and preferred when serving costs
   more per request than its penalty.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from quartermaster.planner.state import EPS, Allocation, Context

logger = logging.getLogger(__name__)

TOL = 1e-9


def _switch_delta(
    ctx: Context, o: np.ndarray | int, n_now: np.ndarray | int, n_new: np.ndarray | int
) -> np.ndarray:
    prev = ctx.prev[o]
    return np.asarray(ctx.switching * (np.abs(n_new - prev) - np.abs(n_now - prev)), dtype=np.float64)


def _error_cap(st: Allocation, i: int, error: np.ndarray) -> np.ndarray:
    """Largest share of class ``i`` each option can take without breaking C3 (inf if error <= bound)."""
    eps = st.ctx.eps[i]
    slack = max(0.0, eps * st.served[i] - st.err_sum[i])
    over = error - eps
    with np.errstate(divide="ignore"):
        return np.where(over > 1e-12, slack / np.where(over > 1e-12, over, 1.0), math.inf)


@dataclass(frozen=True)
class Move:
    """Shares to add (in order), their incremental $/h and the M2 rank ($/h per covered req/s)."""

    adds: tuple[tuple[int, float], ...]
    inc: float
    rank: float

    @property
    def coverage(self) -> float:
        return sum(s for _, s in self.adds)


def _new_replicas(
    st: Allocation, i: int, cands: np.ndarray, share: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(m, covered)``: new replicas each candidate needs for ``share`` of class ``i``, limited by the
    pool's free GPUs and the budget, and the share that covers."""
    ctx = st.ctx
    lam = ctx.rates[i]
    mu = ctx.mu[cands, i]
    per_replica = ctx.rho * mu / lam
    free = np.maximum(0.0, ctx.rho * st.n[cands] - st.load[cands]) * mu / lam
    m = np.ceil(np.maximum(0.0, share - free) / per_replica - EPS)
    tiers = ctx.tier_of[cands]
    m = np.minimum(m, np.maximum((ctx.tier_cap[tiers] - st.tier_used[tiers]) // ctx.gpus[cands], 0))
    if math.isfinite(ctx.budget):
        m = np.minimum(m, np.maximum(np.floor((ctx.budget - st.gpu_cost) / ctx.costs[cands] + EPS), 0))
    return m, np.minimum(share, free + m * per_replica)


def _increment(st: Allocation, cands: np.ndarray, m: np.ndarray) -> np.ndarray:
    ctx = st.ctx
    inc = m * ctx.costs[cands]
    if ctx.switching:
        inc = inc + _switch_delta(ctx, cands, st.n[cands], st.n[cands] + m.astype(np.int64))
    return np.asarray(inc, dtype=np.float64)


def _absorbed(
    st: Allocation,
    i: int,
    cands: np.ndarray,
    m: np.ndarray,
    cov: np.ndarray,
    potential: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    """Look-ahead M2: req/s of not-yet-served classes the spare capacity left after a move could absorb."""
    ctx = st.ctx
    mu = ctx.mu[cands, i]
    spare_after = np.maximum(0.0, ctx.rho * (st.n[cands] + m) - st.load[cands] - cov * ctx.rates[i] / mu)
    pot_req, pot_units = potential[0][cands], potential[1][cands]
    frac = np.minimum(1.0, spare_after / np.where(pot_units > 0, pot_units, 1.0))
    return np.where(pot_units > 0, frac * pot_req, 0.0)


def _best_move(
    st: Allocation,
    i: int,
    cands: np.ndarray,
    r: float,
    potential: tuple[np.ndarray, np.ndarray] | None = None,
) -> Move | None:
    """The best way to cover the remaining share ``r`` of class ``i`` (M2), or ``None``.

    Singles: one option covers what it can (C2, C3 with the current error slack, C4, C5). Mixes (only with
    M2): an accurate option ``L`` (error <= bound) and a cheaper, less accurate option ``H`` split ``r`` so
    that the class's average error stays within its bound -- the effective coverage of ``H`` under C3.
    With ``potential`` (look-ahead M2) the denominator also counts the demand of classes still to be served
    that the move's spare capacity could absorb.
    """
    ctx = st.ctx
    if len(cands) == 0:
        return None
    lam = ctx.rates[i]
    cost = ctx.costs[cands]
    mu = ctx.mu[cands, i]
    error = ctx.error[cands, i]
    m, cov = _new_replicas(st, i, cands, np.minimum(r, _error_cap(st, i, error)))
    valid = cov > TOL
    if not valid.any():
        return None
    inc = _increment(st, cands, m)
    lookahead = potential is not None and ctx.mech.m2
    if not ctx.mech.m2:
        rank = np.where(m > 0, cost, 0.0)  # ablation: cheapest replica, free capacity first
    elif potential is not None:
        rank = inc / np.maximum(cov * lam + _absorbed(st, i, cands, m, cov, potential), 1e-300)
    else:
        rank = inc / np.maximum(cov * lam, 1e-300)  # M2: cost per effective coverage
    rank = np.where(valid, rank, math.inf)
    # Ties (e.g. one new replica of either option covers everything): the cheaper per request in the long
    # run (fractional cost c / mu) wins, since its spare capacity is worth more to later classes.
    unit = cost / mu
    order = np.lexsort((cands, unit, -cov, np.round(rank, 12)))
    best = int(order[0])
    move = Move(((int(cands[best]), float(cov[best])),), float(inc[best]), float(rank[best]))
    if not ctx.mech.m2:
        return move
    eps = ctx.eps[i]
    high = error > eps + 1e-12
    low_ok = valid & ~high & (cov >= r - TOL)
    if not high.any() or not low_ok.any():
        return move
    slack = max(0.0, eps * st.served[i] - st.err_sum[i])
    for lo in (int(k) for k in order[low_ok[order]][:2]):
        # Mixing only helps with an H that is cheaper per request than L.
        h_idx = np.flatnonzero(high & (unit < unit[lo]))
        if len(h_idx) == 0:
            continue
        e_l = error[lo]
        alpha = np.clip((slack / r + eps - e_l) / (error[h_idx] - e_l), 0.0, 1.0)
        s_h = alpha * r
        m_h, cov_h = _new_replicas(st, i, cands[h_idx], s_h)
        fits = (cov_h >= s_h - TOL) & (s_h > TOL)
        s_l = r - s_h
        o_l = cands[lo]
        free_l = max(0.0, ctx.rho * st.n[o_l] - st.load[o_l]) * mu[lo] / lam
        m_l = np.ceil(np.maximum(0.0, s_l - free_l) / (ctx.rho * mu[lo] / lam) - EPS)
        total = _increment(st, cands[h_idx], m_h) + m_l * cost[lo]
        if ctx.switching:
            prev = ctx.prev[o_l]
            total = total + ctx.switching * (np.abs(st.n[o_l] + m_l - prev) - abs(st.n[o_l] - prev))
        # Shared pool or budget: both halves must fit together.
        t_h, t_l = ctx.tier_of[cands[h_idx]], ctx.tier_of[o_l]
        g_h, g_l = m_h * ctx.gpus[cands[h_idx]], m_l * ctx.gpus[o_l]
        same = t_h == t_l
        fits &= st.tier_used[t_h] + g_h + np.where(same, g_l, 0) <= ctx.tier_cap[t_h]
        fits &= st.tier_used[t_l] + g_l + np.where(same, g_h, 0) <= ctx.tier_cap[t_l]
        if math.isfinite(ctx.budget):
            fits &= st.gpu_cost + m_h * cost[h_idx] + m_l * cost[lo] <= ctx.budget * (1 + 1e-9)
        if not fits.any():
            continue
        covered = r * lam
        if lookahead and potential is not None:
            covered = covered + _absorbed(st, i, cands[h_idx], m_h, s_h, potential)
            covered = covered + _absorbed(st, i, np.full(len(h_idx), o_l), m_l, s_l, potential)
        pair_rank = np.where(fits, total / np.maximum(covered, 1e-300), math.inf)
        k = int(np.argmin(pair_rank))
        if pair_rank[k] < move.rank - 1e-12:
            adds = ((int(o_l), float(s_l[k])), (int(cands[h_idx[k]]), float(s_h[k])))
            move = Move(tuple(a for a in adds if a[1] > TOL), float(total[k]), float(pair_rank[k]))
    return move


def _upgrade(st: Allocation, i: int, r: float, best_rank: float) -> tuple[int, int, float, float] | None:
    """M3: best (open option, larger-TP option, coverage, rank) cheaper than ``best_rank``."""
    ctx = st.ctx
    lam = ctx.rates[i]
    found: tuple[int, int, float, float] | None = None
    for o1 in list(st.on):
        bigger = ctx.family.get(o1)
        if not bigger or st.n[o1] == 0:
            continue
        on1 = st.on[o1]
        for o2 in bigger:
            if not ctx.feasible[o2, i] or any(not ctx.feasible[o2, c] for c in on1):
                continue
            cov = float(min(r, _error_cap(st, i, np.array([ctx.error[o2, i]]))[0]))
            if cov <= TOL:
                continue
            moved = sum(ctx.rates[c] * s / ctx.mu[o2, c] for c, s in on1.items() if ctx.rates[c] > 0)
            n2 = ctx.replicas_for(st.load[o2] + moved + lam * cov / ctx.mu[o2, i])
            add2 = n2 - int(st.n[o2])
            tier = ctx.tier_of[o1]
            if st.tier_used[tier] + add2 * ctx.gpus[o2] - st.n[o1] * ctx.gpus[o1] > ctx.tier_cap[tier]:
                continue
            delta = add2 * ctx.costs[o2] - st.n[o1] * ctx.costs[o1]
            if st.gpu_cost + delta > ctx.budget * (1 + 1e-9):
                continue
            if ctx.switching:
                delta += float(_switch_delta(ctx, o2, st.n[o2], n2)) + float(
                    _switch_delta(ctx, o1, st.n[o1], 0)
                )
            rank = delta / (cov * lam)
            if rank < best_rank - 1e-12 and (found is None or rank < found[3]):
                found = (o1, o2, cov, rank)
    return found


def serve_class(
    st: Allocation,
    i: int,
    allow: np.ndarray | None = None,
    potential: tuple[np.ndarray, np.ndarray] | None = None,
) -> float:
    """Serve as much of class ``i``'s remaining demand as is worthwhile; return the share left unserved."""
    ctx = st.ctx
    cands = ctx.candidates[i]
    if allow is not None:
        cands = cands[allow[cands]]
    r = 1.0 - st.served[i]
    if r <= TOL:
        return 0.0
    if ctx.rates[i] == 0:
        # Nothing to carry: route to an open, error-feasible option (else the most accurate one).
        ok = cands[ctx.error[cands, i] <= ctx.eps[i] + 1e-12]
        if len(ok):
            open_ok = ok[st.n[ok] > 0]
            pool = open_ok if len(open_ok) else ok
            st.add(i, int(pool[np.lexsort((pool, ctx.error[pool, i]))[0]]), r)
        return float(1.0 - st.served[i])
    penalty_rank = ctx.penalty[i] / ctx.rates[i]
    for _ in range(256):
        if r <= TOL:
            break
        best = _best_move(st, i, cands, r, potential)
        if ctx.mech.m3 and (best is None or best.inc > 0):
            up = _upgrade(st, i, r, best.rank if best else math.inf)
            if up is not None:
                o1, o2, cov, rank = up
                if r <= ctx.zeta[i] + TOL and rank >= penalty_rank:
                    break
                for c, s in list(st.on[o1].items()):
                    st.remove(c, o1)
                    st.add(c, o2, s)
                st.add(i, o2, cov)
                r = 1.0 - st.served[i]
                continue
        if best is None:
            break
        if r <= ctx.zeta[i] + TOL and ctx.mech.m2 and best.inc > 0 and best.rank >= penalty_rank:
            break
        for o, share in best.adds:
            st.add(i, o, share)
        r = 1.0 - st.served[i]
    return float(max(0.0, r))


def constrained_first(ctx: Context, order: Sequence[int]) -> list[int]:
    """Coverage pre-pass: classes with few feasible options first (ascending count), then ``order``."""
    counts = np.array([len(c) for c in ctx.candidates])
    positive = counts[counts > 0]
    threshold = max(1.0, 0.25 * float(np.median(positive))) if len(positive) else 0.0
    scarce = sorted((i for i in order if counts[i] <= threshold), key=lambda i: (counts[i], i))
    return scarce + [i for i in order if counts[i] > threshold]


def _potential(st: Allocation, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Per option: req/s and replica-units of the not-yet-served demand (other classes) it could carry."""
    ctx = st.ctx
    cache = ctx.__dict__.setdefault("_potential", {})
    if "req" not in cache:
        usable = ctx.feasible & (ctx.error <= ctx.eps[None, :] + 1e-12)
        mu = np.where(usable, ctx.mu, 1.0)
        cache["req"] = np.where(usable, ctx.rates[None, :], 0.0)
        cache["units"] = np.where(usable, ctx.rates[None, :] / mu, 0.0)
    remaining = np.clip(1.0 - st.served, 0.0, 1.0)
    remaining[i] = 0.0
    return cache["req"] @ remaining, cache["units"] @ remaining


def construct(
    ctx: Context, order: Sequence[int], start: Allocation | None = None, *, lookahead: bool = False
) -> Allocation:
    """Serve the classes in ``order`` (after the coverage pre-pass) into a fresh or given allocation.

    ``lookahead`` ranks with the look-ahead M2 (spare capacity valued by the demand still to come).
    """
    st = start.copy() if start is not None else Allocation(ctx)
    for i in constrained_first(ctx, order):
        serve_class(st, i, potential=_potential(st, i) if lookahead else None)
    return st


def rate_order(ctx: Context) -> list[int]:
    """GH's default order: descending arrival rate (ties by index)."""
    return sorted(range(len(ctx.rates)), key=lambda i: (-ctx.rates[i], i))


def solve_gh(ctx: Context) -> Allocation:
    """One GH pass; the result may be infeasible (check :meth:`Allocation.is_feasible`)."""
    st = construct(ctx, rate_order(ctx))
    logger.debug("GH: cost %.3f feasible %s", st.gpu_cost, st.is_feasible())
    return st
