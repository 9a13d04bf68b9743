"""QueryClusterJob reconciliation: run the clustering inline or as a Job, publish, report status."""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import pathlib
import tempfile
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import ValidationError

from quartermaster.api.clusterjob import QueryClusterJobSpec
from quartermaster.clustering.errors import ClusteringError
from quartermaster.clustering.io import inspect_source
from quartermaster.clustering.pipeline import ClusterConfig, run
from quartermaster.operator import reasons
from quartermaster.operator.clusterjobs import (
    chunk_names,
    clustering_job,
    empty_results,
    result_name,
    sharded_jobs,
    writer_rbac,
)
from quartermaster.operator.clusterresult import (
    CHUNK_KEY,
    RESULT_KEY_SUMMARY,
    ResultDocuments,
    ResultTooLargeError,
)
from quartermaster.operator.conditions import Conditions, now_rfc3339
from quartermaster.operator.kube import Kube
from quartermaster.operator.objects import Owner, config_map
from quartermaster.operator.outcome import Outcome, validation_message
from quartermaster.operator.publish import result_documents
from quartermaster.operator.settings import OperatorSettings

log = logging.getLogger(__name__)
MAX_DOWNLOAD_BYTES = 2 * 1024**3


def cluster_config(spec: QueryClusterJobSpec) -> ClusterConfig:
    return ClusterConfig(
        alpha=spec.alpha,
        attributes=tuple(spec.input.attributes),
        embedding_column=spec.input.embedding_column,
        trim_coverage=spec.trim_coverage,
        min_cluster_size=spec.min_cluster_size,
        seed=spec.seed,
    )


def result_configmaps(owner: Owner, docs: ResultDocuments, chunks: list[str]) -> list[dict[str, Any]]:
    labels = {"quartermaster.dev/query-cluster-job": owner.name}
    objects = [config_map(owner, result_name(owner.name), docs.data, labels=labels)]
    objects += [
        config_map(owner, name, {CHUNK_KEY: payload}, labels=labels)
        for name, payload in zip(chunks, docs.chunks, strict=False)
    ]
    return objects


def _rounded(value: Any, digits: int) -> Any:
    return round(value, digits) if isinstance(value, float) else value


def summary_status(summary: dict[str, Any]) -> dict[str, Any]:
    return {
        "clusters": summary.get("clusters"),
        "clustersKept": summary.get("clusters_kept"),
        "reductionFactor": _rounded(summary.get("reduction_factor"), 2),  # printer column: 221.75
        "minSimilarity": summary.get("min_similarity"),
        "coverage": summary.get("coverage"),
    }


@dataclass
class _Run:
    """One reconcile of one QueryClusterJob: what every step reads and the status it builds."""

    owner: Owner
    status: dict[str, Any]
    conditions: Conditions

    def outcome(
        self, phase: str, reason: str, text: str, *, truth: bool | str = "Unknown", **fields: Any
    ) -> Outcome:
        """Status with ``phase`` and the Succeeded condition; Failed is permanent (the spec must change)."""
        conditions = self.conditions.set(reasons.SUCCEEDED, truth, reason, text)
        patch = {**self.status, "message": None, **fields, "phase": phase, "conditions": conditions}
        if phase == "Failed":
            return Outcome({**patch, "message": text}, [("Warning", reason, text)], permanent_error=text)
        noteworthy = phase == "Succeeded" or reason == reasons.JOB_CREATED
        return Outcome(patch, [("Normal", reason, text)] if noteworthy else [])

    def failed(self, reason: str, text: str) -> Outcome:
        return self.outcome("Failed", reason, text, truth=False)

    def succeeded(self, summary: dict[str, Any]) -> Outcome:
        text = (
            f"{summary.get('clusters_kept')} classes from {summary.get('n')} rows "
            f"(reduction {summary.get('reduction_factor', 0):.1f}x, "
            f"min similarity {summary.get('min_similarity')})"
        )
        result = {"resultConfigMap": result_name(self.owner.name), **summary_status(summary)}
        return self.outcome("Succeeded", reasons.JOB_SUCCEEDED, text, truth=True, **result)


