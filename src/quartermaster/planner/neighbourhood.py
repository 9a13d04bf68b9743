"""Restricted-MILP neighbourhood search for AGH (a kernel search; deviation from the seed).

The local optima of AGH's one-move searches differ from the optimum mainly in *which* options are open: the
optimum often serves the same demand with a few single replicas of different cheaper options (several
replicas swapped at once, with cross-class error mixing), which no single drop/swap move reaches. This
module solves the planner's MILP (C1-C5, same objective without switching costs) exactly, but only over a
small *kernel* of options: those open in any of the given allocations (AGH passes every greedy start),
for every open deployment of the best one up to ``per_model`` options of its model on any pool, precision
or parallel degree and its consolidation swap candidates, for every class the options with the most
capacity per $ (within its error bound, and regardless of it), and the ``global_top`` best overall. With
50-80 options HiGHS (10 branch-and-bound nodes, cuts at the root only, AGH's plan as the incumbent) needs
0.1-1.2 s at (20,20,20); it does not always prove the kernel's optimum within those nodes. It is
deterministic (one thread, fixed seed, node limit), and the result is kept only if the full instance check
(:meth:`Allocation.is_feasible`) passes and the objective drops.

One *bucket* follows (Kernel Search, Angelelli, Mansini and Speranza 2010): :func:`lp_relaxation` solves
the LP relaxation over every option by column generation, :func:`lp_prices` prices each option by the LP
value of the best fill of one of its replicas (integer-granularity aware, unlike the LP's reduced costs),
:func:`lp_bucket` takes the best option of the best-priced families, and :func:`bucket_milp` solves the
same 10-node MILP over that bucket, the LP's support and the options open in the current plan.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from quartermaster.planner.errors import SolverError
from quartermaster.planner.rebalance import _allocation, _swap_candidates
from quartermaster.planner.state import Allocation, Context

logger = logging.getLogger(__name__)

IMPROVE = 1e-9
MAX_NODES = 10
MIP_REL_GAP = 1e-6
CG_BATCH = 50
"""Options added per column-generation round of the LP relaxation."""
FloatArray = npt.NDArray[np.float64]


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


def _model(ctx: Context, universe: list[int], integer: bool) -> tuple[Any, list[tuple[int, int]]]:
    """The planner's MILP (C1-C5, no switching cost) over ``universe`` as a highspy model, built with
    numpy: columns ``x`` (one per feasible (class, option) pair, returned in order), ``u``, ``n``; rows C1,
    C2 per option, C3, C4 per pool in use, C5. ``integer=False`` gives the LP relaxation."""
    import highspy

    options = np.asarray(universe, dtype=np.int64)
    n_classes, n_options = len(ctx.rates), len(options)
    pos, cls = np.nonzero(ctx.feasible[options])
    opt = options[pos]
    n_x = len(pos)
    tiers = np.unique(ctx.tier_of[options])
    err_base = n_classes + n_options
    tier_base = err_base + n_classes
    has_budget = math.isfinite(ctx.budget)
    n_rows = tier_base + len(tiers) + (1 if has_budget else 0)
    rates = ctx.rates[cls]
    mu = ctx.mu[opt, cls]
    load = np.where(rates > 0, rates / np.where(mu > 0, mu, 1.0), 0.0)
    n_cols = n_x + n_classes + n_options
    own = np.arange(n_options)
    rows = [cls, n_classes + pos, err_base + cls, np.arange(n_classes), n_classes + own]
    cols = [np.arange(n_x)] * 3 + [n_x + np.arange(n_classes), n_x + n_classes + own]
    vals = [np.ones(n_x), load, ctx.error[opt, cls] - ctx.eps[cls], np.ones(n_classes)]
    vals.append(np.full(n_options, -ctx.rho))
    rows.append(tier_base + np.searchsorted(tiers, ctx.tier_of[options]))
    cols.append(n_x + n_classes + own)
    vals.append(ctx.gpus[options].astype(np.float64))
    if has_budget:
        rows.append(np.full(n_options, n_rows - 1))
        cols.append(n_x + n_classes + own)
        vals.append(ctx.costs[options])
    row, col, val = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
    keep = val != 0
    # Column-wise (CSC) arrays by a stable sort on the column, rows ascending within a column.
    order = np.lexsort((row[keep], col[keep]))
    row, col, val = row[keep][order], col[keep][order], val[keep][order]
    starts = np.searchsorted(col, np.arange(n_cols + 1)).astype(np.int32)
    total_load = np.bincount(pos, weights=load, minlength=n_options)
    upper_n = np.minimum(
        np.ceil(total_load / ctx.rho - 1e-9), ctx.tier_cap[ctx.tier_of[options]] // ctx.gpus[options]
    )
    inf = highspy.kHighsInf
    lp = highspy.HighsLp()
    lp.num_col_ = n_cols
    lp.num_row_ = n_rows
    lp.col_cost_ = np.concatenate([np.zeros(n_x), ctx.penalty, ctx.costs[options]])
    lp.col_lower_ = np.zeros(n_cols)
    lp.col_upper_ = np.concatenate([np.ones(n_x), ctx.zeta, upper_n.astype(np.float64)])
    lp.row_lower_ = np.concatenate([np.ones(n_classes), np.full(n_rows - n_classes, -inf)])
    lp.row_upper_ = np.concatenate(
        [
            np.ones(n_classes),
            np.zeros(n_options + n_classes),
            ctx.tier_cap[tiers].astype(np.float64),
            np.array([ctx.budget]) if has_budget else np.zeros(0),
        ]
    )
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = starts
    lp.a_matrix_.index_ = row.astype(np.int32)
    lp.a_matrix_.value_ = val.astype(np.float64)
    if integer:
        lp.integrality_ = [highspy.HighsVarType.kContinuous] * (n_x + n_classes) + [
            highspy.HighsVarType.kInteger
        ] * n_options
    return lp, [(int(i), int(o)) for i, o in zip(cls, opt, strict=True)]


def restricted_milp(
    st: Allocation,
    others: list[Allocation],
    deadline: float,
    *,
    seed: int = 0,
    per_class: int = 1,
    swap_candidates: int = 4,
    max_nodes: int = MAX_NODES,
    global_top: int = 8,
    per_model: int = 2,
) -> tuple[Allocation | None, list[int]]:
    """Solve the MILP over a kernel of options around ``st`` (:func:`kernel`).

    Returns the better allocation (or ``None``) and the kernel (empty when nothing was solved).
    """
    ctx = st.ctx
    remaining = deadline - time.perf_counter()
    if ctx.switching or remaining <= 0:
        return None, []
    universe = kernel(ctx, [st, *others], per_class, swap_candidates, global_top, per_model)
    return _solve_kernel(st, universe, remaining, seed, max_nodes), universe


@dataclass(frozen=True)
class LpRelaxation:
    """The LP relaxation of the planner's MILP over every usable option (replicas continuous)."""

    objective: float
    """A lower bound on the MILP's optimum ($/h)."""
    replicas: FloatArray
    """``n_o`` of the LP optimum per option (0 for options no class can use)."""
    demand_dual: FloatArray
    """Dual of C1 per class: $/h the LP would save per unit less share of the class to serve."""
    error_dual: FloatArray
    """Dual of C3 per class (<= 0): $/h per unit of average error above the bound."""


