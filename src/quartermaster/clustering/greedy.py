"""Johnson-Chvatal greedy set cover over alpha-balls: the ``H(m) <= 1 + ln m`` approximation.

Universe: ``m`` rows. Sets: the balls of ``c`` candidate rows. Greedy repeatedly picks the candidate whose
ball holds the most still-uncovered rows (ties: the lowest candidate position) and assigns those rows to it.
Counts are updated incrementally (``O(m c)`` in total); the tail where every ball holds at most one
uncovered row is finished without a numpy pass per step.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["greedy_set_cover"]


def _finish_singletons(
    holds: npt.NDArray[np.bool_],
    uncovered: npt.NDArray[np.bool_],
    assignment: npt.NDArray[np.int64],
    chosen: list[int],
) -> bool:
    """The greedy tail once no ball holds two uncovered rows, without a numpy pass per step.

    Every remaining step then covers one row: greedy takes the lowest position ``j`` whose ball still holds an
    uncovered row ``u`` (counts only fall, so positions are taken in ascending order) and assigns ``u`` to
    ``j``. Same choices as the step-by-step loop. Returns False (nothing changed) if some ball holds two.
    """
    rest = np.flatnonzero(uncovered)
    sub = holds[rest]
    counts = np.count_nonzero(sub, axis=0)
    if counts.max(initial=0) > 1:
        return False
    hit = np.flatnonzero(counts == 1)
    target = rest[np.argmax(sub[:, hit], axis=0)]
    open_rows = uncovered.tolist()
    for j, u in zip(hit.tolist(), target.tolist(), strict=True):
        if open_rows[u]:
            open_rows[u] = False
            assignment[u] = j
            chosen.append(j)
    uncovered[rest] = False
    return True


def greedy_set_cover(
    holds: npt.NDArray[np.bool_], balls: npt.NDArray[np.bool_] | None = None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Johnson-Chvatal greedy cover.

    ``holds`` is ``(m, c)``: ``holds[u, j]`` iff candidate ``j``'s ball holds row ``u``; ``balls`` is its
    transpose ``(c, m)`` (C-contiguous, for row access). Without ``balls``, ``holds`` is a cell's symmetric
    ball matrix with a true diagonal (rows are their own candidates) and every representative is assigned to
    itself. Returns the chosen candidates (in the order chosen) and, for every row, the chosen candidate that
    first covered it.
    """
    square = balls is None
    balls = holds if balls is None else balls
    m = holds.shape[0]
    # column sums of the bytes are the ball sizes (vectorised; int16 while sizes fit)
    acc = np.int16 if m < 2**15 else np.int64
    counts = holds.view(np.uint8).sum(axis=0, dtype=acc)
    uncovered = np.ones(m, dtype=np.bool_)
    assignment = np.full(m, -1, dtype=np.int64)
    chosen: list[int] = []
    remaining = m
    while remaining > 0:
        j = int(np.argmax(counts))
        if counts[j] <= 1 and _finish_singletons(holds, uncovered, assignment, chosen):
            break
        newly = np.flatnonzero(balls[j] & uncovered)
        if newly.size == 0:  # only if holds and balls disagreed: recount exactly
            counts = (balls & uncovered).sum(axis=1, dtype=acc)
            continue
        assignment[newly] = j
        uncovered[newly] = False
        remaining -= newly.size
        counts -= holds[newly].view(np.uint8).sum(axis=0, dtype=acc)
        chosen.append(j)
    reps = np.asarray(chosen, dtype=np.int64)
    if square:
        assignment[reps] = reps  # a representative always belongs to its own cluster
    return reps, assignment
