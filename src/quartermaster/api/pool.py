"""InferencePool spec: GPU node pools, query classes, SLOs, budget and planner settings.

An InferencePool names a ModelCatalog (``catalogRef``), the demand (``classes`` inline or ``classesFrom`` a
QueryClusterJob), the GPU node pools it may use and the planner's settings. ``quartermaster plan`` plans
from exactly these manifests offline; the operator plans from them in the cluster.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from quartermaster.api.classes import (
    DNS_LABEL_PATTERN,
    QueryClassSpec,
    SpecModel,
    check_unique_class_names,
)


class Toleration(SpecModel):
    """A Kubernetes toleration copied onto the pods placed in a node pool."""

    key: str | None = Field(default=None, description="Taint key to tolerate; empty with Exists = all.")
    operator: Literal["Equal", "Exists"] = Field(default="Equal", description="Equal or Exists.")
    value: str | None = Field(default=None, description="Taint value (operator Equal).")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to tolerate; empty = all effects."
    )
    toleration_seconds: int | None = Field(
        default=None, ge=0, description="For NoExecute: how long the pod stays bound after the taint."
    )

    @model_validator(mode="after")
    def _check(self) -> Toleration:
        if self.operator == "Exists" and self.value:
            raise ValueError("toleration with operator Exists must not set value")
        if self.operator == "Equal" and not self.key:
            raise ValueError("toleration with operator Equal needs a key")
        return self


class NodePoolSpec(SpecModel):
    """A pool of identical GPU nodes the planner may place replicas on."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.gpus % self.gpusPerNode == 0",
                    "message": "gpus must be a multiple of gpusPerNode (whole nodes)",
                },
                {
                    "rule": "!has(self.maxTensorParallel) || self.maxTensorParallel <= self.gpusPerNode",
                    "message": "maxTensorParallel must not exceed gpusPerNode (tensor parallelism stays in a "
                    "node)",
                },
            ]
        }
    )

    name: str = Field(pattern=DNS_LABEL_PATTERN, description="Pool name (RFC 1123 label), e.g. h100.")
    gpu_type: str = Field(
        description="GPU type from Quartermaster's GPU table: H100-80GB, H100-PCIe, A100-80GB, A100-40GB, "
        "L40S, A10G, A10 or A6000."
    )
    gpus: int = Field(ge=1, description="GPUs available to this InferencePool in the pool (all nodes).")
    gpus_per_node: int = Field(ge=1, le=16, description="GPUs per node; bounds the tensor-parallel degree.")
    interconnect: Literal["nvlink", "pcie"] | None = Field(
        default=None,
        description="GPU interconnect within a node; defaults to the GPU type's usual one (SXM = nvlink).",
    )
    price_per_gpu_hour: float | None = Field(
        default=None,
        gt=0.0,
        description="Price in USD per GPU-hour; defaults to the GPU table's on-demand list price.",
    )
    max_tensor_parallel: Literal[1, 2, 4, 8] | None = Field(
        default=None, description="Largest tensor-parallel degree to consider (default: gpusPerNode)."
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict,
        description="Node labels selecting this pool's nodes, e.g. quartermaster.dev/pool: h100.",
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, description="Tolerations for the taints of this pool's nodes."
    )

    @model_validator(mode="after")
    def _check(self) -> NodePoolSpec:
        if self.gpus % self.gpus_per_node:
            raise ValueError(
                f"node pool {self.name!r}: gpus={self.gpus} is not a multiple of gpusPerNode="
                f"{self.gpus_per_node}; set gpus to whole nodes x gpusPerNode"
            )
        if self.max_tensor_parallel is not None and self.max_tensor_parallel > self.gpus_per_node:
            raise ValueError(
                f"node pool {self.name!r}: maxTensorParallel={self.max_tensor_parallel} is larger than "
                f"gpusPerNode={self.gpus_per_node}; tensor parallelism must fit in one node"
            )
        return self


class SLOSpec(SpecModel):
    """Default service-level objectives for every class (a class may override each)."""

    ttft_seconds: float = Field(default=2.0, gt=0.0, description="Time-to-first-token SLO in seconds.")
    tpot_seconds: float = Field(
        default=0.1, gt=0.0, description="Time-per-output-token SLO in seconds per token."
    )
    max_error: float = Field(
        default=0.3, ge=0.0, le=1.0, description="Largest allowed average error rate (0-1) per class."
    )


