"""The planner's single entry point: ``solve(instance, *, solver, time_limit, seed, previous) -> Plan``.

- ``gh``: one greedy pass; ``agh``: the adaptive greedy heuristic; ``milp``: the exact MILP (HiGHS, CBC
  fallback) with its dual bound and gap.
- ``auto``: AGH; if AGH finds no feasible plan the MILP runs as a fallback; if the instance is small
  (at most :data:`CERTIFY_MAX_PAIRS` feasible (class, option) pairs) the MILP, warm-started with AGH's plan,
  certifies the gap within the remaining time (and its plan is used when strictly cheaper).
- Every returned plan is checked by :func:`~quartermaster.planner.verify.verify`; infeasible instances raise
  :class:`~quartermaster.planner.errors.InfeasibleError` (or :class:`BudgetInfeasibleError` when only the
  budget is in the way) with explanations.

``previous`` (rolling re-planning) adds a switching cost of ``switching_cost`` $/h per replica started or
stopped relative to the previous plan and warm-starts AGH from it.
"""

from __future__ import annotations

import logging
import time
from typing import Literal

from quartermaster.planner.agh import solve_agh
from quartermaster.planner.errors import BudgetInfeasibleError, InfeasibleError, PlannerError, SolverError
from quartermaster.planner.explain import explain_infeasibility
from quartermaster.planner.greedy import solve_gh
from quartermaster.planner.instance import Instance
from quartermaster.planner.milp import solve_milp
from quartermaster.planner.plan import Plan, build_plan, solution_from_plan
from quartermaster.planner.state import Allocation, Context, Mechanisms
from quartermaster.planner.verify import check

logger = logging.getLogger(__name__)

SolverName = Literal["auto", "agh", "gh", "milp"]
SOLVERS: tuple[str, ...] = ("auto", "agh", "gh", "milp")
CERTIFY_MAX_PAIRS = 4000
"""Largest number of feasible (class, option) pairs for which ``auto`` certifies AGH with the MILP."""
CERTIFY_TIME_FRACTION = 0.5
DEFAULT_MECHANISMS = Mechanisms()


def _switching(allocation: Allocation) -> float:
    ctx = allocation.ctx
    return ctx.switching * allocation.switching_changes() if ctx.switching else 0.0


