"""CLEAR allocator: closed form, optimality vs a brute-force grid, monotonicity, abandonment, fitting."""

from __future__ import annotations

import itertools
import logging
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quartermaster.routing import clear_search as cs
from quartermaster.routing.budget import (
    AbandonPolicy,
    BudgetItem,
    Option,
    allocate,
    evaluate_tokens,
)
from quartermaster.routing.errors import BudgetError, UtilityFitError
from quartermaster.routing.utility import UtilityCurve, fit_utility


def _item(name: str, a: float, scale: float, tau: float, weight: float = 1.0) -> BudgetItem:
    return BudgetItem(name, weight, (Option("m", UtilityCurve(a, 1.0 / scale, tau)),))


curves = st.tuples(st.floats(0.1, 1.0), st.floats(10.0, 400.0), st.floats(0.0, 600.0), st.integers(1, 5))


def _grid_best(items: list[BudgetItem], budget: float, points: int) -> float:
    """Best weighted utility over a grid of per-query tokens (the last item takes the remainder)."""
    w = np.array([it.weight for it in items])
    u = [it.options[0].curve for it in items]
    if len(items) == 1:
        return float(u[0].value(budget / w[0]))
    axes = [np.linspace(0.0, budget / wi, points) for wi in w[:-1]]
    mesh = np.meshgrid(*axes, indexing="ij")
    rest = (budget - sum(wi * m for wi, m in zip(w[:-1], mesh, strict=True))) / w[-1]
    total = sum(wi * ui.value(m) for wi, ui, m in zip(w[:-1], u[:-1], mesh, strict=True))
    total = np.where(rest >= 0, total + w[-1] * u[-1].value(np.maximum(rest, 0)), -np.inf)
    return float(total.max() / w.sum())


@settings(max_examples=25, deadline=None)
@given(params=st.lists(curves, min_size=1, max_size=3), per_query=st.floats(5.0, 1500.0))
def test_small_instances_match_or_beat_the_brute_force_grid(
    params: list[tuple[float, float, float, int]], per_query: float
) -> None:
    items = [_item(f"i{k}", a, s, t, w) for k, (a, s, t, w) in enumerate(params)]
    budget = per_query * sum(it.weight for it in items)
    result = allocate(items, budget)
    assert result.tokens_used <= budget * (1 + 1e-9)
    assert result.accuracy >= _grid_best(items, budget, 151) - 1e-9
    assert all(math.isfinite(it.tokens) and math.isfinite(it.utility) for it in result.items)


def test_interior_allocations_equalise_marginal_utility() -> None:
    rng = np.random.default_rng(3)
    items = [
        _item(f"i{k}", rng.uniform(0.3, 1), rng.uniform(50, 300), rng.uniform(0, 800)) for k in range(40)
    ]
    result = allocate(items, 400.0 * len(items), exact_max_items=0)
    marg = []
    for it, alloc in zip(items, result.items, strict=True):
        curve = it.options[0].curve
        if not alloc.abandoned and alloc.tokens > curve.tau + 1.0 / curve.beta:  # concave branch
            marg.append(float(curve.marginal(alloc.tokens)))
    assert len(marg) >= 10
    np.testing.assert_allclose(marg, marg[0], rtol=1e-6)  # one shadow price
    # The closed form at that price: b = tau + x/beta with x*exp(-x) = lambda/(a*beta).
    lam = marg[0]
    for it, alloc in zip(items, result.items, strict=True):
        c = it.options[0].curve
        if not alloc.abandoned and alloc.tokens > c.tau + 1.0 / c.beta:
            x = c.beta * (alloc.tokens - c.tau)
            assert x * math.exp(-x) == pytest.approx(lam / (c.a * c.beta), rel=1e-6)


def test_total_tokens_fall_as_the_price_rises_and_accuracy_rises_with_budget() -> None:
    rng = np.random.default_rng(4)
    items = [
        _item(f"i{k}", rng.uniform(0.3, 1), rng.uniform(20, 300), rng.uniform(0, 900)) for k in range(60)
    ]
    ar = cs.PricedArrays(
        w=np.ones(60),
        a=np.array([[it.options[0].curve.a] for it in items]),
        beta=np.array([[it.options[0].curve.beta] for it in items]),
        tau=np.array([[it.options[0].curve.tau] for it in items]),
        c=np.ones((60, 1)),
        valid=np.ones((60, 1), dtype=bool),
        cap=np.full(60, np.inf),
        fb_u=np.zeros(60),
        fb_t=np.zeros(60),
    )
    used = [cs.consumption(ar, *cs.at_price(ar, lam)) for lam in np.geomspace(1e-7, 1e-2, 200)]
    assert all(b <= a + 1e-9 for a, b in itertools.pairwise(used))
    assert used[0] > used[-1]
    accs = [allocate(items, t * 60.0, exact_max_items=0).accuracy for t in (50, 100, 200, 400, 800, 1600)]
    assert all(b >= a - 1e-9 for a, b in itertools.pairwise(accs))
    for t in (50, 100, 200, 400):
        assert allocate(items, t * 60.0, exact_max_items=0).accuracy >= evaluate_tokens(items, [t] * 60)


