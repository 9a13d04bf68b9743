"""Accuracy vs cost of baselines, Stage 1 and Stage 1 + cascade on real per-query correctness data.

Protocol per dataset: Stage 1 (per-cluster errors, lambda*) and the question-only quality estimators are
fitted on the train split; the budget and the escalation threshold are chosen on the validation split for a
target of 98% of the strongest model's validation accuracy; everything is reported on the held-out test split.
Costs are USD per query. ``frontier`` curves sweep budgets/thresholds on the test split (an optimistic
envelope, labelled as such).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from benchmarks.routing.data import TextEval, text_embeddings

from quartermaster.routing.cascade import calibrate_threshold, simulate_cascade
from quartermaster.routing.evaluation import EvalTable, kmeans_clusters
from quartermaster.routing.quality import HeuristicEstimator, TrainedEstimator, score_all
from quartermaster.routing.stage1 import RoutingTable, evaluate, instance_from_table, solve

log = logging.getLogger(__name__)
IntArray = npt.NDArray[np.int64]
TARGET = 0.98


@dataclass(frozen=True)
class Row:
    method: str
    accuracy: float
    cost: float
    escalation: float | None = None


@dataclass
class Outcome:
    name: str
    strongest: str
    strong_acc: float
    strong_cost: float
    rows: list[Row]
    curves: dict[str, list[tuple[float, float]]]
    n_test: int
    notes: list[str]


def split(n: int, seed: int, val: float = 0.2, test: float = 0.3) -> tuple[IntArray, IntArray, IntArray]:
    perm = np.random.default_rng(seed).permutation(n)
    a, b = int(n * (1 - val - test)), int(n * (1 - test))
    return np.sort(perm[:a]), np.sort(perm[a:b]), np.sort(perm[b:])


def _mean(table: EvalTable, rows: IntArray, j: int) -> tuple[float, float]:
    return float(table.correct[rows, j].mean()), float(table.cost[rows, j].mean())


def question_scores(
    te: TextEval, models: list[str], train: IntArray, seed: int
) -> dict[str, npt.NDArray[np.float64]]:
    """P(model correct | question) for every row, one question-only estimator per model (trained on train)."""
    out = {}
    empty = [""] * len(te.texts)
    ones = np.ones(len(te.texts))
    for m in models:
        j = te.table.models.index(m)
        y = te.table.correct[train, j]
        if y.min() == y.max():
            out[m] = np.full(len(te.texts), float(y[0]))
            continue
        est = TrainedEstimator(use_answer_text=False, C=0.5, random_state=seed)
        est.fit([te.texts[i] for i in train], [empty[i] for i in train], ones[train], y)
        out[m] = est.score_many(te.texts, empty, ones)
    return out


def routed_cascade(
    routing: RoutingTable,
    table: EvalTable,
    rows: IntArray,
    scores: dict[str, npt.NDArray[np.float64]],
    t: float,
) -> tuple[float, float, float]:
    """Expected (accuracy, cost, escalation rate) of Stage-1 routing + cascade along each cluster's ladder."""
    assert table.cluster is not None
    acc = cost = esc = 0.0
    for c, cid in enumerate(table.cluster_ids):
        r = rows[table.cluster[rows] == c]
        if len(r) == 0:
            continue
        choice = routing.choice(cid)
        ladder = [table.models.index(m) for m in choice.ladder]
        y, k = table.correct[np.ix_(r, ladder)], table.cost[np.ix_(r, ladder)]
        s = np.stack([scores.get(table.models[j], np.ones(len(table.correct)))[r] for j in ladder], 1)
        for m, share in choice.models.items():
            start = choice.ladder.index(m) if m in choice.ladder else 0
            res = simulate_cascade(y, k, s, t, start=np.full(len(r), start))
            acc += share * res.accuracy * len(r)
            cost += share * res.mean_cost * len(r)
            esc += share * res.escalation_rate * len(r)
    n = len(rows)
    return acc / n, cost / n, esc / n


