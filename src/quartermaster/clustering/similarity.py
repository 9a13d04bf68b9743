"""Exact-enough similarity decisions: float32 for speed, float64 where float32 cannot decide.

The guarantee is checked in float64 (``cos >= alpha - FLOAT64_TOLERANCE``, see :mod:`.verify`). The clustering
computes similarities in float32 (BLAS / faiss). With ``u = 2**-24`` and unit vectors rounded once to float32
(one ulp per component), a float32 dot product of dimension ``d`` differs from the exact cosine by at most
about ``(d + 2) u`` (``gamma_d`` for the summation plus the rounding of both vectors). :func:`float32_margin`
doubles that bound. A pair is therefore

* certainly inside the ball when ``s32 >= alpha + margin`` (its exact cosine is > alpha),
* certainly outside when ``s32 < alpha - margin``,
* otherwise (a thin band) decided by recomputing the cosine in float64 from the *original* input rows and
  accepting when ``cos64 >= alpha - FLOAT64_TOLERANCE / 2`` — half the verifier's tolerance, so float64
  rounding differences between the two independent computations cannot flip a decision.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from quartermaster.clustering.validation import normalized_float64

__all__ = [
    "ACCEPT_TOLERANCE",
    "FLOAT64_TOLERANCE",
    "decide_pairs",
    "float32_margin",
    "rowwise_cosine64",
]

#: Allowance for float64 rounding in the verifier: a row passes when ``cos64 >= alpha - FLOAT64_TOLERANCE``.
FLOAT64_TOLERANCE = 1e-12
#: The clustering accepts a float64-decided pair only when ``cos64 >= alpha - ACCEPT_TOLERANCE``.
ACCEPT_TOLERANCE = FLOAT64_TOLERANCE / 2

_U32 = 2.0**-24


def float32_margin(d: int) -> float:
    """Twice the worst-case error of a float32 cosine between rounded unit vectors of dimension ``d``."""
    return 2.0 * (d + 2 * math.ceil(math.log2(max(d, 2))) + 16) * _U32


def rowwise_cosine64(
    X: npt.NDArray[np.floating], rows_a: npt.NDArray[np.int64], rows_b: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """float64 cosine of ``X[rows_a[i]]`` and ``X[rows_b[i]]`` for each ``i`` (clipped to [-1, 1])."""
    if rows_a.size == 0:
        return np.zeros(0, dtype=np.float64)
    a = normalized_float64(X, rows_a)
    b = normalized_float64(X, rows_b)
    cos = np.einsum("ij,ij->i", a, b)
    out: npt.NDArray[np.float64] = np.clip(cos, -1.0, 1.0)
    return out


def decide_pairs(
    s32: npt.NDArray[np.float32],
    alpha: float,
    margin: float,
    X: npt.NDArray[np.floating],
    rows_a: npt.NDArray[np.int64],
    rows_b: npt.NDArray[np.int64],
) -> npt.NDArray[np.bool_]:
    """Membership ``cos(X[rows_a[i]], X[rows_b[i]]) >= alpha`` of pairs with float32 similarity ``s32``."""
    accept = s32 >= alpha + margin
    band = np.flatnonzero(~accept & (s32 >= alpha - margin))
    if band.size:
        cos = rowwise_cosine64(X, rows_a[band], rows_b[band])
        accept[band] = cos >= alpha - ACCEPT_TOLERANCE
    out: npt.NDArray[np.bool_] = accept
    return out
