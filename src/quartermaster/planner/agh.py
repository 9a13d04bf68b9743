"""AGH: the seed's adaptive greedy heuristic = GH + multi-start + relocate local search + GPU consolidation.

1. **Multi-start**: GH constructions with class orders by rate (descending, ascending), error bound (tightest
   first), footprint ``lam (h + f)`` (descending, ascending), TPOT SLO (tightest first), ``random_starts``
   permutations drawn from ``numpy.random.default_rng(seed)`` and, in rolling re-planning, the previous plan
   (its shares re-applied at the new rates, the rest served greedily). Every start uses M1-M3.
2. **Relocate** local search on the best starts, accepting only moves that lower the objective and keep the
   allocation fully feasible:
   - *retarget*: move a whole deployment to another pool or TP/PP degree of the same model and precision
     (swap tier, change t), priced analytically;
   - *relocate*: take one class's share off a deployment and re-serve it greedily elsewhere (this also moves
     demand onto cheaper, less accurate models within the class's error slack).
3. **GPU consolidation**: drop a whole deployment, or one replica of it, re-serving its demand on the spare
   capacity of the others; then (deviation from the seed, ``lp_consolidation``) drop or swap single
   replicas while an exact LP re-routing of the shares (:mod:`quartermaster.planner.rebalance`) keeps every
   class served; finally, in rolling re-planning, keep replicas that would cost less to keep than to stop
   and restart (switching cost).
4. **Kernel search** (deviation from the seed, ``kernel_milp``; not in rolling re-planning): only the best
   start gets the local search and LP consolidation, then the planner's MILP is solved restricted to a
   kernel of 50-80 options (those open in *every* start, other pools/precisions/degrees of the open models,
   the consolidation swap candidates, the best capacity-per-$ options per class and overall), 10 nodes,
   AGH's plan as incumbent (:mod:`quartermaster.planner.neighbourhood`); then (``kernel_bucket``
   families, 0 = off) a second 10-node MILP over one LP-priced bucket of options outside the kernel (from
   the LP relaxation's duals: the options whose single replica its classes would fill most profitably), the
   LP's support and the open options; the result gets one more LP consolidation pass. Without the kernel
   search, the two best starts are improved and get a wider consolidation pass.

Deterministic for a given seed: all iteration orders are sorted with index tie-breaks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from quartermaster.planner.errors import SolverError
from quartermaster.planner.greedy import TOL, construct, rate_order, serve_class
from quartermaster.planner.neighbourhood import bucket_milp, restricted_milp
from quartermaster.planner.plan import Solution
from quartermaster.planner.rebalance import consolidate
from quartermaster.planner.state import Allocation, Context

logger = logging.getLogger(__name__)

IMPROVE = 1e-9


@dataclass(frozen=True)
class AghStats:
    """What AGH did (for notes and benchmarks)."""

    starts: int
    feasible_starts: int
    best_start: str
    moves: int
    timed_out: bool
    phase_seconds: tuple[tuple[str, float], ...] = ()
    """Wall-clock seconds per phase: starts, improve (local search + LP consolidation), kernel MILP,
    LP + bucket MILP, final consolidation (all but the first two only when the kernel search runs)."""


def _orders(ctx: Context, seed: int, random_starts: int) -> list[tuple[str, list[int], bool]]:
    classes = ctx.instance.classes
    idx = range(len(classes))
    footprint = [c.rate * (c.prompt_tokens + c.output_tokens) for c in classes]
    orders = [
        ("rate-desc", rate_order(ctx)),
        ("rate-asc", sorted(idx, key=lambda i: (ctx.rates[i], i))),
        ("error-bound", sorted(idx, key=lambda i: (classes[i].max_error, -ctx.rates[i], i))),
        ("footprint-desc", sorted(idx, key=lambda i: (-footprint[i], i))),
        ("footprint-asc", sorted(idx, key=lambda i: (footprint[i], i))),
        ("tpot-slo", sorted(idx, key=lambda i: (classes[i].tpot, classes[i].ttft, i))),
    ]
    starts = [(name, order, False) for name, order in orders]
    starts += [(f"{name}+lookahead", order, True) for name, order in orders]
    rng = np.random.default_rng(seed)
    for n in range(random_starts):
        starts.append((f"random-{n}", [int(i) for i in rng.permutation(len(classes))], bool(n % 2)))
    return starts


def warm_start(ctx: Context, previous: Solution) -> Allocation:
    """Re-apply a previous plan's feasible shares at the current rates, then serve what is left."""
    st = Allocation(ctx)
    for (i, o), share in sorted(previous.shares.items()):
        if 0 <= o < len(ctx.instance.options) and ctx.feasible[o, i]:
            st.add(i, o, share)
    for i in range(len(ctx.rates)):
        if not st.error_ok(i):
            for o in sorted(st.x[i], key=lambda o: -ctx.error[o, i]):
                st.remove(i, o)
                if st.error_ok(i):
                    break
    return construct(ctx, rate_order(ctx), start=st)


