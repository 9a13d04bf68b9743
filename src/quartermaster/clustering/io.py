"""Reading clustering inputs (Parquet or ``.npy``) and writing outputs atomically.

Input
    Parquet: an embedding column (list / large_list / fixed_size_list of float16/32/64; default name
    ``embedding``), optional categorical attribute columns, and optional ``prompt_tokens``, ``output_tokens``,
    ``timestamp`` and text columns that are carried into ``representatives.parquet``. ``.npy``: a 2-D float
    matrix (memory-mapped; no attributes).
    Rows are read row group by row group and filtered to the selected rows (a shard), so a shard of a very
    large file costs memory for its own rows only.

Output
    ``DIR`` receives ``assignments.parquet``, ``representatives.parquet`` and ``summary.json`` (columns are
    documented in :mod:`.summary`). Files are written to a temporary sibling directory that is renamed to
    ``DIR`` when complete; if ``DIR`` cannot be replaced by a rename (e.g. it is a mount point), the files are
    moved in one by one and ``summary.json`` — the completion marker — goes last.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from quartermaster.clustering.errors import ClusteringInputError
from quartermaster.clustering.validation import InvalidRows, find_invalid_rows

__all__ = [
    "EXTRA_COLUMNS",
    "InputTable",
    "SourceInfo",
    "embeddings_from_arrow",
    "inspect_source",
    "read_columns",
    "read_rows",
    "write_outputs",
]

logger = logging.getLogger(__name__)

#: Optional columns carried into the per-cluster statistics when present.
EXTRA_COLUMNS = ("prompt_tokens", "output_tokens", "timestamp")
OUTPUT_FILES = ("assignments.parquet", "representatives.parquet", "summary.json")


@dataclass(frozen=True)
class SourceInfo:
    """What an input file offers before anything large is read."""

    path: Path
    kind: str  # "parquet" or "npy"
    n_rows: int
    columns: tuple[str, ...]


@dataclass(frozen=True)
class InputTable:
    """Selected, validated rows of an input file."""

    embeddings: npt.NDArray[np.floating]  # (n, d)
    rows: npt.NDArray[np.int64]  # input row index of each row
    attributes: dict[str, pa.Array]
    extras: dict[str, pa.Array]  # prompt_tokens / output_tokens / timestamp / text, when present
    n_selected: int  # rows selected (before dropping invalid ones)
    invalid: InvalidRows = field(default_factory=InvalidRows)  # positions are input row indices


def inspect_source(path: str | os.PathLike[str]) -> SourceInfo:
    """Open ``path`` lazily and report its kind, row count and columns."""
    p = Path(path)
    if not p.exists():
        raise ClusteringInputError(f"input {str(p)!r} does not exist; pass a Parquet file or a .npy matrix")
    if p.suffix == ".npy":
        try:
            arr = np.load(p, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise ClusteringInputError(f"input {str(p)!r} is not a readable .npy matrix ({exc})") from None
        if arr.ndim != 2:
            raise ClusteringInputError(
                f"input {str(p)!r} holds an array of shape {arr.shape}; a .npy input must be a 2-D "
                "(n_rows, dim) embedding matrix"
            )
        return SourceInfo(path=p, kind="npy", n_rows=int(arr.shape[0]), columns=())
    try:
        meta = pq.ParquetFile(p)
    except (pa.ArrowException, OSError) as exc:
        raise ClusteringInputError(
            f"input {str(p)!r} is neither a .npy matrix nor a readable Parquet file ({exc})"
        ) from None
    return SourceInfo(
        path=p, kind="parquet", n_rows=meta.metadata.num_rows, columns=tuple(meta.schema_arrow.names)
    )


def require_columns(info: SourceInfo, names: list[str], *, hint: str) -> None:
    """Raise naming the missing columns, the available ones and ``hint`` (the fix)."""
    missing = [c for c in names if c not in info.columns]
    if missing:
        raise ClusteringInputError(
            f"column(s) {missing} not found in {str(info.path)!r} ({info.n_rows} rows); available columns: "
            f"{list(info.columns)}; {hint}"
        )


def read_columns(info: SourceInfo, columns: list[str], mask: npt.NDArray[np.bool_] | None = None) -> pa.Table:
    """Read ``columns`` of the rows where ``mask`` is true (all rows if ``None``), row group by row group."""
    if not columns:
        n = info.n_rows if mask is None else int(mask.sum())
        return pa.table({"__row": pa.array(np.zeros(n, dtype=np.int8))}).drop(["__row"])
    pf = pq.ParquetFile(info.path)
    if mask is None:
        return pf.read(columns=columns)
    pieces: list[pa.Table] = []
    start = 0
    for g in range(pf.metadata.num_row_groups):
        n_g = pf.metadata.row_group(g).num_rows
        sel = mask[start : start + n_g]
        start += n_g
        if sel.any():
            part = pf.read_row_group(g, columns=columns)
            pieces.append(part if sel.all() else part.filter(pa.array(sel)))
    if not pieces:
        return pf.schema_arrow.empty_table().select(columns)
    return pa.concat_tables(pieces)


def embeddings_from_arrow(
    column: pa.ChunkedArray, name: str, rows: npt.NDArray[np.int64], *, drop_invalid: bool
) -> tuple[npt.NDArray[np.floating], npt.NDArray[np.bool_], InvalidRows]:
    """Matrix of the valid rows of a list column, the validity mask and the invalid rows (input indices)."""
    typ = column.type
    if not (pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_fixed_size_list(typ)):
        raise ClusteringInputError(
            f"column {name!r} has type {typ}; the embedding column must hold lists of floats "
            "(pass --embedding-column NAME, or --text-column NAME to embed a text column)"
        )
    value_type = typ.value_type
    if not (pa.types.is_floating(value_type) or pa.types.is_integer(value_type)):
        raise ClusteringInputError(
            f"column {name!r} holds lists of {value_type}; it must hold lists of floats"
        )
    dtype = np.float64 if pa.types.is_float64(value_type) else np.float32
    lengths = np.concatenate(
        [np.asarray(c.value_lengths().fill_null(-1), dtype=np.int64) for c in column.chunks]
        or [np.zeros(0, dtype=np.int64)]
    )
    if lengths.size == 0:  # e.g. a shard that holds no rows
        return np.zeros((0, 0), dtype=dtype), np.zeros(0, dtype=np.bool_), InvalidRows()
    null = lengths < 0
    counts = Counter(lengths[~null].tolist())
    if not counts:
        raise ClusteringInputError(f"column {name!r} has no non-null embeddings among {lengths.size} rows")
    d = max(counts.items(), key=lambda kv: (kv[1], kv[0]))[0]
    wrong = ~null & (lengths != d)
    if d == 0:
        raise ClusteringInputError(
            f"column {name!r} holds empty lists; embeddings need at least one component"
        )
    if wrong.any() and not drop_invalid:
        detail = ", ".join(f"{n_} rows of dimension {dim}" for dim, n_ in sorted(counts.items()))
        raise ClusteringInputError(
            f"column {name!r} mixes dimensions ({detail}); every embedding needs the same dimension — fix "
            f"the input or pass --drop-invalid to drop the {int(wrong.sum())} rows whose dimension is not {d}"
        )
    ok = ~null & ~wrong
    out = np.empty((int(ok.sum()), d), dtype=dtype)
    pos = 0
    offset = 0
    for chunk in column.chunks:
        m = len(chunk)
        sel = ok[offset : offset + m]
        offset += m
        part = chunk if sel.all() else chunk.filter(pa.array(sel))
        if len(part) == 0:
            continue
        values = part.flatten().to_numpy(zero_copy_only=False)
        out[pos : pos + len(part)] = values.reshape(len(part), d)
        pos += len(part)
    scan = find_invalid_rows(out)
    valid_idx = np.flatnonzero(ok)
    bad = np.zeros(lengths.size, dtype=np.bool_)
    bad[null | wrong] = True
    bad[valid_idx[scan.positions]] = True
    invalid = InvalidRows(
        non_finite=scan.non_finite,
        zero_norm=scan.zero_norm,
        wrong_dimension=int(wrong.sum()),
        null=int(null.sum()),
        positions=rows[bad],
    )
    if scan.total:
        keep = np.ones(out.shape[0], dtype=np.bool_)
        keep[scan.positions] = False
        out = out[keep]
    return out, ~bad, invalid


def read_rows(
    info: SourceInfo,
    mask: npt.NDArray[np.bool_] | None,
    *,
    embedding_column: str,
    attributes: list[str],
    extra_columns: list[str],
    drop_invalid: bool,
) -> InputTable:
    """Read the selected rows: embeddings, attributes and extras, invalid rows reported (not yet dropped)."""
    rows = np.arange(info.n_rows, dtype=np.int64) if mask is None else np.flatnonzero(mask).astype(np.int64)
    if info.kind == "npy":
        if attributes:
            raise ClusteringInputError(
                f"input {str(info.path)!r} is a .npy matrix without columns; attributes {attributes} need a "
                "Parquet input with those columns"
            )
        mat = np.load(info.path, mmap_mode="r", allow_pickle=False)
        emb = mat if mask is None else np.asarray(mat[rows])
        scan = find_invalid_rows(emb)
        keep = np.ones(rows.size, dtype=np.bool_)
        keep[scan.positions] = False
        if scan.total:
            emb = np.asarray(emb[keep])
        return InputTable(
            embeddings=emb,
            rows=rows[keep],
            attributes={},
            extras={},
            n_selected=rows.size,
            invalid=InvalidRows(
                non_finite=scan.non_finite, zero_norm=scan.zero_norm, positions=rows[scan.positions]
            ),
        )
    table = read_columns(info, [embedding_column, *attributes, *extra_columns], mask)
    emb, valid, invalid = embeddings_from_arrow(
        table.column(embedding_column), embedding_column, rows, drop_invalid=drop_invalid
    )
    keep = pa.array(valid)
    attrs = {a: table.column(a).filter(keep).combine_chunks() for a in attributes}
    extras = {c: table.column(c).filter(keep).combine_chunks() for c in extra_columns}
    return InputTable(
        embeddings=emb,
        rows=rows[valid],
        attributes=attrs,
        extras=extras,
        n_selected=rows.size,
        invalid=invalid,
    )


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def write_outputs(
    out_dir: str | os.PathLike[str],
    assignments: pa.Table,
    representatives: pa.Table,
    summary: dict[str, Any],
    *,
    overwrite: bool = False,
) -> Path:
    """Write the three output files to ``out_dir`` atomically (see module docstring); return the path."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ClusteringInputError(f"--out {str(out)!r} is a file; pass a directory path")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ClusteringInputError(
            f"--out {str(out)!r} already holds files; pass a new directory or --overwrite to replace it"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        pq.write_table(assignments, tmp / "assignments.parquet")
        pq.write_table(representatives, tmp / "representatives.parquet")
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2, default=_json_default) + "\n")
        _install(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _install(tmp: Path, out: Path) -> None:
    old: Path | None = None
    if out.is_dir() and any(out.iterdir()):
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        old.rmdir()
        try:
            out.rename(old)
        except OSError:
            old = None
    try:
        os.replace(tmp, out)
    except OSError:
        # ``out`` cannot be replaced (a mount point, another filesystem): move files in, marker last.
        out.mkdir(parents=True, exist_ok=True)
        for name in OUTPUT_FILES:
            if (out / name).exists():
                (out / name).unlink()
        for name in OUTPUT_FILES:
            shutil.move(str(tmp / name), str(out / name))
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