def lp_relaxation(
    ctx: Context, initial: Sequence[int] | None = None, *, column_generation: bool = True
) -> LpRelaxation:
    """Solve the LP relaxation over every usable option (HiGHS primal simplex, 1 thread).

    By column generation: solve the LP over ``initial`` (default: the best capacity-per-$ option of each
    class, with and without its error bound), price every other option at the duals (the most LP value per
    replica-unit of any class, against its price plus the duals of its pool's GPUs and of the budget), add
    the up to :data:`CG_BATCH` most underpriced ones, repeat until none is: the result is the LP optimum of
    the full option set (0.01-0.03 s at (20,20,20) against 0.22-0.35 s for the full LP in one go). When a
    restricted LP is infeasible (C3 or C4 need options not yet added) or ``column_generation=False``, the
    full LP is solved directly.
    """
    usable: npt.NDArray[np.bool_] = np.asarray(ctx.feasible.any(axis=1), dtype=np.bool_)
    units = _units(ctx)
    if initial is None:
        value = np.where(ctx.feasible, ctx.mu, 0.0) / ctx.costs[:, None]
        accurate = ctx.feasible & (ctx.error <= ctx.eps[None, :] + 1e-12)
        initial = [
            int(np.argmax(np.where(mask[:, i], value[:, i], -1.0)))
            for mask in (ctx.feasible, accurate)
            for i in range(len(ctx.rates))
            if mask[:, i].any()
        ]
    chosen = {int(o) for o in initial if usable[o]} if column_generation else set()
    full = [int(o) for o in np.flatnonzero(usable)]
    while True:
        universe = sorted(chosen) if chosen else full
        solved = _solve_lp(ctx, universe)
        if solved is None:
            if universe is full:
                raise SolverError(
                    "LP relaxation: HiGHS found no optimum; retry with solve_agh(kernel_bucket=0)"
                )
            chosen = set()
            continue
        relaxation, tier_dual, budget_dual = solved
        if universe is full:
            return relaxation
        # Reduced cost of an option outside the LP: its replica price net of the C4/C5 duals against the
        # best LP value per replica-unit of any class it can serve (the capacity dual set to break even).
        price = ctx.costs - ctx.gpus * tier_dual[ctx.tier_of] - ctx.costs * budget_dual
        value = _unit_value(ctx, relaxation)
        positive = ctx.feasible & (units > 0)
        density = np.where(positive, value / np.where(units > 0, units, 1.0), -np.inf).max(axis=1)
        free_class = (ctx.feasible & (units == 0) & (value > 1e-9)).any(axis=1)
        ratio = np.where(usable, density * ctx.rho / price, -np.inf)
        outside = np.ones(len(ctx.instance.options), dtype=np.bool_)
        outside[universe] = False
        priced = np.flatnonzero(outside & usable & ((ratio > 1 + 1e-9) | free_class))
        if len(priced) == 0:
            return relaxation
        chosen.update(int(o) for o in priced[np.argsort(-ratio[priced], kind="stable")][:CG_BATCH])


