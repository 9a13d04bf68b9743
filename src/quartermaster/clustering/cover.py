"""Greedy (Johnson-Chvatal) set cover over alpha-balls inside one cell.

Universe: the ``c`` rows of a cell. Sets: ``ball(j) = {i : cos(x_i, x_j) >= alpha}`` for every row ``j`` of
the cell. Greedy repeatedly picks the row whose ball covers the most still-uncovered rows (ties: lowest
position), makes it a representative and assigns those rows to it. This is a ``H(c) <= 1 + ln c``
approximation of the minimum number of representatives for the cell, and every assignment is a ball
membership, so each member is within cosine ``alpha`` of its representative by construction.

The ball matrix is exact but its similarities are not all computed. Every row gets bounds on its angle
``t`` to the cell's mean direction; by the triangle inequality for angles, ``|t_i - t_j| <= angle(x_i, x_j)
<= t_i + t_j``, so a pair is certainly inside the balls when ``t_i + t_j <= arccos(alpha)`` and certainly
outside when ``|t_i - t_j| > arccos(alpha)`` (with float32 error and a slack of 1e-9 rad accounted for, so
these decisions agree with the exact ones). With rows ordered by angle, a row's certain pairs include a
prefix (inside) and a suffix (outside) of the order; float32 products are computed only for the columns in
between, per tile of rows, upper triangle only, and mirrored. On the synthetic benchmark
data that is 35 % of the ``c x c`` entries, against 50 % for a symmetric product of the whole block; cells
where the bounds decide too little (real sentence embeddings, usually) get the whole block as before.
Positions in this module are positions in that order (a greedy tie goes to the row nearest the mean).

Memory is one ``c x c`` boolean ball matrix plus the ``c x c`` float32 similarities (or one tile of them);
nothing larger than a cell is ever materialised. Counts are updated incrementally (``O(c^2)`` per cell in
total).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from quartermaster.clustering.similarity import ACCEPT_TOLERANCE, Vectors, decide_pairs

__all__ = ["Balls", "CellCover", "ball_matrix", "cover_cell", "greedy_set_cover"]

# Above this fraction of undecided pairs the whole cell block is recomputed in float64 (e.g. alpha = 1 with
# many duplicate rows), which is cheaper than gathering pairs one by one.
_FULL_FLOAT64_FRACTION = 0.05
#: Rows per tile of the similarity products (a BLAS product of ``TILE x (columns needed) x d`` each).
TILE = 128
# Slack (radians) on the angle bounds: covers float64 rounding of arccos and sums, so a pair decided by the
# bounds has an exact cosine at least ~1e-9 away from alpha (the float64 check would decide it the same way).
_ANGLE_SLACK = 1e-9
#: Tiles pay off when the bounds leave at most this many pairs (times c^2; a symmetric product computes about
# c^2 / 2 at the speed of a full one, tiles lose ~20 % to narrower products and mirroring); real sentence
# embeddings rarely get any pair decided by the bounds, near-duplicate regions get most.
TILES_WORTH_IT = 0.35


@dataclass(frozen=True)
class Balls:
    """Ball membership of a cell's rows, in the order of their angle to the cell's mean direction."""

    direction: npt.NDArray[np.float32]  # (d,) unit mean direction of the cell
    order: npt.NDArray[np.int64]  # position p holds the caller's row rows[order[p]]
    block: npt.NDArray[np.float32]  # (c, d) float32 unit rows in that order
    B: npt.NDArray[np.bool_]  # (c, c), symmetric, true diagonal: B[p, q] iff cos(x_p, x_q) >= alpha
    S: npt.NDArray[np.float32] | None  # (c, c) float32 similarities when all were computed
    computed: int  # similarities computed (tile entries); a full block would be c * c


@dataclass(frozen=True)
class CellCover:
    """Cover of one cell, in input row indices."""

    representatives: npt.NDArray[np.int64]
    assignment: npt.NDArray[np.int64]  # representative row of every row of the cell (same order as rows)
    similarity32: npt.NDArray[np.float32]  # float32 similarity of every row to its representative
    direction: npt.NDArray[np.float32]  # (d,) unit mean direction of the cell (its centroid for cross-cell)


def _angle_bounds(
    block: npt.NDArray[np.float32], margin: float
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The rows' unit mean direction, their order by angle to it and lower/upper bounds on each angle (rad).

    The unit mean direction is rounded to float32 once (norm within ``2**-25`` of 1, far inside the slack of
    ``margin``), so ``margin`` bounds the error of each float32 cosine to it (see :mod:`.similarity`). The
    angle bounds follow from ``cos - margin <= cos_exact <= cos + margin``.
    """
    mean = block.sum(axis=0, dtype=np.float64)
    norm = float(np.linalg.norm(mean))
    direction = (mean / norm if norm > 0 else block[0].astype(np.float64)).astype(np.float32)
    cos = (block @ direction).astype(np.float64)
    order = np.argsort(-cos, kind="stable")
    cos = cos[order]
    lower = np.arccos(np.clip(cos + margin, -1.0, 1.0))
    upper = np.arccos(np.clip(cos - margin, -1.0, 1.0))
    return direction, order, lower, upper


