"""Applying a plan, make-before-break (never destructive by surprise).

1. server-side-apply the planned Deployments and Services (existing ones are scaled in place);
2. wait until every planned Deployment is Available (briefly here; the pool's timer re-checks later);
3. write the router ConfigMap, so traffic moves only to Deployments that serve;
4. delete the Deployments and Services that left the plan.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from quartermaster.api.catalog import ModelCatalogSpec
from quartermaster.api.classes import QueryClassSpec
from quartermaster.api.pool import InferencePoolSpec
from quartermaster.api.poolstatus import Change, PlanSummary
from quartermaster.operator.clusterresult import ClusterResult
from quartermaster.operator.kube import Kube
from quartermaster.operator.objects import Owner, vllm_deployment, vllm_service
from quartermaster.operator.routerconfigmap import build_router_config, router_config_map

AVAILABILITY_WAIT_SECONDS = 3.0


@dataclass(frozen=True)
class RolloutResult:
    """``pending``: planned Deployments not yet Available (nothing switched yet); else the ConfigMap name."""

    pending: list[str]
    router_config_map: str | None = None
    unsupported: str | None = None


def diff(plan: PlanSummary, live: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Changes that applying ``plan`` makes to the live Deployments."""
    current = {d["metadata"]["name"]: int(d.get("spec", {}).get("replicas") or 0) for d in live}
    changes = []
    for d in plan.deployments:
        if d.name not in current:
            changes.append(
                Change(action="create", deployment=d.name, replicas_from=0, replicas_to=d.replicas)
            )
        elif current[d.name] != d.replicas:
            changes.append(
                Change(
                    action="scale", deployment=d.name, replicas_from=current[d.name], replicas_to=d.replicas
                )
            )
    for name in sorted(set(current) - {d.name for d in plan.deployments}):
        changes.append(Change(action="delete", deployment=name, replicas_from=current[name], replicas_to=0))
    return [c.model_dump(by_alias=True, exclude_none=True) for c in changes]


def available(kube: Kube, namespace: str, name: str, replicas: int) -> bool:
    live = kube.get("apps/v1", "Deployment", name, namespace)
    if live is None:
        return False
    status = live.get("status") or {}
    return bool(
        status.get("observedGeneration", 0) >= live["metadata"].get("generation", 0)
        and (status.get("availableReplicas") or 0) >= replicas
        and (status.get("updatedReplicas") or 0) >= replicas
    )


def unsupported_placement(spec: InferencePoolSpec, plan: PlanSummary) -> str | None:
    """A message when a replica would need more GPUs than one node of its pool has (multi-node)."""
    per_node = {p.name: p.gpus_per_node for p in spec.node_pools}
    for d in plan.deployments:
        gpus = d.tensor_parallel * d.pipeline_parallel
        if gpus > per_node[d.node_pool]:
            return (
                f"deployment {d.name} needs {gpus} GPUs per replica but node pool {d.node_pool} has "
                f"{per_node[d.node_pool]} per node; multi-node replicas are not supported"
            )
    return None


def roll_out(
    kube: Kube,
    owner: Owner,
    spec: InferencePoolSpec,
    plan: PlanSummary,
    live: list[dict[str, Any]],
    *,
    vllm_image: str,
    catalog: ModelCatalogSpec,
    classes: list[QueryClassSpec],
    cluster_result: ClusterResult | None,
    abandoned: frozenset[str],
) -> RolloutResult:
    message = unsupported_placement(spec, plan)
    if message:
        return RolloutResult(pending=[], unsupported=message)
    pools = {p.name: p for p in spec.node_pools}
    live_by_name = {d["metadata"]["name"]: d for d in live}
    for d in plan.deployments:
        deployment = vllm_deployment(owner, d, pools[d.node_pool], image=vllm_image, plan_hash=plan.hash)
        kube.apply(deployment, live_by_name.get(d.name))
        kube.apply(vllm_service(owner, d))
    deadline = time.monotonic() + AVAILABILITY_WAIT_SECONDS
    while pending := [
        d.name for d in plan.deployments if not available(kube, owner.namespace, d.name, d.replicas)
    ]:
        if time.monotonic() >= deadline:
            return RolloutResult(pending=pending)
        time.sleep(0.25)
    router = build_router_config(
        owner,
        plan.generation,
        plan,
        catalog,
        classes,
        abandoned=abandoned,
        **(cluster_result.router_kwargs() if cluster_result else {}),
    )
    config_map = router_config_map(owner, router)
    kube.apply(config_map)
    for name in sorted(set(live_by_name) - {d.name for d in plan.deployments}):
        kube.delete("apps/v1", "Deployment", name, owner.namespace)
        kube.delete("v1", "Service", name, owner.namespace)
    return RolloutResult(pending=[], router_config_map=config_map["metadata"]["name"])