def _solve_lp(ctx: Context, universe: list[int]) -> tuple[LpRelaxation, FloatArray, float] | None:
    """The LP over ``universe``: relaxation, C4 dual per pool, C5 dual (``None`` when it has no optimum)."""
    import highspy

    lp, pairs = _model(ctx, universe, integer=False)
    highs: Any = getattr(highspy, "Highs")()  # noqa: B009 (untyped in the stubs)
    for name, setting in (("output_flag", False), ("threads", 1), ("solver", "simplex")):
        highs.setOptionValue(name, setting)
    highs.setOptionValue("simplex_strategy", 4)  # primal: 4-6x faster than dual simplex on the full LP
    highs.passModel(lp)
    highs.run()
    if highs.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None
    solution = highs.getSolution()
    n_classes, n_options = len(ctx.rates), len(universe)
    col = np.asarray(solution.col_value)
    row_dual = np.asarray(solution.row_dual)
    replicas = np.zeros(len(ctx.instance.options))
    replicas[universe] = col[len(pairs) + n_classes :]
    tiers = np.unique(ctx.tier_of[universe])
    tier_base = 2 * n_classes + n_options
    tier_dual = np.zeros(len(ctx.tier_cap))
    tier_dual[tiers] = row_dual[tier_base : tier_base + len(tiers)]
    budget_dual = float(row_dual[-1]) if math.isfinite(ctx.budget) else 0.0
    relaxation = LpRelaxation(
        objective=float(highs.getInfo().objective_function_value),
        replicas=replicas,
        demand_dual=row_dual[:n_classes].copy(),
        error_dual=row_dual[n_classes + n_options : tier_base].copy(),
    )
    return relaxation, tier_dual, budget_dual


def _units(ctx: Context) -> FloatArray:
    """Replica-units (options x classes) a whole class takes on an option: ``lam_i / mu_oi``."""
    units: FloatArray = np.where(
        ctx.rates[None, :] > 0, ctx.rates[None, :] / np.where(ctx.mu > 0, ctx.mu, 1.0), 0.0
    )
    return units


def _unit_value(ctx: Context, relaxation: LpRelaxation) -> FloatArray:
    """LP value ($/h, options x classes) of a unit share of a class on an option at the relaxation's duals:
    ``y_i + (e_oi - eps_i) z_i``."""
    value: FloatArray = (
        relaxation.demand_dual[None, :] + (ctx.error - ctx.eps[None, :]) * relaxation.error_dual[None, :]
    )
    return value


