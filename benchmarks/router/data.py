"""Benchmark inputs: CLINC150 query embeddings (real, CC-BY-3.0) turned into router configs.

Representatives are ``n`` embeddings sampled from the in-scope training rows, labelled by intent (one
cluster per intent, 150 clusters, plus the default cluster ``oos``); queries are test rows, out-of-scope
ones included. The matrix is stored by reference (``storage=pvc``, a float16 file), as a 10k x 384
matrix (7.7 MB) does not fit in a ConfigMap.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow.parquet as pq

from quartermaster.api.routerconfig import (
    ClusteringParams,
    ClusterRoute,
    Escalation,
    PlanRef,
    PvcRef,
    RepresentativeEmbeddings,
    RepresentativeRange,
    RouterConfig,
    RouteTarget,
    dump_router_config,
    representatives_bytes,
)

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data" / "queries" / "clinc150.parquet"


@dataclass(frozen=True)
class Clinc:
    embeddings: npt.NDArray[np.float32]
    intents: npt.NDArray[np.str_]
    split: npt.NDArray[np.str_]


def load_clinc(path: Path = DATA) -> Clinc:
    if not path.exists():
        raise SystemExit(
            f"benchmark data missing: {path} (expected ../shared/data next to the repository; see its README)"
        )
    table = pq.read_table(path, columns=["intent", "split", "embedding"])
    emb = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)
    return Clinc(
        emb, np.asarray(table.column("intent").to_pylist()), np.asarray(table.column("split").to_pylist())
    )


def sample_representatives(data: Clinc, n: int, seed: int = 0) -> tuple[npt.NDArray[np.float32], list[str]]:
    """``n`` in-scope training rows, sorted by intent (rows of one cluster are contiguous)."""
    rng = np.random.default_rng(seed)
    pool = np.flatnonzero((data.intents != "oos") & np.isin(data.split, ["train", "val"]))
    rows = rng.choice(pool, size=min(n, pool.size), replace=False)
    rows = rows[np.argsort(data.intents[rows], kind="stable")]
    return data.embeddings[rows], [str(x) for x in data.intents[rows]]


def sample_queries(data: Clinc, n: int, seed: int = 1) -> tuple[npt.NDArray[np.float32], list[str]]:
    rng = np.random.default_rng(seed)
    pool = np.flatnonzero(np.isin(data.split, ["test", "oos_test"]))
    rows = rng.choice(pool, size=min(n, pool.size), replace=False)
    return data.embeddings[rows], [str(x) for x in data.intents[rows]]


def _target(model: str, url: str, weight: float) -> RouteTarget:
    port = int(url.split(":")[2].split("/", maxsplit=1)[0])
    return RouteTarget(
        model=model, deployment=f"{model}-dep", service=f"{model}-svc", port=port, url=url, weight=weight
    )


def build_config(
    reps: npt.NDArray[np.float32],
    labels: list[str],
    workdir: Path,
    *,
    small_url: str,
    large_url: str,
    alpha: float = 0.6,
) -> Path:
    """Write the representatives file and the router config; returns the config path.

    The PVC mount root is ``workdir`` (the claim is ``reps``)."""
    raw = representatives_bytes(reps, "float16")
    (workdir / "reps").mkdir(parents=True, exist_ok=True)
    (workdir / "reps" / "reps.f16").write_bytes(raw)
    clusters: list[ClusterRoute] = []
    offset = 0
    intents = sorted(set(labels))
    for i, intent in enumerate(intents):
        count = labels.count(intent)
        clusters.append(
            ClusterRoute(
                id=intent,
                representatives=RepresentativeRange(offset=offset, count=count),
                max_tokens=128 + 8 * (i % 16),
                routes=[_target("small", small_url, 3.0), _target("large", large_url, 1.0)],
                escalation=Escalation(ladder=["small", "large"], quality_threshold=0.5),
            )
        )
        offset += count
    clusters.append(ClusterRoute(id="oos", max_tokens=64, routes=[_target("large", large_url, 1.0)]))
    config = RouterConfig(
        plan=PlanRef(name="bench", namespace="bench", generation=1),
        clustering=ClusteringParams(alpha=alpha, embedding_model="all-MiniLM-L6-v2", dimension=reps.shape[1]),
        default_cluster="oos",
        clusters=clusters,
        representatives=RepresentativeEmbeddings(
            dim=reps.shape[1],
            count=reps.shape[0],
            dtype="float16",
            storage="pvc",
            pvc=PvcRef(claim_name="reps", path="reps.f16"),
            sha256=hashlib.sha256(raw).hexdigest(),
        ),
    )
    path = workdir / "router-config.json"
    path.write_text(dump_router_config(config))
    return path
