"""CLEAR on synthetic query streams, and sample allocation on real per-problem pass rates.

Synthetic streams: each query has a shifted-surge utility (a ~ U(0.6, 1), 1/beta ~ U(50, 300) tokens) and an
emergence threshold ``tau`` in [0, 2000] tokens drawn per stream: Balanced U(0, 1); MostlyEasy Beta(1, 4);
MostlyHard Beta(4, 1); UShaped Beta(0.4, 0.4) (scaled by 2000). Methods at a mean budget of T tokens/query:

- Uniform: every query gets T.
- Proportional: tokens proportional to the estimated ``tau`` (harder queries get more), scaled to the budget.
- CLEAR (per query): shadow-price allocation on *estimated* parameters (tau, a, beta with 20-25 % noise).
- CLEAR (per cluster): Quartermaster's mode. Queries are grouped into 20 clusters by estimated difficulty;
  each cluster's curve is fitted (:func:`fit_utility`) to its mean accuracy measured at 8 budgets; all
  queries of a cluster get the cluster's max_tokens.
- Oracle: CLEAR on the true parameters.

Reported: expected accuracy (mean true utility), ratio to Uniform, share of queries abandoned.

Reasoning pass rates (GSM8K, 7 open 7B models, 10 samples per problem): allocate samples per problem under a
total of S samples x problems; success of n samples = 1 - C(10-k, n)/C(10, n) (drawing n of the 10 graded
samples, exact); greedy on marginal gain (optimal for this concave objective). Per problem (oracle pass rate),
per cluster (k-means on TF-IDF of the question, per-cluster curve estimated on gsm8k-train, applied to
gsm8k-test), vs uniform.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from benchmarks.routing.data import PassRates, text_embeddings

from quartermaster.routing.budget import BudgetItem, Option, allocate
from quartermaster.routing.evaluation import kmeans_clusters
from quartermaster.routing.utility import UtilityCurve, fit_utility

FloatArray = npt.NDArray[np.float64]
STREAMS = {"Balanced": (1.0, 1.0), "MostlyEasy": (1.0, 4.0), "MostlyHard": (4.0, 1.0), "UShaped": (0.4, 0.4)}
TAU_MAX = 2000.0


@dataclass(frozen=True)
class Stream:
    a: FloatArray
    beta: FloatArray
    tau: FloatArray
    a_hat: FloatArray
    beta_hat: FloatArray
    tau_hat: FloatArray


def make_stream(kind: str, n: int, seed: int) -> Stream:
    rng = np.random.default_rng(seed)
    p, q = STREAMS[kind]
    tau = TAU_MAX * rng.beta(p, q, n)
    a = rng.uniform(0.6, 1.0, n)
    beta = 1.0 / rng.uniform(50.0, 300.0, n)
    return Stream(
        a,
        beta,
        tau,
        np.clip(a * rng.lognormal(0, 0.1, n), 0.01, 1.0),
        beta * rng.lognormal(0, 0.2, n),
        tau * rng.lognormal(0, 0.25, n),
    )


def utility(s: Stream, tokens: FloatArray) -> FloatArray:
    x = np.maximum(tokens - s.tau, 0.0) * s.beta
    out: FloatArray = s.a * (1.0 - (1.0 + x) * np.exp(-x))
    return out


def _items(a: FloatArray, beta: FloatArray, tau: FloatArray, w: FloatArray | None = None) -> list[BudgetItem]:
    ww = np.ones(len(a)) if w is None else w
    return [
        BudgetItem(
            str(i), float(ww[i]), (Option("m", UtilityCurve(float(a[i]), float(beta[i]), float(tau[i]))),)
        )
        for i in range(len(a))
    ]


def per_query_clear(
    a: FloatArray, beta: FloatArray, tau: FloatArray, budget: float
) -> tuple[FloatArray, float]:
    res = allocate(_items(a, beta, tau), budget, exact_max_items=0)
    return np.array([it.tokens for it in res.items]), res.abandoned_share


def per_cluster_clear(s: Stream, per_query: float, k: int = 20) -> tuple[FloatArray, float]:
    edges = np.quantile(s.tau_hat, np.linspace(0, 1, k + 1))
    cl = np.clip(np.searchsorted(edges, s.tau_hat, side="right") - 1, 0, k - 1)
    grid = np.array([50, 100, 200, 400, 800, 1400, 2200, 3200], dtype=float)
    items = []
    for c in range(k):
        m = cl == c
        if not m.any():
            continue
        acc = np.array([utility(_subset(s, m), np.full(int(m.sum()), b)).mean() for b in grid])
        curve = fit_utility(grid, np.clip(acc, 0, 1), name=f"cluster {c}")
        items.append(BudgetItem(str(c), float(m.sum()), (Option("m", curve),)))
    res = allocate(items, per_query * len(s.a), exact_max_items=0)
    tok = {it.name: it.tokens for it in res.items}
    return np.array([tok[str(c)] for c in cl]), res.abandoned_share


def _subset(s: Stream, m: npt.NDArray[np.bool_]) -> Stream:
    return Stream(s.a[m], s.beta[m], s.tau[m], s.a_hat[m], s.beta_hat[m], s.tau_hat[m])


@dataclass(frozen=True)
class ClearRow:
    stream: str
    tokens: float
    method: str
    accuracy: float
    abandoned: float


def run_streams(n: int, budgets: list[float], seed: int) -> list[ClearRow]:
    rows: list[ClearRow] = []
    for kind in STREAMS:
        s = make_stream(kind, n, seed)
        for t in budgets:
            total = t * n
            rows.append(ClearRow(kind, t, "Uniform", float(utility(s, np.full(n, t)).mean()), 0.0))
            prop = s.tau_hat / s.tau_hat.sum() * total
            rows.append(ClearRow(kind, t, "Proportional", float(utility(s, prop).mean()), 0.0))
            tok, ab = per_query_clear(s.a_hat, s.beta_hat, s.tau_hat, total)
            rows.append(ClearRow(kind, t, "CLEAR (per query, estimated)", float(utility(s, tok).mean()), ab))
            tok, ab = per_cluster_clear(s, t)
            rows.append(ClearRow(kind, t, "CLEAR (per cluster, fitted)", float(utility(s, tok).mean()), ab))
            tok, ab = per_query_clear(s.a, s.beta, s.tau, total)
            rows.append(ClearRow(kind, t, "Oracle (CLEAR, true params)", float(utility(s, tok).mean()), ab))
    return rows


def success_table(successes: npt.NDArray[np.int64], n_pool: int) -> FloatArray:
    """P(some of n draws without replacement from the pool is correct), n = 0..n_pool: (items, n+1)."""
    out = np.zeros((len(successes), n_pool + 1))
    for n in range(1, n_pool + 1):
        fail = np.array([math.comb(n_pool - k, n) / math.comb(n_pool, n) for k in successes])
        out[:, n] = 1.0 - fail
    return out


def greedy_samples(curves: FloatArray, weights: FloatArray, total: int) -> npt.NDArray[np.int64]:
    """Samples per item maximising sum w_i curve_i(n_i) s.t. sum w_i n_i <= total (greedy on gain)."""
    n = np.zeros(len(curves), dtype=np.int64)
    cap = curves.shape[1] - 1
    heap = [(-(curves[i, 1] - curves[i, 0]), i) for i in range(len(curves))]
    heapq.heapify(heap)
    left = float(total)
    while heap and left > 0:
        gain, i = heapq.heappop(heap)
        if -gain <= 0 or weights[i] > left + 1e-9:
            continue
        n[i] += 1
        left -= weights[i]
        if n[i] < cap:
            heapq.heappush(heap, (-(curves[i, n[i] + 1] - curves[i, n[i]]), i))
    return n


@dataclass(frozen=True)
class SampleRow:
    model: str
    samples: float
    method: str
    accuracy: float
    zero_share: float


def run_samples(pr: PassRates, budgets: list[float], models: list[str], k: int, seed: int) -> list[SampleRow]:
    train = np.flatnonzero(pr.dataset == "gsm8k-train")
    test = np.flatnonzero(pr.dataset == "gsm8k-test")
    emb = text_embeddings(pr.questions, train, seed=seed)
    cl = kmeans_clusters(emb, k, random_state=seed)
    rows: list[SampleRow] = []
    for model in models:
        j = pr.models.index(model)
        truth = success_table(pr.successes[test, j], pr.n_samples)
        est = success_table(pr.successes[train, j], pr.n_samples)
        cluster_curve = np.stack(
            [
                est[cl[train] == c].mean(axis=0) if (cl[train] == c).any() else est.mean(axis=0)
                for c in range(k)
            ]
        )
        n_test = len(test)
        sizes = np.bincount(cl[test], minlength=k).astype(float)
        for s in budgets:
            total = round(s * n_test)
            base, extra = divmod(total, n_test)
            uni = np.full(n_test, base)
            uni[:extra] += 1
            uni = np.minimum(uni, pr.n_samples)
            rows.append(SampleRow(model, s, "Uniform", float(truth[np.arange(n_test), uni].mean()), 0.0))
            per = greedy_samples(truth, np.ones(n_test), total)
            rows.append(
                SampleRow(
                    model,
                    s,
                    "Per problem (oracle pass rate)",
                    float(truth[np.arange(n_test), per].mean()),
                    float((per == 0).mean()),
                )
            )
            nc = greedy_samples(cluster_curve, np.maximum(sizes, 1e-9), total)
            alloc = nc[cl[test]]
            rows.append(
                SampleRow(
                    model,
                    s,
                    f"Per cluster (k={k}, curves from train)",
                    float(truth[np.arange(n_test), alloc].mean()),
                    float((alloc == 0).mean()),
                )
            )
    return rows
