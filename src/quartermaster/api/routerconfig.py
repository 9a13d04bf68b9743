"""The router ConfigMap: what the operator writes and the router service reads.

One JSON document (key :data:`ROUTER_CONFIG_KEY` of a ConfigMap) tells the request-time router, for every
query cluster, which deployments to send a request to (weighted), how many output tokens to allow, when and
where to escalate a weak answer, and what to do with queries the token budget abandons. Requests are assigned
to clusters by cosine similarity to the clusters' *representative embeddings*; a request whose best
similarity is below the clustering ``alpha`` goes to :attr:`RouterConfig.default_cluster`.

Versioning: ``schemaVersion`` is an integer bumped on every incompatible change. :func:`load_router_config`
refuses documents of another version with a message naming both versions (the router keeps its last good
config instead of guessing). ``contentHash`` is the SHA-256 of the canonical JSON of the document without the
hash itself; :func:`dump_router_config` fills it in and :func:`load_router_config` verifies it when present,
so the router can cheaply tell whether anything changed and detect a truncated or hand-edited document.

Representative embeddings are a row-major ``count x dim`` little-endian float16/float32 matrix. Rows are
sorted by cluster: cluster ``c`` owns rows ``[c.representatives.offset, offset + count)``. The matrix is
stored inline (base64) when it fits a ConfigMap, else referenced (``storage``): ``configMaps`` (ordered
ConfigMap names, each holding one base64 chunk under ``dataKey``; decode each chunk and concatenate the
bytes), ``url`` (raw bytes served over HTTP) or ``pvc`` (a raw file on a mounted PersistentVolumeClaim).
References carry the SHA-256 of the raw bytes so the router can verify what it fetched.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

SCHEMA_VERSION = 1
"""The version this code reads and writes."""
ROUTER_CONFIG_KEY = "router-config.json"
"""ConfigMap ``data`` key holding the document."""
CONFIGMAP_MAX_BYTES = 1_048_576
"""Kubernetes limit on a ConfigMap's total size."""
INLINE_EMBEDDINGS_MAX_BYTES = 700_000
"""Raw embedding bytes above which writers should store a reference instead (base64 grows by 4/3)."""

_ID_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,126}[A-Za-z0-9])?$"
_SHA_PATTERN = r"^[0-9a-f]{64}$"


