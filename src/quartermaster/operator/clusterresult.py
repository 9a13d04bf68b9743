"""The result of a QueryClusterJob as ConfigMaps, and reading it back for an InferencePool.

``<name>-result`` holds three JSON documents:

- ``classes.json``: the query classes (QueryClassSpec, camelCase): one per kept cluster, named
  ``cluster-<id>``, with ``rate = share x total rate`` and mean prompt/output tokens, plus a ``default``
  class for trimmed rows (the router sends requests that match no representative there);
- ``summary.json``: the clustering summary (n, alpha, clusters, reduction factor, min similarity, ...);
- ``representatives.json``: how to get the representative embeddings (RepresentativeEmbeddings of the
  router ConfigMap schema: inline base64 when small, else ``configMaps`` naming ``<name>-reps-<i>`` chunks
  of at most 700 kB each under the 1 MiB ConfigMap limit) and each class's rows in that matrix.

A result larger than ``spec.maxRepresentativeBytes`` is refused with a message (never truncated).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from quartermaster.api.classes import QueryClassSpec
from quartermaster.api.routerconfig import (
    INLINE_EMBEDDINGS_MAX_BYTES,
    RepresentativeEmbeddings,
    encode_representatives,
    representatives_bytes,
    split_configmap_chunks,
)
from quartermaster.operator.kube import Kube

RESULT_KEY_CLASSES = "classes.json"
RESULT_KEY_SUMMARY = "summary.json"
RESULT_KEY_REPRESENTATIVES = "representatives.json"
CHUNK_KEY = "embeddings.b64"
DEFAULT_CLASS = "default"
DEFAULT_PROMPT_TOKENS = 512.0
DEFAULT_OUTPUT_TOKENS = 256.0


class ResultTooLargeError(ValueError):
    """The representatives do not fit the configured ConfigMap budget."""


@dataclass(frozen=True)
class ClusterStats:
    """One kept cluster: its id, share of rows, mean tokens (None when the input has no token columns)."""

    cluster: int
    share: float
    prompt_tokens: float | None
    output_tokens: float | None


@dataclass(frozen=True)
class ResultDocuments:
    data: dict[str, str]
    chunks: list[str]


def build_result(
    clusters: list[ClusterStats],
    embeddings: npt.NDArray[np.floating],
    summary: dict[str, Any],
    *,
    total_rate: float,
    trimmed_share: float,
    default_tokens: tuple[float | None, float | None],
    chunk_names: list[str],
    max_bytes: int,
) -> ResultDocuments:
    """Pure: the result ConfigMap data and the chunk payloads. ``embeddings`` rows follow ``clusters``."""
    classes = []
    for c in clusters:
        classes.append(
            QueryClassSpec(
                name=f"cluster-{c.cluster}",
                rate=round(c.share * total_rate, 9),
                prompt_tokens=c.prompt_tokens or DEFAULT_PROMPT_TOKENS,
                output_tokens=c.output_tokens or DEFAULT_OUTPUT_TOKENS,
            )
        )
    if trimmed_share > 0 or not classes:
        classes.append(
            QueryClassSpec(
                name=DEFAULT_CLASS,
                rate=round(max(trimmed_share, 0.0) * total_rate, 9),
                prompt_tokens=default_tokens[0] or DEFAULT_PROMPT_TOKENS,
                output_tokens=default_tokens[1] or DEFAULT_OUTPUT_TOKENS,
            )
        )
    raw = representatives_bytes(embeddings, "float16") if len(clusters) else b""
    if len(raw) > max_bytes:
        raise ResultTooLargeError(
            f"{len(clusters)} representatives x {embeddings.shape[1]} dims need {len(raw)} bytes, over "
            f"spec.maxRepresentativeBytes={max_bytes}; raise it, trim more (trimCoverage/minClusterSize) "
            "or lower alpha"
        )
    chunks: list[str] = []
    reps: RepresentativeEmbeddings | None = None
    if clusters and len(raw) <= INLINE_EMBEDDINGS_MAX_BYTES // 2:
        reps = encode_representatives(embeddings, "float16")
    elif clusters:
        chunks = split_configmap_chunks(raw)
        if len(chunks) > len(chunk_names):
            raise ResultTooLargeError(
                f"representatives need {len(chunks)} ConfigMap chunks but only {len(chunk_names)} are "
                "allowed by spec.maxRepresentativeBytes; raise it"
            )
        reps = RepresentativeEmbeddings(
            dim=int(embeddings.shape[1]),
            count=len(clusters),
            dtype="float16",
            storage="configMaps",
            config_maps=chunk_names[: len(chunks)],
            data_key=CHUNK_KEY,
            sha256=hashlib.sha256(raw).hexdigest(),
        )
    representatives = {
        "embeddings": None if reps is None else reps.model_dump(by_alias=True, exclude_none=True),
        "ranges": {f"cluster-{c.cluster}": [row, 1] for row, c in enumerate(clusters)},
        "defaultClass": DEFAULT_CLASS if any(c.name == DEFAULT_CLASS for c in classes) else classes[0].name,
    }
    data = {
        RESULT_KEY_CLASSES: json.dumps([c.model_dump(by_alias=True, exclude_none=True) for c in classes]),
        RESULT_KEY_SUMMARY: json.dumps(summary, sort_keys=True),
        RESULT_KEY_REPRESENTATIVES: json.dumps(representatives, sort_keys=True),
    }
    return ResultDocuments(data, chunks)


@dataclass(frozen=True)
class ClusterResult:
    """A published result, as an InferencePool consumes it."""

    classes: tuple[QueryClassSpec, ...]
    alpha: float
    dimension: int
    embedding_model: str
    representatives: RepresentativeEmbeddings | None
    ranges: dict[str, tuple[int, int]]
    default_class: str
    version: str = ""

    def router_kwargs(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "dimension": self.dimension,
            "embedding_model": self.embedding_model,
            "representatives": self.representatives,
            "representative_ranges": self.ranges,
            "default_class": self.default_class,
        }


def parse_result(data: dict[str, str], version: str = "") -> ClusterResult:
    classes = tuple(QueryClassSpec.model_validate(c) for c in json.loads(data[RESULT_KEY_CLASSES]))
    summary = json.loads(data[RESULT_KEY_SUMMARY])
    reps = json.loads(data[RESULT_KEY_REPRESENTATIVES])
    embeddings = reps.get("embeddings")
    return ClusterResult(
        classes=classes,
        alpha=float(summary["alpha"]),
        dimension=int(summary.get("d") or (embeddings or {}).get("dim") or 1),
        embedding_model=str(summary.get("embeddingModel") or "sentence-transformers/all-MiniLM-L6-v2"),
        representatives=None if embeddings is None else RepresentativeEmbeddings.model_validate(embeddings),
        ranges={k: (int(v[0]), int(v[1])) for k, v in reps["ranges"].items()},
        default_class=str(reps["defaultClass"]),
        version=version,
    )


def read_result(kube: Kube, job_name: str, namespace: str) -> ClusterResult | str:
    """The published result of QueryClusterJob ``job_name``, or why it is not available yet."""
    body = kube.custom_object("queryclusterjobs", job_name, namespace)
    if body is None:
        return f"QueryClusterJob {namespace}/{job_name} (spec.classesFrom) does not exist; create it"
    status = body.get("status") or {}
    if status.get("phase") != "Succeeded" or not status.get("resultConfigMap"):
        return f"QueryClusterJob {job_name} has not succeeded yet (phase {status.get('phase') or 'Pending'})"
    cm = kube.get("v1", "ConfigMap", status["resultConfigMap"], namespace)
    if cm is None or not cm.get("data"):
        return (
            f"result ConfigMap {status['resultConfigMap']} of QueryClusterJob {job_name} is missing or empty"
        )
    return parse_result(cm["data"], version=str(cm["metadata"].get("resourceVersion", "")))


def chunk_count(max_bytes: int) -> int:
    return max(1, math.ceil(max_bytes / INLINE_EMBEDDINGS_MAX_BYTES))
