"""The routing LP of AGH's consolidation: Farkas certificates reject only replica vectors with no routing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from quartermaster.planner.agh import solve_agh
from quartermaster.planner.instance import Instance
from quartermaster.planner.rebalance import Router
from quartermaster.planner.state import Context
from quartermaster.planner.synthetic import generate_specs

from .conftest import build, model, pool, qclass


def _trials(ctx: Context, universe: list[int], base: dict[int, int], seed: int) -> list[dict[int, int]]:
    """Replica vectors around ``base``: drops, swaps and random perturbations over ``universe``."""
    rng = np.random.default_rng(seed)
    trials = [{**base, o: n - 1} for o, n in base.items()]
    for _ in range(60):
        trial = dict(base)
        for o in rng.choice(universe, size=min(3, len(universe)), replace=False):
            trial[int(o)] = max(0, trial.get(int(o), 0) + int(rng.integers(-2, 2)))
        trials.append(trial)
    return trials


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10_000), classes=st.integers(4, 10), models=st.integers(3, 8))
def test_certificates_never_reject_a_routable_replica_vector(
    seed: int, classes: int, models: int, data_dir: Path
) -> None:
    catalog, pool = generate_specs(classes, models, 6, seed=seed, data_dir=data_dir)
    ctx = Context(Instance.from_specs(catalog, pool))
    plan, _ = solve_agh(ctx, seed=seed, time_limit=30, kernel_milp=False, lp_consolidation=False)
    base = {int(o): int(n) for o, n in enumerate(plan.n) if n > 0}
    extra = [int(o) for o in np.flatnonzero(ctx.feasible.any(axis=1))][: 2 * len(base) + 4]
    universe = sorted(set(base) | set(extra))
    screened, fresh = Router(ctx, universe), Router(ctx, universe)
    for trial in _trials(ctx, universe, base, seed):
        expected = fresh.route(trial)
        fresh._certificates.clear()  # the reference solves every LP
        got = screened.route(trial)
        assert (got is None) == (expected is None), trial


def test_certificate_skips_infeasible_trials_at_scale(data_dir: Path) -> None:
    catalog, pool = generate_specs(12, 10, 10, seed=1, data_dir=data_dir)
    ctx = Context(Instance.from_specs(catalog, pool))
    plan, _ = solve_agh(ctx, seed=1, time_limit=30, kernel_milp=False, lp_consolidation=False)
    base = {int(o): int(n) for o, n in enumerate(plan.n) if n > 0}
    router = Router(ctx, sorted(base))
    # Dropping every replica of the largest deployment, then also one replica of another: less capacity
    # everywhere, so the first trial's certificate (mu >= 0) rejects the others without an LP.
    big = max(base, key=lambda o: (base[o] * ctx.costs[o], o))
    assert router.route({**base, big: 0}) is None
    others = [o for o in base if o != big]
    for o in others:
        assert router.route({**base, big: 0, o: base[o] - 1}) is None
    assert router.skipped >= 1
    assert router.route(base) is not None, "the plan's own replicas route"


@settings(max_examples=10, deadline=None)
@given(
    rates=st.lists(st.sampled_from([0.0, 0.5, 2.0, 6.0, 15.0]), min_size=2, max_size=5),
    unserved=st.lists(st.sampled_from([0.0, 0.3, 1.0]), min_size=5, max_size=5),
    counts=st.lists(st.lists(st.integers(0, 3), min_size=8, max_size=8), min_size=12, max_size=12),
)
def test_certificates_are_exact_with_unserved_shares_and_zero_rate_classes(
    rates: list[float], unserved: list[float], counts: list[list[int]]
) -> None:
    classes = [
        qclass(f"c{k}", rate, max_unserved_share=unserved[k], penalty=0.01 if unserved[k] else 0.0)
        for k, rate in enumerate(rates)
    ]
    inst = build(
        [model("big", error=0.1), model("small", "qwen-0-5b", error=0.4)],
        [pool("l40s", "L40S", gpus=4), pool("a10g", "A10G", gpus=4)],
        classes,
        eps=0.3,
    )
    ctx = Context(inst)
    universe = [int(o) for o in np.flatnonzero(ctx.feasible.any(axis=1))][:8]
    screened, fresh = Router(ctx, universe), Router(ctx, universe)
    for row in counts:
        trial = {o: n for o, n in zip(universe, row, strict=False)}
        expected = fresh.route(trial)
        fresh._certificates.clear()
        assert (screened.route(trial) is None) == (expected is None), trial