def _move_group(st: Allocation, group: list[int]) -> bool:
    """Move every share of the deployments in ``group`` onto the one option that saves the most.

    Priced analytically for all candidate options at once: replicas needed for the moved load on top of
    the target's own, GPUs of the target pool, the budget and the error bound (C3) of every class touched.
    With one deployment this is the seed's *swap tier / change t* (and change model or precision); with two
    it merges deployments (GPU consolidation).
    """
    ctx = st.ctx
    moved: dict[int, float] = {}
    err_delta_src: dict[int, float] = {}
    for o in group:
        for c, s in st.on[o].items():
            moved[c] = moved.get(c, 0.0) + s
            err_delta_src[c] = err_delta_src.get(c, 0.0) + ctx.error[o, c] * s
    cls = np.array(sorted(moved), dtype=np.int64)
    share = np.array([moved[c] for c in cls])
    src_err = np.array([err_delta_src[c] for c in cls])
    ok = np.asarray(ctx.feasible[:, cls].all(axis=1), dtype=bool)
    ok[group] = ok[group] & (len(group) > 1)
    cand = np.flatnonzero(ok)
    if len(cand) == 0:
        return False
    rates = ctx.rates[cls]
    mu = ctx.mu[np.ix_(cand, cls)]
    per = np.where(rates[None, :] > 0, rates[None, :] * share[None, :] / np.where(mu > 0, mu, 1.0), 0.0)
    in_group = np.isin(cand, group)
    own_load = np.where(in_group, 0.0, st.load[cand])
    n_now = st.n[cand]
    n2 = np.ceil((own_load + per.sum(axis=1)) / ctx.rho - 1e-9).astype(np.int64)
    released = sum(int(st.n[o]) * float(ctx.costs[o]) for o in group)
    gpu_delta = n2 * ctx.costs[cand] - np.where(in_group, 0.0, n_now * ctx.costs[cand]) - released
    delta = gpu_delta
    if ctx.switching:
        prev = ctx.prev
        delta = delta + ctx.switching * (np.abs(n2 - prev[cand]) - np.abs(n_now - prev[cand]))
        for o in group:
            delta = delta + np.where(cand == o, 0.0, ctx.switching * (prev[o] - abs(st.n[o] - prev[o])))
    tiers = ctx.tier_of[cand]
    used = st.tier_used[tiers] + (n2 - n_now) * ctx.gpus[cand]
    for o in group:
        used = used - np.where((tiers == ctx.tier_of[o]) & (cand != o), st.n[o] * ctx.gpus[o], 0)
    new_cost = st.gpu_cost + gpu_delta
    err = st.err_sum[cls][None, :] - src_err[None, :] + share[None, :] * ctx.error[np.ix_(cand, cls)]
    err_ok = (err <= ctx.eps[cls][None, :] * st.served[cls][None, :] + 1e-9).all(axis=1)
    good = (delta < -IMPROVE) & (used <= ctx.tier_cap[tiers]) & (new_cost <= ctx.budget * (1 + 1e-9)) & err_ok
    if not good.any():
        return False
    best = int(cand[np.flatnonzero(good)[np.argmin(delta[good])]])
    for o in group:
        if o == best:
            continue
        for c, s in list(st.on.get(o, {}).items()):
            st.remove(c, o)
            st.add(c, best, s)
    logger.debug(
        "moved %s -> %s", [ctx.instance.options[o].name for o in group], ctx.instance.options[best].name
    )
    return True


