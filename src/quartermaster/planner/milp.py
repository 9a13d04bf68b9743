r"""The exact planner: a MILP solved with PuLP (HiGHS through highspy by default, CBC as fallback).

Sets: classes ``i``, options ``o = (model j, precision q, pool k, TP t, PP p)`` kept by
:class:`~quartermaster.planner.instance.Instance` (M1 is applied by creating ``x`` only for feasible pairs),
pools ``k``.

Variables (names in the LP):

- ``n_o{o}``  integer in ``[0, floor(N_k / g_o)]``: replicas of option ``o``
- ``x_c{i}_o{o}`` in ``[0, 1]``: share of class ``i`` served by option ``o`` (only M1-feasible pairs, C6)
- ``u_c{i}`` in ``[0, zeta_i]``: unserved share of class ``i``
- ``d_o{o}`` >= 0: replica changes versus the previous plan (rolling re-planning; only where it had replicas)

Objective ($/hour)::

    min  sum_o c_o g_o n_o + sum_i 3600 phi_i lam_i u_i
         + s (sum_{o: prev_o > 0} d_o + sum_{o: prev_o = 0} n_o)

Constraints:

- ``C1_demand_c{i}``:   ``sum_o x_io + u_i = 1``
- ``C2_capacity_o{o}``: ``sum_i lam_i / mu_oi x_io - rho n_o <= 0``
- ``C3_error_c{i}``:    ``sum_o (e_io - eps_i) x_io <= 0``  (average error of the served share <= eps_i)
- ``C4_gpus_k{k}``:     ``sum_{o in k} g_o n_o <= N_k``
- ``C5_budget``:        ``sum_o c_o g_o n_o <= budget``  (when a budget is set)
- ``S_up_o{o}``, ``S_down_o{o}``: ``d_o >= n_o - prev_o``, ``d_o >= prev_o - n_o``

``s`` is the switching cost in $/h per replica change (switching cost per change / re-planning interval).
Optimality is certified by the solver's dual bound; a time-limited solve returns the incumbent with its gap.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pulp

from quartermaster.planner.errors import SolverError
from quartermaster.planner.instance import Instance
from quartermaster.planner.plan import SHARE_TOL, Solution

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MilpResult:
    """A MILP answer: the solution (``None`` when infeasible), status, bound and timings."""

    solution: Solution | None
    status: str
    """``optimal``, ``feasible`` (time limit with incumbent) or ``infeasible``."""
    objective: float | None
    bound: float | None
    build_seconds: float
    solve_seconds: float
    backend: str
    variables: int
    constraints: int


class _HighsWithStart(pulp.HiGHS):  # type: ignore[misc]
    """PuLP's highspy interface plus an optional starting solution and a random seed."""

    def __init__(self, start: Mapping[str, float] | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.start = start

    def callSolver(self, lp: pulp.LpProblem) -> None:  # noqa: N802 (PuLP API name)
        if self.start:
            import highspy

            sol = highspy.HighsSolution()
            sol.col_value = [float(self.start.get(v.name, 0.0)) for v in lp.variables()]
            sol.value_valid = True
            lp.solverModel.setSolution(sol)
        lp.solverModel.run()


def highs_available() -> bool:
    try:
        return bool(pulp.HiGHS().available())
    except Exception:  # pragma: no cover - depends on the installation
        return False


def build_model(
    instance: Instance, previous: Mapping[str, int] | None = None, switching: float = 0.0, budget: bool = True
) -> tuple[
    pulp.LpProblem, dict[int, pulp.LpVariable], dict[tuple[int, int], pulp.LpVariable], list[pulp.LpVariable]
]:
    """The PuLP model of the module docstring; returns ``(problem, n, x, u)``."""
    rho = instance.utilization
    rates = instance.rates
    feasible = instance.feasible & (instance.mu > 0)
    prob = pulp.LpProblem("quartermaster_plan", pulp.LpMinimize)
    n: dict[int, pulp.LpVariable] = {}
    for opt in instance.options:
        cap = instance.tiers[opt.tier].gpus // opt.gpus
        n[opt.index] = prob.add_variable(f"n_o{opt.index}", lowBound=0, upBound=cap, cat=pulp.LpInteger)
    x: dict[tuple[int, int], pulp.LpVariable] = {}
    pairs = np.argwhere(feasible)
    for o, i in pairs:
        x[(int(i), int(o))] = prob.add_variable(f"x_c{i}_o{o}", lowBound=0, upBound=1)
    u = [
        prob.add_variable(f"u_c{i}", lowBound=0, upBound=c.max_unserved)
        for i, c in enumerate(instance.classes)
    ]
    prev = np.zeros(len(instance.options))
    removed = 0
    for name, count in (previous or {}).items():
        known = instance.option_by_name(name)
        if known is None:
            removed += int(count)
        else:
            prev[known.index] = count
    terms: list[tuple[pulp.LpVariable, float]] = []
    for opt in instance.options:
        coef = opt.cost + (switching if prev[opt.index] == 0 else 0.0)
        terms.append((n[opt.index], coef))
    for i, c in enumerate(instance.classes):
        if c.max_unserved > 0:
            terms.append((u[i], 3600.0 * c.penalty * c.rate))
    for o in np.flatnonzero(prev > 0):
        d = prob.add_variable(f"d_o{o}", lowBound=0)
        terms.append((d, switching))
        prob += pulp.LpAffineExpression([(d, 1.0), (n[int(o)], -1.0)]) >= -prev[o], f"S_up_o{o}"
        prob += pulp.LpAffineExpression([(d, 1.0), (n[int(o)], 1.0)]) >= prev[o], f"S_down_o{o}"
    prob += pulp.LpAffineExpression(terms, constant=switching * removed), "cost"

    by_class: dict[int, list[int]] = {}
    by_option: dict[int, list[int]] = {}
    for i, o in x:
        by_class.setdefault(i, []).append(o)
        by_option.setdefault(o, []).append(i)
    for i, c in enumerate(instance.classes):
        opts = by_class.get(i, [])
        prob += (
            pulp.LpAffineExpression([(x[(i, o)], 1.0) for o in opts] + [(u[i], 1.0)]) == 1,
            f"C1_demand_c{i}",
        )
        err = [(x[(i, o)], float(instance.error[o, i] - c.max_error)) for o in opts]
        if any(coef > 0 for _, coef in err):
            prob += pulp.LpAffineExpression(err) <= 0, f"C3_error_c{i}"
    for o, classes in by_option.items():
        expr = [(x[(i, o)], float(rates[i] / instance.mu[o, i])) for i in classes if rates[i] > 0]
        if expr:
            prob += pulp.LpAffineExpression([*expr, (n[o], -rho)]) <= 0, f"C2_capacity_o{o}"
    for k, tier in enumerate(instance.tiers):
        expr = [(n[o.index], float(o.gpus)) for o in instance.options if o.tier == k]
        prob += pulp.LpAffineExpression(expr) <= tier.gpus, f"C4_gpus_k{k}"
    if budget and instance.budget is not None:
        prob += (
            pulp.LpAffineExpression([(n[o.index], o.cost) for o in instance.options]) <= instance.budget,
            "C5_budget",
        )
    return prob, n, x, u


def solve_milp(
    instance: Instance,
    *,
    time_limit: float = 600.0,
    seed: int = 0,
    backend: str = "highs",
    previous: Mapping[str, int] | None = None,
    switching: float = 0.0,
    start: Solution | None = None,
    gap: float = 1e-4,
    use_budget: bool = True,
) -> MilpResult:
    """Build and solve the MILP; ``backend`` is ``highs`` (CBC when highspy is unavailable) or ``cbc``."""
    t0 = time.perf_counter()
    prob, n, x, u = build_model(instance, previous, switching, use_budget)
    build_seconds = time.perf_counter() - t0
    if backend == "highs" and not highs_available():
        logger.warning("highspy not available; falling back to CBC")
        backend = "cbc"
    start_values: dict[str, float] | None = None
    if start is not None:
        start_values = {n[o].name: float(v) for o, v in start.replicas.items() if o in n}
        start_values.update({x[k].name: float(v) for k, v in start.shares.items() if k in x})
        start_values.update({u[i].name: float(v) for i, v in enumerate(start.unserved)})
    if backend == "highs":
        solver: Any = _HighsWithStart(
            start=start_values, msg=False, timeLimit=time_limit, gapRel=gap, threads=1, random_seed=seed
        )
    elif backend == "cbc":
        solver = pulp.PULP_CBC_CMD(
            msg=False, timeLimit=time_limit, gapRel=gap, threads=1, options=[f"randomSeed {seed + 1}"]
        )
    else:
        raise SolverError(f"MILP backend {backend!r} is unknown; use highs or cbc")
    t1 = time.perf_counter()
    try:
        prob.solve(solver)
    except pulp.PulpSolverError as exc:
        raise SolverError(f"MILP solver {backend} failed: {exc}; retry with --solver agh") from None
    solve_seconds = time.perf_counter() - t1
    status, bound = _status(prob, backend)
    result_kwargs = {
        "build_seconds": build_seconds,
        "solve_seconds": solve_seconds,
        "backend": backend,
        "variables": len(prob.variables()),
        "constraints": len(prob.constraints()),
    }
    if status == "infeasible":
        return MilpResult(None, status, None, None, **result_kwargs)  # type: ignore[arg-type]
    if status == "none":
        raise SolverError(
            f"MILP ({backend}) found no plan within the time limit of {time_limit:g} s; raise the time "
            "limit or use --solver agh"
        )
    replicas = {o: round(v.value() or 0.0) for o, v in n.items() if (v.value() or 0.0) > 0.5}
    shares = {k: float(v.value() or 0.0) for k, v in x.items() if (v.value() or 0.0) > SHARE_TOL}
    unserved = tuple(float(max(0.0, v.value() or 0.0)) for v in u)
    objective = float(pulp.value(prob.objective))
    if status == "optimal":
        bound = objective if bound is None or math.isnan(bound) else min(bound, objective)
    logger.info(
        "MILP %s: %s objective %.4f bound %s (%.2fs)", backend, status, objective, bound, solve_seconds
    )
    return MilpResult(Solution(replicas, shares, unserved), status, objective, bound, **result_kwargs)  # type: ignore[arg-type]


def _status(prob: pulp.LpProblem, backend: str) -> tuple[str, float | None]:
    """``(optimal|feasible|infeasible|none, dual bound)``."""
    if backend == "highs":
        import highspy

        model = prob.solverModel
        st = model.getModelStatus()
        info = model.getInfo()
        bound = float(info.mip_dual_bound) if math.isfinite(info.mip_dual_bound) else None
        has_solution = info.primal_solution_status == 2 and math.isfinite(model.getObjectiveValue())
        if st == highspy.HighsModelStatus.kOptimal:
            return "optimal", bound
        if st in (highspy.HighsModelStatus.kInfeasible, highspy.HighsModelStatus.kUnboundedOrInfeasible):
            return "infeasible", None
        return ("feasible", bound) if has_solution else ("none", bound)
    if prob.status == pulp.LpStatusOptimal:
        if prob.sol_status == pulp.LpSolutionOptimal:
            return "optimal", None
        return "feasible", None
    if prob.status == pulp.LpStatusInfeasible:
        return "infeasible", None
    return "none", None
