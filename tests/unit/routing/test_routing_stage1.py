"""Stage 1 routing: the paper's AIME example, Pareto/crossover edge cases, budgets, shrinkage, bad input."""

from __future__ import annotations

import itertools
import logging
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quartermaster.routing.errors import BudgetError, EvalTableError
from quartermaster.routing.evaluation import load_eval_table
from quartermaster.routing.stage1 import (
    RoutingTable,
    Stage1Instance,
    assign,
    evaluate,
    instance_from_table,
    lower_hull,
    pareto_front,
    regions,
    solve,
)

VIBE, QWEN = "VibeThinker-1.5B", "Qwen3-30B-A3B-Thinking"
SIZES = np.array([194.0, 405.0, 322.0])
ERRORS = np.array([[0.130, 0.063], [0.083, 0.031], [0.182, 0.083]])


def _aime() -> Stage1Instance:
    return Stage1Instance(("c1", "c2", "c3"), (VIBE, QWEN), ERRORS, np.array([[9.2, 24.7]] * 3), SIZES)


def test_aime_example_reproduces_the_paper() -> None:
    table = solve(_aime(), budget=20.0)
    crossings = sorted(x for c in table.clusters for x in c.crossovers)
    np.testing.assert_allclose(crossings, [0.052, 0.067, 0.099], atol=1e-9)
    assert table.lambda_range[0] == pytest.approx(0.052)
    assert table.lambda_range[1] == pytest.approx(0.067)
    assert table.lambda_star == pytest.approx(0.06, abs=0.001)
    assert round(table.regions[0].accuracy, 3) == 0.944  # all clusters on Qwen: 94.4 %
    assert table.regions[0].cost == pytest.approx(24.7)
    assert round(table.accuracy, 3) == 0.921  # 92.1 % after routing
    # The paper reports 18.4 ms from per-cluster measured TPOT; with the rounded pool means it is 17.9 ms.
    assert table.cost <= 20.0
    assert table.cost == pytest.approx(18.4, rel=0.03)
    assert table.choice("c2").models == {VIBE: 1.0}
    assert table.choice("c1").models == {QWEN: 1.0}
    assert table.choice("c2").ladder == (VIBE, QWEN)
    assert RoutingTable.from_json(table.to_json()) == table


def test_aime_from_a_long_format_csv(tmp_path: Path) -> None:
    rows: dict[str, list[object]] = {k: [] for k in ("query_id", "model", "correct", "tpot", "cluster_id")}
    q = 0
    for c, n in enumerate(SIZES.astype(int)):
        for i in range(n):
            for j, model in enumerate((VIBE, QWEN)):
                rows["query_id"].append(f"q{q}")
                rows["model"].append(model)
                rows["correct"].append(int(i >= round(ERRORS[c, j] * n)))
                rows["tpot"].append((9.2, 24.7)[j])
                rows["cluster_id"].append(c + 1)
            q += 1
    path = tmp_path / "aime.csv"
    pacsv.write_csv(pa.table(rows), path)
    table = load_eval_table(path, cost="tpot")
    inst = instance_from_table(table, prior_strength=0.0)
    np.testing.assert_allclose(inst.error, ERRORS, atol=0.003)
    result = solve(inst, 20.0)
    assert [c.models for c in result.clusters] == [{QWEN: 1.0}, {VIBE: 1.0}, {QWEN: 1.0}]
    acc, cost = evaluate(result, table)
    assert acc == pytest.approx(result.accuracy)
    assert cost == pytest.approx(result.cost)


def test_mixing_spends_the_budget_exactly_and_beats_pure_routing() -> None:
    pure = solve(_aime(), 20.0)
    mixed = solve(_aime(), 20.0, mix=True)
    assert mixed.mixed
    assert mixed.cost == pytest.approx(20.0)
    assert mixed.accuracy > pure.accuracy
    assert sum(mixed.choice("c2").models.values()) == pytest.approx(1.0)