def _retarget(st: Allocation) -> bool:
    """Swap tier / change TP (or model, precision) of one deployment, or merge two, when cheaper."""
    ctx = st.ctx
    open_options = sorted((o for o in st.on if st.n[o] > 0), key=lambda o: (-st.n[o] * ctx.costs[o], o))
    for o in open_options:
        if _move_group(st, [o]):
            return True
    for a_pos, a in enumerate(open_options):
        for b in open_options[a_pos + 1 :]:
            if a in st.on and b in st.on and _move_group(st, [a, b]):
                return True
    return False


def _try(st: Allocation, change: Callable[[Allocation], None]) -> Allocation | None:
    trial = st.copy()
    change(trial)
    if trial.is_feasible() and trial.objective() < st.objective() - IMPROVE:
        return trial
    return None


def _reserve(trial: Allocation, classes: list[int], banned: int) -> None:
    allow = np.ones(len(trial.ctx.instance.options), dtype=bool)
    allow[banned] = False
    for c in sorted(classes, key=lambda c: (-trial.ctx.rates[c], c)):
        serve_class(trial, c, allow)


def _drop_deployment(st: Allocation, deadline: float) -> Allocation | None:
    """Consolidation: drop a whole deployment, re-serving its classes elsewhere."""
    ctx = st.ctx
    for o in sorted(st.on, key=lambda o: (-st.n[o] * ctx.costs[o], o)):
        if time.perf_counter() > deadline:
            return None
        classes = sorted(st.on[o])

        def change(trial: Allocation, o: int = o, classes: list[int] = classes) -> None:
            for c in classes:
                trial.remove(c, o)
            _reserve(trial, classes, o)

        better = _try(st, change)
        if better is not None:
            return better
    return None


def _drop_replica(st: Allocation, deadline: float) -> Allocation | None:
    """Consolidation: free one replica of a deployment by moving just enough share elsewhere."""
    ctx = st.ctx
    for o in sorted(st.on, key=lambda o: (-ctx.costs[o], o)):
        if st.n[o] < 2 or time.perf_counter() > deadline:
            continue
        need = st.load[o] - ctx.rho * (st.n[o] - 1)

        def change(trial: Allocation, o: int = o, need: float = need) -> None:
            moved: list[int] = []
            for c, s in sorted(trial.on[o].items(), key=lambda item: (-item[1], item[0])):
                if need <= TOL or ctx.rates[c] == 0:
                    break
                per_share = ctx.rates[c] / ctx.mu[o, c]
                take = min(s, need / per_share * (1 + 1e-9))
                trial.remove(c, o, take)
                need -= take * per_share
                moved.append(c)
            _reserve(trial, moved, o)

        better = _try(st, change)
        if better is not None:
            return better
    return None


def _relocate(st: Allocation, deadline: float) -> Allocation | None:
    """Take one class's share off one deployment and re-serve it greedily elsewhere."""
    ctx = st.ctx
    pairs = sorted(
        ((i, o) for o, on in st.on.items() for i in on if ctx.rates[i] > 0),
        key=lambda p: (-ctx.costs[p[1]] * st.x[p[0]][p[1]], p),
    )
    for i, o in pairs:
        if time.perf_counter() > deadline:
            return None

        def change(trial: Allocation, i: int = i, o: int = o) -> None:
            trial.remove(i, o)
            _reserve(trial, [i], o)

        better = _try(st, change)
        if better is not None:
            return better
    return None


