"""Output tables and ``summary.json`` of a clustering run (the operator's contract: keep these stable).

``assignments.parquet`` — one row per clustered input row, sorted by ``row``:

==================  =======  ==================================================================
``row``             int64    input row index (0-based position in the input file)
``cluster``         int64    global cluster id (clusters ordered by representative row index)
``representative``  int64    input row index of the cluster's representative
``similarity``      float64  cosine of the row to its representative, computed in float64
``trimmed``         bool     the row's cluster was trimmed (not served from its representative)
==================  =======  ==================================================================

``representatives.parquet`` — one row per cluster, sorted by ``cluster``:

``cluster`` (int64), ``representative`` (int64 input row), ``size`` (int64 rows), ``share`` (float64, size /
rows clustered: the cluster's share of the request rate), ``trimmed`` (bool), ``min_similarity`` and
``mean_similarity`` (float64, over members), one column per attribute (the value shared by every member),
``text`` (string, the representative's text when the input has a text column, else null),
``prompt_tokens_mean``, ``prompt_tokens_p90``, ``output_tokens_mean``, ``output_tokens_p90`` (float64 over
members; null when the input lacks the column) and ``first_timestamp``, ``last_timestamp`` (float64 seconds;
null without a ``timestamp`` column).

``summary.json`` — ``n`` (rows clustered), ``n_input`` (rows selected), ``n_dropped`` and ``dropped``
(invalid rows by reason), ``d``, ``alpha``, ``attributes``, ``clusters``, ``clusters_kept``, ``llm_calls``
(= ``clusters_kept``), ``rows_kept``, ``coverage`` (rows kept / n), ``reduction_factor`` (n / LLM calls),
``min_similarity``, ``mean_similarity``, ``rows_below_alpha`` (always 0), ``size_histogram`` (power-of-two
bins), ``trim``, ``shard``, ``runtime_seconds``, ``stage_seconds``, ``peak_memory_bytes`` and the run's
parameters.
"""

from __future__ import annotations

import math
import resource
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from quartermaster.clustering.errors import ClusteringInputError
from quartermaster.clustering.similarity import FLOAT64_TOLERANCE

__all__ = [
    "RESERVED_COLUMNS",
    "SCHEMA_VERSION",
    "assignments_table",
    "peak_memory_bytes",
    "representatives_table",
    "size_histogram",
    "table_summary",
]

SCHEMA_VERSION = 1
RESERVED_COLUMNS = (
    "cluster", "representative", "size", "share", "trimmed", "min_similarity", "mean_similarity", "text",
    "prompt_tokens_mean", "prompt_tokens_p90", "output_tokens_mean", "output_tokens_p90",
    "first_timestamp", "last_timestamp",
)  # fmt: skip