def test_pareto_ties_single_model_and_dominated() -> None:
    cost = np.array([1.0, 1.0, 2.0, 3.0, 3.0])
    error = np.array([0.3, 0.3, 0.3, 0.1, 0.1])
    # Exact duplicate keeps the first; equal error at higher cost and the equal-cost twin are dominated.
    assert pareto_front(cost, error) == [0, 3]
    assert pareto_front(np.array([5.0]), np.array([0.2])) == [0]
    # Equal cost, different error: the lower error wins.
    assert pareto_front(np.array([1.0, 1.0]), np.array([0.4, 0.2])) == [1]
    # A collinear middle model is on the front but never the unique argmin: not on the hull.
    c3, e3 = np.array([0.0, 0.5, 1.0]), np.array([0.3, 0.2, 0.1])
    assert pareto_front(c3, e3) == [0, 1, 2]
    assert lower_hull(c3, e3, [0, 1, 2]) == [0, 2]


def test_single_model_and_dominated_model_routing() -> None:
    single = Stage1Instance(
        ("a", "b"), ("m",), np.array([[0.2], [0.4]]), np.array([[1.0], [1.0]]), np.ones(2)
    )
    t = solve(single, 1.0)
    assert len(t.regions) == 1
    assert math.isfinite(t.lambda_star)
    assert [c.models for c in t.clusters] == [{"m": 1.0}, {"m": 1.0}]
    # "bad" costs more and errs more than "good" in every cluster: never routed, never on a ladder.
    dom = Stage1Instance(
        ("a", "b"),
        ("cheap", "bad", "good"),
        np.array([[0.3, 0.25, 0.1], [0.2, 0.5, 0.15]]),
        np.array([[1.0, 5.0, 4.0], [1.0, 5.0, 4.0]]),
        np.array([1.0, 3.0]),
    )
    for budget in (1.0, 2.0, 3.0, 4.0, 10.0):
        t = solve(dom, budget)
        assert all("bad" not in c.models and "bad" not in c.ladder for c in t.clusters)
        assert t.cost <= budget + 1e-9


def test_tie_in_score_goes_to_the_cheaper_model() -> None:
    inst = Stage1Instance(
        ("a",), ("cheap", "dear"), np.array([[0.2, 0.1]]), np.array([[0.0, 1.0]]), np.ones(1)
    )
    assert assign(inst, 0.1) == [0]  # 0.2 + 0 == 0.1 + 0.1
    assert assign(inst, 0.0999) == [1]


def test_budget_below_cheapest_route(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        t = solve(_aime(), 5.0)
    assert not t.budget_met
    assert "below the cheapest" in caplog.text
    assert all(c.models == {VIBE: 1.0} for c in t.clusters)
    with pytest.raises(BudgetError, match=r"at least 9\.2"):
        solve(_aime(), 5.0, strict=True)
    with pytest.raises(BudgetError, match="budget"):
        solve(_aime(), float("nan"))


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    n_c=st.integers(1, 4),
    n_m=st.integers(1, 4),
)
def test_lambda_star_is_the_best_lambda_routing_within_budget(
    data: st.DataObject, n_c: int, n_m: int
) -> None:
    err = np.array(data.draw(st.lists(st.floats(0, 1), min_size=n_c * n_m, max_size=n_c * n_m))).reshape(
        n_c, n_m
    )
    cost_m = np.array(data.draw(st.lists(st.floats(0.1, 10), min_size=n_m, max_size=n_m)))
    w = np.array(data.draw(st.lists(st.floats(1, 100), min_size=n_c, max_size=n_c)))
    inst = Stage1Instance(
        tuple(f"c{i}" for i in range(n_c)),
        tuple(f"m{j}" for j in range(n_m)),
        err,
        np.tile(cost_m, (n_c, 1)),
        w,
    )
    regs = regions(inst)
    assert all(
        a.cost >= b.cost - 1e-9 and a.accuracy >= b.accuracy - 1e-9 for a, b in itertools.pairwise(regs)
    )
    budget = data.draw(st.floats(regs[-1].cost, regs[0].cost + 1.0))
    t = solve(inst, budget)
    assert t.budget_met
    assert t.cost <= budget + 1e-9
    ww = w / w.sum()
    for lam in np.linspace(0, 5, 101):
        a = assign(inst, float(lam))
        cost = float(np.dot(ww, inst.cost[np.arange(n_c), a]))
        acc = float(np.dot(ww, 1 - err[np.arange(n_c), a]))
        if cost <= budget:
            assert acc <= t.accuracy + 1e-9
    mixed = solve(inst, budget, mix=True)
    assert mixed.cost <= budget + 1e-9
    assert mixed.accuracy >= t.accuracy - 1e-12