def settle_switching(st: Allocation) -> None:
    """Keep replicas of the previous plan whose switching cost exceeds their hourly price."""
    ctx = st.ctx
    if not ctx.switching:
        return
    for index in np.flatnonzero(ctx.prev > st.n):
        o = int(index)
        if ctx.switching <= ctx.costs[o]:
            continue
        keep = int(ctx.prev[o] - st.n[o])
        tier = ctx.tier_of[o]
        keep = min(keep, int((ctx.tier_cap[tier] - st.tier_used[tier]) // ctx.gpus[o]))
        if np.isfinite(ctx.budget):
            keep = min(keep, int((ctx.budget - st.gpu_cost) // ctx.costs[o]))
        if keep > 0:
            st._set_replicas(o, int(st.n[o]) + keep)


def local_search(st: Allocation, deadline: float) -> tuple[Allocation, int]:
    """Relocate + consolidation until no improving move (or the deadline)."""
    moves = 0
    while time.perf_counter() < deadline:
        if _retarget(st):
            moves += 1
            continue
        nxt = _drop_deployment(st, deadline) or _drop_replica(st, deadline) or _relocate(st, deadline)
        if nxt is None:
            break
        st = nxt
        moves += 1
    return st, moves


def solve_agh(
    ctx: Context,
    *,
    seed: int = 0,
    time_limit: float = 10.0,
    random_starts: int = 4,
    improve_best: int = 2,
    previous: Solution | None = None,
    lp_consolidation: bool = True,
    kernel_milp: bool = True,
    kernel_bucket: int = 15,
) -> tuple[Allocation, AghStats]:
    """Run AGH; the best allocation may be infeasible when no start found a feasible one."""
    started = time.perf_counter()
    deadline = started + time_limit
    results: list[tuple[str, Allocation]] = []
    if previous is not None:
        results.append(("previous", warm_start(ctx, previous)))
    for name, order, lookahead in _orders(ctx, seed, random_starts):
        if results and time.perf_counter() > deadline:
            break
        results.append((name, construct(ctx, order, lookahead=lookahead)))
    starts = len(results)
    clock = [("starts", time.perf_counter())]
    feasible = [(n, s) for n, s in results if s.is_feasible()]
    if not feasible:
        name, best = min(
            results, key=lambda r: (float(np.clip(1 - r[1].served, 0, 1).sum()), r[1].objective())
        )
        return best, AghStats(starts, 0, name, 0, time.perf_counter() > deadline)
    feasible.sort(key=lambda r: r[1].objective())
    # The kernel search sees the options of every start, so one improved start suffices there.
    use_kernel = kernel_milp and not ctx.switching
    distinct: list[tuple[str, Allocation]] = []
    for name, st in feasible:
        if all(abs(st.objective() - d.objective()) > 1e-6 for _, d in distinct):
            distinct.append((name, st))
        if len(distinct) >= (1 if use_kernel else improve_best):
            break
    total_moves = 0
    improved: list[tuple[str, Allocation]] = []
    for name, st in distinct:
        result, moves = local_search(st, deadline)
        total_moves += moves
        if lp_consolidation:
            result, moves = consolidate(result, deadline)
            total_moves += moves
        improved.append((name, result))
    improved.sort(key=lambda r: r[1].objective())
    best_name, best = improved[0]
    if lp_consolidation and not use_kernel:
        best, moves = consolidate(best, deadline, swap_candidates=8)
        total_moves += moves
    clock.append(("improve", time.perf_counter()))
    if use_kernel:
        others = [r[1] for r in feasible]
        better, first = restricted_milp(best, others, deadline, seed=seed)
        clock.append(("kernel MILP", time.perf_counter()))
        if kernel_bucket > 0:
            try:
                second, _ = bucket_milp(better or best, first, deadline, seed=seed, size=kernel_bucket)
            except SolverError as exc:  # numerical trouble in the LP: the bucket is an optional extra
                logger.info("AGH: LP-priced bucket skipped: %s", exc)
                second = None
            better = second or better
            clock.append(("LP + bucket MILP", time.perf_counter()))
        if better is not None:
            best, moves = consolidate(better, deadline) if lp_consolidation else (better, 0)
            best_name, total_moves = f"{best_name}+kernel", total_moves + moves + 1
        clock.append(("final consolidation", time.perf_counter()))
    settle_switching(best)
    phases = tuple((name, at - (clock[k - 1][1] if k else started)) for k, (name, at) in enumerate(clock))
    stats = AghStats(starts, len(feasible), best_name, total_moves, time.perf_counter() > deadline, phases)
    logger.debug("AGH: %s", stats)
    return best, stats