def test_rational_abandonment_drops_hard_items_when_tokens_are_scarce() -> None:
    easy = [_item(f"easy{k}", 0.9, 50.0, 20.0) for k in range(5)]
    hard = [_item(f"hard{k}", 0.9, 50.0, 2000.0) for k in range(5)]
    scarce = allocate(easy + hard, 150.0 * 10, exact_max_items=0)
    assert all(not it.abandoned for it in scarce.items if it.name.startswith("easy"))
    assert all(it.abandoned and it.tokens == 0 for it in scarce.items if it.name.startswith("hard"))
    assert scarce.abandoned_share == pytest.approx(0.5)
    # An abandoned item's net surplus at the price is negative.
    for it in (easy + hard)[5:]:
        c = it.options[0].curve
        b = cs.best_tokens(
            cs.PricedArrays(
                np.ones(1),
                *(np.array([[v]]) for v in (c.a, c.beta, c.tau, 1.0)),
                np.ones((1, 1), dtype=bool),
                np.full(1, np.inf),
                np.zeros(1),
                np.zeros(1),
            ),
            scarce.price,
            clamp=True,
        )[0, 0]
        assert float(c.value(b)) - scarce.price * b < 0
    generous = allocate(easy + hard, 5000.0 * 10, exact_max_items=0)
    assert generous.abandoned_share == 0.0
    assert not generous.binding or generous.accuracy > 0.85


def test_abandonment_policies() -> None:
    items = [_item("easy", 0.9, 50.0, 20.0), _item("hard", 0.9, 50.0, 3000.0)]
    short = allocate(items, 300.0, policy=AbandonPolicy("short-answer", tokens=40.0))
    hard = short.items[1]
    assert hard.abandoned
    assert hard.policy == "short-answer"
    assert hard.tokens == 40.0
    assert hard.utility == 0.0  # 40 tokens is below its emergence threshold
    assert short.items[0].tokens == pytest.approx(260.0)
    cheap = allocate(
        items, 300.0, policy=AbandonPolicy("cheapest-model", tokens=30.0, model="tiny", accuracy=0.2)
    )
    assert cheap.items[1].model == "tiny"
    assert cheap.items[1].utility == pytest.approx(0.2)
    assert cheap.accuracy > short.accuracy - 0.01
    refuse = allocate(items, 300.0)
    assert refuse.items[1].model is None
    assert refuse.items[1].tokens == 0.0
    with pytest.raises(BudgetError, match="cannot cover"):
        allocate(items, 10.0, policy=AbandonPolicy("short-answer", tokens=40.0))
    with pytest.raises(BudgetError, match="needs model"):
        AbandonPolicy("cheapest-model", tokens=10.0)
    with pytest.raises(BudgetError, match="finite"):
        allocate(items, float("inf"))


def test_model_choice_by_surplus() -> None:
    strong = Option("strong", UtilityCurve(0.95, 1 / 100, 50.0), token_cost=4.0)
    weak = Option("weak", UtilityCurve(0.7, 1 / 100, 50.0), token_cost=1.0)
    item = BudgetItem("c", 1.0, (weak, strong))
    assert allocate([item], 400.0).items[0].model == "weak"  # 400 weak tokens beat 100 strong ones
    assert allocate([item], 4000.0).items[0].model == "strong"


def test_fit_recovers_a_known_curve_and_handles_flat_curves(caplog: pytest.LogCaptureFixture) -> None:
    truth = UtilityCurve(0.8, 1 / 150, 200.0)
    budgets = np.array([100, 200, 300, 400, 600, 800, 1200, 1600, 2400], dtype=float)
    fit = fit_utility(budgets, truth.value(budgets), name="cluster 1 / m")
    assert fit.rmse < 1e-3
    assert fit.a == pytest.approx(0.8, abs=0.02)
    assert fit.tau == pytest.approx(200.0, abs=20.0)
    with caplog.at_level(logging.WARNING):
        flat = fit_utility(budgets, np.full(len(budgets), 0.62), name="cluster 7 / m")
    assert flat.flat
    assert "cluster 7 / m: accuracy is flat" in caplog.text
    assert flat.a == pytest.approx(0.62)
    assert float(flat.value(budgets[0])) > 0.6  # saturated at the smallest budget
    zero = fit_utility(budgets, np.zeros(len(budgets)), name="z")
    assert allocate([BudgetItem("z", 1.0, (Option("m", zero),))], 1000.0).items[0].abandoned
    with pytest.raises(UtilityFitError, match=">= 3 distinct"):
        fit_utility([100, 200], [0.1, 0.2], name="c")
    with pytest.raises(UtilityFitError, match=r"within \[0, 1\]"):
        fit_utility([100, 200, 300], [0.1, 0.2, 1.5], name="c")
    with pytest.raises(UtilityFitError, match="finite"):
        fit_utility([100, 200, 300], [0.1, float("nan"), 0.3], name="c")
