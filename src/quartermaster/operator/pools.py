"""InferencePool reconciliation: read inputs, plan, then apply make-before-break.

Order of an apply (never destructive by surprise):
1. server-side-apply the planned Deployments and Services (existing ones are scaled in place);
2. wait until every planned Deployment is Available (re-checked on the next reconcile);
3. write the router ConfigMap, so traffic moves only to Deployments that serve;
4. delete the Deployments/Services that left the plan.
An infeasible or over-budget plan touches nothing: status says why and the running objects stay.

Rolling horizon: a re-plan triggered by the timer (same generation, same catalog) adopts the new plan only
when it saves at least ``hysteresis.minSavingFraction`` of the applied plan's $/hour, or when the applied
plan no longer covers the demand (an SLO is at risk), and then only while fewer than
``hysteresis.maxChangesPerHour`` changes were applied in the last hour (SLO-driven changes are exempt).
"""

from __future__ import annotations

import datetime
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import ValidationError

from quartermaster.api.catalog import ModelCatalogSpec
from quartermaster.api.classes import QueryClassSpec
from quartermaster.api.pool import InferencePoolSpec
from quartermaster.api.poolstatus import Change, InferencePoolStatus, PlanSummary
from quartermaster.operator import metrics, reasons
from quartermaster.operator.budgets import TokenCaps, token_caps
from quartermaster.operator.clusterresult import ClusterResult, read_result
from quartermaster.operator.conditions import is_true, now_rfc3339, set_condition
from quartermaster.operator.kube import Kube
from quartermaster.operator.objects import POOL_LABEL, Owner, vllm_deployment, vllm_service
from quartermaster.operator.outcome import Outcome, validation_message
from quartermaster.operator.planning import make_plan
from quartermaster.operator.routerconfigmap import build_router_config, router_config_map
from quartermaster.operator.settings import OperatorSettings
from quartermaster.router.metrics import RatesFormatError, sum_rates

log = logging.getLogger(__name__)
APPLY_RECHECK_SECONDS = 3.0
INPUT_RETRY_SECONDS = 10.0
RATES_TIMEOUT_SECONDS = 2.0
AVAILABILITY_WAIT_SECONDS = 3.0


@dataclass(frozen=True)
class Inputs:
    catalog: ModelCatalogSpec
    classes: list[QueryClassSpec]
    cluster_result: ClusterResult | None
    version: str


def parse_time(stamp: str) -> datetime.datetime:
    return datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)