_Band = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float32]]  # pairs i < j, s32


def _no_band() -> _Band:
    return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)


def _full_block(
    block: npt.NDArray[np.float32], alpha: float, margin: float
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_], _Band]:
    """Every similarity (BLAS syrk, exactly symmetric), float32 decisions, undecided pairs ``i < j``."""
    S = block @ block.T
    B = alpha + margin <= S
    maybe = alpha - margin <= S
    if np.count_nonzero(maybe) == np.count_nonzero(B):  # usual case: no pair inside the thin band
        return S, B, _no_band()
    maybe &= ~B
    bi, bj = np.divmod(np.flatnonzero(maybe), S.shape[1])  # ~15x faster than np.nonzero on 2-D
    above = bj > bi
    return S, B, (bi[above], bj[above], S[bi[above], bj[above]])


def _tiles(
    block: npt.NDArray[np.float32],
    inside: npt.NDArray[np.int64],
    outside: npt.NDArray[np.int64],
    alpha: float,
    margin: float,
    tile: int,
) -> tuple[npt.NDArray[np.bool_], _Band, int]:
    """Decisions from the bounds and from float32 products of the columns between them, per row tile."""
    c = block.shape[0]
    B = np.zeros((c, c), dtype=np.bool_)
    band: list[_Band] = []
    computed = 0
    for i0 in range(0, c, tile):  # the strip of columns >= i0 of each row tile, mirrored into the columns
        i1 = min(c, i0 + tile)
        strip = np.zeros((i1 - i0, c - i0), dtype=np.bool_)
        start, stop = max(i0, int(inside[i0:i1].min())), max(i0, int(outside[i0:i1].max()))
        strip[:, : start - i0] = True  # inside for every row of the tile
        if stop > start:
            S = block[i0:i1] @ block[start:stop].T
            computed += S.size
            sure = alpha + margin <= S
            strip[:, start - i0 : stop - i0] = sure
            bi, bj = np.divmod(np.flatnonzero((alpha - margin <= S) & ~sure), stop - start)
            above = bj + start > bi + i0  # each pair once
            band.append((bi[above] + i0, bj[above] + start, S[bi[above], bj[above]]))
        square = np.triu(strip[:, : i1 - i0], 1)  # exactly symmetric: the upper triangle, mirrored
        strip[:, : i1 - i0] = square | square.T
        B[i0:i1, i0:] = strip
        B[i1:, i0:i1] = strip[:, i1 - i0 :].T
    if not band:
        return B, _no_band(), computed
    bi, bj, bs = (np.concatenate(parts) for parts in zip(*band, strict=True))
    return B, (bi, bj, bs), computed


