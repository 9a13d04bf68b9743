"""End-to-end runs: input file or in-memory table -> validated rows -> clustering -> output tables.

The CLI (``quartermaster cluster``) and the operator call these; the operator can cluster small inputs inline
with :func:`cluster_table` and read the same tables a Job would have written.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from quartermaster import __version__
from quartermaster.clustering.errors import ClusteringInputError
from quartermaster.clustering.estimator import DEFAULT_CELL_SIZE, GuardrailedClustering
from quartermaster.clustering.io import (
    EXTRA_COLUMNS,
    InputTable,
    SourceInfo,
    embeddings_from_arrow,
    inspect_source,
    read_columns,
    read_rows,
    require_columns,
    write_outputs,
)
from quartermaster.clustering.jobs import resolve_n_jobs
from quartermaster.clustering.shards import Shard, ShardBy, resolve_shard_by, shard_mask
from quartermaster.clustering.summary import (
    SCHEMA_VERSION,
    assignments_table,
    peak_memory_bytes,
    representatives_table,
    table_summary,
)
from quartermaster.clustering.trim import check_trim
from quartermaster.clustering.validation import InvalidRows, check_alpha, raise_for_invalid

__all__ = ["ClusterConfig", "ClusteringResult", "Progress", "cluster_table", "run"]

logger = logging.getLogger(__name__)

#: ``progress(stage, done, total)``; stages: read, embed, cover, similarity, write.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ClusterConfig:
    """Everything a run needs besides its input and output (mirrors the CLI flags)."""

    alpha: float
    attributes: tuple[str, ...] = ()
    embedding_column: str = "embedding"
    text_column: str | None = None  # carried into representatives; embedded if there is no embedding column
    trim_coverage: float | None = None
    min_cluster_size: int | None = None
    seed: int = 0
    drop_invalid: bool = False
    cell_size: int = DEFAULT_CELL_SIZE
    cross_cell: bool = True
    reassign: bool = True
    n_jobs: int = 1  # workers (threads, forked processes for the covers); the result does not depend on it

    def __post_init__(self) -> None:
        check_alpha(self.alpha)
        check_trim(self.trim_coverage, self.min_cluster_size)
        if len(set(self.attributes)) != len(self.attributes):
            raise ClusteringInputError(f"attributes {list(self.attributes)} repeat a column; name each once")
        if self.embedding_column in self.attributes:
            raise ClusteringInputError(
                f"column {self.embedding_column!r} is the embedding column and cannot also be an attribute"
            )
        if self.seed < 0:
            raise ClusteringInputError(f"seed={self.seed} must be >= 0")
        if self.cell_size < 2:
            raise ClusteringInputError(f"cell_size={self.cell_size} must be >= 2 (e.g. {DEFAULT_CELL_SIZE})")
        resolve_n_jobs(self.n_jobs)

    def estimator(self) -> GuardrailedClustering:
        return GuardrailedClustering(
            self.alpha,
            cell_size=self.cell_size,
            cross_cell=self.cross_cell,
            reassign=self.reassign,
            trim_coverage=self.trim_coverage,
            min_cluster_size=self.min_cluster_size,
            n_jobs=self.n_jobs,
            random_state=self.seed,
        )

    def params(self) -> dict[str, Any]:
        return {"cell_size": self.cell_size, "cross_cell": self.cross_cell, "reassign": self.reassign}


@dataclass(frozen=True)
class ClusteringResult:
    """The three outputs of a run, in memory."""

    assignments: pa.Table
    representatives: pa.Table
    summary: dict[str, Any] = field(default_factory=dict)

    def write(self, out_dir: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write atomically to ``out_dir`` (see :func:`~.io.write_outputs`)."""
        return write_outputs(
            out_dir, self.assignments, self.representatives, self.summary, overwrite=overwrite
        )


def _cluster(
    data: InputTable,
    config: ClusterConfig,
    *,
    text_column: str | None,
    progress: Progress | None,
    meta: dict[str, Any],
    started: float,
) -> ClusteringResult:
    if data.invalid.total and not config.drop_invalid:
        raise_for_invalid(data.invalid, data.n_selected)
    if data.embeddings.shape[0] == 0:
        raise ClusteringInputError(
            f"no rows left to cluster ({data.n_selected} selected, {data.invalid.total} invalid: "
            f"{data.invalid.describe()}); pass a non-empty input (or a shard that holds rows)"
        )
    if data.invalid.total:
        logger.warning("dropped %d invalid rows (%s)", data.invalid.total, data.invalid.describe())
    est = config.estimator().fit(data.embeddings, data.attributes or None, progress=progress)
    rep_positions = est.representatives_
    assignments = assignments_table(
        data.rows, est.labels_, data.rows[rep_positions][est.labels_], est.similarity_, est.trimmed_
    )
    representatives = representatives_table(
        labels=est.labels_,
        representatives=data.rows[rep_positions],
        rep_positions=rep_positions,
        similarity=est.similarity_,
        cluster_trimmed=est.cluster_trimmed_,
        attributes=data.attributes,
        extras=data.extras,
        text_column=text_column,
    )
    summary = _summary(config, data, meta, started, assignments, representatives, est)
    return ClusteringResult(assignments, representatives, summary)


