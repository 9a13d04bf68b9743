"""Build the router ConfigMap document from Stage-1 routing, a CLEAR allocation and deployment targets.

Route weights inside a cluster are ``model share (Stage 1) x the deployment's share of the model's
replicas``. A routed model without a deployment in the plan is replaced by the cheapest deployed model of the
cluster's ladder (warning); the ladder keeps only deployed models. Representatives are sorted by cluster and
stored inline when small, else split into extra ConfigMaps (returned alongside the document) and referenced.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from quartermaster.api.routerconfig import (
    INLINE_EMBEDDINGS_MAX_BYTES,
    Abandonment,
    ClusteringParams,
    ClusterRoute,
    Escalation,
    PlanRef,
    Provenance,
    QualityEstimatorSpec,
    RepresentativeEmbeddings,
    RepresentativeRange,
    RouterConfig,
    RouteTarget,
    encode_representatives,
    representatives_bytes,
    split_configmap_chunks,
)
from quartermaster.routing.budget import Allocation
from quartermaster.routing.errors import RoutingError
from quartermaster.routing.stage1 import RoutingTable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeploymentTarget:
    """One deployment of the plan (model, Service, replicas)."""

    model: str
    deployment: str
    service: str
    port: int = 8000
    namespace: str = "default"
    replicas: int = 1
    url: str | None = None

    def route(self, weight: float) -> RouteTarget:
        url = self.url or f"http://{self.service}.{self.namespace}.svc:{self.port}/v1"
        return RouteTarget(
            model=self.model,
            deployment=self.deployment,
            service=self.service,
            port=self.port,
            url=url,
            weight=weight,
        )


@dataclass(frozen=True)
class BuiltRouterConfig:
    """The document and the extra ConfigMaps (name -> data) holding representative chunks, if any."""

    config: RouterConfig
    configmaps: dict[str, dict[str, str]] = field(default_factory=dict)


def _targets_by_model(targets: Sequence[DeploymentTarget]) -> dict[str, list[DeploymentTarget]]:
    out: dict[str, list[DeploymentTarget]] = {}
    for t in targets:
        if t.replicas < 0:
            raise RoutingError(f"deployment {t.deployment}: replicas={t.replicas} must be >= 0")
        if t.replicas > 0:
            out.setdefault(t.model, []).append(t)
    return out


def _routes(shares: Mapping[str, float], by_model: Mapping[str, list[DeploymentTarget]]) -> list[RouteTarget]:
    routes: list[RouteTarget] = []
    for model, share in shares.items():
        deps = by_model[model]
        total = sum(d.replicas for d in deps)
        routes.extend(d.route(round(share * d.replicas / total, 9)) for d in deps)
    return routes


def _representatives(
    matrix: npt.ArrayLike,
    rep_cluster: Sequence[str],
    cluster_order: Sequence[str],
    dtype: Literal["float16", "float32"],
    chunk_prefix: str,
    inline_limit: int,
) -> tuple[RepresentativeEmbeddings, dict[str, RepresentativeRange], dict[str, dict[str, str]]]:
    x = np.asarray(matrix, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != len(rep_cluster):
        raise RoutingError("representatives need one cluster id per row (rep_cluster)")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if not np.all(np.isfinite(x)) or (norms == 0).any():
        raise RoutingError("representatives must be finite, non-zero rows")
    x = x / norms
    known = set(cluster_order)
    unknown = sorted({c for c in rep_cluster if c not in known})
    if unknown:
        log.warning("representatives of clusters %s have no routing; they are dropped", unknown[:10])
    rows: list[int] = []
    ranges: dict[str, RepresentativeRange] = {}
    for cid in cluster_order:
        idx = [i for i, c in enumerate(rep_cluster) if c == cid]
        if idx:
            ranges[cid] = RepresentativeRange(offset=len(rows), count=len(idx))
            rows.extend(idx)
    sorted_x = x[rows] if rows else np.zeros((0, x.shape[1]))
    raw = representatives_bytes(sorted_x, dtype)
    if len(raw) <= inline_limit:
        return encode_representatives(sorted_x, dtype), ranges, {}
    chunks = split_configmap_chunks(raw, inline_limit)
    names = [f"{chunk_prefix}-{i}" for i in range(len(chunks))]
    ref = RepresentativeEmbeddings(
        dim=int(x.shape[1]),
        count=len(rows),
        dtype=dtype,
        storage="configMaps",
        config_maps=names,
        sha256=hashlib.sha256(raw).hexdigest(),
    )
    return ref, ranges, {n: {ref.data_key: c} for n, c in zip(names, chunks, strict=True)}


def build_router_config(
    routing: RoutingTable,
    targets: Sequence[DeploymentTarget],
    *,
    plan: PlanRef,
    clustering: ClusteringParams,
    allocation: Allocation | None = None,
    representatives: npt.ArrayLike | None = None,
    rep_cluster: Sequence[str] | None = None,
    thresholds: Mapping[str, float] | float = 0.5,
    quality_estimator: QualityEstimatorSpec | None = None,
    default_max_tokens: int = 1024,
    default_cluster: str | None = None,
    max_escalations: int = 1,
    dtype: Literal["float16", "float32"] = "float16",
    chunk_prefix: str = "quartermaster-router-reps",
    inline_limit: int = INLINE_EMBEDDINGS_MAX_BYTES,
) -> BuiltRouterConfig:
    """The router config for ``routing`` on the plan's ``targets`` (see the module docstring)."""
    by_model = _targets_by_model(targets)
    if not by_model:
        raise RoutingError("the plan has no deployment with replicas > 0; nothing to route to")
    alloc = {} if allocation is None else {it.name: it for it in allocation.items}
    clusters: list[ClusterRoute] = []
    order = [c.cluster for c in routing.clusters]
    reps = None
    ranges: dict[str, RepresentativeRange] = {}
    extra: dict[str, dict[str, str]] = {}
    if representatives is not None:
        if rep_cluster is None:
            raise RoutingError("give rep_cluster (cluster id per representative row) with representatives")
        reps, ranges, extra = _representatives(
            representatives, list(rep_cluster), order, dtype, chunk_prefix, inline_limit
        )
    total = sum(c.size for c in routing.clusters) or 1.0
    for choice in routing.clusters:
        ladder = [m for m in choice.ladder if m in by_model]
        shares = dict(choice.models)
        missing = [m for m in shares if m not in by_model]
        if missing:
            if not ladder:
                raise RoutingError(
                    f"cluster {choice.cluster}: models {missing} and its ladder {list(choice.ladder)} have "
                    "no deployment in the plan; deploy one of them or refit on the deployed models"
                )
            log.warning("cluster %s: %s not deployed; routing to %s", choice.cluster, missing, ladder[0])
            moved = sum(shares.pop(m) for m in missing)
            shares[ladder[0]] = shares.get(ladder[0], 0.0) + moved
        item = alloc.get(choice.cluster)
        if allocation is not None and item is None:
            log.warning(
                "cluster %s has no token allocation; max_tokens=%d", choice.cluster, default_max_tokens
            )
        abandonment = Abandonment()
        max_tokens = default_max_tokens
        expected = None
        if item is not None:
            expected = item.tokens
            max_tokens = max(1, math.ceil(item.tokens))
            if item.abandoned:
                policy = (
                    item.policy if item.policy in ("refuse", "short-answer", "cheapest-model") else "refuse"
                )
                fb_model = item.model if policy == "cheapest-model" and item.model in by_model else None
                if policy == "cheapest-model" and fb_model is None:
                    log.warning(
                        "cluster %s: fallback model %s is not deployed; refusing", choice.cluster, item.model
                    )
                    policy = "refuse"
                abandonment = Abandonment(
                    abandoned=True,
                    policy=policy,
                    model=fb_model,
                    max_tokens=max_tokens if policy != "refuse" else None,
                    message="This request exceeds the current reasoning budget."
                    if policy == "refuse"
                    else None,
                )
        threshold = thresholds if isinstance(thresholds, float) else thresholds.get(choice.cluster, 0.5)
        clusters.append(
            ClusterRoute(
                id=choice.cluster,
                share=choice.size / total,
                representatives=ranges.get(choice.cluster),
                max_tokens=max_tokens,
                expected_output_tokens=expected,
                routes=_routes(shares, by_model),
                escalation=Escalation(
                    ladder=ladder, quality_threshold=threshold, max_escalations=max_escalations
                ),
                abandonment=abandonment,
                predicted_accuracy=min(max(choice.predicted_accuracy, 0.0), 1.0),
                predicted_cost=max(choice.predicted_cost, 0.0),
            )
        )
    routed = {r.model for c in clusters for r in c.routes}
    needed = {m for c in clusters for m in c.escalation.ladder} | {
        c.abandonment.model for c in clusters if c.abandonment.model
    }
    escalation_targets = [d.route(1.0) for m in sorted(needed - routed) for d in by_model[m]]
    default = default_cluster or max(routing.clusters, key=lambda c: c.size).cluster
    config = RouterConfig(
        plan=plan,
        clustering=clustering,
        default_cluster=default,
        clusters=clusters,
        representatives=reps,
        escalation_targets=escalation_targets,
        quality_estimator=quality_estimator or QualityEstimatorSpec(),
        provenance=Provenance(
            cost_unit="usd" if routing.cost_kind == "usd" else "tpot",
            lambda_star=routing.lambda_star,
            budget=routing.budget,
            shadow_price=None if allocation is None else allocation.price,
            token_budget_per_query=None
            if allocation is None
            else allocation.tokens_used / max(sum(c.size for c in routing.clusters), 1.0),
        ),
    )
    return BuiltRouterConfig(config=config, configmaps=extra)
