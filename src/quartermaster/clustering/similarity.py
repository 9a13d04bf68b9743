"""Exact-enough similarity decisions: float32 for speed, float64 where float32 cannot decide.

The guarantee is checked in float64 (``cos >= alpha - FLOAT64_TOLERANCE``, see :mod:`.verify`). The
clustering computes similarities in float32 (BLAS / faiss). With ``u = 2**-24`` and unit vectors whose
components carry at most two float32 roundings each, a float32 dot product of dimension ``d`` differs from
the exact cosine by at most about ``(d + 4) u`` (``gamma_d`` for the summation plus the rounding of both
vectors). Rows that are already unit float32 vectors up to ``e = max |norm - 1|`` are used as they are: the
product of their exact components is then within ``gamma_d (1 + e)^2`` of ``a.b``, and ``a.b`` is within
``2e + e^2`` of the cosine. :func:`float32_margin` is more than twice the first bound plus ``3e``. A pair is
therefore

* certainly inside the ball when ``s32 >= alpha + margin`` (its exact cosine is > alpha),
* certainly outside when ``s32 < alpha - margin``,
* otherwise (a thin band) decided by recomputing the cosine in float64 from the *original* input rows and
  accepting when ``cos64 >= alpha - FLOAT64_TOLERANCE / 2`` — half the verifier's tolerance, so float64
  rounding differences between the two independent computations cannot flip a decision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "ACCEPT_TOLERANCE",
    "FLOAT64_TOLERANCE",
    "Vectors",
    "decide_pairs",
    "float32_margin",
]

#: Allowance for float64 rounding in the verifier: a row passes when ``cos64 >= alpha - FLOAT64_TOLERANCE``.
FLOAT64_TOLERANCE = 1e-12
#: The clustering accepts a float64-decided pair only when ``cos64 >= alpha - ACCEPT_TOLERANCE``.
ACCEPT_TOLERANCE = FLOAT64_TOLERANCE / 2

_U32 = 2.0**-24


def float32_margin(d: int, norm_error: float = 0.0) -> float:
    """Bound on the error of a float32 cosine of dimension ``d``, with slack (see the module docstring).

    ``norm_error`` is ``max |norm - 1|`` of float32 rows used without normalising them (0 for a normalised
    copy): ``|fl(a.b) - cos| <= gamma_d (1 + e)^2 + 2e + e^2``, covered by adding ``3e`` for ``e <= 1e-3``.
    """
    if not 0.0 <= norm_error <= 1e-3:
        raise ValueError(f"norm_error={norm_error} must be in [0, 1e-3]; normalise the rows instead")
    return 2.0 * (d + 2 * math.ceil(math.log2(max(d, 2))) + 16) * _U32 + 3.0 * norm_error


@dataclass(frozen=True)
class Vectors:
    """The rows to cluster: float32 unit rows for speed, the raw input and float64 norms for exact checks."""

    unit32: npt.NDArray[np.float32]
    raw: npt.NDArray[np.floating]
    norms: npt.NDArray[np.float64]

    @property
    def d(self) -> int:
        return int(self.unit32.shape[1])

    def cosine64(
        self, rows_a: npt.NDArray[np.int64], rows_b: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float64]:
        """float64 cosine of ``raw[rows_a[i]]`` and ``raw[rows_b[i]]`` (float32 products are exact)."""
        if rows_a.size == 0:
            return np.zeros(0, dtype=np.float64)
        dots = np.einsum("ij,ij->i", self.raw[rows_a], self.raw[rows_b], dtype=np.float64)
        cos = dots / (self.norms[rows_a] * self.norms[rows_b])
        out: npt.NDArray[np.float64] = np.clip(cos, -1.0, 1.0)
        return out

    def unit64(self, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """float64 unit vectors of ``raw[rows]``."""
        out: npt.NDArray[np.float64] = np.asarray(self.raw[rows], dtype=np.float64) / self.norms[rows, None]
        return out


def decide_pairs(
    s32: npt.NDArray[np.float32],
    alpha: float,
    margin: float,
    vectors: Vectors,
    rows_a: npt.NDArray[np.int64],
    rows_b: npt.NDArray[np.int64],
) -> npt.NDArray[np.bool_]:
    """Membership ``cos(X[rows_a[i]], X[rows_b[i]]) >= alpha`` of pairs with float32 similarity ``s32``."""
    accept = s32 >= alpha + margin
    band = np.flatnonzero(~accept & (s32 >= alpha - margin))
    if band.size:
        cos = vectors.cosine64(rows_a[band], rows_b[band])
        accept[band] = cos >= alpha - ACCEPT_TOLERANCE
    out: npt.NDArray[np.bool_] = accept
    return out
