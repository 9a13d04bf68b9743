"""Restricted-MILP neighbourhood search for AGH (a kernel search; deviation from the seed).

The local optima of AGH's one-move searches differ from the optimum mainly in *which* options are open: the
optimum often serves the same demand with a few single replicas of different cheaper options (several
replicas swapped at once, with cross-class error mixing), which no single drop/swap move reaches. This
module solves the planner's MILP (C1-C5, same objective without switching costs) exactly, but only over a
small *kernel* of options: those open in any of the given allocations (AGH passes every greedy start),
for every open deployment of the best one up to ``per_model`` options of its model on any pool, precision
or parallel degree and its consolidation swap candidates, for every class the options with the most
capacity per $ (within its error bound, and regardless of it), and the ``global_top`` best overall. With
50-80 options HiGHS (10 branch-and-bound nodes, AGH's plan as the incumbent) needs about a second at
(20,20,20); it does not always prove the kernel's optimum within those nodes. It is deterministic (one
thread, fixed seed, node limit), and the result is kept only if the full instance check
(:meth:`Allocation.is_feasible`) passes and the objective drops.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np

from quartermaster.planner.rebalance import _allocation, _swap_candidates
from quartermaster.planner.state import Allocation, Context

logger = logging.getLogger(__name__)

IMPROVE = 1e-9


def kernel(
    ctx: Context,
    allocations: list[Allocation],
    per_class: int,
    swap_candidates: int,
    global_top: int,
    per_model: int,
) -> list[int]:
    """The options of the restricted MILP (sorted indices)."""
    chosen: set[int] = set()
    for st in allocations:
        chosen.update(int(o) for o in np.flatnonzero(st.n > 0))
    value = np.where(ctx.feasible, ctx.mu, 0.0) / ctx.costs[:, None]
    accurate = ctx.error <= ctx.eps[None, :] + 1e-12
    for i in range(len(ctx.rates)):
        for mask in (ctx.feasible[:, i] & accurate[:, i], ctx.feasible[:, i]):
            cand = np.flatnonzero(mask)
            if len(cand):
                top = cand[np.argsort(-value[cand, i], kind="stable")][:per_class]
                chosen.update(int(o) for o in top)
    best = allocations[0]
    if global_top or per_model:
        open_options = np.flatnonzero(best.n > 0)
        best_err = ctx.error[open_options].min(axis=0) if len(open_options) else ctx.eps
        over = ctx.error - best_err[None, :]
        mixable = np.where(
            ctx.error <= ctx.eps[None, :] + 1e-12,
            1.0,
            np.clip((ctx.eps - best_err)[None, :] / np.where(over > 1e-12, over, 1.0), 0.0, 1.0),
        )
        weight = ctx.rates / max(float(ctx.rates.sum()), 1e-12)
        score = (np.where(ctx.feasible, ctx.mu, 0.0) * mixable) @ weight / ctx.costs
        ranked = [int(o) for o in np.argsort(-score, kind="stable") if score[o] > 0]
        chosen.update(ranked[:global_top])
        models = [opt.model for opt in ctx.instance.options]
        for o in (int(p) for p in open_options if int(p) in best.on):
            weight = np.zeros(len(ctx.rates))
            for c, share in best.on[o].items():
                weight[c] = share * ctx.rates[c] + 1e-12
            own = (np.where(ctx.feasible, ctx.mu, 0.0) * mixable) @ weight / ctx.costs
            same = [p for p in np.argsort(-own, kind="stable") if own[p] > 0 and models[p] == models[o]]
            chosen.update(int(p) for p in same[:per_model])
    for o in sorted(int(p) for p in np.flatnonzero(best.n > 0)):
        if o in best.on:
            chosen.update(_swap_candidates(ctx, best, o, swap_candidates))
    return sorted(chosen)


def restricted_milp(
    st: Allocation,
    others: list[Allocation],
    deadline: float,
    *,
    seed: int = 0,
    per_class: int = 1,
    swap_candidates: int = 4,
    max_nodes: int = 10,
    global_top: int = 8,
    per_model: int = 2,
) -> Allocation | None:
    """Solve the MILP over a kernel of options around ``st``; the better allocation or ``None``."""
    ctx = st.ctx
    remaining = deadline - time.perf_counter()
    if ctx.switching or remaining <= 0:
        return None
    import highspy

    universe = kernel(ctx, [st, *others], per_class, swap_candidates, global_top, per_model)
    n_classes = len(ctx.rates)
    pairs = [(int(i), o) for o in universe for i in np.flatnonzero(ctx.feasible[o])]
    n_x = len(pairs)
    col_of_n = {o: n_x + n_classes + r for r, o in enumerate(universe)}
    cap_row = {o: n_classes + r for r, o in enumerate(universe)}
    err_base = n_classes + len(universe)
    tiers = sorted({int(ctx.tier_of[o]) for o in universe})
    tier_row = {k: err_base + n_classes + r for r, k in enumerate(tiers)}
    budget_row = err_base + n_classes + len(tiers) if math.isfinite(ctx.budget) else None
    n_rows = err_base + n_classes + len(tiers) + (1 if budget_row is not None else 0)
    starts, index, value = [0], [], []

    def column(rows: list[int], vals: list[float]) -> None:
        index.extend(rows)
        value.extend(vals)
        starts.append(len(index))

    for i, o in pairs:
        rows, vals = [i, err_base + i], [1.0, float(ctx.error[o, i] - ctx.eps[i])]
        if ctx.rates[i] > 0:
            rows.insert(1, cap_row[o])
            vals.insert(1, float(ctx.rates[i] / ctx.mu[o, i]))
        column(rows, vals)
    for i in range(n_classes):
        column([i], [1.0])
    upper_n = []
    for o in universe:
        rows, vals = [cap_row[o], tier_row[int(ctx.tier_of[o])]], [-ctx.rho, float(ctx.gpus[o])]
        if budget_row is not None:
            rows.append(budget_row)
            vals.append(float(ctx.costs[o]))
        column(rows, vals)
        load = float(
            sum(ctx.rates[i] / ctx.mu[o, i] for i in np.flatnonzero(ctx.feasible[o]) if ctx.rates[i])
        )
        upper_n.append(
            min(math.ceil(load / ctx.rho - 1e-9), int(ctx.tier_cap[ctx.tier_of[o]] // ctx.gpus[o]))
        )
    inf = highspy.kHighsInf
    lp = highspy.HighsLp()
    lp.num_col_ = n_x + n_classes + len(universe)
    lp.num_row_ = n_rows
    lp.col_cost_ = np.concatenate([np.zeros(n_x), ctx.penalty, ctx.costs[universe]])
    lp.col_lower_ = np.zeros(lp.num_col_)
    lp.col_upper_ = np.concatenate([np.ones(n_x), ctx.zeta, np.array(upper_n, dtype=np.float64)])
    row_upper = np.concatenate(
        [
            np.ones(n_classes),
            np.zeros(len(universe)),
            np.zeros(n_classes),
            np.array([float(ctx.tier_cap[k]) for k in tiers]),
            np.array([ctx.budget]) if budget_row is not None else np.zeros(0),
        ]
    )
    lp.row_lower_ = np.concatenate([np.ones(n_classes), np.full(n_rows - n_classes, -inf)])
    lp.row_upper_ = row_upper
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.array(starts, dtype=np.int32)
    lp.a_matrix_.index_ = np.array(index, dtype=np.int32)
    lp.a_matrix_.value_ = np.array(value, dtype=np.float64)
    lp.integrality_ = [highspy.HighsVarType.kContinuous] * (n_x + n_classes) + [
        highspy.HighsVarType.kInteger
    ] * len(universe)
    highs: Any = getattr(highspy, "Highs")()  # noqa: B009 (untyped in the stubs)
    for name, setting in (
        ("output_flag", False),
        ("threads", 1),
        ("random_seed", int(seed)),
        ("mip_max_nodes", max_nodes),
        ("mip_rel_gap", 1e-6),
        ("time_limit", float(remaining)),
        # The kernel is small and AGH's plan is a good incumbent: restarts and the RINS/RENS sub-MIPs
        # cost most of the root's time here without finding better plans than the reduced-cost sub-MIP.
        ("mip_allow_restart", False),
        ("mip_heuristic_run_rins", False),
        ("mip_heuristic_run_rens", False),
    ):
        highs.setOptionValue(name, setting)
    highs.passModel(lp)
    start = np.zeros(lp.num_col_)
    for c, (i, o) in enumerate(pairs):
        start[c] = st.x[i].get(o, 0.0)
    start[n_x : n_x + n_classes] = np.clip(1.0 - st.served, 0.0, None)
    start[n_x + n_classes :] = st.n[universe]
    sol = highspy.HighsSolution()
    sol.col_value = list(start)
    highs.setSolution(sol)
    highs.run()
    info = highs.getInfo()
    if info.primal_solution_status != 2:  # no feasible point
        return None
    x = np.asarray(highs.getSolution().col_value)
    shares = {p: float(v) for p, v in zip(pairs, x[:n_x], strict=True) if v > 1e-9}
    replicas = {o: round(float(x[col_of_n[o]])) for o in universe if round(float(x[col_of_n[o]])) > 0}
    candidate = _allocation(ctx, replicas, shares)
    if candidate.is_feasible() and candidate.objective() < st.objective() - IMPROVE:
        logger.debug(
            "kernel MILP over %d options: %.4f -> %.4f", len(universe), st.objective(), candidate.objective()
        )
        return candidate
    return None