def test_shrinkage_pulls_small_clusters_to_the_pool(tmp_path: Path) -> None:
    rows: dict[str, list[object]] = {
        k: [] for k in ("query_id", "model", "correct", "cost_usd", "cluster_id")
    }
    rng = np.random.default_rng(0)
    sizes = {"big1": 300, "big2": 300, "tiny": 3}
    q = 0
    for cid, n in sizes.items():
        for _ in range(n):
            for model, p in (("a", 0.7 if cid != "big2" else 0.5), ("b", 0.9)):
                rows["query_id"].append(q)
                rows["model"].append(model)
                rows["correct"].append(int(cid == "tiny" or rng.random() < p))
                rows["cost_usd"].append(0.01 if model == "a" else 0.1)
                rows["cluster_id"].append(cid)
            q += 1
    path = tmp_path / "e.csv"
    pacsv.write_csv(pa.table(rows), path)
    table = load_eval_table(path, cost="usd")
    raw = instance_from_table(table, prior_strength=0.0)
    shrunk = instance_from_table(table, prior_strength="auto")
    tiny = table.cluster_ids.index("tiny")
    assert raw.error[tiny, 0] == 0.0
    assert shrunk.error[tiny, 0] > 0.1  # 3 perfect labels are not trusted
    big = table.cluster_ids.index("big1")
    assert abs(shrunk.error[big, 0] - raw.error[big, 0]) < 0.05


def test_bad_eval_tables(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "bad.csv"
    pacsv.write_csv(
        pa.table({"query_id": [1, 1], "model": ["a", "b"], "correct": [0.5, 1.0], "tpot": [1.0, 2.0]}), path
    )
    with pytest.raises(EvalTableError, match=r"model a: label 0.5 .* not 0/1"):
        load_eval_table(path)
    pacsv.write_csv(pa.table({"query_id": [1], "model": ["a"], "correct": [1]}), path)
    with pytest.raises(EvalTableError, match="tpot"):
        load_eval_table(path)
    with pytest.raises(EvalTableError, match="cost_usd"):
        load_eval_table(path, cost="usd")
    pacsv.write_csv(pa.table({"query_id": [1], "correct": [1]}), path)
    with pytest.raises(EvalTableError, match="column 'model'"):
        load_eval_table(path)
    with pytest.raises(EvalTableError, match="does not exist"):
        load_eval_table(tmp_path / "nope.csv")
    # A model evaluated in one cluster only: the other cluster gets its pooled error, with a warning.
    pacsv.write_csv(
        pa.table(
            {
                "query_id": [1, 1, 2],
                "model": ["a", "b", "a"],
                "correct": [1, 0, 1],
                "tpot": [1.0, 2.0, 1.0],
                "cluster_id": ["x", "x", "y"],
            }
        ),
        path,
    )
    table = load_eval_table(path)
    with caplog.at_level(logging.WARNING):
        inst = instance_from_table(table, prior_strength=0.0)
    assert "cluster y has no labels for model b" in caplog.text
    assert np.all(np.isfinite(inst.error))
    with pytest.raises(EvalTableError, match="no clusters"):
        instance_from_table(table.with_clusters([0, 0]).__class__(**{**table.__dict__, "cluster": None}))