class PoolReconciler:
    def __init__(self, kube: Kube, settings: OperatorSettings) -> None:
        self.kube = kube
        self.settings = settings
        # When each pool was last planned (in memory: a re-plan that changes nothing writes nothing; after a
        # restart the recorded plan's time is used).
        self._last_planned: dict[str, tuple[str | None, datetime.datetime]] = {}

    # -- inputs ------------------------------------------------------------------------------------

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
        last = (
            when
            if when is not None and seen == planned_at
            else (parse_time(planned_at) if planned_at else None)
        )
        if last is None:
            return False
        elapsed = (now - last).total_seconds()
        return True if elapsed >= spec.planner.interval_seconds else None

    # -- reconcile ---------------------------------------------------------------------------------

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
        conditions: list[dict[str, Any]] = status.get("conditions", [])

        def degraded(reason: str, message: str, *, retry: bool) -> Outcome:
            conds = set_condition(conditions, reasons.DEGRADED, True, reason, message, generation, stamp)
            patch = {**status, "phase": "Degraded", "message": message, "conditions": conds}
            patch["observedGeneration"] = generation
            return Outcome(
                patch,
                [("Warning", reason, message)],
                requeue_after=INPUT_RETRY_SECONDS if retry else None,
                permanent_error=None if retry else message,
            )

        try:
            spec = InferencePoolSpec.model_validate(raw_spec)
        except ValidationError as exc:
            return degraded(reasons.INVALID_SPEC, validation_message(exc, "spec"), retry=False)
        inputs = self._inputs(spec, owner.namespace)
        if isinstance(inputs, tuple):
            return degraded(inputs[0], inputs[1], retry=True)
        catalog, classes, cluster_result = inputs.catalog, inputs.classes, inputs.cluster_result
        status["inputsVersion"] = inputs.version
        measured, rates_error = measured_rates(spec.rates_from)
        if measured is not None:
            classes = [c.model_copy(update={"rate": measured.get(c.name, 0.0)}) for c in classes]
        caps = token_caps(spec, classes)
        if caps is not None:
            classes = caps.classes

        outcome = make_plan(
            catalog,
            spec,
            classes,
            pool_name=owner.name,
            generation=generation,
            now=stamp,
            time_limit_cap=self.settings.plan_time_limit_cap,
            max_tokens=caps.max_tokens if caps else None,
        )
        conditions = set_condition(
            conditions, reasons.DEGRADED, False, reasons.AS_EXPECTED, "", generation, stamp
        )
        metrics.PLANS.labels(
            outcome="feasible"
            if outcome.summary
            else ("over_budget" if outcome.over_budget else "infeasible")
        ).inc()
        if outcome.summary is None:
            message = outcome.error or "no feasible plan"
            reason = reasons.OVER_BUDGET if outcome.over_budget else reasons.NO_FEASIBLE_PLAN
            conditions = set_condition(
                conditions, reasons.INFEASIBLE, True, reason, message, generation, stamp
            )
            conditions = set_condition(
                conditions,
                reasons.PLANNED,
                False,
                reason,
                "the running objects were left as they are",
                generation,
                stamp,
            )
            conditions = set_condition(
                conditions,
                reasons.BUDGET_EXCEEDED,
                outcome.over_budget,
                reasons.OVER_BUDGET if outcome.over_budget else reasons.WITHIN_BUDGET,
                message if outcome.over_budget else "",
                generation,
                stamp,
            )
            self._last_planned[owner.uid] = ((status.get("plan") or {}).get("plannedAt"), now)
            patch = {**status, "phase": "Infeasible", "message": message, "conditions": conditions}
            patch["observedGeneration"] = generation
            return Outcome(
                patch,
                [("Warning", reason, message)],
                permanent_error=message if outcome.invalid else None,
            )

        summary = outcome.summary
        metrics.SOLVE_SECONDS.observe(summary.solve_seconds)
        current = PlanSummary.model_validate(status["plan"]) if status.get("plan") else None
        adopted, why = self._adopt(spec, current, summary, status, generation, timer=timer, now=now)
        plan = summary if adopted else current
        if current is not None and current.hash == summary.hash:
            # Same content: keep the recorded plan (and its timestamps) so nothing is rewritten.
            plan = current.model_copy(update={"generation": generation})
        assert plan is not None
        self._last_planned[owner.uid] = (plan.planned_at, now)
        conditions = set_condition(
            conditions, reasons.INFEASIBLE, False, reasons.PLAN_FOUND, "", generation, stamp
        )
        conditions = set_condition(
            conditions, reasons.BUDGET_EXCEEDED, False, reasons.WITHIN_BUDGET, "", generation, stamp
        )
        conditions = set_condition(
            conditions,
            reasons.PLANNED,
            True,
            reasons.PLAN_FOUND if adopted else reasons.PLAN_KEPT_HYSTERESIS,
            why,
            generation,
            stamp,
        )
        events: list[tuple[str, str, str]] = []
        if rates_error:
            events.append(("Warning", reasons.RATES_UNAVAILABLE, rates_error))
        if adopted and (current is None or current.hash != plan.hash):
            events.append(
                (
                    "Normal",
                    reasons.PLAN_FOUND,
                    f"{why}: ${plan.cost_per_hour:.2f}/h, {plan.replicas} replicas",
                )
            )
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
            "observedGeneration": generation,
        }
        live = self.kube.list("apps/v1", "Deployment", owner.namespace, f"{POOL_LABEL}={owner.name}")
        changes = diff(plan, live)
        if not spec.auto_apply:
            conditions = set_condition(
                conditions,
                reasons.APPLIED,
                False,
                reasons.APPLY_DISABLED,
                f"{len(changes)} change(s) pending; set spec.autoApply: true to apply",
                generation,
                stamp,
            )
            patch |= {"phase": "Planned", "pendingChanges": changes, "conditions": conditions}
            return Outcome(patch, events)
        return self._apply(
            owner,
            spec,
            catalog,
            classes,
            cluster_result,
            plan,
            live,
            patch,
            conditions,
            events,
            generation,
            stamp,
            changes,
            now,
            caps,
        )

    def _wait_available(self, namespace: str, plan: PlanSummary) -> list[str]:
        """Planned Deployments not yet Available after a short bounded wait (the timer re-checks later)."""
        deadline = time.monotonic() + AVAILABILITY_WAIT_SECONDS
        while True:
            pending = [
                d.name for d in plan.deployments if not _available(self.kube, namespace, d.name, d.replicas)
            ]
            if not pending or time.monotonic() >= deadline:
                return pending
            time.sleep(0.25)

    # -- hysteresis ----------------------------------------------------------------------------------

    def _adopt(
        self,
        spec: InferencePoolSpec,
        current: PlanSummary | None,
        new: PlanSummary,
        status: dict[str, Any],
        generation: int,
        *,
        timer: bool,
        now: datetime.datetime,
    ) -> tuple[bool, str]:
        if current is None:
            return True, "first plan"
        if current.generation != generation:
            return True, f"spec changed (generation {current.generation} -> {generation})"
        if current.hash == new.hash:
            return True, "plan unchanged"
        if not timer:
            return True, "inputs changed"
        if _under_provisioned(current, new):
            return True, "the applied plan no longer covers the demand (SLO at risk)"
        hysteresis = spec.planner.hysteresis
        saving = current.cost_per_hour - new.cost_per_hour
        if saving < hysteresis.min_saving_fraction * current.cost_per_hour:
            return False, (
                f"kept the applied plan: the new one saves ${saving:.2f}/h, below "
                f"{hysteresis.min_saving_fraction:.0%} of ${current.cost_per_hour:.2f}/h"
            )
        if len(recent_changes(status, now)) >= hysteresis.max_changes_per_hour:
            return (
                False,
                f"kept the applied plan: {hysteresis.max_changes_per_hour:g} changes/hour cap reached",
            )
        return True, f"saves ${saving:.2f}/h"

    # -- apply ---------------------------------------------------------------------------------------

    def _apply(
        self,
        owner: Owner,
        spec: InferencePoolSpec,
        catalog: ModelCatalogSpec,
        classes: list[QueryClassSpec],
        cluster_result: ClusterResult | None,
        plan: PlanSummary,
        live: list[dict[str, Any]],
        patch: dict[str, Any],
        conditions: list[dict[str, Any]],
        events: list[tuple[str, str, str]],
        generation: int,
        stamp: str,
        changes: list[dict[str, Any]],
        now: datetime.datetime,
        caps: TokenCaps | None,
    ) -> Outcome:
        pools = {p.name: p for p in spec.node_pools}
        live_by_name = {d["metadata"]["name"]: d for d in live}
        for d in plan.deployments:
            per_replica = d.tensor_parallel * d.pipeline_parallel
            if per_replica > pools[d.node_pool].gpus_per_node:
                message = (
                    f"deployment {d.name} needs {per_replica} GPUs per replica but "
                    f"node pool {d.node_pool} has {pools[d.node_pool].gpus_per_node} per node; multi-node "
                    "replicas are not supported"
                )
                conds = set_condition(
                    conditions,
                    reasons.DEGRADED,
                    True,
                    reasons.UNSUPPORTED_PLACEMENT,
                    message,
                    generation,
                    stamp,
                )
                return Outcome(
                    {**patch, "phase": "Degraded", "message": message, "conditions": conds},
                    [("Warning", reasons.UNSUPPORTED_PLACEMENT, message)],
                )
        wrote = False
        for d in plan.deployments:
            deployment = vllm_deployment(
                owner, d, pools[d.node_pool], image=self.settings.vllm_image, plan_hash=plan.hash
            )
            wrote |= self.kube.apply(deployment, live_by_name.get(d.name))
            wrote |= self.kube.apply(vllm_service(owner, d))
        pending = self._wait_available(owner.namespace, plan)
        if pending:
            conds = set_condition(
                conditions,
                reasons.APPLIED,
                False,
                reasons.APPLYING,
                f"waiting for {', '.join(pending)} to become Available before switching traffic",
                generation,
                stamp,
            )
            return Outcome(
                {**patch, "phase": "Applying", "pendingChanges": changes, "conditions": conds},
                events,
                requeue_after=APPLY_RECHECK_SECONDS,
            )
        router = build_router_config(
            owner,
            generation,
            plan,
            catalog,
            classes,
            abandoned=caps.abandoned if caps else frozenset(),
            **(cluster_result.router_kwargs() if cluster_result else {}),
        )
        wrote |= self.kube.apply(router_config_map(owner, router))
        planned = {d.name for d in plan.deployments}
        for name in sorted(set(live_by_name) - planned):
            self.kube.delete("apps/v1", "Deployment", name, owner.namespace)
            self.kube.delete("v1", "Service", name, owner.namespace)
            wrote = True
        applied_before = patch.get("appliedPlanHash")
        history = recent_changes(patch, now)
        if applied_before != plan.hash:
            history.append(stamp)
            metrics.APPLIED_CHANGES.labels(namespace=owner.namespace, pool=owner.name).inc()
            events.append(
                ("Normal", reasons.ALL_AVAILABLE, f"applied plan {plan.hash[:12]}: {json.dumps(changes)}")
            )
        conds = set_condition(
            conditions,
            reasons.APPLIED,
            True,
            reasons.ALL_AVAILABLE,
            "every planned Deployment is Available",
            generation,
            stamp,
        )
        log.debug("apply of %s/%s wrote=%s", owner.namespace, owner.name, wrote)
        return Outcome(
            {
                **patch,
                "phase": "Applied",
                "appliedPlanHash": plan.hash,
                "pendingChanges": [],
                "routerConfigMap": router_config_map(owner, router)["metadata"]["name"],
                "changesApplied": history,
                "conditions": conds,
            },
            events,
        )


