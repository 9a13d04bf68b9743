"""Stage 1 of Cluster-Route-Escalate: route each query cluster to its most cost-effective model.

Formulation (arXiv 2606.27457, generalised to per-cluster costs): clusters ``c`` with sizes ``w_c``, models
``m`` with error ``E(m,c)`` and cost per request ``C(m,c)`` (TPOT or USD).
``Cost_norm = (C - min)/(max - min)`` over the pool's mean model costs. For a price ``lambda >= 0``
cluster ``c`` goes to
``argmin_m E(m,c) + lambda * Cost_norm(m,c)`` (ties: the cheaper model). Dominated models (another is no more
costly and no less wrong, one strictly) are pruned per cluster first. On each cluster's lower convex hull,
consecutive models ``a`` (cheaper) and ``b`` switch at the crossover ``(E_a - E_b)/(Cn_b - Cn_a)``; all
crossovers split ``[0, inf)`` into regions ``[lo, hi)`` of constant routing, whose size-weighted accuracy and
cost fall as ``lambda`` grows. ``lambda*`` is the region with the highest accuracy whose cost is within the
budget ``B`` (reported as the region's midpoint). With ``mix=True`` the clusters that change at the region's
lower edge split traffic between the two routings so the expected cost equals ``B`` exactly (the LP optimum of
the budgeted routing; weights go to the router ConfigMap).

Per-cluster errors are shrunk toward the model's pooled error (beta-binomial empirical Bayes):
``E = (k + kappa * p_m) / (n + kappa)``, with ``kappa`` given or estimated by the method of moments.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from quartermaster.routing.errors import BudgetError, EvalTableError
from quartermaster.routing.evaluation import EvalTable

log = logging.getLogger(__name__)
FloatArray = npt.NDArray[np.float64]
_EPS = 1e-12


@dataclass(frozen=True)
class Stage1Instance:
    """Per-cluster errors and costs. ``error``/``cost``/``n_labels`` are ``(clusters, models)``."""

    clusters: tuple[str, ...]
    models: tuple[str, ...]
    error: FloatArray
    cost: FloatArray
    weight: FloatArray
    n_labels: FloatArray | None = None
    cost_kind: str = "tpot"

    def __post_init__(self) -> None:
        shape = (len(self.clusters), len(self.models))
        if not self.clusters or not self.models:
            raise EvalTableError("a routing instance needs at least one cluster and one model")
        for name in ("error", "cost"):
            arr = getattr(self, name)
            if arr.shape != shape or not np.all(np.isfinite(arr)):
                raise EvalTableError(f"{name} must be a finite matrix of shape {shape}")
        if (self.error < 0).any() or (self.error > 1).any() or (self.cost < 0).any():
            raise EvalTableError("errors must lie in [0, 1] and costs must be >= 0")
        if self.weight.shape != (shape[0],) or (self.weight < 0).any() or self.weight.sum() <= 0:
            raise EvalTableError("cluster weights must be >= 0 with a positive sum, one per cluster")


def shrinkage_strength(k: FloatArray, n: FloatArray) -> float:
    """Method-of-moments beta-binomial prior strength from one model's per-cluster errors ``k`` of ``n``."""
    has = n > 0
    if has.sum() < 2:
        return 0.0
    p = float(k[has].sum() / n[has].sum())
    if p <= 0.0 or p >= 1.0:
        return 0.0
    rates = k[has] / n[has]
    between = float(np.var(rates, ddof=1)) - float(np.mean(p * (1 - p) / n[has]))
    if between <= _EPS:
        return 1e4
    return float(np.clip(p * (1 - p) / between - 1.0, 0.0, 1e4))