def _summary(
    config: ClusterConfig,
    data: InputTable,
    meta: dict[str, Any],
    started: float,
    assignments: pa.Table,
    representatives: pa.Table,
    est: GuardrailedClustering | None,
) -> dict[str, Any]:
    """``summary.json`` of a run (``est`` is None for a shard that holds no rows)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "quartermaster_version": __version__,
        "alpha": float(config.alpha),
        "d": int(est.n_features_in_) if est is not None else None,
        "attributes": list(config.attributes),
        "embedding_column": config.embedding_column,
        "seed": config.seed,
        "params": config.params(),
        **meta,
        **table_summary(assignments, representatives, config.alpha),
        "n_input": int(data.n_selected),
        "n_dropped": data.invalid.total,
        "dropped": data.invalid.as_dict(),
        "partitions": est.n_partitions_ if est is not None else 0,
        "cells": est.n_cells_ if est is not None else 0,
        "clusters_before_cross_cell": est.n_clusters_before_cross_cell_ if est is not None else 0,
        "trim": {"coverage": config.trim_coverage, "min_cluster_size": config.min_cluster_size},
        "runtime_seconds": time.perf_counter() - started,
        "stage_seconds": {k: round(v, 4) for k, v in est.timings_.items()} if est is not None else {},
        "peak_memory_bytes": peak_memory_bytes(),
    }


def _embed_text(column: pa.Array, name: str, progress: Progress | None) -> npt.NDArray[np.float32]:
    from quartermaster.clustering.text import embed_texts  # optional extra: imported only when used

    texts = column.to_pylist()
    empty = sum(1 for t in texts if not isinstance(t, str) or not t.strip())
    if empty:
        raise ClusteringInputError(
            f"text column {name!r} has {empty} empty or null rows of {len(texts)}; fill or remove them"
        )
    return embed_texts(texts, progress=progress)


def cluster_table(
    table: pa.Table, config: ClusterConfig, *, progress: Progress | None = None
) -> ClusteringResult:
    """Cluster an in-memory Arrow table (columns as for a Parquet input); nothing is written."""
    started = time.perf_counter()
    n = table.num_rows
    if n == 0:
        raise ClusteringInputError("the input table has 0 rows; pass at least one row")
    names = set(table.column_names)
    text_column = config.text_column or ("text" if "text" in names else None)
    needed = list(config.attributes) + ([text_column] if text_column else [])
    missing = [c for c in needed if c not in names]
    if missing:
        raise ClusteringInputError(f"column(s) {missing} not found; available columns: {sorted(names)}")
    rows = np.arange(n, dtype=np.int64)
    if config.embedding_column in names:
        emb, valid, invalid = embeddings_from_arrow(
            table.column(config.embedding_column),
            config.embedding_column,
            rows,
            drop_invalid=config.drop_invalid,
        )
    elif config.text_column is not None:
        emb = _embed_text(table.column(config.text_column).combine_chunks(), config.text_column, progress)
        valid, invalid = np.ones(n, dtype=np.bool_), InvalidRows()
    else:
        raise ClusteringInputError(
            f"embedding column {config.embedding_column!r} not found; available columns: {sorted(names)}; "
            "pass embedding_column= or text_column= (embedding with the [text] extra)"
        )
    keep = pa.array(valid)
    extras = [c for c in (*EXTRA_COLUMNS, text_column) if c and c in names]
    data = InputTable(
        embeddings=emb,
        rows=rows[valid],
        attributes={a: table.column(a).filter(keep).combine_chunks() for a in config.attributes},
        extras={c: table.column(c).filter(keep).combine_chunks() for c in extras},
        n_selected=n,
        invalid=invalid,
    )
    meta = {"input": None, "n_source": n, "shard": None}
    return _cluster(data, config, text_column=text_column, progress=progress, meta=meta, started=started)


def _read(
    info: SourceInfo, config: ClusterConfig, mask: npt.NDArray[np.bool_] | None, progress: Progress | None
) -> tuple[InputTable, str | None]:
    text_column = config.text_column or ("text" if "text" in info.columns else None)
    extras = [c for c in (*EXTRA_COLUMNS, text_column) if c and c in info.columns]
    if info.kind == "npy" or config.embedding_column in info.columns:
        if info.kind == "parquet":
            require_columns(info, list(config.attributes), hint="pass existing columns to --attributes")
        data = read_rows(
            info,
            mask,
            embedding_column=config.embedding_column,
            attributes=list(config.attributes),
            extra_columns=extras,
            drop_invalid=config.drop_invalid,
        )
        return data, text_column
    if config.text_column is None:
        require_columns(
            info,
            [config.embedding_column],
            hint="pass --embedding-column NAME, or --text-column NAME to embed text (needs the [text] extra)",
        )
    assert text_column is not None
    require_columns(info, [*config.attributes, text_column], hint="pass existing columns")
    table = read_columns(info, [*config.attributes, *extras], mask)
    emb = _embed_text(table.column(text_column).combine_chunks(), text_column, progress)
    rows = np.arange(info.n_rows, dtype=np.int64) if mask is None else np.flatnonzero(mask).astype(np.int64)
    data = InputTable(
        embeddings=emb,
        rows=rows,
        attributes={a: table.column(a).combine_chunks() for a in config.attributes},
        extras={c: table.column(c).combine_chunks() for c in extras},
        n_selected=rows.size,
    )
    return data, text_column


def run(
    input_path: str | os.PathLike[str],
    config: ClusterConfig,
    *,
    out_dir: str | os.PathLike[str] | None = None,
    shard: Shard | None = None,
    shard_by: ShardBy = "auto",
    overwrite: bool = False,
    progress: Progress | None = None,
) -> ClusteringResult:
    """Cluster a Parquet/.npy file (optionally one shard of it); write to ``out_dir`` atomically if given."""
    started = time.perf_counter()
    info = inspect_source(input_path)
    if info.n_rows == 0:
        raise ClusteringInputError(f"input {str(info.path)!r} has 0 rows; pass a non-empty input")
    mask = None
    shard_meta = None
    if shard is not None:
        by = resolve_shard_by(shard_by, list(config.attributes))
        columns: dict[str, Any] = {}
        if by == "partition":
            require_columns(info, list(config.attributes), hint="pass existing columns to --attributes")
            table = read_columns(info, list(config.attributes))
            columns = {a: table.column(a) for a in config.attributes}
        mask = shard_mask(info.n_rows, shard, by, columns)
        shard_meta = {"index": shard.index, "count": shard.count, "by": by}
    if progress is not None:
        progress("read", 0, 1)
    data, text_column = _read(info, config, mask, progress)
    if progress is not None:
        progress("read", 1, 1)
    if shard is not None and data.n_selected == 0:
        logger.warning("shard %s of %s holds no rows", shard, info.path)
    meta = {"input": str(info.path), "n_source": info.n_rows, "shard": shard_meta}
    if shard is not None and data.embeddings.shape[0] == 0:
        result = _empty_result(data, config, meta, started)
    else:
        result = _cluster(
            data, config, text_column=text_column, progress=progress, meta=meta, started=started
        )
    if out_dir is not None:
        if progress is not None:
            progress("write", 0, 1)
        result.write(out_dir, overwrite=overwrite)
        if progress is not None:
            progress("write", 1, 1)
    return result


def _empty_result(
    data: InputTable, config: ClusterConfig, meta: dict[str, Any], started: float
) -> ClusteringResult:
    """A shard with no rows still writes valid (empty) outputs so the merge can count it."""
    empty = np.zeros(0, dtype=np.int64)
    assignments = assignments_table(empty, empty, empty, np.zeros(0), np.zeros(0, dtype=np.bool_))
    representatives = representatives_table(
        labels=empty,
        representatives=empty,
        rep_positions=empty,
        similarity=np.zeros(0),
        cluster_trimmed=np.zeros(0, dtype=np.bool_),
        attributes={a: pa.array([], pa.string()) for a in config.attributes},
        extras={},
        text_column=None,
    )
    summary = _summary(config, data, meta, started, assignments, representatives, None)
    return ClusteringResult(assignments, representatives, summary)


def with_overrides(config: ClusterConfig, **changes: Any) -> ClusterConfig:
    """A copy of ``config`` with ``changes`` (validated again)."""
    return replace(config, **changes)