def run_dataset(te: TextEval, name: str, *, seed: int, k: int | None, budgets: int, quick: bool) -> Outcome:
    table = te.table
    notes: list[str] = []
    if te.split is not None:  # the dataset's own train/test split; validation = 25 % of train
        pool = np.flatnonzero(te.split == "train")
        test = np.flatnonzero(te.split == "test")
        perm = np.random.default_rng(seed).permutation(pool)
        cut = int(0.75 * len(pool))
        train, val = np.sort(perm[:cut]), np.sort(perm[cut:])
    else:
        train, val, test = split(len(te.texts), seed)
    if k is not None:
        emb = text_embeddings(te.texts, train, seed=seed)
        table = table.with_clusters(kmeans_clusters(emb, k, random_state=seed))
        notes.append(
            f"clusters: k-means (k={k}) on TF-IDF+SVD(64) prompt embeddings fitted on the train split"
        )
    else:
        notes.append(f"clusters: the {len(table.cluster_ids)} categorical groups of the data (MMLU subject)")
    inst = instance_from_table(table.subset(train), prior_strength="auto")
    j_strong = int(np.argmax(1 - inst.error.T @ inst.weight / inst.weight.sum()))
    strongest = table.models[j_strong]
    s_acc, s_cost = _mean(table, test, j_strong)
    v_acc, _ = _mean(table, val, j_strong)
    target = TARGET * v_acc
    rows = [Row(f"always {m}", *_mean(table, test, j)) for j, m in enumerate(table.models)]
    oracle_ok = table.correct[test].max(axis=1)
    # Oracle: cheapest correct model, else the cheapest model.
    cheapest = np.argmin(np.where(table.correct[test] == 1, table.cost[test], np.inf), axis=1)
    none = oracle_ok == 0
    cheapest[none] = np.argmin(table.cost[test][none], axis=1)
    rows.append(
        Row(
            "oracle (cheapest correct model)",
            float(oracle_ok.mean()),
            float(table.cost[test, cheapest].mean()),
        )
    )
    lo, hi = float(inst.cost.min(axis=1).mean()), float(inst.cost.max(axis=1).mean())
    grid = np.linspace(lo, hi * 1.001, budgets)
    curves: dict[str, list[tuple[float, float]]] = {"Stage 1": [], "Stage 1 (mix)": []}
    routings = {}
    for b in grid:
        for mix, key in ((False, "Stage 1"), (True, "Stage 1 (mix)")):
            r = solve(inst, float(b), mix=mix)
            routings[(float(b), mix)] = r
            a, c = evaluate(r, table.subset(test))
            curves[key].append((c, a))
    # Stage 1 alone: the cheapest budget whose validation accuracy meets the target.
    val_t = table.subset(val)
    chosen = None
    for b in grid:
        r = routings[(float(b), True)]
        if evaluate(r, val_t)[0] >= target:
            chosen = r
            break
    chosen = chosen or routings[(float(grid[-1]), True)]
    a, c = evaluate(chosen, table.subset(test))
    rows.append(Row("Stage 1 (budget picked on val for 98%)", a, c))
    b60 = 0.6 * float(inst.cost[:, j_strong] @ inst.weight / inst.weight.sum())
    for mix in (False, True):
        r = solve(inst, b60, mix=mix)
        a, c = evaluate(r, table.subset(test))
        rows.append(Row(f"Stage 1 at 60% of strongest cost{' (mix)' if mix else ''}", a, c))
    # Random mix of the cheapest and the strongest model at the Stage-1 (val-picked) cost.
    j_cheap = int(np.argmin(inst.cost.mean(axis=0)))
    ca, cc = _mean(table, test, j_cheap)
    theta = min(max((c - cc) / max(s_cost - cc, 1e-15), 0.0), 1.0)
    rows.append(
        Row(
            "random mix cheapest/strongest at the cost of Stage 1 @60% (mix)",
            ca + theta * (s_acc - ca),
            cc + theta * (s_cost - cc),
        )
    )
    # Stage 1 + cascade with question-only estimators (the data has no answer texts).
    ladder_models = sorted({m for r in routings.values() for ch in r.clusters for m in ch.ladder})
    scores = question_scores(te, ladder_models, train, seed)
    thresholds = np.linspace(0.0, 1.0, 26 if quick else 51)
    best = None
    for b in grid[:: max(1, len(grid) // (6 if quick else 12))]:
        r = routings[(float(b), True)]
        for t in thresholds:
            va, vc, _ = routed_cascade(r, table, val, scores, float(t))
            if va >= target and (best is None or vc < best[0]):
                best = (vc, r, float(t))
    if best is None:
        notes.append("Stage 1 + cascade: no (budget, threshold) met the 98% target on validation")
        best = (0.0, routings[(float(grid[-1]), True)], 0.0)
    a, c, e = routed_cascade(best[1], table, test, scores, best[2])
    rows.append(Row(f"Stage 1 + cascade (budget, threshold={best[2]:.2f} picked on val)", a, c, e))
    cheapest_routing = routings[(float(grid[0]), False)]
    curves["cascade from cheapest route (frontier)"] = [
        routed_cascade(cheapest_routing, table, test, scores, float(t))[1::-1] for t in thresholds
    ]
    r60 = solve(inst, b60, mix=True)
    curves["Stage 1 @60% + cascade (frontier)"] = [
        routed_cascade(r60, table, test, scores, float(t))[1::-1] for t in thresholds
    ]
    return Outcome(name, strongest, s_acc, s_cost, rows, curves, len(test), notes)


@dataclass
class CascadeOutcome:
    rows: list[tuple[str, float, float, float, float, float]]  # method, acc, acc sd, cost, esc, met share
    strong_acc: float
    strong_cost: float
    weak_acc: float
    weak_cost: float
    curves: dict[str, list[tuple[float, float]]]
    repeats: int


def gsm8k_cascade(te: TextEval, *, repeats: int, seed: int) -> CascadeOutcome:
    """Answer-aware cascade Mixtral -> GPT-4 on GSM8K: the estimator sees Mixtral's answer (60/20/20)."""
    t = te.table
    weak_ans = te.answers["mixtral-8x7b"]
    wtok = np.array([max(len(a) / 4.0, 1.0) for a in weak_ans])
    methods = {
        "trained (question + answer text + answer features)": lambda: TrainedEstimator(
            C=0.5, random_state=seed
        ),
        "trained (question text + answer features)": lambda: TrainedEstimator(
            C=0.5, use_answer_text=False, random_state=seed
        ),
        "heuristic (answer features, no training)": None,
    }
    acc: dict[str, list[tuple[float, float, float, bool]]] = {m: [] for m in methods}
    curves: dict[str, list[tuple[float, float]]] = {}
    for rep in range(repeats):
        train, val, test = split(len(te.texts), seed + rep)
        for name, make in methods.items():
            if make is None:
                est = HeuristicEstimator()
                s = score_all(est, te.texts, weak_ans, wtok)
            else:
                qe = make()
                q_tr = [te.texts[i] for i in train]
                a_tr = [weak_ans[i] for i in train]
                qe.fit(q_tr, a_tr, wtok[train], t.correct[train, 0])
                s = qe.score_many(te.texts, weak_ans, wtok)
            ch = calibrate_threshold(s[val], t.correct[val, 0], t.correct[val, 1], target_relative=TARGET)
            y = np.c_[t.correct[test, 0], t.correct[test, 1]]
            k = np.c_[t.cost[test, 0], t.cost[test, 1]]
            res = simulate_cascade(y, k, np.c_[s[test], np.ones(len(test))], ch.threshold)
            acc[name].append((res.accuracy, res.mean_cost, res.escalation_rate, ch.met))
            if rep == 0:
                curves[name] = [
                    (r.mean_cost, r.accuracy)
                    for r in (
                        simulate_cascade(y, k, np.c_[s[test], np.ones(len(test))], th)
                        for th in np.linspace(0, 1, 101)
                    )
                ]
    rows = []
    for name, vals in acc.items():
        arr = np.array([v[:3] for v in vals])
        rows.append(
            (
                name,
                float(arr[:, 0].mean()),
                float(arr[:, 0].std()),
                float(arr[:, 1].mean()),
                float(arr[:, 2].mean()),
                float(np.mean([v[3] for v in vals])),
            )
        )
    return CascadeOutcome(
        rows,
        float(t.correct[:, 1].mean()),
        float(t.cost[:, 1].mean()),
        float(t.correct[:, 0].mean()),
        float(t.cost[:, 0].mean()),
        curves,
        repeats,
    )