def instance_from_table(
    table: EvalTable,
    *,
    prior_strength: float | Literal["auto"] = "auto",
    cost_scope: Literal["model", "cluster"] | None = None,
) -> Stage1Instance:
    """Aggregate an evaluation table into per-cluster shrunk errors and costs.

    ``cost_scope`` ``"model"`` uses each model's pooled mean cost (the paper's mean TPOT), ``"cluster"`` the
    mean within the cluster; default: model for TPOT, cluster for USD. A (cluster, model) pair without labels
    gets the model's pooled error with a warning.
    """
    if table.cluster is None:
        raise EvalTableError("the evaluation table has no clusters; give cluster_id, representatives or --k")
    scope = cost_scope or ("model" if table.cost_kind == "tpot" else "cluster")
    n_c, n_m = len(table.cluster_ids), len(table.models)
    wrong = np.where(np.isnan(table.correct), 0.0, 1.0 - table.correct)
    labelled = (~np.isnan(table.correct)).astype(np.float64)
    k = np.zeros((n_c, n_m))
    n = np.zeros((n_c, n_m))
    np.add.at(k, table.cluster, wrong)
    np.add.at(n, table.cluster, labelled)
    error = np.zeros((n_c, n_m))
    for j, model in enumerate(table.models):
        pooled = k[:, j].sum() / n[:, j].sum()
        kappa = shrinkage_strength(k[:, j], n[:, j]) if prior_strength == "auto" else float(prior_strength)
        if kappa < 0:
            raise EvalTableError(f"prior_strength={kappa} must be >= 0 (0 = no shrinkage)")
        for c in np.flatnonzero(n[:, j] == 0):
            log.warning(
                "cluster %s has no labels for model %s; using its pooled error %.3f",
                table.cluster_ids[c],
                model,
                pooled,
            )
        denom = n[:, j] + kappa
        error[:, j] = np.where(denom > 0, (k[:, j] + kappa * pooled) / np.maximum(denom, _EPS), pooled)
    model_cost = np.nanmean(table.cost, axis=0)
    if np.isnan(model_cost).any():
        bad = [table.models[j] for j in np.flatnonzero(np.isnan(model_cost))]
        raise EvalTableError(f"models {bad} have no cost values; fill the cost column")
    if scope == "model":
        cost = np.tile(model_cost, (n_c, 1))
    else:
        total = np.zeros((n_c, n_m))
        cnt = np.zeros((n_c, n_m))
        has = ~np.isnan(table.cost)
        np.add.at(total, table.cluster, np.where(has, table.cost, 0.0))
        np.add.at(cnt, table.cluster, has.astype(np.float64))
        cost = np.where(cnt > 0, total / np.maximum(cnt, 1.0), model_cost[None, :])
    weight = np.bincount(table.cluster, minlength=n_c).astype(np.float64)
    return Stage1Instance(table.cluster_ids, table.models, error, cost, weight, n, table.cost_kind)


def pareto_front(cost: FloatArray, error: FloatArray) -> list[int]:
    """Non-dominated models, cost ascending (error strictly descending); exact ties keep the first."""
    order = np.lexsort((np.arange(len(cost)), error, cost))
    front: list[int] = []
    best = math.inf
    for j in order:
        if error[j] < best - _EPS:
            front.append(int(j))
            best = float(error[j])
    return front


def lower_hull(cost: FloatArray, error: FloatArray, front: list[int]) -> list[int]:
    """The front models on the lower convex hull (the only ones a linear price can select), cost ascending."""
    hull: list[int] = []
    for j in front:
        while len(hull) >= 2:
            o, a = hull[-2], hull[-1]
            cross = (cost[a] - cost[o]) * (error[j] - error[o]) - (error[a] - error[o]) * (cost[j] - cost[o])
            if cross > _EPS:
                break
            hull.pop()
        hull.append(j)
    return hull


def crossovers(cost_norm: FloatArray, error: FloatArray, hull: list[int]) -> list[float]:
    """Crossover prices between consecutive hull models ``(E_a - E_b)/(Cn_b - Cn_a)``, descending."""
    return [float((error[a] - error[b]) / (cost_norm[b] - cost_norm[a])) for a, b in itertools.pairwise(hull)]


def normalised_cost(instance: Stage1Instance) -> FloatArray:
    """Costs min-max normalised by the pool's mean model costs (only differences matter for crossovers)."""
    pooled = np.average(instance.cost, axis=0, weights=instance.weight)
    lo, span = float(pooled.min()), float(pooled.max() - pooled.min())
    return (instance.cost - lo) / (span if span > _EPS else 1.0)


def assign(instance: Stage1Instance, lam: float, cost_norm: FloatArray | None = None) -> list[int]:
    """Model index per cluster at price ``lam`` (ties: the cheaper model, then the lower index)."""
    cn = normalised_cost(instance) if cost_norm is None else cost_norm
    out: list[int] = []
    for c in range(len(instance.clusters)):
        score = instance.error[c] + lam * cn[c]
        best = float(score.min())
        tied = np.flatnonzero(score <= best + 1e-12)
        out.append(int(tied[np.lexsort((tied, instance.cost[c, tied]))][0]))
    return out


