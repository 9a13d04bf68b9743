"""Status of an InferencePool (the plan, what is applied, conditions) and of a ModelCatalog."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from quartermaster.api.classes import SpecModel
from quartermaster.api.status import Condition


class PlannedDeployment(SpecModel):
    """One vLLM Deployment of the plan."""

    name: str = Field(description="Name of the Deployment and its Service.")
    option: str = Field(description="Planner option model/precision/pool/tpXppY.")
    model: str = Field(description="Catalog model name.")
    model_id: str = Field(description="Checkpoint served by vLLM (Hugging Face id).")
    precision: str = Field(description="Weight precision, e.g. bf16, fp8, int4.")
    node_pool: str = Field(description="Node pool the replicas run on.")
    gpu_type: str = Field(description="GPU type of that pool.")
    tensor_parallel: int = Field(ge=1, description="Tensor-parallel degree.")
    pipeline_parallel: int = Field(ge=1, description="Pipeline-parallel degree.")
    replicas: int = Field(ge=0, description="Replica count.")
    gpus: int = Field(ge=0, description="GPUs used by all replicas.")
    cost_per_hour: float = Field(ge=0.0, description="USD per hour of all replicas.")
    max_num_seqs: int = Field(ge=1, description="Largest decode batch per replica (vLLM --max-num-seqs).")
    args: list[str] = Field(default_factory=list, description="vLLM server arguments.")
    image: str | None = Field(default=None, description="Image override from the catalog.")


class PlannedClass(SpecModel):
    """Where one query class goes and what the plan predicts for it."""

    name: str = Field(description="Query class name.")
    rate: float = Field(ge=0.0, description="Arrival rate the plan was made for (req/s).")
    shares: dict[str, float] = Field(
        default_factory=dict, description="Share of the class's requests per Deployment name."
    )
    unserved_share: float = Field(default=0.0, ge=0.0, le=1.0, description="Share left unserved.")
    ttft_seconds: float | None = Field(default=None, description="Predicted worst time to first token.")
    tpot_seconds: float | None = Field(default=None, description="Predicted worst time per output token.")
    error: float | None = Field(default=None, description="Predicted average error rate.")
    max_tokens: int | None = Field(default=None, description="Output-token cap from the token budget.")


class PlanSummary(SpecModel):
    """A plan as recorded in status."""

    hash: str = Field(description="SHA-256 of the plan's content (stable across identical plans).")
    generation: int = Field(ge=0, description="metadata.generation the plan was made for.")
    solver: str = Field(description="Solver that produced the plan (agh, gh, milp, ...).")
    cost_per_hour: float = Field(ge=0.0, description="USD per hour of the planned GPUs.")
    gap: float | None = Field(default=None, description="Relative gap to the MILP bound, when known.")
    solve_seconds: float = Field(ge=0.0, description="Wall time of the solve.")
    planned_at: str = Field(description="RFC 3339 time the plan was made.")
    replicas: int = Field(ge=0, description="Total replicas.")
    deployments: list[PlannedDeployment] = Field(default_factory=list, description="Deployments.")
    classes: list[PlannedClass] = Field(default_factory=list, description="Per-class routing.")


class Change(SpecModel):
    """One difference between the plan and what runs."""

    action: Literal["create", "scale", "delete"] = Field(description="create, scale or delete.")
    deployment: str = Field(description="Deployment name.")
    replicas_from: int = Field(ge=0, description="Replicas now.")
    replicas_to: int = Field(ge=0, description="Replicas in the plan.")


class InferencePoolStatus(SpecModel):
    """Observed state of an InferencePool."""

    phase: Literal["Pending", "Planned", "Applying", "Applied", "Infeasible", "Degraded"] | None = Field(
        default=None, description="Pending, Planned (not applied), Applying, Applied, Infeasible, Degraded."
    )
    cost_per_hour: float | None = Field(default=None, description="USD per hour of the current plan.")
    replicas: int | None = Field(default=None, description="Replicas of the current plan.")
    solver: str | None = Field(default=None, description="Solver of the current plan.")
    gap: float | None = Field(default=None, description="Optimality gap of the current plan, when known.")
    plan: PlanSummary | None = Field(default=None, description="The latest feasible plan.")
    applied_plan_hash: str | None = Field(default=None, description="Hash of the plan that is applied.")
    pending_changes: list[Change] = Field(
        default_factory=list, description="What applying the plan would change (autoApply: false)."
    )
    router_config_map: str | None = Field(default=None, description="The router ConfigMap's name.")
    inputs_version: str | None = Field(
        default=None, description="Versions of the catalog and class inputs the plan was made from."
    )
    changes_applied: list[str] = Field(
        default_factory=list,
        description="RFC 3339 times of recent applied changes (last hour), for the change-rate cap.",
    )
    message: str | None = Field(default=None, description="Why the pool is Infeasible or Degraded.")
    observed_generation: int | None = Field(default=None, description="Generation last acted on.")
    conditions: list[Condition] = Field(default_factory=list, description="Latest observations.")


class CatalogModelSummary(SpecModel):
    """One model of a ModelCatalog as validated."""

    name: str = Field(description="Model name.")
    params_b: float = Field(description="Parameters in billions.")
    precisions: list[str] = Field(default_factory=list, description="Supported precisions.")
    profiles: int = Field(ge=0, description="Measured profiles provided.")
    classes_with_errors: int = Field(ge=0, description="Query classes with a measured error.")


class ModelCatalogStatus(SpecModel):
    """Observed state of a ModelCatalog."""

    phase: Literal["Ready", "Invalid"] | None = Field(default=None, description="Ready or Invalid.")
    model_count: int | None = Field(default=None, description="Number of models.")
    models: list[CatalogModelSummary] = Field(default_factory=list, description="Per-model summary.")
    message: str | None = Field(default=None, description="Why the catalog is invalid.")
    observed_generation: int | None = Field(default=None, description="Generation last acted on.")
    conditions: list[Condition] = Field(default_factory=list, description="Latest observations.")
