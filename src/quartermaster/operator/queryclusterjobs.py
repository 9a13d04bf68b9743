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
from quartermaster.operator.conditions import now_rfc3339, set_condition
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


def summary_status(summary: dict[str, Any]) -> dict[str, Any]:
    return {
        "clusters": summary.get("clusters"),
        "clustersKept": summary.get("clusters_kept"),
        "reductionFactor": summary.get("reduction_factor"),
        "minSimilarity": summary.get("min_similarity"),
        "coverage": summary.get("coverage"),
    }


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
        stamp = now_rfc3339(now)
        status = dict(raw_status or {})
        conditions = list(status.get("conditions") or [])
        try:
            spec = QueryClusterJobSpec.model_validate(raw_spec)
        except ValidationError as exc:
            return self._failed(
                status, conditions, reasons.INPUT_INVALID, validation_message(exc, "spec"), generation, stamp
            )
        if status.get("phase") in ("Succeeded", "Failed") and status.get("observedGeneration") == generation:
            return Outcome(status)
        if spec.executor == "inline":
            return self._inline(owner, spec, status, conditions, generation, stamp)
        return self._job(owner, spec, status, conditions, generation, stamp)

    # -- outcomes ------------------------------------------------------------------------------------

    def _failed(
        self,
        status: dict[str, Any],
        conditions: list[dict[str, Any]],
        reason: str,
        message: str,
        generation: int,
        stamp: str,
    ) -> Outcome:
        conditions = set_condition(conditions, reasons.SUCCEEDED, False, reason, message, generation, stamp)
        patch = {
            **status,
            "phase": "Failed",
            "message": message,
            "observedGeneration": generation,
            "conditions": conditions,
        }
        return Outcome(patch, [("Warning", reason, message)], permanent_error=message)

    def _succeeded(
        self,
        owner: Owner,
        status: dict[str, Any],
        conditions: list[dict[str, Any]],
        summary: dict[str, Any],
        generation: int,
        stamp: str,
    ) -> Outcome:
        message = (
            f"{summary.get('clusters_kept')} classes from {summary.get('n')} rows "
            f"(reduction {summary.get('reduction_factor', 0):.1f}x, "
            f"min similarity {summary.get('min_similarity')})"
        )
        conditions = set_condition(
            conditions, reasons.SUCCEEDED, True, reasons.JOB_SUCCEEDED, message, generation, stamp
        )
        patch = {
            **status,
            **summary_status(summary),
            "phase": "Succeeded",
            "resultConfigMap": result_name(owner.name),
            "message": None,
            "observedGeneration": generation,
            "conditions": conditions,
        }
        return Outcome(patch, [("Normal", reasons.JOB_SUCCEEDED, message)])

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

    def _inline(
        self,
        owner: Owner,
        spec: QueryClusterJobSpec,
        status: dict[str, Any],
        conditions: list[dict[str, Any]],
        generation: int,
        stamp: str,
    ) -> Outcome:
        if spec.input.url is None:
            return self._failed(
                status,
                conditions,
                reasons.INPUT_INVALID,
                "executor: inline reads spec.input.url; a persistentVolumeClaim needs executor: job",
                generation,
                stamp,
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
                result = run(path, cluster_config(spec))
                docs = result_documents(
                    result,
                    path,
                    embedding_column=spec.input.embedding_column,
                    spec_rate=spec.total_rate,
                    chunk_names=chunks,
                    max_bytes=spec.max_representative_bytes,
                )
        except ResultTooLargeError as exc:
            return self._failed(status, conditions, reasons.RESULT_TOO_LARGE, str(exc), generation, stamp)
        except (ClusteringError, httpx.HTTPError, OSError) as exc:
            return self._failed(status, conditions, reasons.INPUT_INVALID, str(exc), generation, stamp)
        for obj in result_configmaps(owner, docs, chunks):
            self.kube.apply(obj)
        return self._succeeded(
            owner, status, conditions, json.loads(docs.data[RESULT_KEY_SUMMARY]), generation, stamp
        )

    # -- Job -----------------------------------------------------------------------------------------

    def _job(
        self,
        owner: Owner,
        spec: QueryClusterJobSpec,
        status: dict[str, Any],
        conditions: list[dict[str, Any]],
        generation: int,
        stamp: str,
    ) -> Outcome:
        for obj in writer_rbac(owner, spec):
            self.kube.apply(obj)
        for cm in empty_results(owner, spec):
            if self.kube.get("v1", "ConfigMap", cm["metadata"]["name"], owner.namespace) is None:
                self.kube.apply(cm)
        image = self.settings.operator_image
        if spec.shards > 1:
            first, merge = sharded_jobs(owner, spec, image=image)
            jobs = [first, merge]
        else:
            jobs = [clustering_job(owner, spec, image=image)]
        for job in jobs:
            job["metadata"]["name"] = f"{job['metadata']['name']}-g{generation}"[:63]
        for job in jobs:
            live = self.kube.get("batch/v1", "Job", job["metadata"]["name"], owner.namespace)
            if live is None:
                self.kube.apply(job)
                message = f"Job {job['metadata']['name']} created"
                conditions = set_condition(
                    conditions, reasons.SUCCEEDED, "Unknown", reasons.JOB_CREATED, message, generation, stamp
                )
                return Outcome(
                    {
                        **status,
                        "phase": "Pending",
                        "jobName": job["metadata"]["name"],
                        "observedGeneration": generation,
                        "conditions": conditions,
                    },
                    [("Normal", reasons.JOB_CREATED, message)],
                )
            job_conditions = {c["type"]: c for c in (live.get("status") or {}).get("conditions") or []}
            if job_conditions.get("Failed", {}).get("status") == "True":
                failed = job_conditions["Failed"]
                message = (
                    f"Job {job['metadata']['name']} failed: {failed.get('reason')}: {failed.get('message')}"
                )
                return self._failed(status, conditions, reasons.JOB_FAILED, message, generation, stamp)
            if job_conditions.get("Complete", {}).get("status") != "True":
                running = (live.get("status") or {}).get("active")
                phase = "Running" if running else "Pending"
                conditions = set_condition(
                    conditions,
                    reasons.SUCCEEDED,
                    "Unknown",
                    reasons.JOB_RUNNING,
                    f"Job {job['metadata']['name']} is {phase.lower()}",
                    generation,
                    stamp,
                )
                return Outcome(
                    {
                        **status,
                        "phase": phase,
                        "jobName": job["metadata"]["name"],
                        "observedGeneration": generation,
                        "conditions": conditions,
                    }
                )
        result = self.kube.get("v1", "ConfigMap", result_name(owner.name), owner.namespace)
        data = (result or {}).get("data") or {}
        if RESULT_KEY_SUMMARY not in data:
            return self._failed(
                status,
                conditions,
                reasons.JOB_FAILED,
                f"Job {jobs[-1]['metadata']['name']} completed but published no result into ConfigMap "
                f"{result_name(owner.name)}; check its pod logs",
                generation,
                stamp,
            )
        return self._succeeded(
            owner, status, conditions, json.loads(data[RESULT_KEY_SUMMARY]), generation, stamp
        )
