"""Angles of unit rows to a pivot direction, with proven bounds (the triangle inequality for angles).

For unit vectors, ``angle(x, y)`` is a metric, so with ``t`` the angle of a row to any pivot direction,
``|t_x - t_y| <= angle(x, y) <= t_x + t_y``. A pair with ``t_x + t_y <= arccos(alpha)`` is therefore certainly
inside each other's alpha-ball and one with ``|t_x - t_y| > arccos(alpha)`` certainly outside. Each ``t`` is
only known through a float32 cosine, so it is bounded from both sides with the float32 margin of
:mod:`.similarity`, plus :data:`ANGLE_SLACK`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["ANGLE_SLACK", "angle_bounds", "mean_direction"]

#: Slack (radians) on the angle bounds: covers float64 rounding of arccos and sums, so a pair decided by the
#: bounds has an exact cosine at least ~1e-9 away from alpha (the float64 check would decide it the same way).
ANGLE_SLACK = 1e-9


def mean_direction(block: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """The unit mean direction of the rows, rounded to float32 once (norm within ``2**-24`` of 1, far inside
    the slack of the float32 margin, which therefore bounds the error of each float32 cosine to it)."""
    total = np.ones(block.shape[0], dtype=np.float32) @ block  # a direction only: float32 sums suffice
    norm = float(np.linalg.norm(total.astype(np.float64)))
    direction = total.astype(np.float64) / norm if norm > 0 else block[0].astype(np.float64)
    out: npt.NDArray[np.float32] = direction.astype(np.float32)
    return out


def angle_bounds(
    block: npt.NDArray[np.float32], direction: npt.NDArray[np.float32], margin: float
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The rows' order by angle to ``direction`` (nearest first; ties by position) and lower/upper bounds on
    each angle in that order (radians, both ascending), from ``cos - margin <= cos_exact <= cos + margin``."""
    cos = (block @ direction).astype(np.float64)
    order = np.argsort(-cos, kind="stable")
    cos = cos[order]
    lower = np.arccos(np.clip(cos + margin, -1.0, 1.0))
    upper = np.arccos(np.clip(cos - margin, -1.0, 1.0))
    return order, lower, upper
