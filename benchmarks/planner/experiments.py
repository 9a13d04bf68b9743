"""Planner experiments: size grid, ablation, stress, rolling horizon, examples; each returns plain rows."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from quartermaster.api.manifests import load_manifests
from quartermaster.planner.agh import solve_agh
from quartermaster.planner.errors import PlannerError
from quartermaster.planner.greedy import solve_gh
from quartermaster.planner.horizon import HorizonSettings, replay, static
from quartermaster.planner.instance import Instance
from quartermaster.planner.milp import solve_milp
from quartermaster.planner.performance import Reason
from quartermaster.planner.plan import Plan, build_plan
from quartermaster.planner.solve import solve
from quartermaster.planner.state import Allocation, Context, Mechanisms
from quartermaster.planner.synthetic import generate_specs
from quartermaster.planner.traces import class_rates
from quartermaster.planner.verify import verify

log = logging.getLogger("benchmarks.planner")
REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"

Row = dict[str, Any]


def instance(
    size: tuple[int, int, int], seed: int, data_dir: Path, family: str = "default", **kwargs: Any
) -> Instance:
    catalog, pool = generate_specs(*size, seed=seed, data_dir=data_dir, family=family)
    return Instance.from_specs(catalog, pool, **kwargs)


def example_instance(scale: float = 1.0) -> Instance:
    manifests = load_manifests([EXAMPLES / "catalog.yaml", EXAMPLES / "pool.yaml"])
    _, pool = manifests.pool()
    inst = Instance.from_specs(manifests.catalog_for(pool), pool, manifests.classes_for(pool))
    return inst.with_rates(inst.rates * scale) if scale != 1.0 else inst


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t0


# -- grid -------------------------------------------------------------------------------------------------
def grid_row(
    size: tuple[int, int, int], seed: int, data_dir: Path, milp_limit: float, previous: Row | None = None
) -> Row:
    """GH, AGH and MILP on one synthetic instance (all timings include everything after the instance).

    With ``previous`` (a row of an earlier run on the same instance) only GH and AGH are re-run and the
    MILP result is kept (the MILP does not depend on the heuristics' code).
    """
    inst, build_s = _timed(lambda: instance(size, seed, data_dir))
    row: Row = {
        "size": list(size), "seed": seed, "options": len(inst.options),
        "pairs": int(inst.feasible.sum()), "instance_s": build_s, "rate": float(inst.rates.sum()),
    }  # fmt: skip
    if previous is not None:
        assert previous["options"] == row["options"], "instance changed since the MILP run; re-run the grid"
    for name in ("gh", "agh"):
        try:
            plan, seconds = _timed(lambda name=name: solve(inst, solver=name, time_limit=120, seed=seed))
            row[name] = {
                "cost": plan.objective,
                "seconds": seconds,
                "gpus": plan.gpus,
                "valid": not verify(inst, plan),
            }
        except PlannerError as exc:
            row[name] = {"cost": None, "seconds": None, "error": type(exc).__name__}
    log.info(
        "grid %s seed %d: %d options, GH %s AGH %s",
        size,
        seed,
        len(inst.options),
        row["gh"].get("cost"),
        row["agh"].get("cost"),
    )
    if previous is not None:
        row["milp"] = previous["milp"]
        return row
    row["milp"] = milp_result(inst, seed, milp_limit)
    log.info(
        "grid %s seed %d: MILP %s %s in %.1fs",
        size,
        seed,
        row["milp"].get("status"),
        row["milp"].get("cost"),
        row["milp"]["seconds"],
    )
    return row


def milp_result(inst: Instance, seed: int, milp_limit: float) -> Row:
    """One MILP solve of ``inst`` as a result row (cost, status, bound, times, model size)."""
    try:
        result, seconds = _timed(lambda: solve_milp(inst, time_limit=milp_limit, seed=seed))
    except PlannerError as exc:
        return {"cost": None, "status": "none", "seconds": milp_limit, "error": str(exc)[:200]}
    return {
        "cost": result.objective, "status": result.status, "bound": result.bound, "seconds": seconds,
        "build_s": result.build_seconds, "solve_s": result.solve_seconds, "variables": result.variables,
        "constraints": result.constraints,
    }  # fmt: skip


def unpruned_row(
    size: tuple[int, int, int], seed: int, data_dir: Path, milp_limit: float, repeats: int = 3
) -> Row:
    """AGH, the pruned MILP and the MILP of the spec without dominance pruning, back to back in one run.

    The unpruned instance (``prune=False``) still leaves out options no class can use at all (they would
    only add integer columns fixed at 0); every dominated option is kept, as in the seed's formulation.
    AGH runs ``repeats`` times on the pruned instance (its time is the median) right before the two MILPs,
    so that every speed-up divides times measured under the same machine conditions; so does AGH without
    its kernel search (the seed's AGH), with the local search on the best 1 or 2 starts.
    """
    pruned, pruned_s = _timed(lambda: instance(size, seed, data_dir))
    inst, build_s = _timed(lambda: instance(size, seed, data_dir, prune=False))
    agh: list[tuple[Plan, float]] = [
        _timed(lambda: solve(pruned, solver="agh", time_limit=120, seed=seed)) for _ in range(repeats)
    ]
    row: Row = {
        "size": list(size), "seed": seed, "options": len(inst.options), "pairs": int(inst.feasible.sum()),
        "instance_s": build_s, "pruned_options": len(pruned.options), "pruned_instance_s": pruned_s,
        "agh": {"cost": agh[0][0].objective, "seconds": float(np.median([s for _, s in agh])),
                "all_seconds": [s for _, s in agh]},
    }  # fmt: skip
    for starts in (1, 2):  # the seed's AGH: starts, local search and consolidation, no kernel search

        def plain(k: int = starts) -> Allocation:
            return solve_agh(Context(pruned), seed=seed, kernel_milp=False, improve_best=k)[0]

        runs = [_timed(plain) for _ in range(repeats)]
        row[f"agh_no_kernel_{starts}"] = {
            "cost": runs[0][0].objective(), "feasible": runs[0][0].is_feasible(),
            "seconds": float(np.median([s for _, s in runs])),
        }  # fmt: skip
    row["pruned_milp"] = milp_result(pruned, seed, milp_limit)
    row["milp"] = milp_result(inst, seed, milp_limit)
    log.info(
        "same-run %s seed %d: AGH %.3fs, pruned MILP %s in %.1fs, unpruned MILP (%d options) %s %s in %.1fs",
        size, seed, row["agh"]["seconds"], row["pruned_milp"].get("status"), row["pruned_milp"]["seconds"],
        len(inst.options), row["milp"].get("status"), row["milp"].get("cost"), row["milp"]["seconds"],
    )  # fmt: skip
    return row


def agh_phase_row(size: tuple[int, int, int], seed: int, data_dir: Path) -> Row:
    """Where AGH's time goes on one grid instance (wall-clock per phase, one run)."""
    inst = instance(size, seed, data_dir)
    t0 = time.perf_counter()
    alloc, stats = solve_agh(Context(inst), seed=seed, time_limit=120)
    total = time.perf_counter() - t0
    return {
        "size": list(size), "seed": seed, "cost": alloc.objective(), "seconds": total,
        "phases": dict(stats.phase_seconds),
    }  # fmt: skip


# -- ablation ---------------------------------------------------------------------------------------------
ABLATIONS: dict[str, tuple[Mechanisms, bool]] = {
    "full": (Mechanisms(), True),
    "no M1": (Mechanisms(m1=False), True),
    "no M2": (Mechanisms(m2=False), True),
    "no M3": (Mechanisms(m3=False), True),
    "no LP consolidation": (Mechanisms(), False),
}


def ablation_rows(
    size: tuple[int, int, int], seed: int, data_dir: Path, family: str = "default"
) -> list[Row]:
    """GH and AGH with each mechanism switched off; a plan that breaks a constraint counts as infeasible."""
    full = instance(size, seed, data_dir, family)
    wide = instance(size, seed, data_dir, family, keep_infeasible=True)
    rows = []
    for label, (mech, lp) in ABLATIONS.items():
        inst = wide if not mech.m1 else full
        for algo in ("gh", "agh"):
            if algo == "gh" and not lp:
                continue
            ctx = Context(inst, mech)
            t0 = time.perf_counter()
            if algo == "gh":
                alloc = solve_gh(ctx)
            else:
                alloc, _ = solve_agh(ctx, seed=seed, time_limit=120, lp_consolidation=lp)
            seconds = time.perf_counter() - t0
            served = bool(alloc.is_feasible())
            plan = build_plan(
                inst, alloc.to_solution(), solver=algo, status="feasible", solve_seconds=seconds
            )
            # Judge every plan on the full instance (the real SLOs), independently of the solver.
            violations = verify(full if mech.m1 else wide, plan) if served else ["not all demand served"]
            slo_breaks = [v for v in violations if not isinstance(v, str) and v.constraint in ("C6", "C2")]
            widest = max((d.gpus_per_replica for d in plan.deployments), default=0)
            rows.append({
                "family": family, "size": list(size), "seed": seed, "variant": label, "algo": algo,
                "cost": plan.objective, "parallel_gpus": widest,
                "seconds": seconds, "feasible": served and not violations, "slo_violations": len(slo_breaks),
            })  # fmt: skip
    return rows


# -- stress -----------------------------------------------------------------------------------------------
def _stress_eval(plan: Plan, nominal: Instance, factor: float) -> Row:
    """Share of requests whose SLOs break, and classes whose error bound breaks, under inflation."""
    pert = nominal.perturbed(delay_factor=factor, error_factor=factor)
    names = {c.name: i for i, c in enumerate(pert.classes)}
    total = float(pert.rates.sum())
    broken = 0.0
    load: dict[str, float] = {}
    reqs: dict[str, float] = {}
    error_breaks = 0
    for c in plan.classes:
        i = names[c.name]
        err = 0.0
        for name, share in c.shares:
            opt = pert.option_by_name(name)
            assert opt is not None
            err += share * pert.error[opt.index, i]
            demand = pert.classes[i].rate * share
            if pert.perf.reason[opt.index, i] != Reason.OK:
                broken += demand  # TTFT/TPOT/memory no longer hold for this class on this option
                continue
            load[name] = load.get(name, 0.0) + demand / pert.mu[opt.index, i]
            reqs[name] = reqs.get(name, 0.0) + demand
        served = sum(s for _, s in c.shares)
        if served > 0 and err > pert.classes[i].max_error * served + 1e-9:
            error_breaks += 1
    replicas = plan.replicas()
    for name, value in load.items():
        if value > replicas[name]:
            broken += reqs[name] * (value - replicas[name]) / value
    return {"slo_violation_share": broken / total if total else 0.0, "error_violation_classes": error_breaks}


def stress_rows(
    size: tuple[int, int, int], seed: int, data_dir: Path, milp_limit: float, family: str = "default"
) -> list[Row]:
    inst = instance(size, seed, data_dir, family)
    plans = {"agh": solve(inst, solver="agh", seed=seed, time_limit=120)}
    result = solve_milp(inst, time_limit=milp_limit, seed=seed)
    if result.solution is not None:
        plans["milp"] = build_plan(
            inst, result.solution, solver="milp", status=result.status, solve_seconds=result.solve_seconds
        )
    rows = []
    for factor in (1.0, 1.1, 1.2, 1.3, 1.4, 1.5):
        for algo, plan in plans.items():
            rows.append(
                {
                    "family": family,
                    "size": list(size),
                    "seed": seed,
                    "factor": factor,
                    "algo": algo,
                    "cost": plan.objective,
                    **_stress_eval(plan, inst, factor),
                }
            )
    return rows


# -- rolling horizon --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RollingCase:
    name: str
    trace: str
    days: float
    window_s: float | None = None


def rolling_row(
    case: RollingCase, scale: float, data_dir: Path, settings: HorizonSettings
) -> tuple[Row, Any]:
    inst = example_instance(scale)
    window, rates = class_rates(inst.rates, case.trace, data_dir, window_s=case.window_s)
    rates = rates[: max(1, round(case.days * 86400 / window))]
    settings = HorizonSettings(**{**settings.__dict__, "interval_s": window})
    (rolling, static_result), seconds = _timed(
        lambda: (replay(inst, rates, settings), static(inst, rates, settings))
    )
    saving = 1 - rolling.total_cost / static_result.total_cost
    row = {
        "case": case.name, "trace": case.trace, "hours": rolling.hours, "scale": scale, "seconds": seconds,
        "rolling": rolling.summary(), "static": static_result.summary(), "saving": saving,
        "forecast": settings.forecast,
    }  # fmt: skip
    log.info(
        "rolling %s: saving %.1f%%, %.3f changes/replica/h",
        case.name,
        100 * saving,
        rolling.changes_per_replica_hour,
    )
    series = {
        "hours": np.arange(len(rates)) * window / 3600,
        "rate": rates.sum(axis=1),
        "rolling_gpus": [w.gpus for w in rolling.windows],
        "static_gpus": [w.gpus for w in static_result.windows],
    }
    return row, series


# -- examples ---------------------------------------------------------------------------------------------
def example_rows(repeats: int = 3) -> list[Row]:
    inst = example_instance()
    rows = []
    for solver in ("gh", "agh", "milp", "auto"):
        times = []
        for _ in range(repeats):
            plan, seconds = _timed(lambda solver=solver: solve(inst, solver=solver, time_limit=10))
            times.append(seconds)
        rows.append(
            {
                "solver": solver,
                "median_s": float(np.median(times)),
                "cost": plan.objective,
                "status": plan.status,
            }
        )
    _, build = _timed(example_instance)
    rows.append({"solver": "load manifests + build instance", "median_s": build, "cost": None, "status": ""})
    return rows
