"""Sharded runs (``--shard I/N``) and merging shard outputs into one result with global cluster ids.

Two ways to split an input over the N pods of an Indexed Job:

* ``partition`` (default when attributes are given): shard ``I`` takes every attribute partition whose stable
  key (:func:`~.partition.stable_key`) is ``I mod N``. Partitions are clustered independently with seeds
  derived from their attribute values, so merging the shards reproduces the unsharded result *exactly*.
* ``rows`` (default without attributes): shard ``I`` takes the ``I``-th contiguous block of rows. Each shard
  keeps the guarantee; the merged result has more clusters than an unsharded run (clusters never span
  shards), which is the price of splitting one partition over several machines.

:func:`merge_outputs` checks that the shards belong together (same alpha, attributes, input size, shard
count; every shard index exactly once; no row twice), renumbers clusters by representative row (the
unsharded numbering), recomputes shares, and applies trimming globally.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from quartermaster.clustering.errors import ClusteringInputError, MergeError
from quartermaster.clustering.partition import partition_rows
from quartermaster.clustering.summary import SCHEMA_VERSION, table_summary
from quartermaster.clustering.trim import kept_clusters

__all__ = ["Shard", "ShardBy", "merge_outputs", "parse_shard", "shard_mask"]

ShardBy = Literal["auto", "rows", "partition"]
_SHARED_KEYS = ("alpha", "d", "attributes", "embedding_column", "seed", "params", "n_source")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based, like ``JOB_COMPLETION_INDEX``)."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """Parse ``"I/N"`` with ``0 <= I < N``."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m:
        raise ClusteringInputError(f"--shard {text!r} is not I/N; pass e.g. --shard 0/4 (shard 0 of 4)")
    index, count = int(m.group(1)), int(m.group(2))
    if count < 1 or index >= count:
        raise ClusteringInputError(
            f"--shard {text!r} needs 0 <= I < N; shards are numbered 0..N-1 (e.g. $JOB_COMPLETION_INDEX/N)"
        )
    return Shard(index, count)


def resolve_shard_by(by: ShardBy, attributes: list[str]) -> Literal["rows", "partition"]:
    """``auto`` means ``partition`` when attributes are given, else ``rows``."""
    if by == "auto":
        return "partition" if attributes else "rows"
    if by == "partition" and not attributes:
        raise ClusteringInputError(
            "--shard-by partition needs --attributes (partitions are attribute tuples); use --shard-by rows"
        )
    return by


def shard_mask(
    n_rows: int,
    shard: Shard,
    by: Literal["rows", "partition"],
    attribute_columns: dict[str, Any] | None = None,
) -> npt.NDArray[np.bool_]:
    """Rows of ``n_rows`` that belong to ``shard``."""
    mask = np.zeros(n_rows, dtype=np.bool_)
    if by == "rows":
        size = math.ceil(n_rows / shard.count) if n_rows else 0
        mask[shard.index * size : (shard.index + 1) * size] = True
        return mask
    parts = partition_rows(attribute_columns or {}, n_rows)
    for members, key in zip(parts.members, parts.keys, strict=True):
        if key % shard.count == shard.index:
            mask[members] = True
    return mask


def _load(d: Path) -> tuple[dict[str, Any], pa.Table, pa.Table]:
    files = [d / "summary.json", d / "assignments.parquet", d / "representatives.parquet"]
    missing = [f.name for f in files if not f.exists()]
    if missing:
        raise MergeError(f"{str(d)!r} lacks {missing}; pass directories written by `quartermaster cluster`")
    summary = json.loads(files[0].read_text())
    if summary.get("schema_version") != SCHEMA_VERSION:
        raise MergeError(
            f"{str(d)!r} has schema_version {summary.get('schema_version')!r}, expected {SCHEMA_VERSION}; "
            "re-run its shard with this version"
        )
    return summary, pq.read_table(files[1]), pq.read_table(files[2])


def _check_compatible(dirs: list[Path], summaries: list[dict[str, Any]]) -> None:
    for key in ("alpha", "attributes", "n_source", "embedding_column", "seed", "params"):
        values = {json.dumps(s.get(key), sort_keys=True) for s in summaries}
        if len(values) > 1:
            raise MergeError(
                f"shards disagree on {key!r} ({sorted(values)}); merge only shards of one run "
                "(same input and parameters)"
            )
    shards = [s.get("shard") for s in summaries]
    if len(dirs) == 1 and shards[0] is None:
        return
    if any(s is None for s in shards):
        raise MergeError(
            "some directories are not shard outputs (no 'shard' in summary.json); merge shards only"
        )
    counts = {s["count"] for s in shards if s}
    bys = {s["by"] for s in shards if s}
    if len(counts) > 1 or len(bys) > 1:
        raise MergeError(f"shards disagree on the shard count {sorted(counts)} or split {sorted(bys)}")
    count = counts.pop()
    seen = sorted(s["index"] for s in shards if s)
    if seen != list(range(count)):
        missing = sorted(set(range(count)) - set(seen))
        repeated = sorted({i for i in seen if seen.count(i) > 1})
        raise MergeError(
            f"expected shards 0..{count - 1} exactly once; missing {missing}, repeated {repeated}; "
            "pass every shard directory of the run once"
        )


