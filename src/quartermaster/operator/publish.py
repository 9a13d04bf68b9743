"""Turn a clustering run into the QueryClusterJob result ConfigMaps (used inline and by the Job's pod).

Rates: ``spec.totalRate`` when given, else rows / time span of the input's ``timestamp`` column, else
1 request/s (stated in ``summary.json`` as ``rateSource`` so nobody mistakes it for a measurement).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from quartermaster.clustering.io import embeddings_from_arrow, inspect_source, read_columns
from quartermaster.clustering.pipeline import ClusteringResult
from quartermaster.operator.clusterresult import ClusterStats, ResultDocuments, build_result

DEFAULT_RATE = 1.0


def _float(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if np.isnan(number) else number


def _weighted(values: list[float | None], weights: list[float]) -> float | None:
    pairs = [(v, w) for v, w in zip(values, weights, strict=True) if v is not None]
    total = sum(w for _, w in pairs)
    return sum(v * w for v, w in pairs) / total if total else None


def total_rate(result: ClusteringResult, spec_rate: float | None) -> tuple[float, str]:
    if spec_rate is not None:
        return spec_rate, "spec.totalRate"
    reps = result.representatives.to_pylist()
    firsts = [r["first_timestamp"] for r in reps if r.get("first_timestamp") is not None]
    lasts = [r["last_timestamp"] for r in reps if r.get("last_timestamp") is not None]
    if firsts and lasts and max(lasts) > min(firsts):
        n = int(result.summary.get("n") or result.assignments.num_rows)
        return n / (max(lasts) - min(firsts)), "timestamp column"
    return DEFAULT_RATE, "default (no timestamp column and no spec.totalRate): 1 request/s"


def representative_embeddings(
    table_or_path: pa.Table | str | os.PathLike[str], column: str, rows: npt.NDArray[np.int64]
) -> npt.NDArray[np.floating]:
    """Embeddings of input ``rows`` (ascending), from an in-memory table or the input file."""
    if isinstance(table_or_path, pa.Table):
        picked = table_or_path.column(column).take(pa.array(rows))
        matrix, _, _ = embeddings_from_arrow(picked, column, rows, drop_invalid=False)
        return matrix
    info = inspect_source(table_or_path)
    if info.kind == "npy":
        return np.asarray(np.load(info.path, mmap_mode="r")[rows], dtype=np.float32)
    mask = np.zeros(info.n_rows, dtype=np.bool_)
    mask[rows] = True
    picked_table = read_columns(info, [column], mask)
    matrix, _, _ = embeddings_from_arrow(picked_table.column(column), column, rows, drop_invalid=False)
    return matrix


def result_documents(
    result: ClusteringResult,
    source: pa.Table | str | os.PathLike[str],
    *,
    embedding_column: str,
    spec_rate: float | None,
    chunk_names: list[str],
    max_bytes: int,
    embedding_model: str = "sentence-transformers/all-MiniLM-L6-v2",
) -> ResultDocuments:
    reps = result.representatives.to_pylist()
    kept = [r for r in reps if not r["trimmed"]]
    trimmed = [r for r in reps if r["trimmed"]]
    rows = np.asarray(sorted(int(r["representative"]) for r in kept), dtype=np.int64)
    order = {int(row): i for i, row in enumerate(rows)}
    kept.sort(key=lambda r: order[int(r["representative"])])
    matrix = (
        representative_embeddings(source, embedding_column, rows)
        if rows.size
        else np.zeros((0, 1), np.float32)
    )
    norms = np.linalg.norm(matrix, axis=1, keepdims=True) if rows.size else None
    if norms is not None:
        matrix = matrix / np.maximum(norms, 1e-12)
    rate, rate_source = total_rate(result, spec_rate)
    stats = [
        ClusterStats(
            cluster=int(r["cluster"]),
            share=float(r["share"]),
            prompt_tokens=_float(r.get("prompt_tokens_mean")),
            output_tokens=_float(r.get("output_tokens_mean")),
        )
        for r in kept
    ]
    sizes = [float(r["size"]) for r in trimmed]
    default_tokens = (
        _weighted([_float(r.get("prompt_tokens_mean")) for r in trimmed], sizes),
        _weighted([_float(r.get("output_tokens_mean")) for r in trimmed], sizes),
    )
    summary = {
        **{k: v for k, v in result.summary.items() if isinstance(v, (int, float, str, bool, type(None)))},
        "embeddingModel": embedding_model,
        "totalRate": rate,
        "rateSource": rate_source,
    }
    return build_result(
        stats,
        matrix,
        summary,
        total_rate=rate,
        trimmed_share=float(sum(r["share"] for r in trimmed)),
        default_tokens=default_tokens,
        chunk_names=chunk_names,
        max_bytes=max_bytes,
    )
