"""The compiled routing table: a validated :class:`~quartermaster.api.routerconfig.RouterConfig` made
ready for request time.

Compiling resolves the representative matrix (inline, or fetched from its reference), builds the faiss
index, normalises route weights into cumulative arrays for O(log n) weighted choice, and collects the
endpoints of every model for the upstream pool. A :class:`RoutingTable` is immutable; a config reload
builds a new one and swaps it in one assignment, so a request sees one consistent table.

Representative references are resolved with the mounts the router pod is given
(:class:`ReferenceMounts`):

- ``storage=configMaps``: each named ConfigMap mounted at ``{config_maps_dir}/{name}/`` (the chunk is the
  file ``dataKey``);
- ``storage=pvc``: the claim mounted at ``{pvc_dir}/{claimName}/`` (the file is ``path`` under it);
- ``storage=url``: an HTTP GET (timeout ``url_timeout_s``).

Every reference is verified against its SHA-256 by
:meth:`~quartermaster.api.routerconfig.RepresentativeEmbeddings.decode`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx
import numpy as np
from numpy.typing import NDArray

from quartermaster.api.routerconfig import (
    Abandonment,
    RepresentativeEmbeddings,
    RouterConfig,
    RouterConfigError,
    compute_content_hash,
    join_configmap_chunks,
)
from quartermaster.router.index import RepresentativeIndex, RepresentativeIndexError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReferenceMounts:
    """Where referenced representative bytes are found inside the router pod."""

    config_maps_dir: Path = Path("/etc/quartermaster/representatives")
    pvc_dir: Path = Path("/mnt/quartermaster")
    url_timeout_s: float = 30.0


@dataclass(frozen=True)
class IndexOptions:
    """How the representative index is built (see :mod:`quartermaster.router.index`)."""

    search: Literal["exact", "hnsw"] = "exact"
    hnsw_m: int = 16
    hnsw_ef_search: int = 64
    omp_threads: int = 1


@dataclass(frozen=True)
class Target:
    """One first-hop or escalation target: the model name sent upstream and the base URL."""

    model: str
    url: str


@dataclass(frozen=True)
class CompiledCluster:
    """Request-time view of one cluster."""

    id: str
    targets: tuple[Target, ...]
    cumulative_weights: tuple[float, ...]
    """Running sums of the normalised route weights (last element 1.0)."""
    max_tokens: int
    ladder: tuple[str, ...]
    quality_threshold: float
    max_escalations: int
    abandonment: Abandonment


@dataclass(frozen=True)
class RoutingTable:
    """Everything a request needs, built once per config version."""

    config: RouterConfig
    digest: str
    """SHA-256 of the config content (its ``contentHash``, or computed)."""
    version: str
    """Human-readable ``{plan}/{generation}@{digest[:12]}``."""
    index: RepresentativeIndex
    clusters: Mapping[str, CompiledCluster]
    default_cluster: str
    model_urls: Mapping[str, tuple[str, ...]]
    """Every model -> the base URLs serving it (route targets first, then escalation targets)."""
    embedding_model: str
    dimension: int
    served_models: frozenset[str] = field(default_factory=frozenset)

    def cluster(self, cluster_id: str) -> CompiledCluster:
        return self.clusters[cluster_id]

    def url_for(self, model: str) -> str:
        """The first base URL of ``model`` (escalation/abandonment targets)."""
        return self.model_urls[model][0]


def fetch_representative_bytes(reps: RepresentativeEmbeddings, mounts: ReferenceMounts) -> bytes | None:
    """The raw matrix bytes of a reference (``None`` for inline storage, which decodes itself)."""
    if reps.storage == "inline":
        return None
    try:
        if reps.storage == "configMaps":
            assert reps.config_maps is not None
            chunks = [
                (mounts.config_maps_dir / name / reps.data_key).read_text().strip()
                for name in reps.config_maps
            ]
            return join_configmap_chunks(chunks)
        if reps.storage == "pvc":
            assert reps.pvc is not None
            return (mounts.pvc_dir / reps.pvc.claim_name / reps.pvc.path).read_bytes()
        assert reps.url is not None
        response = httpx.get(reps.url, timeout=mounts.url_timeout_s, trust_env=False)
        response.raise_for_status()
        return response.content
    except OSError as exc:
        raise RouterConfigError(
            f"representatives.storage={reps.storage}: cannot read {exc.filename or exc} ({exc.strerror}); "
            "mount the referenced ConfigMaps/PVC into the router pod where --representatives-dir / "
            "--pvc-dir point"
        ) from exc
    except httpx.HTTPError as exc:
        raise RouterConfigError(
            f"representatives.url={reps.url}: {type(exc).__name__}: {exc}; check the URL is reachable"
        ) from exc


def _cluster_labels(config: RouterConfig, count: int) -> list[str]:
    labels: list[str | None] = [None] * count
    for c in config.clusters:
        if c.representatives is None:
            continue
        for row in range(c.representatives.offset, c.representatives.offset + c.representatives.count):
            if labels[row] is not None:
                raise RouterConfigError(
                    f"representative row {row} is claimed by clusters {labels[row]!r} and {c.id!r}; "
                    "give each cluster its own rows"
                )
            labels[row] = c.id
    return [label if label is not None else config.default_cluster for label in labels]


def compile_table(
    config: RouterConfig, *, mounts: ReferenceMounts | None = None, index: IndexOptions | None = None
) -> RoutingTable:
    """Build the :class:`RoutingTable` of ``config``; raises :class:`RouterConfigError` when unusable."""
    mounts = mounts or ReferenceMounts()
    opts = index or IndexOptions()
    vectors: NDArray[np.float32] = np.zeros((0, config.clustering.dimension), dtype=np.float32)
    labels: list[str] = []
    if config.representatives is not None and config.representatives.count > 0:
        raw = fetch_representative_bytes(config.representatives, mounts)
        vectors = config.representatives.decode(raw)
        labels = _cluster_labels(config, vectors.shape[0])
    try:
        rep_index = RepresentativeIndex(
            vectors if labels else np.zeros((0, 0), dtype=np.float32),
            labels,
            alpha=config.clustering.alpha,
            default_cluster=config.default_cluster,
            omp_threads=opts.omp_threads,
            search=opts.search,
            hnsw_m=opts.hnsw_m,
            hnsw_ef_search=opts.hnsw_ef_search,
            precision="float16" if config.representatives is None else config.representatives.dtype,
        )
    except RepresentativeIndexError as exc:
        raise RouterConfigError(f"representatives: {exc}") from exc

    clusters: dict[str, CompiledCluster] = {}
    for c in config.clusters:
        total = sum(r.weight for r in c.routes)
        running, cumulative = 0.0, []
        for r in c.routes:
            running += r.weight / total
            cumulative.append(running)
        cumulative[-1] = 1.0
        clusters[c.id] = CompiledCluster(
            id=c.id,
            targets=tuple(Target(r.model, r.url) for r in c.routes),
            cumulative_weights=tuple(cumulative),
            max_tokens=c.max_tokens,
            ladder=tuple(c.escalation.ladder),
            quality_threshold=c.escalation.quality_threshold,
            max_escalations=c.escalation.max_escalations,
            abandonment=c.abandonment,
        )

    model_urls: dict[str, list[str]] = {}
    for t in config.all_targets():
        urls = model_urls.setdefault(t.model, [])
        if t.url not in urls:
            urls.append(t.url)
    digest = config.content_hash or compute_content_hash(config)
    version = f"{config.plan.name}/{config.plan.generation}@{digest[:12]}"
    return RoutingTable(
        config=config,
        digest=digest,
        version=version,
        index=rep_index,
        clusters=clusters,
        default_cluster=config.default_cluster,
        model_urls={m: tuple(u) for m, u in model_urls.items()},
        embedding_model=config.clustering.embedding_model,
        dimension=config.clustering.dimension,
        served_models=frozenset(model_urls),
    )
