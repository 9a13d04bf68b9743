"""QueryClusterJob: cluster logged queries into query classes with a provable similarity floor."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from quartermaster.api.classes import SpecModel
from quartermaster.api.pool import Toleration
from quartermaster.api.status import Condition


class PvcSource(SpecModel):
    """A file on a PersistentVolumeClaim, mounted read-only into the clustering Job."""

    claim_name: str = Field(min_length=1, description="Name of the PersistentVolumeClaim.")
    path: str = Field(min_length=1, description="Path of the Parquet/.npy file inside the volume.")


class ClusterInput(SpecModel):
    """Where the logged queries are. Exactly one source must be set."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "(has(self.persistentVolumeClaim) ? 1 : 0) + (has(self.url) ? 1 : 0) == 1",
                    "message": "set exactly one of input.persistentVolumeClaim or input.url",
                }
            ]
        }
    )

    persistent_volume_claim: PvcSource | None = Field(
        default=None, description="Read the input from a file on a PersistentVolumeClaim (Job executor)."
    )
    url: str | None = Field(
        default=None,
        pattern=r"^(https?|file)://.+",
        description="Read the input from an in-cluster http(s) URL. file:// URLs are accepted only by the "
        "inline executor when the operator runs with QM_ALLOW_FILE_URLS=true (local development).",
    )
    embedding_column: str = Field(
        default="embedding", description="Parquet column holding each query's embedding (list of floats)."
    )
    attributes: list[str] = Field(
        default_factory=list,
        description="Categorical columns a member must share exactly with its representative.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> ClusterInput:
        if (self.persistent_volume_claim is None) == (self.url is None):
            raise ValueError("set exactly one of input.persistentVolumeClaim or input.url")
        return self


class Resources(SpecModel):
    """Compute resources of each clustering pod."""

    cpu: str = Field(default="2", description="CPU request and limit, e.g. '2' or '1500m'.")
    memory: str = Field(default="4Gi", description="Memory request and limit, e.g. '4Gi'.")


class QueryClusterJobSpec(SpecModel):
    """Desired clustering run."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!(has(self.trimCoverage) && has(self.minClusterSize))",
                    "message": "set at most one of trimCoverage or minClusterSize",
                },
                {
                    "rule": "self.executor == 'job' || self.shards == 1",
                    "message": "shards > 1 needs executor: job",
                },
                {
                    "rule": "self.shards == 1 || has(self.input.persistentVolumeClaim)",
                    "message": "shards > 1 needs input.persistentVolumeClaim (shards are written next to it)",
                },
            ]
        }
    )

    input: ClusterInput = Field(description="Where the logged queries are and which columns to use.")
    alpha: float = Field(
        gt=0.0,
        le=1.0,
        description="Cosine similarity every member is guaranteed to have with its representative.",
    )
    trim_coverage: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        description="Keep the largest clusters up to this share of rows; the rest go to the default class.",
    )
    min_cluster_size: int | None = Field(
        default=None, ge=1, description="Keep only clusters with at least this many rows."
    )
    seed: int = Field(default=0, ge=0, description="Random seed (k-means cells); runs are deterministic.")
    total_rate: float | None = Field(
        default=None,
        gt=0.0,
        description="Total request rate (req/s) the classes share. Default: rows / time span of the "
        "timestamp column.",
    )
    executor: Literal["job", "inline"] = Field(
        default="job",
        description="job: a Kubernetes Job on the operator's image; inline: inside the operator (small "
        "inputs only).",
    )
    shards: int = Field(
        default=1, ge=1, le=1000, description="Indexed-Job shards (rows split by index), merged afterwards."
    )
    resources: Resources = Field(default_factory=Resources, description="Per-pod compute resources.")
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Node labels the clustering pods must run on (e.g. a CPU pool)."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, description="Tolerations of the clustering pods."
    )
    backoff_limit: int = Field(default=2, ge=0, le=20, description="Job retries before it fails.")
    ttl_seconds_after_finished: int = Field(
        default=3600, ge=0, description="Seconds after completion before Kubernetes deletes the Job."
    )
    max_representative_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=1024,
        description="Largest representative matrix stored in ConfigMaps (chunked under the 1 MiB "
        "ConfigMap limit). Bigger results fail with a message instead of being truncated.",
    )

    @model_validator(mode="after")
    def _cross_field(self) -> QueryClusterJobSpec:
        if self.trim_coverage is not None and self.min_cluster_size is not None:
            raise ValueError("set at most one of trimCoverage or minClusterSize")
        if self.shards > 1 and self.executor != "job":
            raise ValueError("shards > 1 needs executor: job")
        if self.shards > 1 and self.input.persistent_volume_claim is None:
            raise ValueError("shards > 1 needs input.persistentVolumeClaim (shards are written next to it)")
        return self


class QueryClusterJobStatus(SpecModel):
    """Observed state of the clustering run."""

    phase: Literal["Pending", "Running", "Succeeded", "Failed"] | None = Field(
        default=None, description="Pending, Running, Succeeded or Failed."
    )
    job_name: str | None = Field(default=None, description="The batch/v1 Job running the clustering.")
    clusters: int | None = Field(default=None, ge=0, description="Clusters found (before trimming).")
    clusters_kept: int | None = Field(default=None, ge=0, description="Clusters kept as query classes.")
    reduction_factor: float | None = Field(
        default=None, description="Rows per LLM call needed (rows / representatives kept)."
    )
    min_similarity: float | None = Field(
        default=None, description="Smallest member-to-representative cosine similarity."
    )
    coverage: float | None = Field(default=None, description="Share of rows in kept clusters.")
    result_config_map: str | None = Field(
        default=None, description="ConfigMap holding the classes (and representatives or their chunks)."
    )
    message: str | None = Field(default=None, description="Failure message, if any.")
    observed_generation: int | None = Field(default=None, description="Generation last acted on.")
    conditions: list[Condition] = Field(default_factory=list, description="Latest observations.")