def merge_outputs(
    dirs: list[Path],
    *,
    trim_coverage: float | None = None,
    min_cluster_size: int | None = None,
    keep_shard_trim: bool = True,
) -> tuple[pa.Table, pa.Table, dict[str, Any]]:
    """Merge shard directories: (assignments, representatives, summary) with global cluster ids.

    Trimming is re-applied over all clusters, with the shards' trimming parameters unless
    ``keep_shard_trim`` is false, in which case ``trim_coverage``/``min_cluster_size`` are used.
    """
    if not dirs:
        raise MergeError("no shard directories given; pass DIR... written by `quartermaster cluster --shard`")
    loaded = [_load(Path(d)) for d in dirs]
    summaries = [s for s, _, _ in loaded]
    _check_compatible([Path(d) for d in dirs], summaries)
    assign = pa.concat_tables([a for _, a, _ in loaded]).sort_by("row")
    reps = pa.concat_tables([r for _, _, r in loaded], promote_options="permissive")
    rows = np.asarray(assign.column("row").to_numpy())
    if rows.size > 1 and (np.diff(rows) == 0).any():
        raise MergeError("the same input row appears in two shards; pass each shard directory once")
    rep_rows = np.asarray(reps.column("representative").to_numpy())
    order = np.argsort(rep_rows, kind="stable")
    reps = reps.take(pa.array(order))
    rep_rows = rep_rows[order]
    per_row_rep = np.asarray(assign.column("representative").to_numpy())
    labels = np.searchsorted(rep_rows, per_row_rep)
    if (labels >= rep_rows.size).any() or (
        rep_rows[np.minimum(labels, rep_rows.size - 1)] != per_row_rep
    ).any():
        raise MergeError("an assignment names a representative missing from representatives.parquet")
    sizes = np.asarray(reps.column("size").to_numpy(), dtype=np.int64)
    trim = summaries[0].get("trim", {}) if keep_shard_trim else {}
    coverage = trim.get("coverage") if keep_shard_trim else trim_coverage
    min_size = trim.get("min_cluster_size") if keep_shard_trim else min_cluster_size
    keep = kept_clusters(sizes, coverage=coverage, min_size=min_size)
    n = assign.num_rows
    reps = reps.set_column(reps.schema.get_field_index("cluster"), "cluster", pa.array(np.arange(sizes.size)))
    reps = reps.set_column(reps.schema.get_field_index("share"), "share", pa.array(sizes / max(1, n)))
    reps = reps.set_column(reps.schema.get_field_index("trimmed"), "trimmed", pa.array(~keep))
    assign = assign.set_column(1, "cluster", pa.array(labels.astype(np.int64)))
    assign = assign.set_column(4, "trimmed", pa.array(~keep[labels]))

    first = summaries[0]
    summary: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        **{
            k: first.get(k)
            for k in ("alpha", "d", "attributes", "embedding_column", "seed", "params", "n_source")
        },
        **table_summary(assign, reps, float(first["alpha"])),
        "n_input": int(sum(s["n_input"] for s in summaries)),
        "n_dropped": int(sum(s["n_dropped"] for s in summaries)),
        "dropped": {
            k: int(sum(s["dropped"].get(k, 0) for s in summaries)) for k in summaries[0].get("dropped", {})
        },
        "partitions": int(sum(s["partitions"] for s in summaries)),
        "cells": int(sum(s["cells"] for s in summaries)),
        "clusters_before_cross_cell": int(sum(s["clusters_before_cross_cell"] for s in summaries)),
        "trim": {"coverage": coverage, "min_cluster_size": min_size},
        "shard": None,
        "merged_from": [
            {"dir": str(d), "shard": s.get("shard"), "n": s["n"], "runtime_seconds": s["runtime_seconds"]}
            for d, s in zip(dirs, summaries, strict=True)
        ],
        "runtime_seconds": float(max(s["runtime_seconds"] for s in summaries)),
        "runtime_seconds_total": float(sum(s["runtime_seconds"] for s in summaries)),
        "peak_memory_bytes": int(max(s["peak_memory_bytes"] for s in summaries)),
    }
    if pc.any(pc.is_null(reps.column("cluster"))).as_py():
        raise MergeError("representatives.parquet has clusters without ids")
    return assign, reps, summary
