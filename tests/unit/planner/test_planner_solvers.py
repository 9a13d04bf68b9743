"""Every GH/AGH/MILP/auto plan passes the independent verifier; determinism; verify catches bad plans."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from quartermaster.api.manifests import load_manifests
from quartermaster.planner import solve, verify
from quartermaster.planner.errors import InfeasibleError
from quartermaster.planner.instance import Instance
from quartermaster.planner.plan import Plan
from quartermaster.planner.state import Mechanisms
from quartermaster.planner.synthetic import generate_specs

from .conftest import EXAMPLES


def _example() -> Instance:
    manifests = load_manifests([EXAMPLES / "catalog.yaml", EXAMPLES / "pool.yaml"])
    _, pool = manifests.pool()
    return Instance.from_specs(manifests.catalog_for(pool), pool, manifests.classes_for(pool))


def _stable(plan: Plan) -> str:
    data = plan.to_dict()
    data.pop("solveSeconds")
    data.pop("notes")
    return json.dumps(data, sort_keys=True)


@settings(max_examples=10, deadline=None)
@given(
    classes=st.integers(1, 6),
    models=st.integers(1, 5),
    tiers=st.integers(1, 5),
    seed=st.integers(0, 10_000),
)
def test_every_solver_returns_a_verified_plan(
    classes: int, models: int, tiers: int, seed: int, data_dir: Path
) -> None:
    catalog, pool = generate_specs(classes, models, tiers, seed=seed, data_dir=data_dir)
    inst = Instance.from_specs(catalog, pool)
    objectives = {}
    for solver in ("gh", "agh", "milp", "auto"):
        try:
            plan = solve(inst, solver=solver, time_limit=30, seed=seed)
        except InfeasibleError as exc:
            explained = exc.explanations
            assert explained, f"{solver}: infeasible without an explanation"
            continue
        assert verify(inst, plan) == [], solver
        assert plan.gpu_cost_per_hour == pytest.approx(sum(d.cost_per_hour for d in plan.deployments))
        for c in plan.classes:
            assert sum(s for _, s in c.shares) + c.unserved_share == pytest.approx(1.0, abs=1e-6)
        objectives[solver] = plan.objective
    if "milp" in objectives:
        for solver, value in objectives.items():
            assert value >= objectives["milp"] - 1e-6 * max(1.0, value), solver


def test_example_plans_with_every_solver_and_auto_is_certified() -> None:
    inst = _example()
    plans = {s: solve(inst, solver=s, time_limit=30) for s in ("gh", "agh", "milp", "auto")}
    for solver, plan in plans.items():
        assert verify(inst, plan) == [], solver
        assert plan.deployments, solver
    assert plans["milp"].status == "optimal"
    assert plans["auto"].bound is not None
    assert plans["auto"].gap is not None
    assert plans["auto"].objective <= plans["agh"].objective + 1e-9
    assert plans["agh"].objective <= plans["gh"].objective + 1e-9


def test_same_seed_same_plan() -> None:
    inst = _example()
    for solver in ("gh", "agh", "milp"):
        assert _stable(solve(inst, solver=solver, seed=3)) == _stable(solve(inst, solver=solver, seed=3)), (
            solver
        )


def test_deployments_carry_vllm_arguments_and_placement() -> None:
    plan = solve(_example(), solver="agh")
    for d in plan.deployments:
        args = list(d.vllm_args)
        assert args[args.index("--tensor-parallel-size") + 1] == str(d.tensor_parallel)
        assert args[args.index("--model") + 1] == d.model_id
        assert int(args[args.index("--max-num-seqs") + 1]) == d.max_num_seqs >= 1
        assert dict(d.node_selector) == {"quartermaster.dev/pool": d.node_pool}
        assert dict(d.tolerations[0])["key"] == "nvidia.com/gpu"
        assert d.slug.replace("-", "").isalnum()
        assert d.slug == d.slug.lower()
    assert yaml.safe_load(yaml.safe_dump(plan.to_dict())) == plan.to_dict()  # plain Python types only
    data = json.loads(json.dumps(plan.to_dict()))
    assert {"deployments", "classes", "costPerHour", "solver", "gap", "rejectedCount"} <= set(data)
    assert data["deployments"][0]["vllmArgs"][0] == "--model"


def test_verify_catches_broken_plans() -> None:
    inst = _example()
    plan = solve(inst, solver="milp")
    first = plan.deployments[0]
    dropped = dataclasses.replace(plan, deployments=plan.deployments[1:])
    assert any(v.constraint == "C2" and v.subject == first.name for v in verify(inst, dropped))
    cheap = dataclasses.replace(first, cost_per_hour=first.cost_per_hour / 2)
    mispriced = dataclasses.replace(plan, deployments=(cheap, *plan.deployments[1:]))
    assert {"cost"} <= {v.constraint for v in verify(inst, mispriced)}
    shifted = [dataclasses.replace(c, unserved_share=c.unserved_share + 0.3) for c in plan.classes]
    assert any(v.constraint == "C1" for v in verify(inst, dataclasses.replace(plan, classes=tuple(shifted))))
    greedy_budget = inst.with_budget(plan.gpu_cost_per_hour * 0.5)
    assert any(v.constraint == "C5" for v in verify(greedy_budget, plan))
    tight = inst.perturbed(delay_factor=5.0)
    assert any(v.constraint in ("C6", "C2") for v in verify(tight, plan))


def test_ablations_without_m1_break_slos_and_without_m3_keep_the_smallest_degree(data_dir: Path) -> None:
    catalog, pool = generate_specs(8, 6, 5, seed=11, data_dir=data_dir)
    full = Instance.from_specs(catalog, pool)
    wide = Instance.from_specs(catalog, pool, keep_infeasible=True)
    base = solve(full, solver="gh")
    no_m1 = solve(wide, solver="gh", mechanisms=Mechanisms(m1=False), verify_plan=False)
    assert any(v.constraint == "C6" for v in verify(wide, no_m1))
    assert not verify(full, base)
    no_m3 = solve(full, solver="agh", mechanisms=Mechanisms(m3=False), verify_plan=False)
    smallest: dict[tuple[str, str, str], int] = {}
    for opt in full.options:
        key = opt.key[:3]
        smallest[key] = min(smallest.get(key, opt.gpus), opt.gpus)
    for d in no_m3.deployments:
        assert d.gpus_per_replica == smallest[(d.model, d.precision, d.node_pool)]
