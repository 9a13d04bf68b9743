"""kopf handlers: thin adapters from events to the services (catalogs, pools, queryclusterjobs).

Every handler parses nothing itself: it hands the body to one service, writes back only the status fields
that changed (zero writes when nothing changed), posts the service's Events, and turns the outcome into
kopf's error semantics (``PermanentError`` for a spec the user must fix).
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

import kopf

from quartermaster.api.crdgen import GROUP, VERSION
from quartermaster.operator import metrics
from quartermaster.operator.catalogs import reconcile_catalog
from quartermaster.operator.kube import Kube, load_api_client
from quartermaster.operator.objects import Owner
from quartermaster.operator.outcome import Outcome
from quartermaster.operator.pools import PoolReconciler
from quartermaster.operator.queryclusterjobs import QueryClusterJobReconciler
from quartermaster.operator.settings import OperatorSettings

TIMER_SECONDS = 5.0


@kopf.on.startup()
def configure(
    settings: kopf.OperatorSettings,
    memo: kopf.Memo,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    **_: Any,
) -> None:
    cfg = OperatorSettings()
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    settings.execution.max_workers = 8
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    if cfg.peering:
        settings.peering.name = cfg.peering
        settings.peering.mandatory = True
    kube = Kube(load_api_client())
    memo.settings = cfg
    memo.kube = kube
    memo.pools = PoolReconciler(kube, cfg)
    memo.jobs = QueryClusterJobReconciler(kube, cfg)
    metrics.serve(cfg.metrics_port)
    logger.info("quartermaster operator configured (namespace=%s)", cfg.namespace or "<all>")


@kopf.on.cleanup()
def close(memo: kopf.Memo, **_: Any) -> None:
    kube: Kube | None = getattr(memo, "kube", None)
    if kube is not None:
        kube.api_client.close()  # type: ignore[no-untyped-call]


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _finish(kind: str, outcome: Outcome, body: kopf.Body, patch: kopf.Patch, status: kopf.Status) -> None:
    current = dict(status or {})
    for key, value in outcome.status.items():
        if current.get(key) != value:
            patch.status[key] = value
    for type_, reason, message in outcome.events:
        kopf.event(body, type=type_, reason=reason, message=message)
    if outcome.permanent_error:
        metrics.RECONCILE_ERRORS.labels(kind=kind).inc()
        raise kopf.PermanentError(outcome.permanent_error)


def _owner(kind: str, body: kopf.Body) -> Owner:
    meta = body["metadata"]
    return Owner(kind=kind, name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])


# -- ModelCatalog ---------------------------------------------------------------------------------------


@kopf.on.resume(GROUP, VERSION, "modelcatalogs")
@kopf.on.create(GROUP, VERSION, "modelcatalogs")
@kopf.on.update(GROUP, VERSION, "modelcatalogs", field="spec")
def catalog_changed(
    body: kopf.Body, spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta, patch: kopf.Patch, **_: Any
) -> None:
    outcome = reconcile_catalog(dict(spec), dict(status), int(meta.get("generation", 0)), _now())
    _finish("ModelCatalog", outcome, body, patch, status)


# -- InferencePool --------------------------------------------------------------------------------------


@kopf.on.resume(GROUP, VERSION, "inferencepools")
@kopf.on.create(GROUP, VERSION, "inferencepools")
@kopf.on.update(GROUP, VERSION, "inferencepools", field="spec")
def pool_changed(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    patch: kopf.Patch,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    _reconcile_pool(body, spec, status, meta, patch, memo, tick=False)


def _reconcile_pool(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    patch: kopf.Patch,
    memo: kopf.Memo,
    *,
    tick: bool,
) -> None:
    """``tick``: called by the timer, which reconciles only when :meth:`PoolReconciler.due` says so."""
    pools: PoolReconciler = memo.pools
    owner, generation, now = _owner("InferencePool", body), int(meta.get("generation", 0)), _now()
    rolling = False  # a rolling re-plan (only a tick can start one)
    if tick:
        due = pools.due(owner, dict(spec), dict(status), generation, now)
        if due is None:
            return
        rolling = due
    outcome = pools.reconcile(owner, dict(spec), dict(status), generation, timer=rolling, now=now)
    _finish("InferencePool", outcome, body, patch, status)


@kopf.timer(GROUP, VERSION, "inferencepools", interval=TIMER_SECONDS, initial_delay=TIMER_SECONDS)
def pool_tick(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    patch: kopf.Patch,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    _reconcile_pool(body, spec, status, meta, patch, memo, tick=True)


# -- QueryClusterJob ------------------------------------------------------------------------------------


@kopf.on.resume(GROUP, VERSION, "queryclusterjobs")
@kopf.on.create(GROUP, VERSION, "queryclusterjobs")
@kopf.on.update(GROUP, VERSION, "queryclusterjobs", field="spec")
def job_changed(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    patch: kopf.Patch,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    _reconcile_job(body, spec, status, meta, patch, memo)


def _reconcile_job(
    body: kopf.Body, spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta, patch: kopf.Patch, memo: kopf.Memo
) -> None:
    jobs: QueryClusterJobReconciler = memo.jobs
    outcome = jobs.reconcile(
        _owner("QueryClusterJob", body), dict(spec), dict(status), int(meta.get("generation", 0)), _now()
    )
    _finish("QueryClusterJob", outcome, body, patch, status)


@kopf.timer(GROUP, VERSION, "queryclusterjobs", interval=TIMER_SECONDS, initial_delay=TIMER_SECONDS)
def job_tick(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    patch: kopf.Patch,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    _reconcile_job(body, spec, status, meta, patch, memo)  # finished runs come back unchanged
