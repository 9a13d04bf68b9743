"""Evaluation tables: per-query, per-model correctness and cost, grouped into query clusters.

Input (Parquet or CSV, long format, one row per (query, model)):

==================  =========================================================================
``query_id``        query identifier (string or integer)
``model``           model name
``correct``         0/1 (also true/false)
``output_tokens``   optional, output tokens of the answer
cost                one of ``tpot`` (s/token), ``latency`` (s; TPOT = latency/output_tokens)
                    or ``cost_usd`` / ``cost`` (USD per query)
cluster             ``cluster_id``, or ``embedding`` (list column, or a JSON list string in CSV)
==================  =========================================================================

Rows are pivoted into dense ``(queries x models)`` matrices with NaN where a model was not evaluated on a
query. Queries get a cluster from ``cluster_id``, from the nearest representative of a clustering output
(:func:`assign_to_representatives`, cosine similarity via faiss), or from k-means on their embeddings
(:func:`kmeans_clusters`, as in the Cluster-Route-Escalate paper).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from quartermaster.routing.errors import EvalTableError

log = logging.getLogger(__name__)

CostKind = Literal["tpot", "usd"]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class EvalTable:
    """Dense evaluation data: ``correct``, ``cost``, ``output_tokens`` are (queries x models), NaN missing."""

    query_ids: tuple[str, ...]
    models: tuple[str, ...]
    correct: FloatArray
    cost: FloatArray
    cost_kind: CostKind
    output_tokens: FloatArray | None = None
    cluster: npt.NDArray[np.int64] | None = None
    cluster_ids: tuple[str, ...] = ()
    embeddings: npt.NDArray[np.float32] | None = None

    def __post_init__(self) -> None:
        n, m = len(self.query_ids), len(self.models)
        for name in ("correct", "cost"):
            if getattr(self, name).shape != (n, m):
                raise EvalTableError(f"{name} has shape {getattr(self, name).shape}, expected ({n}, {m})")
        if self.output_tokens is not None and self.output_tokens.shape != (n, m):
            raise EvalTableError(f"output_tokens has shape {self.output_tokens.shape}, expected ({n}, {m})")
        if self.cluster is not None and self.cluster.shape != (n,):
            raise EvalTableError(f"cluster has shape {self.cluster.shape}, expected ({n},)")
        if (
            self.cluster is not None
            and n
            and (self.cluster.min() < 0 or self.cluster.max() >= len(self.cluster_ids))
        ):
            raise EvalTableError("cluster indices must index cluster_ids")
        if self.embeddings is not None and self.embeddings.shape[0] != n:
            raise EvalTableError(f"embeddings has {self.embeddings.shape[0]} rows, expected {n}")
        _check_labels(self.correct, self.models)
        bad = ~np.isnan(self.cost) & ((self.cost < 0) | ~np.isfinite(self.cost))
        if bad.any():
            j = int(np.argwhere(bad)[0][1])
            raise EvalTableError(
                f"model {self.models[j]}: costs must be finite and >= 0; fix the cost column"
            )

    def with_clusters(self, cluster: npt.ArrayLike, cluster_ids: tuple[str, ...] | None = None) -> EvalTable:
        """A copy whose queries are assigned to ``cluster`` (indices; ids default to ``"0".."k-1"``)."""
        idx = np.asarray(cluster, dtype=np.int64)
        ids = cluster_ids if cluster_ids is not None else tuple(str(i) for i in range(int(idx.max()) + 1))
        return replace(self, cluster=idx, cluster_ids=ids)

    def subset(self, rows: npt.ArrayLike) -> EvalTable:
        """The table restricted to the given query rows (indices or boolean mask)."""
        r = np.asarray(rows)
        if r.dtype == bool:
            r = np.flatnonzero(r)
        return replace(
            self,
            query_ids=tuple(self.query_ids[i] for i in r),
            correct=self.correct[r],
            cost=self.cost[r],
            output_tokens=None if self.output_tokens is None else self.output_tokens[r],
            cluster=None if self.cluster is None else self.cluster[r],
            embeddings=None if self.embeddings is None else self.embeddings[r],
        )


def _check_labels(correct: FloatArray, models: tuple[str, ...]) -> None:
    present = ~np.isnan(correct)
    bad = present & (correct != 0.0) & (correct != 1.0)
    if bad.any():
        i, j = (int(v) for v in np.argwhere(bad)[0])
        raise EvalTableError(
            f"model {models[j]}: label {float(correct[i, j]):g} at query row {i} is not 0/1; "
            "binarise the correctness column (e.g. score > 0 -> 1)"
        )
    empty = [models[j] for j in range(len(models)) if not present[:, j].any()]
    if empty:
        raise EvalTableError(f"models {empty} have no labelled rows; drop them or add their evaluations")


def _read(path: Path) -> pa.Table:
    if not path.exists():
        raise EvalTableError(f"evaluation table {path} does not exist")
    if path.suffix == ".parquet":
        return pq.read_table(path)
    if path.name.endswith((".csv", ".csv.gz")):
        return pacsv.read_csv(path, parse_options=pacsv.ParseOptions(newlines_in_values=True))
    raise EvalTableError(f"evaluation table {path}: use a .parquet, .csv or .csv.gz file")


def _as_float(col: pa.ChunkedArray, name: str) -> FloatArray:
    if pa.types.is_boolean(col.type):
        return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)
    try:
        return np.asarray(col.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise EvalTableError(f"column {name} must be numeric ({exc})") from exc


def load_eval_table(path: str | Path, *, cost: CostKind = "tpot") -> EvalTable:
    """Read a long-format evaluation table (see the module docstring)."""
    table = _read(Path(path))
    cols = set(table.column_names)
    for required in ("query_id", "model", "correct"):
        if required not in cols:
            raise EvalTableError(f"evaluation table has no column {required!r}; columns are {sorted(cols)}")
    qids = [str(v) for v in table.column("query_id").to_pylist()]
    models_col = [str(v) for v in table.column("model").to_pylist()]
    correct = _as_float(table.column("correct"), "correct")
    tokens = _as_float(table.column("output_tokens"), "output_tokens") if "output_tokens" in cols else None
    if cost == "tpot":
        if "tpot" in cols:
            cost_v = _as_float(table.column("tpot"), "tpot")
        elif "latency" in cols and tokens is not None:
            cost_v = _as_float(table.column("latency"), "latency") / np.maximum(tokens, 1.0)
        else:
            raise EvalTableError(
                "--cost tpot needs a 'tpot' column, or 'latency' and 'output_tokens' columns"
            )
    else:
        name = "cost_usd" if "cost_usd" in cols else "cost"
        if name not in cols:
            raise EvalTableError("--cost usd needs a 'cost_usd' (or 'cost') column with USD per query")
        cost_v = _as_float(table.column(name), name)

    q_index = {q: i for i, q in enumerate(dict.fromkeys(qids))}
    models = tuple(dict.fromkeys(models_col))
    m_index = {m: j for j, m in enumerate(models)}
    n, m = len(q_index), len(models)
    rows = np.fromiter((q_index[q] for q in qids), dtype=np.int64, count=len(qids))
    cols_j = np.fromiter((m_index[x] for x in models_col), dtype=np.int64, count=len(qids))
    if len(set(zip(rows.tolist(), cols_j.tolist(), strict=True))) != len(qids):
        raise EvalTableError("evaluation table repeats a (query_id, model) pair; keep one row per pair")

    def dense(values: FloatArray) -> FloatArray:
        out = np.full((n, m), np.nan)
        out[rows, cols_j] = values
        return out

    cluster_idx: npt.NDArray[np.int64] | None = None
    cluster_ids: tuple[str, ...] = ()
    if "cluster_id" in cols:
        per_query: dict[int, str] = {}
        for r, c in zip(rows.tolist(), table.column("cluster_id").to_pylist(), strict=True):
            if per_query.setdefault(r, str(c)) != str(c):
                raise EvalTableError(f"query {qids[r]} has two cluster_id values; give one per query")
        cluster_ids = tuple(sorted(set(per_query.values()), key=_natural))
        c_index = {c: k for k, c in enumerate(cluster_ids)}
        cluster_idx = np.array([c_index[per_query[i]] for i in range(n)], dtype=np.int64)
    embeddings = _embeddings(table, rows, n) if "embedding" in cols else None
    missing = int(np.isnan(dense(correct)).sum())
    if missing:
        log.warning("evaluation table: %d (query, model) pairs are missing; they are ignored", missing)
    return EvalTable(
        query_ids=tuple(q_index),
        models=models,
        correct=dense(correct),
        cost=dense(cost_v),
        cost_kind=cost,
        output_tokens=None if tokens is None else dense(tokens),
        cluster=cluster_idx,
        cluster_ids=cluster_ids,
        embeddings=embeddings,
    )


def _natural(s: str) -> tuple[int, str]:
    return (int(s), "") if s.isdigit() else (1 << 62, s)


def _embeddings(table: pa.Table, rows: npt.NDArray[np.int64], n: int) -> npt.NDArray[np.float32]:
    values = table.column("embedding").to_pylist()
    out: list[list[float] | None] = [None] * n
    for r, v in zip(rows.tolist(), values, strict=True):
        if out[r] is None:
            out[r] = json.loads(v) if isinstance(v, str) else v
    try:
        arr = np.asarray(out, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise EvalTableError(f"column embedding must hold equal-length numeric lists ({exc})") from exc
    if arr.ndim != 2 or not np.all(np.isfinite(arr)):
        raise EvalTableError("column embedding must hold finite equal-length numeric lists")
    return np.ascontiguousarray(arr)


def _normalise(x: npt.ArrayLike, what: str) -> npt.NDArray[np.float32]:
    arr = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if arr.ndim != 2 or not np.all(np.isfinite(arr)):
        raise EvalTableError(f"{what} must be a finite 2-D matrix")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    if (norms == 0).any():
        raise EvalTableError(f"{what} has an all-zero row (row {int(np.argmin(norms))}); drop it")
    return np.ascontiguousarray(arr / norms)


def assign_to_representatives(
    embeddings: npt.ArrayLike, representatives: npt.ArrayLike, rep_cluster: npt.ArrayLike
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Cluster of each row = cluster of its most cosine-similar representative, and that similarity."""
    import faiss

    x = _normalise(embeddings, "embeddings")
    reps = _normalise(representatives, "representatives")
    if x.shape[1] != reps.shape[1]:
        raise EvalTableError(f"embedding dim {x.shape[1]} differs from representative dim {reps.shape[1]}")
    labels = np.asarray(rep_cluster, dtype=np.int64)
    if labels.shape != (reps.shape[0],):
        raise EvalTableError("rep_cluster needs one cluster index per representative row")
    index = faiss.IndexFlatIP(reps.shape[1])
    index.add(reps)
    sims, nn = index.search(x, 1)
    return labels[nn[:, 0]], sims[:, 0].astype(np.float32)


def kmeans_clusters(embeddings: npt.ArrayLike, k: int, *, random_state: int = 0) -> npt.NDArray[np.int64]:
    """Spherical k-means (faiss) on normalised embeddings, as the Cluster-Route-Escalate paper clusters."""
    import faiss

    x = _normalise(embeddings, "embeddings")
    if not 1 <= k <= x.shape[0]:
        raise EvalTableError(f"k={k} must be between 1 and the number of queries ({x.shape[0]})")
    km = faiss.Kmeans(
        x.shape[1], k, niter=25, seed=random_state, spherical=True, verbose=False, min_points_per_centroid=1
    )
    km.train(x)
    _, assign = km.index.search(x, 1)
    return np.asarray(assign[:, 0], dtype=np.int64)