class QueryClusterJobReconciler:
    def __init__(self, kube: Kube, settings: OperatorSettings) -> None:
        self.kube = kube
        self.settings = settings

    def reconcile(
        self,
        owner: Owner,
        raw_spec: dict[str, Any],
        raw_status: dict[str, Any],
        generation: int,
        now: datetime.datetime,
    ) -> Outcome:
        status = {**(raw_status or {}), "observedGeneration": generation}
        conditions = Conditions(list(status.get("conditions") or []), generation, now_rfc3339(now))
        try:
            spec = QueryClusterJobSpec.model_validate(raw_spec)
        except ValidationError as exc:
            return _Run(owner, status, conditions).failed(
                reasons.INPUT_INVALID, validation_message(exc, "spec")
            )
        if (
            raw_status
            and raw_status.get("phase") in ("Succeeded", "Failed")
            and (raw_status.get("observedGeneration") == generation)
        ):
            return Outcome(dict(raw_status))
        state = _Run(owner, status, conditions)
        return self._inline(state, spec) if spec.executor == "inline" else self._job(state, spec, generation)

    # -- inline --------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _local_input(self, url: str) -> Iterator[pathlib.Path]:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme == "file":
            if not self.settings.allow_file_urls:
                raise ClusteringError(
                    f"spec.input.url={url!r}: file:// URLs are disabled; use an http(s) URL or a "
                    "persistentVolumeClaim (operators for local development set QM_ALLOW_FILE_URLS=true)"
                )
            yield pathlib.Path(urllib.parse.unquote(parsed.path))
            return
        suffix = ".npy" if parsed.path.endswith(".npy") else ".parquet"
        with tempfile.TemporaryDirectory() as tmp:
            target = pathlib.Path(tmp) / f"input{suffix}"
            with (
                httpx.stream("GET", url, timeout=60, follow_redirects=True) as response,
                target.open("wb") as f,
            ):
                response.raise_for_status()
                size = 0
                for block in response.iter_bytes():
                    size += len(block)
                    if size > MAX_DOWNLOAD_BYTES:
                        raise ClusteringError(
                            f"spec.input.url={url!r} is larger than 2 GiB; use executor: job"
                        )
                    f.write(block)
            yield target

    def _inline(self, state: _Run, spec: QueryClusterJobSpec) -> Outcome:
        owner = state.owner
        if spec.input.url is None:
            return state.failed(
                reasons.INPUT_INVALID,
                "executor: inline reads spec.input.url; a persistentVolumeClaim needs executor: job",
            )
        chunks = chunk_names(owner.name, spec.max_representative_bytes)
        try:
            with self._local_input(spec.input.url) as path:
                rows = inspect_source(path).n_rows
                if rows > self.settings.inline_max_rows:
                    raise ClusteringError(
                        f"the input has {rows} rows, over the inline limit of "
                        f"{self.settings.inline_max_rows}; use executor: job"
                    )
                docs = result_documents(
                    run(path, cluster_config(spec)),
                    path,
                    embedding_column=spec.input.embedding_column,
                    spec_rate=spec.total_rate,
                    chunk_names=chunks,
                    max_bytes=spec.max_representative_bytes,
                )
        except ResultTooLargeError as exc:
            return state.failed(reasons.RESULT_TOO_LARGE, str(exc))
        except (ClusteringError, httpx.HTTPError, OSError) as exc:
            return state.failed(reasons.INPUT_INVALID, str(exc))
        for obj in result_configmaps(owner, docs, chunks):
            self.kube.apply(obj)
        return state.succeeded(json.loads(docs.data[RESULT_KEY_SUMMARY]))

    # -- Job -----------------------------------------------------------------------------------------

    def _job(self, state: _Run, spec: QueryClusterJobSpec, generation: int) -> Outcome:
        owner = state.owner
        for obj in writer_rbac(owner, spec):
            self.kube.apply(obj)
        for cm in empty_results(owner, spec):
            if self.kube.get("v1", "ConfigMap", cm["metadata"]["name"], owner.namespace) is None:
                self.kube.apply(cm)
        image = self.settings.operator_image
        jobs = (
            list(sharded_jobs(owner, spec, image=image))
            if spec.shards > 1
            else [clustering_job(owner, spec, image=image)]
        )
        for job in jobs:
            name = job["metadata"]["name"] = f"{job['metadata']['name']}-g{generation}"[:63]
            live = self.kube.get("batch/v1", "Job", name, owner.namespace)
            if live is None:
                self.kube.apply(job)
                return state.outcome("Pending", reasons.JOB_CREATED, f"Job {name} created", jobName=name)
            job_status = live.get("status") or {}
            job_conditions = {c["type"]: c for c in job_status.get("conditions") or []}
            if job_conditions.get("Failed", {}).get("status") == "True":
                failed = job_conditions["Failed"]
                return state.failed(
                    reasons.JOB_FAILED, f"Job {name} failed: {failed.get('reason')}: {failed.get('message')}"
                )
            if job_conditions.get("Complete", {}).get("status") != "True":
                phase = "Running" if job_status.get("active") else "Pending"
                return state.outcome(
                    phase, reasons.JOB_RUNNING, f"Job {name} is {phase.lower()}", jobName=name
                )
        result = self.kube.get("v1", "ConfigMap", result_name(owner.name), owner.namespace)
        data = (result or {}).get("data") or {}
        if RESULT_KEY_SUMMARY not in data:
            return state.failed(
                reasons.JOB_FAILED,
                f"Job {jobs[-1]['metadata']['name']} completed but published no result into ConfigMap "
                f"{result_name(owner.name)}; check its pod logs",
            )
        return state.succeeded(json.loads(data[RESULT_KEY_SUMMARY]))