def lp_prices(ctx: Context, relaxation: LpRelaxation) -> FloatArray:
    """Per option: the LP value of the best fill of *one* replica, per $ of that replica (at most 1).

    A unit share of class ``i`` on option ``o`` is worth ``y_i + (e_oi - eps_i) z_i`` $/h at the LP's duals
    (``y`` of C1, ``z`` of C3) and takes ``lam_i / mu_oi`` replica-units; one replica holds ``rho`` units
    and at most the whole of each class, so the best fill is a fractional knapsack (classes by value per
    unit). Unlike the LP's reduced cost of ``n_o`` this sees integer granularity: a big replica that its
    classes fill only partly scores low, a cheap one that many small classes fill scores high.
    """
    value = _unit_value(ctx, relaxation)
    units = _units(ctx)
    usable = ctx.feasible & (units > 0) & (value > 0)
    density = np.where(usable, value / np.where(units > 0, units, 1.0), 0.0)
    order = np.argsort(-density, axis=1, kind="stable")
    dens = np.take_along_axis(density, order, axis=1)
    size = np.take_along_axis(np.where(usable, units, 0.0), order, axis=1)
    taken = np.clip(ctx.rho - (np.cumsum(size, axis=1) - size), 0.0, size)
    return np.asarray((dens * taken).sum(axis=1) / ctx.costs, dtype=np.float64)


def lp_bucket(ctx: Context, prices: FloatArray, size: int) -> list[int]:
    """The best-priced option of each of the ``size`` best-priced (model, precision, GPU type, TP, PP)
    families (pools of one GPU type differ only in price and size, so one option per family)."""
    options, tiers = ctx.instance.options, ctx.instance.tiers
    seen: set[tuple[int, str, str, int, int]] = set()
    picked: list[int] = []
    for o in (int(p) for p in np.argsort(-prices, kind="stable")):
        if len(picked) >= size or prices[o] <= 0:
            break
        opt = options[o]
        family = (opt.model, opt.precision, tiers[opt.tier].gpu.name, opt.tp, opt.pp)
        if family not in seen:
            seen.add(family)
            picked.append(o)
    return picked


def bucket_milp(
    st: Allocation,
    first_kernel: list[int],
    deadline: float,
    *,
    seed: int = 0,
    size: int = 15,
    swap_candidates: int = 2,
    max_nodes: int = MAX_NODES,
) -> tuple[Allocation | None, list[int]]:
    """One bucket of the kernel search: the MILP over the options open in ``st``, their ``swap_candidates``
    consolidation swap candidates, the LP relaxation's support and the LP-priced bucket
    (:func:`lp_bucket` of ``size`` families, minus the options of ``first_kernel``).

    Returns the better allocation (or ``None``) and the options of the bucket MILP.
    """
    ctx = st.ctx
    if ctx.switching or deadline - time.perf_counter() <= 0:
        return None, []
    relaxation = lp_relaxation(ctx, first_kernel)
    done = set(first_kernel)
    universe = {int(o) for o in np.flatnonzero(relaxation.replicas > 1e-7)}
    universe.update(o for o in lp_bucket(ctx, lp_prices(ctx, relaxation), size) if o not in done)
    for o in (int(p) for p in np.flatnonzero(st.n > 0)):
        universe.add(o)
        if o in st.on:
            universe.update(_swap_candidates(ctx, st, o, swap_candidates))
    options = sorted(universe)
    remaining = deadline - time.perf_counter()
    if remaining <= 0:
        return None, options
    return _solve_kernel(st, options, remaining, seed, max_nodes), options


def _solve_kernel(
    st: Allocation, universe: list[int], remaining: float, seed: int, max_nodes: int
) -> Allocation | None:
    """The MILP over ``universe`` from ``st`` (incumbent); the better allocation or ``None``."""
    import highspy

    ctx = st.ctx
    n_classes = len(ctx.rates)
    lp, pairs = _model(ctx, universe, integer=True)
    n_x = len(pairs)
    col_of_n = {o: n_x + n_classes + r for r, o in enumerate(universe)}
    highs: Any = getattr(highspy, "Highs")()  # noqa: B009 (untyped in the stubs)
    for name, setting in (
        ("output_flag", False),
        ("threads", 1),
        ("random_seed", int(seed)),
        ("mip_max_nodes", max_nodes),
        ("mip_rel_gap", MIP_REL_GAP),
        ("time_limit", float(remaining)),
        # The kernel is small and AGH's plan is a good incumbent: restarts and the RINS/RENS sub-MIPs
        # cost most of the root's time here without finding better plans than the reduced-cost sub-MIP.
        # Every improvement on the benchmark instances is found at the root node (its reduced-cost
        # sub-MIP); cuts at the few nodes after it cost ~20 % of the time and found nothing there.
        ("mip_allow_restart", False),
        ("mip_heuristic_run_rins", False),
        ("mip_heuristic_run_rens", False),
        ("mip_allow_cut_separation_at_nodes", False),
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
