"""Exact partitioning of rows by the tuple of their categorical attribute values.

Attribute values are compared exactly (strings, integers, booleans; a missing value is its own category).
Each partition gets a *stable key* computed from the attribute values themselves (not from row order or
codes), used to derive per-partition seeds and shard numbers: a partition is processed identically whether it
is clustered alone, in a shard, or with everything else.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from quartermaster.clustering.errors import ClusteringInputError

__all__ = ["AttributeColumns", "Partitions", "as_attribute_columns", "partition_rows", "stable_key"]

#: Attribute columns by name, each a sequence of n categorical values.
AttributeColumns = dict[str, Sequence[Any] | npt.NDArray[Any] | pa.Array | pa.ChunkedArray]


@dataclass(frozen=True)
class Partitions:
    """Rows grouped by attribute tuple."""

    codes: npt.NDArray[np.int64]  # partition number of every row
    members: list[npt.NDArray[np.int64]]  # ascending row indices of each partition
    values: list[tuple[Any, ...]]  # attribute tuple of each partition (Python values, None for missing)
    keys: list[int]  # stable 63-bit key of each partition


def stable_key(values: tuple[Any, ...]) -> int:
    """A 63-bit key of an attribute tuple that is the same in every process and on every machine."""
    text = repr(tuple((type(v).__name__, v) for v in values)).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1


def as_attribute_columns(attributes: object, n_rows: int) -> AttributeColumns:
    """Normalise ``attributes`` (None, mapping name -> column, or an (n,) / (n, k) array) to named columns."""
    if attributes is None:
        return {}
    if isinstance(attributes, Mapping):
        columns: AttributeColumns = {str(k): v for k, v in attributes.items()}
    else:
        arr = np.asarray(attributes, dtype=object)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2:
            raise ClusteringInputError(
                f"attributes have shape {arr.shape}; pass one value per row, shape (n_rows,) or (n_rows, k), "
                "or a mapping of column name to values"
            )
        columns = {f"attribute_{j}": arr[:, j] for j in range(arr.shape[1])}
    for name, col in columns.items():
        if len(col) != n_rows:
            raise ClusteringInputError(
                f"attribute column {name!r} has {len(col)} values but the embeddings have {n_rows} rows; "
                "pass exactly one attribute value per embedding row"
            )
    return columns


def _encode(col: Any) -> tuple[npt.NDArray[np.int64], list[Any]]:
    """Codes and code -> value list of one categorical column (missing values share one code)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if isinstance(col, pa.Array):
        if pa.types.is_floating(col.type):
            raise ClusteringInputError(
                f"an attribute column has float type {col.type}; attributes are matched exactly, so use "
                "categorical values (strings, integers, booleans)"
            )
        enc = col.dictionary_encode()
        dictionary = enc.dictionary.to_pylist()
        codes = enc.indices.to_numpy(zero_copy_only=False)
        if enc.null_count:
            codes = np.where(enc.is_null().to_numpy(zero_copy_only=False), len(dictionary), codes)
            dictionary.append(None)
        return np.asarray(codes, dtype=np.int64), dictionary
    arr = np.asarray(col)
    if arr.dtype.kind == "f":
        raise ClusteringInputError(
            f"an attribute column has float dtype {arr.dtype}; attributes are matched exactly, so use "
            "categorical values (strings, integers, booleans)"
        )
    if arr.dtype.kind in "biuUS":
        uniques, codes = np.unique(arr, return_inverse=True)
        return codes.astype(np.int64).ravel(), [u.item() if hasattr(u, "item") else u for u in uniques]
    lookup: dict[tuple[str, Any], int] = {}
    values: list[Any] = []
    out = np.empty(len(arr), dtype=np.int64)
    for i, v in enumerate(arr.tolist()):
        value = None if isinstance(v, float) and math.isnan(v) else v  # NaN in an object column: missing
        key = (type(value).__name__, value)  # 1, 1.0 and True are different categories
        code = lookup.get(key)
        if code is None:
            code = lookup[key] = len(values)
            values.append(value)
        out[i] = code
    return out, values


def partition_rows(columns: AttributeColumns, n_rows: int) -> Partitions:
    """Group rows ``0..n_rows-1`` by the exact tuple of their attribute values."""
    if not columns:
        return Partitions(
            codes=np.zeros(n_rows, dtype=np.int64),
            members=[np.arange(n_rows, dtype=np.int64)],
            values=[()],
            keys=[stable_key(())],
        )
    encoded = [_encode(col) for col in columns.values()]
    code_matrix = np.stack([c for c, _ in encoded], axis=1)
    uniq, inverse = np.unique(code_matrix, axis=0, return_inverse=True)
    inverse = inverse.astype(np.int64).ravel()
    order = np.argsort(inverse, kind="stable")
    counts = np.bincount(inverse, minlength=uniq.shape[0])
    members = np.split(order, np.cumsum(counts)[:-1])
    values = [tuple(encoded[j][1][int(u[j])] for j in range(len(encoded))) for u in uniq]
    return Partitions(
        codes=inverse,
        members=[m.astype(np.int64) for m in members],
        values=values,
        keys=[stable_key(v) for v in values],
    )