@dataclass(frozen=True)
class Region:
    """A price interval ``[lo, hi)`` of constant routing with its size-weighted accuracy and cost."""

    lo: float
    hi: float
    assignment: tuple[str, ...]
    accuracy: float
    cost: float


@dataclass(frozen=True)
class ClusterChoice:
    """Routing of one cluster: model shares, predictions, Pareto models, crossovers and escalation ladder."""

    cluster: str
    size: float
    models: dict[str, float]
    predicted_accuracy: float
    predicted_cost: float
    pareto: tuple[str, ...]
    crossovers: tuple[float, ...]
    ladder: tuple[str, ...]
    n_labels: float


@dataclass(frozen=True)
class RoutingTable:
    """The Stage-1 result; ``to_json`` writes the ``routing.json`` of ``quartermaster route fit``."""

    models: tuple[str, ...]
    cost_kind: str
    budget: float
    budget_met: bool
    lambda_star: float
    lambda_range: tuple[float, float]
    accuracy: float
    cost: float
    mixed: bool
    clusters: tuple[ClusterChoice, ...]
    regions: tuple[Region, ...]

    def to_json(self) -> str:
        """JSON (infinities written as null)."""
        payload = asdict(self)
        for region in payload["regions"]:
            region["hi"] = None if math.isinf(region["hi"]) else region["hi"]
        payload["lambda_range"] = [
            self.lambda_range[0],
            None if math.isinf(self.lambda_range[1]) else self.lambda_range[1],
        ]
        return json.dumps({"kind": "quartermaster.routing/v1", **payload}, indent=2, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> RoutingTable:
        """Inverse of :meth:`to_json`."""
        raw: dict[str, Any] = json.loads(text)
        if raw.pop("kind", None) != "quartermaster.routing/v1":
            raise EvalTableError(
                "not a routing table (kind quartermaster.routing/v1); run `quartermaster route fit`"
            )
        inf = math.inf
        lo, hi = raw.pop("lambda_range")
        regions = tuple(
            Region(
                r["lo"], inf if r["hi"] is None else r["hi"], tuple(r["assignment"]), r["accuracy"], r["cost"]
            )
            for r in raw.pop("regions")
        )
        clusters = tuple(
            ClusterChoice(
                **{
                    **c,
                    "pareto": tuple(c["pareto"]),
                    "crossovers": tuple(c["crossovers"]),
                    "ladder": tuple(c["ladder"]),
                }
            )
            for c in raw.pop("clusters")
        )
        return cls(
            models=tuple(raw.pop("models")),
            lambda_range=(lo, inf if hi is None else hi),
            clusters=clusters,
            regions=regions,
            **raw,
        )

    def choice(self, cluster: str) -> ClusterChoice:
        """The routing of ``cluster`` (KeyError when absent)."""
        for c in self.clusters:
            if c.cluster == cluster:
                return c
        raise KeyError(cluster)


def regions(instance: Stage1Instance) -> list[Region]:
    """All regions of constant routing, ``lambda`` ascending (cost and accuracy non-increasing)."""
    cn = normalised_cost(instance)
    points: set[float] = set()
    for c in range(len(instance.clusters)):
        front = pareto_front(instance.cost[c], instance.error[c])
        points.update(crossovers(cn[c], instance.error[c], lower_hull(cn[c], instance.error[c], front)))
    edges = [0.0, *sorted(p for p in points if p > 0.0), math.inf]
    w = instance.weight / instance.weight.sum()
    out: list[Region] = []
    for lo, hi in itertools.pairwise(edges):
        a = assign(instance, lo, cn)
        idx = np.arange(len(a))
        acc = float(np.dot(w, 1.0 - instance.error[idx, a]))
        cost = float(np.dot(w, instance.cost[idx, a]))
        out.append(Region(lo, hi, tuple(instance.models[j] for j in a), acc, cost))
    return out


def solve(
    instance: Stage1Instance, budget: float, *, mix: bool = False, strict: bool = False
) -> RoutingTable:
    """Choose ``lambda*`` for ``budget`` (mean cost per request) and build the cluster->model table.

    A budget below the cheapest routing raises :class:`BudgetError` when ``strict``, else logs a warning and
    returns the cheapest routing with ``budget_met=False``.
    """
    if not math.isfinite(budget) or budget < 0:
        raise BudgetError(f"budget={budget} must be a finite number >= 0")
    regs = regions(instance)
    feasible = [i for i, r in enumerate(regs) if r.cost <= budget * (1 + 1e-9) + _EPS]
    if feasible:
        chosen = max(feasible, key=lambda i: (regs[i].accuracy, -regs[i].cost))
    else:
        cheapest = regs[-1].cost
        msg = f"budget={budget:.6g} is below the cheapest routing's cost {cheapest:.6g}"
        if strict:
            raise BudgetError(f"{msg}; raise the budget to at least {cheapest:.6g}")
        log.warning("%s; routing every cluster to its cheapest Pareto model instead", msg)
        chosen = len(regs) - 1
    reg = regs[chosen]
    shares: list[dict[str, float]] = [{m: 1.0} for m in reg.assignment]
    accuracy, cost = reg.accuracy, reg.cost
    mixed = False
    if mix and feasible and chosen > 0 and regs[chosen - 1].cost > budget:
        prev = regs[chosen - 1]
        theta = (budget - reg.cost) / (prev.cost - reg.cost)
        if theta > 1e-9:
            mixed = True
            for c, (a, b) in enumerate(zip(reg.assignment, prev.assignment, strict=True)):
                if a != b:
                    shares[c] = {a: 1.0 - theta, b: theta}
            accuracy = (1 - theta) * reg.accuracy + theta * prev.accuracy
            cost = (1 - theta) * reg.cost + theta * prev.cost
    cn = normalised_cost(instance)
    m_index = {m: j for j, m in enumerate(instance.models)}
    choices = []
    for c, name in enumerate(instance.clusters):
        front = pareto_front(instance.cost[c], instance.error[c])
        hull = lower_hull(cn[c], instance.error[c], front)
        js = [m_index[m] for m in shares[c]]
        sh = list(shares[c].values())
        routed_cost = min(instance.cost[c, j] for j in js)
        choices.append(
            ClusterChoice(
                cluster=name,
                size=float(instance.weight[c]),
                models=shares[c],
                predicted_accuracy=float(
                    sum(s * (1 - instance.error[c, j]) for s, j in zip(sh, js, strict=True))
                ),
                predicted_cost=float(sum(s * instance.cost[c, j] for s, j in zip(sh, js, strict=True))),
                pareto=tuple(instance.models[j] for j in front),
                crossovers=tuple(crossovers(cn[c], instance.error[c], hull)),
                ladder=tuple(instance.models[j] for j in front if instance.cost[c, j] >= routed_cost - _EPS),
                n_labels=float(0 if instance.n_labels is None else instance.n_labels[c].min()),
            )
        )
    lam_star = (reg.lo + reg.hi) / 2 if math.isfinite(reg.hi) else (2 * reg.lo if reg.lo > 0 else 1.0)
    return RoutingTable(
        models=instance.models,
        cost_kind=instance.cost_kind,
        budget=float(budget),
        budget_met=bool(feasible),
        lambda_star=float(lam_star),
        lambda_range=(reg.lo, reg.hi),
        accuracy=float(accuracy),
        cost=float(cost),
        mixed=mixed,
        clusters=tuple(choices),
        regions=tuple(regs),
    )


def evaluate(routing: RoutingTable, table: EvalTable) -> tuple[float, float]:
    """Expected (accuracy, mean cost) of ``routing`` on the labelled queries of ``table`` (e.g. a test split).

    Queries whose routed model has no label are skipped; raises when a cluster of the table is not routed.
    """
    if table.cluster is None:
        raise EvalTableError("the evaluation table has no clusters to route by")
    m_index = {m: j for j, m in enumerate(table.models)}
    share = np.zeros((len(table.cluster_ids), len(table.models)))
    for c, cid in enumerate(table.cluster_ids):
        try:
            choice = routing.choice(cid)
        except KeyError:
            raise EvalTableError(f"cluster {cid} of the table is not in the routing; refit with it") from None
        for m, frac in choice.models.items():
            if m not in m_index:
                raise EvalTableError(f"model {m} of the routing is missing from the table; add its labels")
            share[c, m_index[m]] = frac
    s = share[table.cluster]
    ok = ~np.isnan(np.where(s > 0, table.correct, 0.0)).any(axis=1)
    acc = float(np.sum(s[ok] * np.nan_to_num(table.correct[ok])) / max(ok.sum(), 1))
    cost = float(np.sum(s[ok] * np.nan_to_num(table.cost[ok])) / max(ok.sum(), 1))
    return acc, cost
