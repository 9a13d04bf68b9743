"""Input validation and normalisation at the boundary.

Embeddings must be a 2-D matrix of finite values with non-zero rows; cosine similarity then is the dot
product of the L2-normalised rows. Norms are computed in float64 per chunk, so every component of the float32
copy is within two float32 roundings of the exact unit vector; already-normalised float32 input is used
without a copy and its measured norm error widens the margin instead (this bounds the float32 similarity
error, see :mod:`quartermaster.clustering.similarity`).

Invalid rows (NaN/inf, zero norm) are either an error naming the counts and the fix, or — with
``drop_invalid`` — removed and reported by :class:`InvalidRows`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from quartermaster.clustering.errors import ClusteringInputError
from quartermaster.clustering.jobs import Jobs

__all__ = [
    "CHUNK_ROWS",
    "UNIT_NORM_TOLERANCE",
    "InvalidRows",
    "check_alpha",
    "find_invalid_rows",
    "normalized_float32",
    "raise_for_invalid",
]

logger = logging.getLogger(__name__)

#: Rows processed per chunk when scanning or normalising (bounds temporary float64 memory to ~50 MB at d=384).
CHUNK_ROWS = 16384
# Rows widened to float64 at a time for the norms (fits in L2 at d = 384).
_WIDEN_ROWS = 512
#: A float32 input whose row norms all lie within this of 1 is clustered without a normalised copy.
UNIT_NORM_TOLERANCE = 1e-4


@dataclass(frozen=True)
class InvalidRows:
    """Counts (and row positions) of rows that cannot be clustered."""

    non_finite: int = 0
    zero_norm: int = 0
    wrong_dimension: int = 0
    null: int = 0
    positions: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def total(self) -> int:
        return int(self.positions.size)

    def as_dict(self) -> dict[str, int]:
        return {
            "non_finite": self.non_finite,
            "zero_norm": self.zero_norm,
            "wrong_dimension": self.wrong_dimension,
            "null": self.null,
        }

    def describe(self) -> str:
        parts = [f"{v} {k.replace('_', '-')}" for k, v in self.as_dict().items() if v]
        return ", ".join(parts) if parts else "none"

    def merged(self, other: InvalidRows) -> InvalidRows:
        """Union of two reports (positions refer to the same row numbering)."""
        return InvalidRows(
            non_finite=self.non_finite + other.non_finite,
            zero_norm=self.zero_norm + other.zero_norm,
            wrong_dimension=self.wrong_dimension + other.wrong_dimension,
            null=self.null + other.null,
            positions=np.union1d(self.positions, other.positions).astype(np.int64),
        )


def check_alpha(alpha: float) -> float:
    """Return ``alpha`` as a float if it is a cosine threshold in (0, 1]; raise otherwise."""
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        raise ClusteringInputError(
            f"alpha={alpha!r} is not a number; pass a cosine threshold in (0, 1], e.g. --alpha 0.7"
        ) from None
    if not np.isfinite(value) or not 0.0 < value <= 1.0:
        raise ClusteringInputError(
            f"alpha={alpha!r} is outside (0, 1]; pass a cosine threshold in (0, 1], e.g. --alpha 0.7 "
            "(1 groups only identical directions, lower values give fewer, looser clusters)"
        )
    return value


def _as_matrix(X: object) -> npt.NDArray[np.floating]:
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise ClusteringInputError(
            f"embeddings have shape {arr.shape}; pass a 2-D matrix with one row per query (n_rows, dim)"
        )
    if arr.shape[0] == 0:
        raise ClusteringInputError("the input has 0 rows; pass at least one embedding row")
    if arr.shape[1] == 0:
        raise ClusteringInputError("embeddings have dimension 0; pass vectors with at least one component")
    if not np.issubdtype(arr.dtype, np.floating) and not np.issubdtype(arr.dtype, np.integer):
        raise ClusteringInputError(
            f"embeddings have dtype {arr.dtype}; pass a numeric (float32/float64) matrix"
        )
    return arr


def find_invalid_rows(X: object) -> InvalidRows:
    """Scan ``X`` chunk by chunk for non-finite values and zero-norm rows."""
    arr = _as_matrix(X)
    bad_nf: list[npt.NDArray[np.int64]] = []
    bad_zero: list[npt.NDArray[np.int64]] = []
    for start in range(0, arr.shape[0], CHUNK_ROWS):
        block = np.asarray(arr[start : start + CHUNK_ROWS], dtype=np.float64)
        finite = np.asarray(np.isfinite(block).all(axis=1), dtype=np.bool_)
        nf = np.flatnonzero(~finite)
        if nf.size:
            bad_nf.append(nf.astype(np.int64) + start)
        clean = np.where(finite.reshape(-1, 1), block, 0.0)
        norms = np.einsum("ij,ij->i", clean, clean)
        zero = np.flatnonzero(np.logical_and(finite, ~(norms > 0.0)))
        if zero.size:
            bad_zero.append(zero.astype(np.int64) + start)
    nf_all = np.concatenate(bad_nf) if bad_nf else np.zeros(0, dtype=np.int64)
    zero_all = np.concatenate(bad_zero) if bad_zero else np.zeros(0, dtype=np.int64)
    return InvalidRows(
        non_finite=int(nf_all.size),
        zero_norm=int(zero_all.size),
        positions=np.union1d(nf_all, zero_all).astype(np.int64),
    )


def raise_for_invalid(invalid: InvalidRows, n_rows: int) -> None:
    """Raise a :class:`ClusteringInputError` describing ``invalid`` if it is not empty."""
    if invalid.total == 0:
        return
    first = ", ".join(str(int(p)) for p in invalid.positions[:5])
    raise ClusteringInputError(
        f"{invalid.total} of {n_rows} rows cannot be clustered ({invalid.describe()}; first rows: {first}); "
        "fix the embeddings or pass --drop-invalid (drop_invalid=True) to drop them and report what was "
        "dropped"
    )


def normalized_float32(
    X: object, *, reuse_unit: bool = False, jobs: Jobs | None = None
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float64], float]:
    """Unit rows as float32, the float64 norms of the input rows, and the norm error of the unit rows.

    Normally the unit rows are a new C-contiguous float32 copy (norm error 0: every component is within two
    float32 roundings of the exact unit vector). With ``reuse_unit``, a C-contiguous float32 input whose row
    norms are all within :data:`UNIT_NORM_TOLERANCE` of 1 (embedding models usually return normalised
    vectors) is used as it is — no copy, no page faults for a second ``n x d`` matrix — and the third value is
    ``max |norm - 1|``, which :func:`~quartermaster.clustering.similarity.float32_margin` adds to the
    similarity error bound. ``jobs`` runs the row chunks on threads.

    Raises :class:`ClusteringInputError` when a row is non-finite or has zero norm.
    """
    arr = _as_matrix(X)
    n, d = arr.shape
    jobs = jobs or Jobs(1)
    all_norms = np.empty(n, dtype=np.float64)

    def norms_of(start: int) -> bool:
        block = arr[start : start + CHUNK_ROWS]
        norms = all_norms[start : start + len(block)]
        if block.dtype == np.float64:
            np.einsum("ij,ij->i", block, block, out=norms)
        else:  # widen a cache-sized piece at a time: ~2x faster than einsum's own casting
            wide = np.empty((min(_WIDEN_ROWS, len(block)), d), dtype=np.float64)
            for i in range(0, len(block), _WIDEN_ROWS):
                part = block[i : i + _WIDEN_ROWS]
                piece = wide[: len(part)]
                np.copyto(piece, part, casting="unsafe")
                np.einsum("ij,ij->i", piece, piece, out=norms[i : i + len(part)])
        np.sqrt(norms, out=norms)
        return bool(np.isfinite(norms).all() and (norms > 0.0).all())

    if not all(jobs.map(norms_of, range(0, n, CHUNK_ROWS))):
        raise_for_invalid(find_invalid_rows(arr), n)
    if reuse_unit and arr.dtype == np.float32 and arr.flags.c_contiguous:
        error = float(np.abs(all_norms - 1.0).max())
        if error <= UNIT_NORM_TOLERANCE:
            return arr, all_norms, error
    out = np.empty((n, d), dtype=np.float32)

    def normalise(start: int) -> None:
        block = arr[start : start + CHUNK_ROWS]
        norms = all_norms[start : start + len(block)]
        if block.dtype == np.float32:
            # Two float32 roundings per component (1/norm and the product): within the similarity margin.
            np.multiply(block, (1.0 / norms).astype(np.float32)[:, None], out=out[start : start + len(block)])
        else:
            out[start : start + len(block)] = np.asarray(block, dtype=np.float64) / norms[:, None]

    list(jobs.map(normalise, range(0, n, CHUNK_ROWS)))
    return out, all_norms, 0.0
