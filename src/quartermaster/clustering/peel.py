"""Peel a cell into parts that no alpha-ball crosses, proven by angle bounds to a pivot.

Cells from k-means often hold several well-separated groups (near-duplicate families, templated queries)
plus scattered one-off rows. The greedy cover never links rows whose balls do not meet, so it can run on
each group separately — with far fewer products (``sum c_k^2`` instead of ``c^2``) — if the split is
proven. One peel: take the row nearest the remaining rows' mean direction, use the float32 mean of its
(approximate) ball as a pivot, and sort the remaining rows by their angle ``t`` to the pivot. If the bounds
leave a gap ``lower(t_next) - upper(t_last) > arccos(alpha)`` (plus slack) after the rows of that ball, then
every pair across the gap has ``angle >= t_q - t_p > arccos(alpha)`` (:mod:`.angles`): no ball crosses it,
and the rows before the gap are a union of connected components of the ball graph. Peeling repeats on the
rest until no gap appears or the parts get small.

Greedy on a disjoint union of parts makes, within each part, exactly the choices greedy makes on that part
alone (balls never reach across, so counts in one part never change in another); only the interleaving of
the picks differs. The cover of a peeled cell is therefore a greedy cover of the whole cell in which ties
go to the row nearest its part's mean direction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from quartermaster.clustering.angles import ANGLE_SLACK, angle_bounds, mean_direction

__all__ = ["Part", "peel"]

#: A peeled part has at least this many rows, and peeling stops when fewer than twice as many are left.
MIN_PART = 32
#: At most this many parts are peeled off a cell (each costs a few matrix-vector products of the rest).
MAX_PEELS = 12


@dataclass(frozen=True)
class Part:
    """Rows of a cell no ball crosses; a peeled part comes with its rows' angle bounds to its pivot."""

    positions: npt.NDArray[np.int64]  # positions in the cell; in angle order to the pivot if peeled
    # (pivot, lower, upper): the pivot and ascending bounds on each row's angle to it; None for the rest
    bounds: tuple[npt.NDArray[np.float32], npt.NDArray[np.float64], npt.NDArray[np.float64]] | None = None


def peel(
    block: npt.NDArray[np.float32],
    alpha: float,
    margin: float,
    direction: npt.NDArray[np.float32] | None = None,
    *,
    min_part: int = MIN_PART,
    max_peels: int = MAX_PEELS,
) -> list[Part]:
    """``block``'s rows split into parts no alpha-ball crosses (the last part is the rest).

    ``direction`` is the rows' :func:`~.angles.mean_direction` if the caller has it already.
    """
    limit = math.acos(alpha) + ANGLE_SLACK
    rest = np.arange(block.shape[0], dtype=np.int64)
    parts: list[Part] = []
    while len(parts) < max_peels and rest.size >= 2 * min_part:
        sub = block[rest] if parts else block
        if parts or direction is None:
            direction = mean_direction(sub)
        seed = int(np.argmax(sub @ direction))
        near = sub @ sub[seed] >= alpha  # a float32 ball is enough to place the pivot
        near[seed] = True
        pivot = mean_direction(sub[near])
        order, lower, upper = angle_bounds(sub, pivot, margin)
        gaps = np.flatnonzero(lower[min_part:] - upper[min_part - 1 : -1] > limit)  # any gap is a valid cut
        if gaps.size == 0:
            break
        cut = int(gaps[0]) + min_part
        parts.append(Part(rest[order[:cut]], (pivot, lower[:cut], upper[:cut])))
        rest = rest[order[cut:]]
    parts.append(Part(rest))
    return parts
