"""From the specs to a plan summary: CLEAR token caps, then the planner (pure; no Kubernetes calls)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from quartermaster.api.catalog import ModelCatalogSpec
from quartermaster.api.classes import QueryClassSpec
from quartermaster.api.pool import InferencePoolSpec
from quartermaster.api.poolstatus import PlannedClass, PlannedDeployment, PlanSummary
from quartermaster.operator.objects import deployment_name
from quartermaster.planner.errors import BudgetInfeasibleError, InfeasibleError, PlannerError
from quartermaster.planner.instance import Instance
from quartermaster.planner.plan import Plan
from quartermaster.planner.solve import solve


@dataclass(frozen=True)
class PlanOutcome:
    """A feasible plan (``summary``) or why there is none (``error``, ``over_budget``)."""

    summary: PlanSummary | None
    error: str | None = None
    over_budget: bool = False
    invalid: bool = False


def plan_hash(summary: PlanSummary) -> str:
    """Content hash of what would be applied (deployments and shares), not of timing or solver facts."""
    content = {
        "deployments": [d.model_dump(by_alias=True, exclude={"cost_per_hour"}) for d in summary.deployments],
        "classes": [{"name": c.name, "shares": c.shares, "maxTokens": c.max_tokens} for c in summary.classes],
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def summarize(
    plan: Plan, pool_name: str, generation: int, now: str, max_tokens: dict[str, int] | None = None
) -> PlanSummary:
    names = {d.name: deployment_name(pool_name, d.name) for d in plan.deployments}
    deployments = [
        PlannedDeployment(
            name=names[d.name],
            option=d.name,
            model=d.model,
            model_id=d.model_id,
            precision=d.precision,
            node_pool=d.node_pool,
            gpu_type=d.gpu_type,
            tensor_parallel=d.tensor_parallel,
            pipeline_parallel=d.pipeline_parallel,
            replicas=d.replicas,
            gpus=d.gpus,
            cost_per_hour=round(d.cost_per_hour, 4),
            max_num_seqs=d.max_num_seqs,
            args=list(d.vllm_args),
            image=d.image,
        )
        for d in plan.deployments
        if d.replicas > 0
    ]
    classes = [
        PlannedClass(
            name=c.name,
            rate=c.rate,
            shares={names[n]: round(s, 6) for n, s in c.shares if n in names and s > 0},
            unserved_share=round(c.unserved_share, 6),
            ttft_seconds=round(c.predicted_ttft, 6),
            tpot_seconds=round(c.predicted_tpot, 6),
            error=round(c.predicted_error, 6),
            max_tokens=(max_tokens or {}).get(c.name),
        )
        for c in plan.classes
    ]
    summary = PlanSummary(
        hash="",
        generation=generation,
        solver=plan.solver,
        cost_per_hour=round(plan.gpu_cost_per_hour, 4),
        gap=None if plan.gap is None else round(plan.gap, 6),
        solve_seconds=round(plan.solve_seconds, 4),
        planned_at=now,
        replicas=sum(d.replicas for d in deployments),
        deployments=deployments,
        classes=classes,
    )
    return summary.model_copy(update={"hash": plan_hash(summary)})


def make_plan(
    catalog: ModelCatalogSpec,
    pool: InferencePoolSpec,
    classes: list[QueryClassSpec],
    *,
    pool_name: str,
    generation: int,
    now: str,
    time_limit_cap: float,
    max_tokens: dict[str, int] | None = None,
) -> PlanOutcome:
    """Plans; infeasibility and invalid references come back as messages, never as exceptions."""
    if pool.classes is not None:  # the planner reads inline classes from the pool: give it the adjusted ones
        pool = pool.model_copy(update={"classes": classes})
    try:
        instance = Instance.from_specs(catalog, pool, classes)
        plan = solve(
            instance,
            solver=pool.planner.solver,
            time_limit=min(pool.planner.time_limit_seconds, time_limit_cap),
            seed=pool.planner.seed,
        )
    except BudgetInfeasibleError as exc:
        return PlanOutcome(None, str(exc), over_budget=True)
    except InfeasibleError as exc:
        return PlanOutcome(None, str(exc))
    except PlannerError as exc:
        return PlanOutcome(None, str(exc), invalid=True)
    return PlanOutcome(summarize(plan, pool_name, generation, now, max_tokens))