def peak_memory_bytes() -> int:
    """Peak resident memory of this process so far.

    Linux: ``VmHWM`` of ``/proc/self/status``. ``ru_maxrss`` would be wrong for a process started by a large
    one: Linux carries it over ``fork`` + ``exec`` (a benchmark worker reported its parent's 1.5 GiB).
    Elsewhere: ``ru_maxrss`` (KiB on Linux, bytes on macOS; only Linux is supported for runs).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def assignments_table(
    rows: npt.NDArray[np.int64],
    labels: npt.NDArray[np.int64],
    representatives: npt.NDArray[np.int64],
    similarity: npt.NDArray[np.float64],
    trimmed: npt.NDArray[np.bool_],
) -> pa.Table:
    """``assignments.parquet`` from per-row arrays (rows ascending); ``representatives`` is per row."""
    return pa.table(
        {
            "row": pa.array(rows, pa.int64()),
            "cluster": pa.array(labels, pa.int64()),
            "representative": pa.array(representatives, pa.int64()),
            "similarity": pa.array(similarity, pa.float64()),
            "trimmed": pa.array(trimmed, pa.bool_()),
        }
    )


def _numeric(col: pa.Array | None) -> npt.NDArray[np.float64] | None:
    if col is None:
        return None
    if pa.types.is_timestamp(col.type):
        unit = col.type.unit
        scale = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}[unit]
        col = pc.cast(col, pa.int64())
        return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64) / scale
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
        raise ClusteringInputError(
            f"column of type {col.type} cannot be summarised; prompt_tokens/output_tokens must be numeric "
            "and timestamp numeric or a timestamp"
        )
    return np.asarray(pc.fill_null(pc.cast(col, pa.float64()), np.nan).to_numpy(zero_copy_only=False))


def _group_stats(
    labels: npt.NDArray[np.int64], k: int, values: npt.NDArray[np.float64] | None
) -> tuple[pa.Array, pa.Array, pa.Array, pa.Array]:
    """Per-cluster mean, p90 (lower), min and max of ``values`` (nulls ignored); all null without values."""
    if values is None:
        null = pa.nulls(k, pa.float64())
        return null, null, null, null
    ok = ~np.isnan(values)
    lab, val = labels[ok], values[ok]
    cnt = np.bincount(lab, minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(lab, weights=val, minlength=k) / cnt
    order = np.lexsort((val, lab))
    starts = np.concatenate([[0], np.cumsum(cnt)[:-1]])
    has = cnt > 0
    p90 = np.full(k, np.nan)
    lo = np.full(k, np.nan)
    hi = np.full(k, np.nan)
    sorted_val = val[order]
    p90[has] = sorted_val[starts[has] + np.floor(0.9 * (cnt[has] - 1)).astype(np.int64)]
    lo[has] = sorted_val[starts[has]]
    hi[has] = sorted_val[starts[has] + cnt[has] - 1]

    def arr(x: npt.NDArray[np.float64]) -> pa.Array:
        return pa.array(x, pa.float64(), mask=np.isnan(x))

    return arr(mean), arr(p90), arr(lo), arr(hi)


def representatives_table(
    *,
    labels: npt.NDArray[np.int64],
    representatives: npt.NDArray[np.int64],
    rep_positions: npt.NDArray[np.int64],
    similarity: npt.NDArray[np.float64],
    cluster_trimmed: npt.NDArray[np.bool_],
    attributes: dict[str, pa.Array],
    extras: dict[str, pa.Array],
    text_column: str | None,
) -> pa.Table:
    """``representatives.parquet``: ``rep_positions`` are positions of the representatives among the rows."""
    clash = sorted(set(attributes) & set(RESERVED_COLUMNS))
    if clash:
        raise ClusteringInputError(
            f"attribute column(s) {clash} clash with output columns of representatives.parquet; rename them"
        )
    k = representatives.size
    sizes = np.bincount(labels, minlength=k)
    sim_sum = np.bincount(labels, weights=similarity, minlength=k)
    sim_min = np.full(k, np.inf)
    np.minimum.at(sim_min, labels, similarity)
    data: dict[str, Any] = {
        "cluster": pa.array(np.arange(k, dtype=np.int64)),
        "representative": pa.array(representatives, pa.int64()),
        "size": pa.array(sizes.astype(np.int64)),
        "share": pa.array(sizes / max(1, labels.size), pa.float64()),
        "trimmed": pa.array(cluster_trimmed, pa.bool_()),
        "min_similarity": pa.array(sim_min, pa.float64()),
        "mean_similarity": pa.array(sim_sum / np.maximum(sizes, 1), pa.float64()),
    }
    take = pa.array(rep_positions, pa.int64())
    for name, col in attributes.items():
        data[name] = col.take(take)
    if text_column is not None and text_column in extras:
        data["text"] = pc.cast(extras[text_column].take(take), pa.large_string())
    else:
        data["text"] = pa.nulls(k, pa.large_string())
    for col_name in ("prompt_tokens", "output_tokens"):
        mean, p90, _, _ = _group_stats(labels, k, _numeric(extras.get(col_name)))
        data[f"{col_name}_mean"] = mean
        data[f"{col_name}_p90"] = p90
    _, _, first, last = _group_stats(labels, k, _numeric(extras.get("timestamp")))
    data["first_timestamp"] = first
    data["last_timestamp"] = last
    return pa.table(data)


def size_histogram(sizes: npt.NDArray[np.int64]) -> dict[str, int]:
    """Cluster counts in power-of-two size bins: ``"1"``, ``"2"``, ``"3-4"``, ``"5-8"``, ..."""
    hist: dict[str, int] = {}
    if sizes.size == 0:
        return hist
    top = math.ceil(math.log2(max(1, int(sizes.max()))))
    for b in range(top + 1):
        lo, hi = (1, 1) if b == 0 else (2 ** (b - 1) + 1, 2**b)
        count = int(((sizes >= lo) & (sizes <= hi)).sum())
        if count:
            hist[str(lo) if lo == hi else f"{lo}-{hi}"] = count
    return hist


def table_summary(assignments: pa.Table, representatives: pa.Table, alpha: float) -> dict[str, Any]:
    """Summary fields derived from the output tables alone (identical for a run and a merge of shards)."""
    n = assignments.num_rows
    sizes = np.asarray(representatives.column("size").to_numpy(), dtype=np.int64)
    kept = ~np.asarray(representatives.column("trimmed").to_numpy(zero_copy_only=False), dtype=np.bool_)
    sim = np.asarray(assignments.column("similarity").to_numpy(), dtype=np.float64)
    clusters_kept = int(kept.sum())
    rows_kept = int(sizes[kept].sum())
    return {
        "n": n,
        "clusters": int(sizes.size),
        "clusters_kept": clusters_kept,
        "llm_calls": clusters_kept,
        "rows_kept": rows_kept,
        "rows_trimmed": n - rows_kept,
        "coverage": rows_kept / n if n else 0.0,
        "reduction_factor": n / clusters_kept if clusters_kept else 0.0,
        "min_similarity": float(sim.min()) if n else None,
        "mean_similarity": float(sim.mean()) if n else None,
        "rows_below_alpha": int((sim < alpha - FLOAT64_TOLERANCE).sum()),
        "size_histogram": size_histogram(sizes),
        "largest_cluster": int(sizes.max()) if sizes.size else 0,
        "singleton_clusters": int((sizes == 1).sum()),
    }
