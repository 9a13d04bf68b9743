"""Greedy (Johnson-Chvatal) set cover over alpha-balls inside one cell.

Universe: the ``c`` rows of a cell. Sets: ``ball(j) = {i : cos(x_i, x_j) >= alpha}`` for every row ``j`` of
the cell. Greedy repeatedly picks the row whose ball covers the most still-uncovered rows (ties: lowest
position), makes it a representative and assigns those rows to it. This is a ``H(c) <= 1 + ln c``
approximation of the minimum number of representatives for the cell, and every assignment is a ball
membership, so each member is within cosine ``alpha`` of its representative by construction.

Memory is one ``c x c`` float32 similarity block plus one ``c x c`` boolean ball matrix; nothing larger than a
cell is ever materialised. Counts are updated incrementally (``O(c^2)`` per cell in total).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from quartermaster.clustering.similarity import ACCEPT_TOLERANCE, Vectors, decide_pairs

__all__ = ["CellCover", "ball_matrix", "cover_cell", "greedy_set_cover"]

# Above this fraction of undecided pairs the whole cell block is recomputed in float64 (e.g. alpha = 1 with
# many duplicate rows), which is cheaper than gathering pairs one by one.
_FULL_FLOAT64_FRACTION = 0.05


@dataclass(frozen=True)
class CellCover:
    """Cover of one cell, in input row indices."""

    representatives: npt.NDArray[np.int64]
    assignment: npt.NDArray[np.int64]  # representative row of every row of the cell (same order as rows)
    similarity32: npt.NDArray[np.float32]  # float32 similarity of every row to its representative


def ball_matrix(
    vectors: Vectors,
    rows: npt.NDArray[np.int64],
    alpha: float,
    margin: float,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """Similarity block ``S`` (float32) and symmetric ball membership ``B`` of the cell ``rows``.

    Pairs float32 cannot decide are decided in float64 from the raw input (:mod:`.similarity`).
    """
    block = vectors.unit32[rows]
    # numpy computes A @ A.T with BLAS syrk and mirrors the triangle: S is exactly symmetric, hence so are B
    # and the band (float64 decisions of (i, j) and (j, i) are the same sum in the same order).
    S = block @ block.T
    B = alpha + margin <= S
    maybe = alpha - margin <= S
    if np.count_nonzero(maybe) == np.count_nonzero(B):  # usual case: no pair inside the thin band
        np.fill_diagonal(B, True)
        return S, B
    maybe &= ~B
    band_i, band_j = np.divmod(np.flatnonzero(maybe), S.shape[1])  # ~15x faster than np.nonzero on 2-D
    if band_i.size > _FULL_FLOAT64_FRACTION * S.size:
        X64 = vectors.unit64(rows)
        B = alpha - ACCEPT_TOLERANCE <= (X64 @ X64.T)
        B = B & B.T
    elif band_i.size:
        B[band_i, band_j] = decide_pairs(
            S[band_i, band_j], alpha, margin, vectors, rows[band_i], rows[band_j]
        )
    np.fill_diagonal(B, True)
    return S, B


def _finish_singletons(
    B: npt.NDArray[np.bool_],
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
    sub = B[:, rest]
    counts = np.count_nonzero(sub, axis=1)
    if counts.max(initial=0) > 1:
        return False
    hit = np.flatnonzero(counts == 1)
    target = rest[np.argmax(sub[hit], axis=1)]
    open_rows = uncovered.tolist()
    for j, u in zip(hit.tolist(), target.tolist(), strict=True):
        if open_rows[u]:
            open_rows[u] = False
            assignment[u] = j
            chosen.append(j)
    uncovered[rest] = False
    return True


def greedy_set_cover(B: npt.NDArray[np.bool_]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Johnson-Chvatal greedy cover of a symmetric ball matrix with a true diagonal.

    Returns the chosen positions (in the order chosen) and, for every position, the chosen position that first
    covered it.
    """
    c = B.shape[0]
    # B is symmetric: column sums of its bytes are the ball sizes (vectorised; int16 while sizes fit)
    acc = np.int16 if c < 2**15 else np.int64
    counts = B.view(np.uint8).sum(axis=0, dtype=acc)
    uncovered = np.ones(c, dtype=np.bool_)
    assignment = np.full(c, -1, dtype=np.int64)
    chosen: list[int] = []
    remaining = c
    while remaining > 0:
        j = int(np.argmax(counts))
        if counts[j] <= 1 and _finish_singletons(B, uncovered, assignment, chosen):
            break
        newly = np.flatnonzero(B[j] & uncovered)
        if newly.size == 0:  # only if B were not symmetric: recount exactly (uncovered rows cover themselves)
            counts = (B & uncovered).sum(axis=1, dtype=acc)
            continue
        assignment[newly] = j
        uncovered[newly] = False
        remaining -= newly.size
        counts -= B[newly].view(np.uint8).sum(axis=0, dtype=acc)
        chosen.append(j)
    reps = np.asarray(chosen, dtype=np.int64)
    assignment[reps] = reps  # a representative always belongs to its own cluster
    return reps, assignment


def cover_cell(
    vectors: Vectors,
    rows: npt.NDArray[np.int64],
    alpha: float,
    margin: float,
    *,
    reassign: bool,
) -> CellCover:
    """Greedy cover of the cell ``rows``; ``reassign`` moves every row to its most similar representative."""
    if rows.size == 1:
        return CellCover(
            representatives=rows.copy(), assignment=rows.copy(), similarity32=np.ones(1, dtype=np.float32)
        )
    S, B = ball_matrix(vectors, rows, alpha, margin)
    reps, assignment = greedy_set_cover(B)
    if reassign and reps.size > 1:
        scores = np.where(B[:, reps], S[:, reps], -np.inf)
        assignment = reps[np.argmax(scores, axis=1)]
        assignment[reps] = reps
    return CellCover(
        representatives=rows[np.sort(reps)],
        assignment=rows[assignment],
        similarity32=S[np.arange(rows.size), assignment],
    )