class RouterConfigError(ValueError):
    """A router config that cannot be used; the message names the field, the value and the fix."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=to_camel, frozen=True)


class PlanRef(_Model):
    """Which plan produced this routing."""

    name: str = Field(description="Name of the InferencePool whose plan produced this config.")
    namespace: str | None = Field(default=None, description="Namespace of that InferencePool.")
    generation: int = Field(
        ge=0, description="metadata.generation of the InferencePool the plan was computed for."
    )
    plan_hash: str | None = Field(
        default=None,
        pattern=_SHA_PATTERN,
        description="SHA-256 (hex) of the plan's content, as recorded in the InferencePool status.",
    )


class ClusteringParams(_Model):
    """How the router maps a request to a cluster."""

    alpha: float = Field(
        ge=-1.0,
        le=1.0,
        description="Cosine-similarity threshold of the clustering: a request whose best similarity to any "
        "representative is below alpha goes to defaultCluster.",
    )
    embedding_model: str = Field(
        description="Embedding model the router must use for requests (the one the clustering used)."
    )
    dimension: int = Field(ge=1, description="Embedding dimension; must equal representatives.dim.")


class RepresentativeRange(_Model):
    """The rows of the representative matrix that belong to one cluster."""

    offset: int = Field(ge=0, description="First row of this cluster in the representative matrix.")
    count: int = Field(ge=1, description="Number of consecutive rows owned by this cluster.")


class PvcRef(_Model):
    """A raw embedding file on a PersistentVolumeClaim mounted into the router pod."""

    claim_name: str = Field(description="Name of the PersistentVolumeClaim.")
    path: str = Field(description="Path of the raw file relative to the volume root.")


class RepresentativeEmbeddings(_Model):
    """The representative embedding matrix, inline or by reference."""

    dim: int = Field(ge=1, description="Columns of the matrix (embedding dimension).")
    count: int = Field(ge=0, description="Rows of the matrix (number of representatives).")
    dtype: Literal["float16", "float32"] = Field(
        default="float16", description="Element type, little-endian, row-major."
    )
    normalized: bool = Field(default=True, description="True when every row has unit L2 norm.")
    storage: Literal["inline", "configMaps", "url", "pvc"] = Field(
        description="Where the bytes live: inline (field data), configMaps, url or pvc."
    )
    data: str | None = Field(default=None, description="storage=inline: base64 of the raw matrix bytes.")
    config_maps: list[str] | None = Field(
        default=None,
        description="storage=configMaps: ConfigMap names in order; decode each chunk and concatenate.",
    )
    data_key: str = Field(default="embeddings.b64", description="storage=configMaps: key of each chunk.")
    url: str | None = Field(default=None, description="storage=url: HTTP(S) URL serving the raw bytes.")
    pvc: PvcRef | None = Field(default=None, description="storage=pvc: the claim and file path.")
    sha256: str | None = Field(
        default=None,
        pattern=_SHA_PATTERN,
        description="SHA-256 (hex) of the raw bytes; required for references, optional inline.",
    )

    @property
    def nbytes(self) -> int:
        """Size of the raw matrix in bytes."""
        return self.count * self.dim * (2 if self.dtype == "float16" else 4)

    @model_validator(mode="after")
    def _check_storage(self) -> RepresentativeEmbeddings:
        needed = {"inline": "data", "configMaps": "config_maps", "url": "url", "pvc": "pvc"}[self.storage]
        if getattr(self, needed) is None:
            raise ValueError(f"representatives.storage={self.storage} needs field {to_camel(needed)}")
        if self.storage != "inline" and self.sha256 is None:
            raise ValueError(f"representatives.storage={self.storage} needs sha256 of the raw bytes")
        if self.storage == "inline" and self.data is not None:
            size = len(base64.b64decode(self.data, validate=True))
            if size != self.nbytes:
                raise ValueError(
                    f"representatives.data holds {size} bytes but count x dim x {self.dtype} "
                    f"needs {self.nbytes}; re-encode with encode_representatives()"
                )
        if (
            self.storage == "url"
            and self.url is not None
            and urlsplit(self.url).scheme not in ("http", "https")
        ):
            raise ValueError(f"representatives.url={self.url!r} must be an http(s) URL")
        return self

    def decode(self, raw: bytes | None = None) -> npt.NDArray[np.float32]:
        """The matrix as contiguous float32 ``(count, dim)``.

        ``raw`` is the fetched bytes for a reference (concatenated chunks, URL body or file); it is verified
        against ``sha256``. Inline documents decode ``data`` and need no argument.
        """
        if raw is None:
            if self.data is None:
                raise RouterConfigError(
                    f"representatives.storage={self.storage}: fetch the bytes and pass them to decode(raw)"
                )
            raw = base64.b64decode(self.data)
        if self.sha256 is not None and hashlib.sha256(raw).hexdigest() != self.sha256:
            raise RouterConfigError("representative bytes do not match representatives.sha256; refetch them")
        if len(raw) != self.nbytes:
            raise RouterConfigError(
                f"representative bytes: got {len(raw)}, expected {self.nbytes} for {self.count}x{self.dim} "
                f"{self.dtype}"
            )
        dt = np.dtype("<f2") if self.dtype == "float16" else np.dtype("<f4")
        arr = np.frombuffer(raw, dtype=dt).reshape(self.count, self.dim)
        return np.ascontiguousarray(arr, dtype=np.float32)


def representatives_bytes(matrix: npt.ArrayLike, dtype: Literal["float16", "float32"] = "float16") -> bytes:
    """Raw little-endian row-major bytes of ``matrix`` in ``dtype`` (what references point to)."""
    arr = np.asarray(matrix, dtype=np.float64)
    if arr.ndim != 2 or not np.all(np.isfinite(arr)):
        raise RouterConfigError("representatives must be a finite 2-D matrix (rows = representatives)")
    dt = np.dtype("<f2") if dtype == "float16" else np.dtype("<f4")
    return np.ascontiguousarray(arr.astype(dt)).tobytes()


def encode_representatives(
    matrix: npt.ArrayLike, dtype: Literal["float16", "float32"] = "float16", *, normalized: bool = True
) -> RepresentativeEmbeddings:
    """An inline :class:`RepresentativeEmbeddings` for ``matrix``.

    Check ``nbytes`` against :data:`INLINE_EMBEDDINGS_MAX_BYTES`; above it store a reference instead.
    """
    raw = representatives_bytes(matrix, dtype)
    arr = np.asarray(matrix)
    return RepresentativeEmbeddings(
        dim=int(arr.shape[1]),
        count=int(arr.shape[0]),
        dtype=dtype,
        normalized=normalized,
        storage="inline",
        data=base64.b64encode(raw).decode("ascii"),
        sha256=hashlib.sha256(raw).hexdigest(),
    )


def split_configmap_chunks(raw: bytes, max_chunk_bytes: int = INLINE_EMBEDDINGS_MAX_BYTES) -> list[str]:
    """Split raw bytes into base64 chunks, one per ConfigMap (decode each, concatenate to get ``raw``)."""
    if max_chunk_bytes < 3:
        raise RouterConfigError(f"max_chunk_bytes={max_chunk_bytes} is too small; use at least 3")
    step = max_chunk_bytes - max_chunk_bytes % 3
    return [base64.b64encode(raw[i : i + step]).decode("ascii") for i in range(0, len(raw), step)] or [""]


def join_configmap_chunks(chunks: list[str]) -> bytes:
    """Inverse of :func:`split_configmap_chunks`."""
    return b"".join(base64.b64decode(c) for c in chunks)


class RouteTarget(_Model):
    """One deployment (a vLLM Service) a request may be sent to."""

    model: str = Field(description="Model name from the ModelCatalog (also sent as the request's model).")
    deployment: str = Field(description="Name of the Deployment serving the model.")
    service: str = Field(description="Name of the Kubernetes Service in front of the deployment.")
    port: int = Field(ge=1, le=65535, description="Service port of the OpenAI-compatible endpoint.")
    url: str = Field(description="Base URL the router calls, e.g. http://svc.ns.svc:8000/v1 (same port).")
    weight: float = Field(
        default=1.0, ge=0.0, description="Relative share of the cluster's first-hop traffic (normalised)."
    )

    @model_validator(mode="after")
    def _check_url(self) -> RouteTarget:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"route url={self.url!r} must be an http(s) URL with a host")
        url_port = parts.port or (443 if parts.scheme == "https" else 80)
        if url_port != self.port:
            raise ValueError(
                f"route url={self.url!r} uses port {url_port} but port={self.port}; make them agree"
            )
        return self


class Escalation(_Model):
    """When and where a weak answer is re-sent."""

    ladder: list[str] = Field(
        default_factory=list,
        description="Models ordered by cost, cheapest first (Pareto models). An answer from ladder[k] whose "
        "accept probability is below qualityThreshold is re-sent to ladder[k+1]. Empty = never escalate.",
    )
    quality_threshold: float = Field(
        default=0.5, ge=0.0, le=1.0, description="Accept an answer iff the estimator's probability >= this."
    )
    max_escalations: int = Field(default=1, ge=0, description="At most this many re-sends per request.")

    @model_validator(mode="after")
    def _unique(self) -> Escalation:
        if len(set(self.ladder)) != len(self.ladder):
            raise ValueError(f"escalation.ladder={self.ladder} repeats a model; list each model once")
        return self


class Abandonment(_Model):
    """What the router does with a cluster whose reasoning budget is zero (CLEAR rational abandonment)."""

    abandoned: bool = Field(
        default=False, description="True when the budget allocator abandoned this cluster."
    )
    policy: Literal["none", "cheapest-model", "short-answer", "refuse"] = Field(
        default="none",
        description="cheapest-model: send to `model` with maxTokens; short-answer: normal routes capped at "
        "`maxTokens`; refuse: answer with `message` without calling a model; none: route normally.",
    )
    model: str | None = Field(default=None, description="policy=cheapest-model: the model to use.")
    max_tokens: int | None = Field(default=None, ge=1, description="Output-token cap for abandoned requests.")
    message: str | None = Field(default=None, description="policy=refuse: the reply text.")

    @model_validator(mode="after")
    def _check(self) -> Abandonment:
        if self.abandoned and self.policy == "none":
            raise ValueError(
                "abandonment.abandoned=true needs a policy (cheapest-model, short-answer, refuse)"
            )
        if self.policy == "cheapest-model" and self.model is None:
            raise ValueError("abandonment.policy=cheapest-model needs abandonment.model")
        if self.policy == "short-answer" and self.max_tokens is None:
            raise ValueError("abandonment.policy=short-answer needs abandonment.maxTokens")
        return self


class ClusterRoute(_Model):
    """Routing of one query cluster."""

    id: str = Field(pattern=_ID_PATTERN, description="Cluster id (from the QueryClusterJob output).")
    share: float | None = Field(default=None, ge=0.0, le=1.0, description="Share of traffic (w_c), if known.")
    representatives: RepresentativeRange | None = Field(
        default=None, description="Rows of the representative matrix owned by this cluster (none: no rows)."
    )
    max_tokens: int = Field(ge=1, description="max_tokens the router sets on requests of this cluster.")
    expected_output_tokens: float | None = Field(
        default=None, ge=0.0, description="Expected output tokens per request (planner's f_i)."
    )
    routes: list[RouteTarget] = Field(min_length=1, description="Weighted first-hop targets.")
    escalation: Escalation = Field(default_factory=Escalation, description="Escalation ladder and threshold.")
    abandonment: Abandonment = Field(default_factory=Abandonment, description="Abandonment policy.")
    predicted_accuracy: float | None = Field(
        default=None, ge=0.0, le=1.0, description="Accuracy the routing predicts for this cluster."
    )
    predicted_cost: float | None = Field(
        default=None, ge=0.0, description="Predicted cost per request (unit in provenance.costUnit)."
    )

    @model_validator(mode="after")
    def _check_routes(self) -> ClusterRoute:
        if sum(r.weight for r in self.routes) <= 0.0:
            raise ValueError(f"cluster {self.id}: route weights are all zero; give one target weight > 0")
        keys = [(r.model, r.deployment) for r in self.routes]
        if len(set(keys)) != len(keys):
            raise ValueError(f"cluster {self.id}: a (model, deployment) pair is listed twice in routes")
        return self


class QualityEstimatorSpec(_Model):
    """The estimator the router uses to judge an answer before escalating."""

    kind: Literal["none", "heuristic", "trained", "http"] = Field(
        default="heuristic",
        description="none disables escalation; trained loads artifactPath; http calls url.",
    )
    artifact_path: str | None = Field(default=None, description="kind=trained: path of the saved estimator.")
    url: str | None = Field(
        default=None, description="kind=http: judge endpoint (POST question/answer/tokens)."
    )
    timeout_seconds: float = Field(default=2.0, gt=0.0, description="kind=http: request timeout.")
    on_error: Literal["accept", "escalate"] = Field(
        default="accept", description="What to do when the estimator fails or times out."
    )

    @model_validator(mode="after")
    def _check(self) -> QualityEstimatorSpec:
        if self.kind == "trained" and self.artifact_path is None:
            raise ValueError("qualityEstimator.kind=trained needs artifactPath")
        if self.kind == "http" and self.url is None:
            raise ValueError("qualityEstimator.kind=http needs url")
        return self


class Provenance(_Model):
    """How the routing was computed (informational)."""

    cost_unit: Literal["tpot", "usd"] = Field(default="tpot", description="Unit of costs: TPOT (s) or USD.")
    lambda_star: float | None = Field(default=None, ge=0.0, description="Stage-1 lambda* chosen.")
    budget: float | None = Field(default=None, ge=0.0, description="Stage-1 cost budget per request.")
    shadow_price: float | None = Field(default=None, ge=0.0, description="CLEAR price per output token.")
    token_budget_per_query: float | None = Field(
        default=None, ge=0.0, description="CLEAR mean output-token budget per request."
    )


class RouterConfig(_Model):
    """The router ConfigMap document."""

    schema_version: int = Field(default=SCHEMA_VERSION, description="Document schema version.")
    content_hash: str | None = Field(
        default=None,
        pattern=_SHA_PATTERN,
        description="SHA-256 of the canonical JSON without this field (set by dump_router_config).",
    )
    plan: PlanRef = Field(description="The plan (InferencePool generation) this routing belongs to.")
    clustering: ClusteringParams = Field(description="Embedding model and similarity threshold.")
    default_cluster: str = Field(description="Cluster id for requests matching no representative.")
    clusters: list[ClusterRoute] = Field(min_length=1, description="Routing per cluster.")
    representatives: RepresentativeEmbeddings | None = Field(
        default=None, description="Representative embeddings (none: every request goes to defaultCluster)."
    )
    escalation_targets: list[RouteTarget] = Field(
        default_factory=list,
        description="Targets used only for escalation (models on a ladder but not in any cluster's routes).",
    )
    quality_estimator: QualityEstimatorSpec = Field(
        default_factory=QualityEstimatorSpec, description="The answer-quality estimator."
    )
    provenance: Provenance | None = Field(default=None, description="How the routing was computed.")

    @model_validator(mode="after")
    def _check_refs(self) -> RouterConfig:
        ids = [c.id for c in self.clusters]
        if len(set(ids)) != len(ids):
            raise ValueError("clusters: cluster ids must be unique")
        if self.default_cluster not in ids:
            raise ValueError(f"defaultCluster={self.default_cluster!r} is not one of the clusters {ids[:10]}")
        reps = self.representatives
        if reps is not None and reps.dim != self.clustering.dimension:
            raise ValueError(
                f"representatives.dim={reps.dim} differs from "
                f"clustering.dimension={self.clustering.dimension}; they must be equal"
            )
        models = {t.model for t in self.all_targets()}
        for c in self.clusters:
            if c.representatives is not None:
                end = c.representatives.offset + c.representatives.count
                if reps is None or end > reps.count:
                    raise ValueError(
                        f"cluster {c.id}: representative rows end at {end} but the matrix has "
                        f"{0 if reps is None else reps.count} rows"
                    )
            for m in [*c.escalation.ladder, *([c.abandonment.model] if c.abandonment.model else [])]:
                if m not in models:
                    raise ValueError(
                        f"cluster {c.id}: model {m!r} has no target; add it to escalationTargets or a route"
                    )
        return self

    def all_targets(self) -> list[RouteTarget]:
        """Every distinct target (by model, deployment) across cluster routes and escalation targets."""
        seen: dict[tuple[str, str], RouteTarget] = {}
        for t in [*(r for c in self.clusters for r in c.routes), *self.escalation_targets]:
            seen.setdefault((t.model, t.deployment), t)
        return list(seen.values())

    def targets_for(self, model: str) -> list[RouteTarget]:
        """The targets serving ``model`` (for escalation or abandonment)."""
        return [t for t in self.all_targets() if t.model == model]

    def cluster(self, cluster_id: str) -> ClusterRoute:
        """The cluster with this id (KeyError when absent)."""
        for c in self.clusters:
            if c.id == cluster_id:
                return c
        raise KeyError(cluster_id)


def _canonical(payload: Mapping[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def compute_content_hash(config: RouterConfig) -> str:
    """SHA-256 of the canonical JSON of ``config`` without ``contentHash``."""
    payload = config.model_dump(mode="json", by_alias=True, exclude={"content_hash"}, exclude_none=True)
    return hashlib.sha256(_canonical(payload).encode()).hexdigest()


def dump_router_config(config: RouterConfig) -> str:
    """Canonical JSON (sorted keys, camelCase) with ``contentHash`` filled in."""
    hashed = config.model_copy(update={"content_hash": compute_content_hash(config)})
    return _canonical(hashed.model_dump(mode="json", by_alias=True, exclude_none=True))


def load_router_config(
    document: str | bytes | Mapping[str, Any], *, verify_hash: bool = True
) -> RouterConfig:
    """Parse and validate a router config; raises :class:`RouterConfigError` with an actionable message."""
    if isinstance(document, Mapping):
        raw: Any = dict(document)
    else:
        try:
            raw = json.loads(document)
        except json.JSONDecodeError as exc:
            raise RouterConfigError(f"router config is not valid JSON ({exc}); regenerate it") from exc
    if not isinstance(raw, dict):
        raise RouterConfigError("router config must be a JSON object")
    version = raw.get("schemaVersion", raw.get("schema_version"))
    if version is None:
        raise RouterConfigError(
            f"router config has no schemaVersion; this router reads version {SCHEMA_VERSION}"
        )
    if version != SCHEMA_VERSION:
        newer = isinstance(version, int) and version > SCHEMA_VERSION
        fix = "upgrade the router image" if newer else "regenerate the config with the current operator"
        raise RouterConfigError(
            f"router config schemaVersion={version!r}, this code reads {SCHEMA_VERSION}; {fix}"
        )
    try:
        config = RouterConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "document"
        raise RouterConfigError(f"router config field {where}: {first['msg']}") from exc
    if verify_hash and config.content_hash is not None:
        actual = compute_content_hash(config)
        if actual != config.content_hash:
            raise RouterConfigError(
                f"router config contentHash={config.content_hash[:12]}... does not match its content "
                f"({actual[:12]}...); the document was edited or truncated, regenerate it"
            )
    return config


def to_configmap_data(config: RouterConfig) -> dict[str, str]:
    """The ConfigMap ``data`` map; raises when the document exceeds the ConfigMap size limit."""
    text = dump_router_config(config)
    if len(text.encode()) > CONFIGMAP_MAX_BYTES - 4096:
        raise RouterConfigError(
            f"router config is {len(text.encode())} bytes, over the ConfigMap limit; store "
            "representatives by reference (storage=configMaps, url or pvc)"
        )
    return {ROUTER_CONFIG_KEY: text}