def solve(
    instance: Instance,
    *,
    solver: str = "auto",
    time_limit: float = 30.0,
    seed: int = 0,
    previous: Plan | None = None,
    switching_cost: float = 0.0,
    mechanisms: Mechanisms = DEFAULT_MECHANISMS,
    milp_backend: str = "highs",
    verify_plan: bool = True,
) -> Plan:
    """Plan ``instance`` (see the module docstring). Never returns an invalid or partial plan."""
    if solver not in SOLVERS:
        raise PlannerError(f"solver={solver!r} is unknown; use one of {', '.join(SOLVERS)}", field="solver")
    if time_limit <= 0:
        raise PlannerError(f"time limit {time_limit} must be > 0 seconds", field="timeLimitSeconds")
    started = time.perf_counter()
    prev_replicas = previous.replicas() if previous is not None else None
    prev_solution = solution_from_plan(instance, previous) if previous is not None else None
    ctx = Context(instance, mechanisms, prev_replicas, switching_cost)
    notes: list[str] = []

    def finish(allocation: Allocation, name: str, status: str, bound: float | None = None) -> Plan:
        plan = build_plan(
            instance, allocation.to_solution(), solver=name, status=status,
            solve_seconds=time.perf_counter() - started, bound=bound, seed=seed,
            switching_per_hour=_switching(allocation), notes=tuple(notes),
        )  # fmt: skip
        if verify_plan:
            check(instance, plan)
        return plan

    def milp(limit: float, start: Allocation | None = None, name: str = "milp") -> Plan | None:
        result = solve_milp(
            instance, time_limit=max(limit, 0.1), seed=seed, backend=milp_backend, previous=prev_replicas,
            switching=switching_cost, start=start.to_solution() if start is not None else None,
        )  # fmt: skip
        if result.solution is None:
            return None
        notes.append(f"MILP ({result.backend}) {result.status}, {result.variables} variables")
        plan = build_plan(
            instance, result.solution, solver=name, status=result.status,
            solve_seconds=time.perf_counter() - started, bound=result.bound, seed=seed,
            switching_per_hour=(result.objective or 0.0) - _objective_without_switching(instance, result),
            notes=tuple(notes),
        )  # fmt: skip
        if verify_plan:
            check(instance, plan)
        return plan

    if solver == "milp":
        plan = milp(time_limit)
        if plan is None:
            raise _infeasible(instance, "MILP proved that no plan meets every constraint", time_limit, seed)
        return plan
    if solver == "gh":
        allocation = solve_gh(ctx)
        if not allocation.is_feasible():
            raise _infeasible(
                instance, "GH found no feasible plan (try --solver auto or milp)", time_limit, seed
            )
        return finish(allocation, "gh", "feasible")
    allocation, stats = solve_agh(ctx, seed=seed, time_limit=time_limit, previous=prev_solution)
    notes.append(
        f"AGH: {stats.starts} starts ({stats.feasible_starts} feasible), best {stats.best_start}, "
        f"{stats.moves} moves"
    )
    if solver == "agh":
        if not allocation.is_feasible():
            raise _infeasible(
                instance, "AGH found no feasible plan (try --solver auto or milp)", time_limit, seed
            )
        return finish(allocation, "agh", "feasible")
    remaining = time_limit - (time.perf_counter() - started)
    if not allocation.is_feasible():
        notes.append("AGH found no feasible plan; MILP fallback")
        plan = milp(remaining, name="auto:milp")
        if plan is None:
            raise _infeasible(
                instance, "no plan meets every constraint (AGH failed, MILP proved it)", time_limit, seed
            )
        return plan
    pairs = int((instance.feasible & (instance.mu > 0)).sum())
    if pairs <= CERTIFY_MAX_PAIRS and remaining > 0.05:
        try:
            certified = milp(remaining * CERTIFY_TIME_FRACTION, start=allocation, name="auto:milp")
        except SolverError as exc:
            logger.info("MILP certification skipped: %s", exc)
            certified = None
        if certified is not None:
            agh_objective = allocation.objective()
            if certified.objective < agh_objective - 1e-6 * max(1.0, agh_objective):
                return certified
            proved = certified.status == "optimal" and agh_objective <= certified.objective + 1e-6 * max(
                1.0, agh_objective
            )
            return finish(allocation, "auto:agh", "optimal" if proved else "feasible", certified.bound)
    return finish(allocation, "auto:agh", "feasible")


def _objective_without_switching(instance: Instance, result: object) -> float:
    solution = getattr(result, "solution", None)
    if solution is None:
        return 0.0
    gpu = sum(instance.options[o].cost * n for o, n in solution.replicas.items())
    penalty = sum(3600.0 * c.penalty * c.rate * solution.unserved[i] for i, c in enumerate(instance.classes))
    return float(gpu + penalty)


def _infeasible(instance: Instance, headline: str, time_limit: float, seed: int) -> InfeasibleError:
    """The typed error for an infeasible instance: budget-only infeasibility or explanations."""
    if instance.budget is not None:
        relaxed = instance.with_budget(None)
        try:
            plan = solve(relaxed, solver="auto", time_limit=max(1.0, time_limit), seed=seed)
        except PlannerError:
            plan = None
        if plan is not None and plan.gpu_cost_per_hour > instance.budget:
            cheapest = (
                plan.bound if plan.bound is not None and plan.status == "optimal" else plan.gpu_cost_per_hour
            )
            return BudgetInfeasibleError(
                f"spec.budgetPerHour={instance.budget:g} $/h is below the cheapest feasible plan "
                f"({plan.gpu_cost_per_hour:.2f} $/h, {plan.solver}); raise the budget to at least "
                f"{cheapest:.2f} or relax the SLOs/error bounds",
                cheapest_cost=float(plan.gpu_cost_per_hour),
                budget=instance.budget,
                explanations=(
                    "binding constraint: C5 budget (cheapest plan found costs "
                    f"{plan.gpu_cost_per_hour:.2f} $/h)",
                ),
            )
    return InfeasibleError(headline, explanations=tuple(explain_infeasibility(instance)))
