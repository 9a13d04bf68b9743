"""InferencePool reconciliation: read the inputs, plan (CLEAR then the planner), roll the plan out.

An infeasible or over-budget plan touches nothing: status says why and the running objects stay. Rolling
re-planning and its hysteresis are in :mod:`.horizon`; the make-before-break apply in :mod:`.rollout`.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from quartermaster.api.catalog import ModelCatalogSpec
from quartermaster.api.classes import QueryClassSpec
from quartermaster.api.pool import InferencePoolSpec
from quartermaster.api.poolstatus import InferencePoolStatus, PlanSummary
from quartermaster.operator import metrics, reasons
from quartermaster.operator.budgets import token_caps
from quartermaster.operator.clusterresult import ClusterResult, read_result
from quartermaster.operator.conditions import Conditions, now_rfc3339
from quartermaster.operator.horizon import adopt, measured_rates, parse_time, recent_changes
from quartermaster.operator.kube import Kube
from quartermaster.operator.objects import POOL_LABEL, Owner
from quartermaster.operator.outcome import Outcome, validation_message
from quartermaster.operator.planning import make_plan
from quartermaster.operator.rollout import diff, roll_out
from quartermaster.operator.settings import OperatorSettings


@dataclass(frozen=True)
class Inputs:
    catalog: ModelCatalogSpec
    classes: list[QueryClassSpec]
    cluster_result: ClusterResult | None
    version: str


class PoolReconciler:
    def __init__(self, kube: Kube, settings: OperatorSettings) -> None:
        self.kube = kube
        self.settings = settings
        # When each pool was last planned, with the plannedAt recorded in its status then: a re-plan that
        # changes nothing writes nothing, and after a restart (or an edited status) the recorded time counts.
        self._last_planned: dict[str, tuple[str | None, datetime.datetime]] = {}

    def _inputs(self, spec: InferencePoolSpec, namespace: str) -> Inputs | tuple[str, str]:
        """The catalog and classes, or (reason, message) when one is missing or invalid."""
        body = self.kube.custom_object("modelcatalogs", spec.catalog_ref, namespace)
        if body is None:
            return reasons.CATALOG_NOT_FOUND, (
                f"ModelCatalog {namespace}/{spec.catalog_ref} (spec.catalogRef) does not exist; create it"
            )
        try:
            catalog = ModelCatalogSpec.model_validate(body.get("spec", {}))
        except ValidationError as exc:
            return reasons.CATALOG_INVALID, validation_message(exc, f"ModelCatalog {spec.catalog_ref} spec")
        version = f"catalog:{body['metadata'].get('generation', 0)}"
        if spec.classes is not None:
            return Inputs(catalog, list(spec.classes), None, version)
        assert spec.classes_from is not None
        result = read_result(self.kube, spec.classes_from, namespace)
        if isinstance(result, str):
            return reasons.CLASSES_NOT_READY, result
        return Inputs(catalog, list(result.classes), result, f"{version},classes:{result.version}")

    def due(
        self,
        owner: Owner,
        raw_spec: dict[str, Any],
        raw_status: dict[str, Any],
        generation: int,
        now: datetime.datetime,
    ) -> bool | None:
        """For the timer: None = nothing to do; False = reconcile now; True = a rolling re-plan."""
        status = raw_status or {}
        if status.get("observedGeneration") != generation or status.get("phase") in (
            None,
            "Applying",
            "Degraded",
        ):
            return False
        try:
            spec = InferencePoolSpec.model_validate(raw_spec)
        except ValidationError:
            return None
        inputs = self._inputs(spec, owner.namespace)
        if isinstance(inputs, tuple) or inputs.version != status.get("inputsVersion"):
            return False
        planned_at = (status.get("plan") or {}).get("plannedAt")
        seen, when = self._last_planned.get(owner.uid, (None, None))
        if when is None or seen != planned_at:
            when = parse_time(planned_at) if planned_at else None
        if when is None:
            return False
        return True if (now - when).total_seconds() >= spec.planner.interval_seconds else None

    def reconcile(
        self,
        owner: Owner,
        raw_spec: dict[str, Any],
        raw_status: dict[str, Any],
        generation: int,
        *,
        timer: bool,
        now: datetime.datetime,
    ) -> Outcome:
        stamp = now_rfc3339(now)
        status = InferencePoolStatus.model_validate(raw_status or {}).model_dump(
            by_alias=True, exclude_none=True
        )
        status["observedGeneration"] = generation
        conditions = Conditions(status.get("conditions", []), generation, stamp)

        def degraded(reason: str, message: str, *, permanent: bool = False) -> Outcome:
            patch = {**status, "phase": "Degraded", "message": message}
            patch["conditions"] = conditions.set(reasons.DEGRADED, True, reason, message)
            return Outcome(patch, [("Warning", reason, message)], message if permanent else None)

        try:
            spec = InferencePoolSpec.model_validate(raw_spec)
        except ValidationError as exc:
            return degraded(reasons.INVALID_SPEC, validation_message(exc, "spec"), permanent=True)
        inputs = self._inputs(spec, owner.namespace)
        if isinstance(inputs, tuple):
            return degraded(*inputs)  # the timer retries while Degraded
        status["inputsVersion"] = inputs.version
        classes = inputs.classes
        measured, rates_error = measured_rates(spec.rates_from)
        if measured is not None:
            classes = [c.model_copy(update={"rate": measured.get(c.name, 0.0)}) for c in classes]
        caps = token_caps(spec, classes)
        if caps is not None:
            classes = caps.classes
        outcome = make_plan(
            inputs.catalog,
            spec,
            classes,
            pool_name=owner.name,
            generation=generation,
            now=stamp,
            time_limit_cap=self.settings.plan_time_limit_cap,
            max_tokens=caps.max_tokens if caps else None,
        )
        conditions.set(reasons.DEGRADED, False, reasons.AS_EXPECTED)
        label = "feasible" if outcome.summary else ("over_budget" if outcome.over_budget else "infeasible")
        metrics.PLANS.labels(outcome=label).inc()
        events: list[tuple[str, str, str]] = []
        if rates_error:
            events.append(("Warning", reasons.RATES_UNAVAILABLE, rates_error))

        if outcome.summary is None:
            message = outcome.error or "no feasible plan"
            reason = reasons.OVER_BUDGET if outcome.over_budget else reasons.NO_FEASIBLE_PLAN
            self._last_planned[owner.uid] = ((status.get("plan") or {}).get("plannedAt"), now)
            conditions.set(reasons.INFEASIBLE, True, reason, message)
            conditions.set(reasons.PLANNED, False, reason, "the running objects were left as they are")
            budget_reason = reasons.OVER_BUDGET if outcome.over_budget else reasons.WITHIN_BUDGET
            budget_message = message if outcome.over_budget else ""
            conditions.set(reasons.BUDGET_EXCEEDED, outcome.over_budget, budget_reason, budget_message)
            patch = {**status, "phase": "Infeasible", "message": message, "conditions": conditions.items}
            events.append(("Warning", reason, message))
            return Outcome(patch, events, message if outcome.invalid else None)

        metrics.SOLVE_SECONDS.observe(outcome.summary.solve_seconds)
        current = PlanSummary.model_validate(status["plan"]) if status.get("plan") else None
        adopted, why = adopt(spec, current, outcome.summary, status, generation, timer=timer, now=now)
        plan = outcome.summary if adopted or current is None else current
        if current is not None and current.hash == outcome.summary.hash:
            plan = current.model_copy(update={"generation": generation})  # same content: keep its timestamps
        self._last_planned[owner.uid] = (plan.planned_at, now)
        conditions.set(reasons.INFEASIBLE, False, reasons.PLAN_FOUND)
        conditions.set(reasons.BUDGET_EXCEEDED, False, reasons.WITHIN_BUDGET)
        conditions.set(
            reasons.PLANNED, True, reasons.PLAN_FOUND if adopted else reasons.PLAN_KEPT_HYSTERESIS, why
        )
        if adopted and (current is None or current.hash != plan.hash):
            summary = f"{why}: ${plan.cost_per_hour:.2f}/h, {plan.replicas} replicas"
            events.append(("Normal", reasons.PLAN_FOUND, summary))
        metrics.COST_PER_HOUR.labels(namespace=owner.namespace, pool=owner.name).set(plan.cost_per_hour)
        metrics.REPLICAS.labels(namespace=owner.namespace, pool=owner.name).set(plan.replicas)
        patch = {
            **status,
            "plan": plan.model_dump(by_alias=True, exclude_none=True),
            "costPerHour": plan.cost_per_hour,
            "replicas": plan.replicas,
            "solver": plan.solver,
            "gap": plan.gap,
            "message": None,
        }
        live = self.kube.list("apps/v1", "Deployment", owner.namespace, f"{POOL_LABEL}={owner.name}")
        changes = diff(plan, live)
        if not spec.auto_apply:
            pending = f"{len(changes)} change(s) pending; set spec.autoApply: true to apply"
            conditions.set(reasons.APPLIED, False, reasons.APPLY_DISABLED, pending)
            return Outcome(
                {**patch, "phase": "Planned", "pendingChanges": changes, "conditions": conditions.items},
                events,
            )

        result = roll_out(
            self.kube,
            owner,
            spec,
            plan,
            live,
            vllm_image=self.settings.vllm_image,
            catalog=inputs.catalog,
            classes=classes,
            cluster_result=inputs.cluster_result,
            abandoned=caps.abandoned if caps else frozenset(),
        )
        if result.unsupported:
            conditions.set(reasons.DEGRADED, True, reasons.UNSUPPORTED_PLACEMENT, result.unsupported)
            patch |= {"phase": "Degraded", "message": result.unsupported, "conditions": conditions.items}
            return Outcome(patch, [*events, ("Warning", reasons.UNSUPPORTED_PLACEMENT, result.unsupported)])
        if result.pending:
            waiting = f"waiting for {', '.join(result.pending)} to become Available before switching traffic"
            conditions.set(reasons.APPLIED, False, reasons.APPLYING, waiting)
            return Outcome(
                {**patch, "phase": "Applying", "pendingChanges": changes, "conditions": conditions.items},
                events,
            )
        history = recent_changes(patch, now)
        if patch.get("appliedPlanHash") != plan.hash:
            history.append(stamp)
            metrics.APPLIED_CHANGES.labels(namespace=owner.namespace, pool=owner.name).inc()
            events.append(
                ("Normal", reasons.ALL_AVAILABLE, f"applied plan {plan.hash[:12]}: {json.dumps(changes)}")
            )
        conditions.set(reasons.APPLIED, True, reasons.ALL_AVAILABLE, "every planned Deployment is Available")
        return Outcome(
            {
                **patch,
                "phase": "Applied",
                "appliedPlanHash": plan.hash,
                "pendingChanges": [],
                "routerConfigMap": result.router_config_map,
                "changesApplied": history,
                "conditions": conditions.items,
            },
            events,
        )