class HysteresisSpec(SpecModel):
    """Damping of rolling re-planning so that plans do not flap."""

    min_saving_fraction: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="Adopt a new plan only if it is at least this fraction cheaper per hour than keeping "
        "the current one (unless the current one no longer meets the SLOs).",
    )
    max_changes_per_hour: float = Field(
        default=4.0,
        ge=0.0,
        description="Largest number of replica additions/removals per hour made for saving money (changes "
        "needed to meet SLOs are always made).",
    )
    switching_cost: float = Field(
        default=0.5,
        ge=0.0,
        description="Cost in USD charged per replica started or stopped (model load time, cache warm-up).",
    )


class PlannerSettings(SpecModel):
    """How the planner solves."""

    solver: Literal["auto", "agh", "gh", "milp"] = Field(
        default="auto",
        description="auto = AGH with MILP fallback/certification; agh, gh (heuristics) or milp (exact).",
    )
    time_limit_seconds: float = Field(
        default=30.0, gt=0.0, le=3600.0, description="Wall-clock limit of one solve in seconds."
    )
    seed: int = Field(
        default=0, ge=0, description="Random seed (heuristics and solver); same seed, same plan."
    )
    interval_seconds: int = Field(
        default=600, ge=60, description="Re-planning interval in seconds for rolling re-planning."
    )
    utilization: float = Field(
        default=0.8,
        gt=0.0,
        le=1.0,
        description="Largest planned utilisation of a replica (capacity headroom that bounds queueing).",
    )
    hysteresis: HysteresisSpec = Field(
        default_factory=HysteresisSpec, description="Damping of rolling re-planning."
    )


class InferencePoolSpec(SpecModel):
    """spec of an InferencePool: what to serve, on which GPUs, at what quality and cost."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.classes) != has(self.classesFrom)",
                    "message": "set exactly one of classes (inline query classes) or classesFrom (a "
                    "QueryClusterJob name)",
                },
                {
                    "rule": "!has(self.classes) || size(self.classes) > 0",
                    "message": "classes is empty; declare at least one query class or use classesFrom",
                },
            ]
        }
    )

    catalog_ref: str = Field(
        pattern=DNS_LABEL_PATTERN, description="Name of the ModelCatalog (same namespace) to deploy from."
    )
    models: list[str] | None = Field(
        default=None,
        description="Names of catalog models this pool may use; empty = all models of the catalog.",
    )
    classes: list[QueryClassSpec] | None = Field(
        default=None, description="Query classes declared inline (set this or classesFrom)."
    )
    classes_from: str | None = Field(
        default=None,
        pattern=DNS_LABEL_PATTERN,
        description="Name of a QueryClusterJob whose clusters are the query classes (set this or classes).",
    )
    node_pools: list[NodePoolSpec] = Field(min_length=1, description="GPU node pools the planner may use.")
    slo: SLOSpec = Field(default_factory=SLOSpec, description="Default SLOs of every class.")
    budget_per_hour: float | None = Field(
        default=None, gt=0.0, description="Largest GPU spend in USD per hour; empty = no budget."
    )
    token_budget: int | None = Field(
        default=None,
        ge=1,
        description="Global reasoning-token budget per request (averaged over requests) for the CLEAR "
        "allocator; it caps the classes' output tokens.",
    )
    rates_from: list[str] = Field(
        default_factory=list,
        description="URLs of router replicas' GET /v1/quartermaster/rates endpoints. When set, rolling "
        "re-planning uses the measured per-class request rates (summed over replicas) instead of the "
        "declared ones; classes the routers did not see in their window get rate 0.",
    )
    planner: PlannerSettings = Field(default_factory=PlannerSettings, description="Planner settings.")
    auto_apply: bool = Field(
        default=False,
        description="Apply new plans automatically; when false plans are only reported in status.",
    )

    @model_validator(mode="after")
    def _check(self) -> InferencePoolSpec:
        if (self.classes is None) == (self.classes_from is None):
            raise ValueError(
                "set exactly one of classes (inline query classes) or classesFrom (a QueryClusterJob name)"
            )
        if self.classes is not None:
            if not self.classes:
                raise ValueError("classes is empty; declare at least one query class or use classesFrom")
            check_unique_class_names(self.classes, "classes")
        seen: set[str] = set()
        for index, pool in enumerate(self.node_pools):
            if pool.name in seen:
                raise ValueError(f"nodePools[{index}].name={pool.name!r} is used twice; names must be unique")
            seen.add(pool.name)
        if self.models is not None and len(set(self.models)) != len(self.models):
            raise ValueError(f"models {self.models} contain duplicates")
        return self
