"""The router ConfigMap of an InferencePool, built from its plan (pure).

Per query class: weighted first-hop routes = the plan's shares over the Deployments' Services; the
escalation ladder = the deployed models that are Pareto-optimal for that class on (measured error, active
parameters as the cost proxy), cheapest first; ``maxTokens`` = the CLEAR cap when the pool has a token
budget, else 4x the class's mean output tokens (at least 1024) so that long answers are not cut short.
Representatives come from the QueryClusterJob result when the classes came from one.
"""

from __future__ import annotations

import math
from typing import Any

from quartermaster.api.catalog import ModelCatalogSpec, ModelSpec
from quartermaster.api.classes import QueryClassSpec
from quartermaster.api.poolstatus import PlannedDeployment, PlanSummary
from quartermaster.api.routerconfig import (
    Abandonment,
    ClusteringParams,
    ClusterRoute,
    Escalation,
    PlanRef,
    RepresentativeEmbeddings,
    RouterConfig,
    RouteTarget,
    to_configmap_data,
)
from quartermaster.operator.objects import VLLM_PORT, Owner, config_map, service_url

DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def router_config_name(owner: Owner) -> str:
    return f"{owner.name}-router"


def _cost(model: ModelSpec) -> float:
    return model.active_params_b or model.params_b


def ladder(class_name: str, models: list[ModelSpec]) -> list[str]:
    """Pareto-optimal models for the class on (error, cost), cheapest first."""
    ranked = sorted(models, key=lambda m: (_cost(m), m.error_for(class_name), m.name))
    result: list[str] = []
    best_error = math.inf
    for model in ranked:
        error = model.error_for(class_name)
        if error < best_error:
            result.append(model.name)
            best_error = error
    return result


def _target(owner: Owner, d: PlannedDeployment, weight: float) -> RouteTarget:
    return RouteTarget(
        model=d.model,
        deployment=d.name,
        service=d.name,
        port=VLLM_PORT,
        url=service_url(owner, d),
        weight=weight,
    )


def build_router_config(
    owner: Owner,
    generation: int,
    plan: PlanSummary,
    catalog: ModelCatalogSpec,
    classes: list[QueryClassSpec],
    *,
    alpha: float = 1.0,
    embedding_model: str = DEFAULT_EMBEDDING_MODEL,
    dimension: int = 384,
    representatives: RepresentativeEmbeddings | None = None,
    representative_ranges: dict[str, tuple[int, int]] | None = None,
    default_class: str | None = None,
    abandoned: frozenset[str] = frozenset(),
) -> RouterConfig:
    by_name = {d.name: d for d in plan.deployments}
    deployed = {d.model for d in plan.deployments}
    models = [m for m in catalog.models if m.name in deployed]
    specs = {c.name: c for c in classes}
    first_deployment: dict[str, PlannedDeployment] = {}
    for d in plan.deployments:
        first_deployment.setdefault(d.model, d)
    clusters = []
    for planned in plan.classes:
        routes = [_target(owner, by_name[n], share) for n, share in planned.shares.items() if n in by_name]
        if not routes:
            continue
        spec = specs[planned.name]
        cap = planned.max_tokens or max(1024, math.ceil(4 * spec.output_tokens))
        ranges = (representative_ranges or {}).get(planned.name)
        clusters.append(
            ClusterRoute.model_validate(
                {
                    "id": planned.name,
                    "share": None,
                    "representatives": None if ranges is None else {"offset": ranges[0], "count": ranges[1]},
                    "maxTokens": cap,
                    "expectedOutputTokens": spec.output_tokens,
                    "routes": routes,
                    "escalation": Escalation(ladder=ladder(planned.name, models)),
                    "abandonment": Abandonment(abandoned=True, policy="short-answer", max_tokens=cap)
                    if planned.name in abandoned
                    else Abandonment(),
                    "predictedAccuracy": None if planned.error is None else round(1 - planned.error, 6),
                }
            )
        )
    ids = [c.id for c in clusters]
    fallback = (
        default_class
        if default_class in ids
        else max((c for c in plan.classes if c.name in ids), key=lambda c: c.rate).name
    )
    routed = {(r.model, r.deployment) for c in clusters for r in c.routes}
    escalation_targets = [
        _target(owner, d, 1.0) for m, d in sorted(first_deployment.items()) if (m, d.name) not in routed
    ]
    return RouterConfig(
        plan=PlanRef(name=owner.name, namespace=owner.namespace, generation=generation, plan_hash=plan.hash),
        clustering=ClusteringParams(alpha=alpha, embedding_model=embedding_model, dimension=dimension),
        default_cluster=fallback,
        clusters=clusters,
        representatives=representatives,
        escalation_targets=escalation_targets,
    )


def router_config_map(owner: Owner, config: RouterConfig) -> dict[str, Any]:
    return config_map(
        owner,
        router_config_name(owner),
        to_configmap_data(config),
        labels={"app.kubernetes.io/component": "router-config"},
    )