def measured_rates(urls: list[str]) -> tuple[dict[str, float] | None, str | None]:
    """Per-class request rates summed over the routers' rates documents; (None, why) when unavailable."""
    if not urls:
        return None, None
    documents = []
    for url in urls:
        try:
            response = httpx.get(url, timeout=RATES_TIMEOUT_SECONDS)
            response.raise_for_status()
            documents.append(response.json())
        except (httpx.HTTPError, ValueError) as exc:
            return None, f"spec.ratesFrom {url}: {exc}; planning with the declared rates"
    try:
        return sum_rates(documents), None
    except RatesFormatError as exc:
        return None, f"spec.ratesFrom: {exc}; planning with the declared rates"


def _available(kube: Kube, namespace: str, name: str, replicas: int) -> bool:
    live = kube.get("apps/v1", "Deployment", name, namespace)
    if live is None:
        return False
    status = live.get("status") or {}
    meta_generation = live["metadata"].get("generation", 0)
    return bool(
        status.get("observedGeneration", 0) >= meta_generation
        and (status.get("availableReplicas") or 0) >= replicas
        and (status.get("updatedReplicas") or 0) >= replicas
    )


def _under_provisioned(current: PlanSummary, new: PlanSummary) -> bool:
    """True when the new plan serves some class that the applied plan leaves (more) unserved."""
    old = {c.name: c for c in current.classes}
    for c in new.classes:
        previous = old.get(c.name)
        if (
            previous is None
            or previous.rate < c.rate * 0.999
            or previous.unserved_share > c.unserved_share + 1e-6
        ):
            return True
    return False


def recent_changes(status: dict[str, Any], now: datetime.datetime) -> list[str]:
    cutoff = now - datetime.timedelta(hours=1)
    kept = []
    for stamp in status.get("changesApplied") or []:
        if parse_time(stamp) >= cutoff:
            kept.append(stamp)
    return kept


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


def is_applied(status: dict[str, Any]) -> bool:
    return is_true(status.get("conditions") or [], reasons.APPLIED)