def ball_matrix(
    vectors: Vectors,
    rows: npt.NDArray[np.int64],
    alpha: float,
    margin: float,
    *,
    tile: int = TILE,
    tiled_up_to: float = TILES_WORTH_IT,
) -> Balls:
    """Exact ball membership of the cell ``rows`` (see the module docstring for the order and the bounds).

    Products are tiled when the bounds leave at most ``tiled_up_to * c^2`` pairs, else the whole block is
    computed. Pairs float32 cannot decide are decided in float64 from the raw input (:mod:`.similarity`).
    """
    block = vectors.unit32[rows]
    direction, order, lower, upper = _angle_bounds(block, margin)
    rows, block = rows[order], block[order]
    c = rows.size
    limit = math.acos(alpha)
    # row i: certainly inside for positions < inside[i] (upper_i + upper_j <= limit) and certainly outside
    # for positions >= outside[i] (lower_j - upper_i >= limit); the columns in between need products
    inside = np.searchsorted(upper, limit - _ANGLE_SLACK - upper, side="right")
    outside = np.searchsorted(lower, upper + limit + _ANGLE_SLACK, side="left")
    needed = int(np.maximum(outside - np.maximum(inside, np.arange(1, c + 1)), 0).sum())  # pairs i < j
    S: npt.NDArray[np.float32] | None = None
    if needed > tiled_up_to * c * c:
        S, B, (bi, bj, bs) = _full_block(block, alpha, margin)
        computed = c * c
    else:
        B, (bi, bj, bs), computed = _tiles(block, inside, outside, alpha, margin, tile)
    if bi.size > _FULL_FLOAT64_FRACTION * c * c / 2:
        X64 = vectors.unit64(rows)
        B = alpha - ACCEPT_TOLERANCE <= X64 @ X64.T
        B &= B.T
    elif bi.size:
        B[bi, bj] = B[bj, bi] = decide_pairs(bs, alpha, margin, vectors, rows[bi], rows[bj])
    np.fill_diagonal(B, True)
    return Balls(direction=direction, order=order, block=block, B=B, S=S, computed=computed)


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


def _scores(balls: Balls, reps: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
    """float32 similarity of every row to every representative whose ball holds it (``-inf`` elsewhere)."""
    inball = balls.B[:, reps]
    if balls.S is not None:
        scores: npt.NDArray[np.float32] = np.where(inball, balls.S[:, reps], np.float32(-np.inf))
        return scores
    pi, pk = np.nonzero(inball)
    scores = np.full(inball.shape, -np.inf, dtype=np.float32)
    scores[pi, pk] = np.einsum("ij,ij->i", balls.block[pi], balls.block[reps[pk]])
    return scores


def cover_cell(
    vectors: Vectors,
    rows: npt.NDArray[np.int64],
    alpha: float,
    margin: float,
    *,
    reassign: bool,
) -> CellCover:
    """Greedy cover of the cell ``rows``; ``reassign`` moves every row to its most similar representative
    (ties: the representative chosen first)."""
    if rows.size == 1:
        return CellCover(
            representatives=rows.copy(),
            assignment=rows.copy(),
            similarity32=np.ones(1, dtype=np.float32),
            direction=vectors.unit32[rows[0]],
        )
    balls = ball_matrix(vectors, rows, alpha, margin)
    reps, assignment = greedy_set_cover(balls.B)
    scores = _scores(balls, reps)
    if reassign:
        pick = np.argmax(scores, axis=1)
    else:
        column = np.empty(rows.size, dtype=np.int64)
        column[reps] = np.arange(reps.size)
        pick = column[assignment]
    pick[reps] = np.arange(reps.size)  # a representative always belongs to its own cluster
    by_angle = rows[balls.order]
    out_assignment = np.empty_like(rows)
    out_similarity = np.empty(rows.size, dtype=np.float32)
    out_assignment[balls.order] = by_angle[reps[pick]]
    out_similarity[balls.order] = scores[np.arange(rows.size), pick]
    return CellCover(
        representatives=np.sort(by_angle[reps]),
        assignment=out_assignment,
        similarity32=out_similarity,
        direction=balls.direction,
    )
