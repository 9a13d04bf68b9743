"""The restricted-MILP (kernel) neighbourhood of AGH: feasible, never worse, never below the optimum."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quartermaster.planner.agh import solve_agh
from quartermaster.planner.errors import SolverError
from quartermaster.planner.instance import Instance
from quartermaster.planner.milp import solve_milp
from quartermaster.planner.neighbourhood import (
    bucket_milp,
    kernel,
    lp_bucket,
    lp_prices,
    lp_relaxation,
    restricted_milp,
)
from quartermaster.planner.state import Context
from quartermaster.planner.synthetic import generate_specs


@settings(max_examples=8, deadline=None)
@given(
    classes=st.integers(2, 8),
    models=st.integers(2, 6),
    tiers=st.integers(2, 6),
    seed=st.integers(0, 10_000),
)
def test_kernel_milp_keeps_feasibility_and_only_improves(
    classes: int, models: int, tiers: int, seed: int, data_dir: Path
) -> None:
    catalog, pool = generate_specs(classes, models, tiers, seed=seed, data_dir=data_dir)
    ctx = Context(Instance.from_specs(catalog, pool))
    base, _ = solve_agh(ctx, seed=seed, time_limit=30, kernel_milp=False)
    if not base.is_feasible():
        return
    universe = kernel(ctx, [base], 1, 0, 8, 0)
    assert set(int(o) for o in base.n.nonzero()[0]) <= set(universe)
    better, solved = restricted_milp(base, [], time.perf_counter() + 30, seed=seed)
    assert solved == kernel(ctx, [base], 1, 4, 8, 2)  # the default kernel
    if better is None:
        return
    assert better.is_feasible()
    assert better.objective() < base.objective()
    exact = solve_milp(ctx.instance, time_limit=30, seed=seed)
    if exact.status == "optimal":
        assert better.objective() >= exact.objective - 1e-6 * max(1.0, exact.objective)


def test_agh_with_kernel_is_no_worse_and_deterministic(data_dir: Path) -> None:
    catalog, pool = generate_specs(12, 10, 10, seed=3, data_dir=data_dir)
    ctx = Context(Instance.from_specs(catalog, pool))
    without, _ = solve_agh(ctx, seed=3, time_limit=60, kernel_milp=False)
    first, _ = solve_agh(ctx, seed=3, time_limit=60)
    second, _ = solve_agh(ctx, seed=3, time_limit=60)
    assert first.is_feasible()
    assert first.objective() <= without.objective() + 1e-9
    assert first.to_solution() == second.to_solution()


def test_kernel_holds_every_start_and_same_model_options_on_other_pools(data_dir: Path) -> None:
    catalog, pool = generate_specs(12, 10, 10, seed=3, data_dir=data_dir)
    ctx = Context(Instance.from_specs(catalog, pool))
    best, _ = solve_agh(ctx, seed=3, time_limit=60, kernel_milp=False)
    other, _ = solve_agh(ctx, seed=4, time_limit=60, kernel_milp=False, lp_consolidation=False)
    options = ctx.instance.options
    plain = set(kernel(ctx, [best, other], 0, 0, 0, 0))
    assert {int(o) for a in (best, other) for o in a.n.nonzero()[0]} <= plain
    widened = set(kernel(ctx, [best, other], 0, 0, 0, 2))
    assert plain <= widened
    open_models = {options[int(o)].model for o in best.n.nonzero()[0]}
    added = widened - plain
    assert added, "per_model adds other options (pools, precisions, degrees) of the open models"
    assert all(options[o].model in open_models for o in added)


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 10_000), family=st.sampled_from(["default", "long-context"]))
def test_agh_plans_verify_and_repeat_in_both_families(seed: int, family: str, data_dir: Path) -> None:
    from quartermaster.planner.errors import InfeasibleError
    from quartermaster.planner.solve import solve

    catalog, pool = generate_specs(6, 5, 5, seed=seed, data_dir=data_dir, family=family)
    instance = Instance.from_specs(catalog, pool)
    try:
        first = solve(instance, solver="agh", seed=seed, time_limit=60)  # verify() runs inside solve
    except InfeasibleError:
        return
    second = solve(instance, solver="agh", seed=seed, time_limit=60)
    assert first.deployments == second.deployments
    assert first.classes == second.classes


@settings(max_examples=6, deadline=None)
@given(
    classes=st.integers(2, 8),
    models=st.integers(2, 6),
    tiers=st.integers(2, 6),
    seed=st.integers(0, 10_000),
)
def test_lp_relaxation_bounds_the_milp_and_prices_are_dual_feasible(
    classes: int, models: int, tiers: int, seed: int, data_dir: Path
) -> None:
    catalog, pool = generate_specs(classes, models, tiers, seed=seed, data_dir=data_dir)
    ctx = Context(Instance.from_specs(catalog, pool))
    relaxation = lp_relaxation(ctx)
    exact = solve_milp(ctx.instance, time_limit=30, seed=seed)
    if exact.status == "optimal":
        assert exact.objective is not None
        assert relaxation.objective <= exact.objective + 1e-6 * max(1.0, exact.objective)
    prices = lp_prices(ctx, relaxation)
    # At the LP's duals no replica is worth more than it costs (otherwise the LP would open more of it).
    assert (prices <= 1 + 1e-6).all()
    bucket = lp_bucket(ctx, prices, 5)
    options, pools = ctx.instance.options, ctx.instance.tiers
    families = [
        (
            options[o].model,
            options[o].precision,
            pools[options[o].tier].gpu.name,
            options[o].tp,
            options[o].pp,
        )
        for o in bucket
    ]
    assert len(set(families)) == len(bucket) <= 5
    assert [prices[o] for o in bucket] == sorted((prices[o] for o in bucket), reverse=True)


@settings(max_examples=8, deadline=None)
@given(
    classes=st.integers(2, 10),
    models=st.integers(2, 8),
    tiers=st.integers(2, 8),
    seed=st.integers(0, 10_000),
    budget_factor=st.sampled_from([None, 1.0, 1.3]),
)
def test_lp_column_generation_reaches_the_full_lp_optimum(
    classes: int, models: int, tiers: int, seed: int, budget_factor: float | None, data_dir: Path
) -> None:
    catalog, pool = generate_specs(classes, models, tiers, seed=seed, data_dir=data_dir)
    instance = Instance.from_specs(catalog, pool)
    try:
        full = lp_relaxation(Context(instance), column_generation=False)
    except SolverError:  # no LP optimum at all: column generation must fail the same way
        with pytest.raises(SolverError):
            lp_relaxation(Context(instance))
        return
    if budget_factor is not None:
        # A binding (or nearly binding) budget: C5's dual enters the pricing.
        instance = instance.with_budget(full.objective * budget_factor)
        full = lp_relaxation(Context(instance), column_generation=False)
    ctx = Context(instance)
    generated = lp_relaxation(ctx)
    assert generated.objective == pytest.approx(full.objective, rel=1e-7, abs=1e-9)
    assert (generated.replicas >= 0).all()


def test_bucket_milp_holds_the_lp_support_and_only_improves(data_dir: Path) -> None:
    catalog, pool = generate_specs(12, 10, 10, seed=3, data_dir=data_dir)
    ctx = Context(Instance.from_specs(catalog, pool))
    base, _ = solve_agh(ctx, seed=3, time_limit=60, kernel_milp=False)
    assert base.is_feasible()
    first = kernel(ctx, [base], 1, 4, 8, 2)
    better, options = bucket_milp(base, first, time.perf_counter() + 30, seed=3, size=10)
    support = {int(o) for o in np.flatnonzero(lp_relaxation(ctx).replicas > 1e-7)}
    assert support <= set(options)
    assert {int(o) for o in np.flatnonzero(base.n > 0)} <= set(options)
    bucket = lp_bucket(ctx, lp_prices(ctx, lp_relaxation(ctx)), 10)
    assert {o for o in bucket if o not in first} <= set(options)
    if better is not None:
        assert better.is_feasible()
        assert better.objective() < base.objective()
        exact = solve_milp(ctx.instance, time_limit=60, seed=3)
        if exact.status == "optimal":
            assert exact.objective is not None
            assert better.objective() >= exact.objective - 1e-6 * max(1.0, exact.objective)


def test_agh_with_the_bucket_is_no_worse_than_without(data_dir: Path) -> None:
    catalog, pool = generate_specs(12, 10, 10, seed=5, data_dir=data_dir)
    ctx = Context(Instance.from_specs(catalog, pool))
    without, _ = solve_agh(ctx, seed=5, time_limit=60, kernel_bucket=0)
    with_bucket, stats = solve_agh(ctx, seed=5, time_limit=60)
    again, _ = solve_agh(ctx, seed=5, time_limit=60)
    assert with_bucket.is_feasible()
    assert with_bucket.objective() <= without.objective() + 1e-9
    assert with_bucket.to_solution() == again.to_solution()
    assert "LP + bucket MILP" in dict(stats.phase_seconds)
