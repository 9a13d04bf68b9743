"""Optimality: hand-computed optima on tiny instances, and the MILP against brute-force enumeration."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from quartermaster.planner.errors import InfeasibleError
from quartermaster.planner.instance import Instance
from quartermaster.planner.solve import solve
from quartermaster.planner.verify import verify

from .conftest import build, model, pool, qclass


def _replicas(instance: Instance, option: str, rate: float, klass: int = 0) -> int:
    opt = instance.option_by_name(option)
    assert opt is not None
    return math.ceil(rate / (instance.utilization * instance.mu[opt.index, klass]) - 1e-9)


def _route_cost(instance: Instance, n: np.ndarray) -> float | None:
    """Min penalty of routing all classes with replicas ``n`` fixed (an LP), or None if impossible."""
    feasible = instance.feasible & (instance.mu > 0)
    pairs = [
        (i, o) for o in range(len(instance.options)) for i in range(len(instance.classes)) if feasible[o, i]
    ]
    n_cls = len(instance.classes)
    n_var = len(pairs) + n_cls
    cost = np.zeros(n_var)
    cost[len(pairs) :] = [3600 * c.penalty * c.rate for c in instance.classes]
    a_eq = np.zeros((n_cls, n_var))
    a_ub = np.zeros((len(instance.options) + n_cls, n_var))
    for col, (i, o) in enumerate(pairs):
        a_eq[i, col] = 1
        a_ub[o, col] = instance.classes[i].rate / instance.mu[o, i]
        a_ub[len(instance.options) + i, col] = instance.error[o, i] - instance.classes[i].max_error
    for i in range(n_cls):
        a_eq[i, len(pairs) + i] = 1
    b_ub = np.concatenate([instance.utilization * n, np.zeros(n_cls)])
    bounds = [(0, 1)] * len(pairs) + [(0, c.max_unserved) for c in instance.classes]
    res = linprog(cost, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=np.ones(n_cls), bounds=bounds, method="highs")
    return float(res.fun) if res.status == 0 else None


def brute_force(instance: Instance) -> float | None:
    """Enumerate every replica vector within the pools' GPUs (and budget); route each by LP."""
    caps = [instance.tiers[o.tier].gpus // o.gpus for o in instance.options]
    best = None
    for combo in itertools.product(*(range(c + 1) for c in caps)):
        n = np.array(combo)
        used = np.zeros(len(instance.tiers))
        for o, count in zip(instance.options, combo, strict=True):
            used[o.tier] += count * o.gpus
        if np.any(used > [t.gpus for t in instance.tiers]):
            continue
        gpu_cost = float(instance.costs @ n)
        if instance.budget is not None and gpu_cost > instance.budget + 1e-9:
            continue
        if best is not None and gpu_cost >= best:
            continue
        penalty = _route_cost(instance, n)
        if penalty is not None and (best is None or gpu_cost + penalty < best):
            best = gpu_cost + penalty
    return best


def test_cheapest_pool_first_then_the_next_one() -> None:
    # Two pools of the same GPU type at different prices; the cheap one has a single GPU.
    inst = build(
        [model("m")],
        [
            pool("cheap", "L40S", gpus=1, per_node=1, price=1.0),
            pool("dear", "L40S", gpus=8, per_node=1, price=2.0),
        ],
        [qclass("c", 60.0, 512, 128)],
        tpot=0.1,
    )
    need = _replicas(inst, "m/bf16/cheap/tp1pp1", 60.0)
    assert need >= 3
    expected = 1 * 1.0 + (need - 1) * 2.0
    for solver in ("milp", "agh", "gh", "auto"):
        plan = solve(inst, solver=solver, time_limit=30)
        assert plan.gpu_cost_per_hour == pytest.approx(expected), solver
        assert plan.replicas().get("m/bf16/cheap/tp1pp1") == 1
        assert not verify(inst, plan)


def test_error_bound_forces_a_mix_of_accurate_and_cheap_models() -> None:
    # Accurate (error 0.1) vs sloppy (error 0.3) with the same architecture on the same GPU type;
    # bound 0.2 lets at most half of the class go to the sloppy model.
    models = [model("acc", error=0.1), model("slop", error=0.3)]
    pools = [
        pool("big", "L40S", gpus=4, per_node=4, price=3.0),
        pool("small", "L40S", gpus=4, per_node=4, price=1.0),
    ]
    base = build(models, pools, [qclass("c", 1.0, 512, 128)], eps=0.2, tpot=0.1)
    mu = base.mu[base.option_by_name("acc/bf16/big/tp1pp1").index, 0]  # type: ignore[union-attr]
    rate = 1.5 * 0.8 * mu  # accurate alone needs 2 replicas; half of it fits in one
    inst = base.with_rates([rate])
    # Cheapest: everything on acc/small ($1 per replica, 2 replicas); sloppy cannot replace it beyond 50%.
    plan = solve(inst, solver="milp")
    assert plan.gpu_cost_per_hour == pytest.approx(2.0)
    assert plan.classes[0].predicted_error <= 0.2 + 1e-9
    only_big = build(models, [pools[0]], [qclass("c", rate, 512, 128)], eps=0.2, tpot=0.1)
    # With only the $3 pool: 1 replica acc + 1 replica slop (share 0.5 each) -- same as 2 acc, also $6;
    # with the bound at 0.1 (no slack) the sloppy model cannot be used at all.
    assert solve(only_big, solver="milp").gpu_cost_per_hour == pytest.approx(6.0)
    strict = build(models, [pools[1]], [qclass("c", rate, 512, 128, max_error=0.1)], tpot=0.1)
    plan = solve(strict, solver="milp")
    assert all(name.startswith("acc/") for name, _ in plan.classes[0].shares)


def test_unserved_demand_when_the_penalty_is_cheaper() -> None:
    inst = build(
        [model("m")], [pool("l", "L40S", gpus=4, per_node=4, price=5.0)], [qclass("c", 1.0, 512, 128)]
    )
    mu = inst.mu[inst.option_by_name("m/bf16/l/tp1pp1").index, 0]  # type: ignore[union-attr]
    rate = 0.8 * mu * 1.05  # 5% more than one replica carries
    cheap_penalty = build(
        [model("m")],
        [pool("l", "L40S", gpus=4, per_node=4, price=5.0)],
        [qclass("c", rate, 512, 128, max_unserved_share=0.1, penalty=1e-6)],
    )
    plan = solve(cheap_penalty, solver="milp")
    assert plan.gpu_cost_per_hour == pytest.approx(5.0)
    assert 0.04 < plan.classes[0].unserved_share <= 0.1


@settings(max_examples=12, deadline=None)
@given(
    rates=st.lists(st.floats(0.2, 25.0), min_size=1, max_size=2),
    errors=st.lists(st.floats(0.05, 0.5), min_size=2, max_size=2),
    eps=st.floats(0.1, 0.4),
    prices=st.lists(st.floats(0.5, 4.0), min_size=2, max_size=2),
    gpus=st.lists(st.integers(1, 3), min_size=2, max_size=2),
    unserved=st.booleans(),
)
def test_milp_equals_brute_force(
    rates: list[float], errors: list[float], eps: float, prices: list[float], gpus: list[int], unserved: bool
) -> None:
    models = [model("a", error=errors[0]), model("b", "qwen-0-5b", error=errors[1])]
    pools = [
        pool("p", "L40S", gpus=gpus[0], per_node=1, price=prices[0]),
        pool("q", "A10G", gpus=gpus[1], per_node=1, price=prices[1]),
    ]
    extra = {"max_unserved_share": 0.2, "penalty": 0.001} if unserved else {}
    classes = [qclass(f"c{i}", r, 256 + 512 * i, 64, **extra) for i, r in enumerate(rates)]
    inst = build(models, pools, classes, eps=eps, tpot=0.1)
    expected = brute_force(inst)
    if expected is None:
        with pytest.raises(InfeasibleError):
            solve(inst, solver="milp")
        return
    plan = solve(inst, solver="milp", time_limit=60)
    assert plan.status == "optimal"
    assert plan.objective == pytest.approx(expected, rel=1e-6, abs=1e-6)
    assert not verify(inst, plan)
    # Dominance pruning keeps the optimum: the unpruned instance has the same MILP optimum.
    unpruned = build(models, pools, classes, eps=eps, tpot=0.1, prune=False)
    assert solve(unpruned, solver="milp").objective == pytest.approx(expected, rel=1e-6, abs=1e-6)
    # The heuristics are never better than the optimum.
    for solver in ("gh", "agh"):
        try:
            heuristic = solve(inst, solver=solver)
        except Exception:
            continue
        assert heuristic.objective >= expected - 1e-6
        assert not verify(inst, heuristic)
