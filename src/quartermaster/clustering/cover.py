"""Greedy (Johnson-Chvatal) set cover over alpha-balls inside one cell.

Universe: the ``c`` rows of a cell. Sets: ``ball(j) = {i : cos(x_i, x_j) >= alpha}`` for every row ``j`` of
the cell. Greedy (:mod:`.greedy`) repeatedly picks the row whose ball covers the most still-uncovered rows
(ties: lowest position), makes it a representative and assigns those rows to it. This is a
``H(c) <= 1 + ln c`` approximation of the minimum number of representatives for the cell, and every
assignment is a ball membership, so each member is within cosine ``alpha`` of its representative by
construction.

The ball memberships are exact but their similarities are not all computed:

1. :mod:`.peel` splits the cell into parts that no ball crosses (proven by angle bounds to a pivot), and each
   part is covered on its own — the same greedy choices within each part.
2. Every row of a part gets bounds on its angle ``t`` to the part's pivot or mean direction
   (:mod:`.angles`); ``|t_i - t_j| <= angle(x_i, x_j) <= t_i + t_j``, so a pair is certainly inside the balls
   when ``t_i + t_j <= arccos(alpha)`` and certainly outside when ``|t_i - t_j| > arccos(alpha)`` (float32
   error and a slack of 1e-9 rad accounted for, so these decisions agree with the exact ones).
3. :func:`~.lazygreedy.lazy_greedy` tries to prove the greedy choices from a few ball rows, using those
   bounds to cap every ball's count (one dense family plus outliers needs one ball row and the outliers'
   columns).
4. Otherwise the part's ball matrix is built: with rows ordered by angle, a row's certain pairs include a
   prefix (inside) and a suffix (outside) of the order; when they leave at most 35 % of the pairs, float32
   products are computed only for the columns in between, per tile of rows, upper triangle only, and
   mirrored; else (real sentence embeddings, usually) the whole block is one symmetric product, as in the
   paper.

Positions in this module are positions in the angle order (a greedy tie goes to the row nearest the mean).
Memory is one ``c x c`` boolean ball matrix plus the ``c x c`` float32 similarities (or one tile of them);
nothing larger than a cell is ever materialised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from quartermaster.clustering.angles import ANGLE_SLACK, angle_bounds, mean_direction
from quartermaster.clustering.greedy import greedy_set_cover
from quartermaster.clustering.lazygreedy import Decide, lazy_greedy
from quartermaster.clustering.peel import peel
from quartermaster.clustering.similarity import ACCEPT_TOLERANCE, Vectors, decide_pairs

__all__ = ["Balls", "CellCover", "ball_matrix", "cover_cell"]

# Above this fraction of undecided pairs the whole cell block is recomputed in float64 (e.g. alpha = 1 with
# many duplicate rows), which is cheaper than gathering pairs one by one.
_FULL_FLOAT64_FRACTION = 0.05
#: Rows per tile of the similarity products (a BLAS product of ``TILE x (columns needed) x d`` each).
TILE = 128
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


@dataclass(frozen=True)
class _Ordered:
    """A cell's (or part's) rows in the order of their angle to a direction, with what the bounds decide."""

    rows: npt.NDArray[np.int64]  # input rows, in angle order
    block: npt.NDArray[np.float32]  # (c, d) float32 unit rows in that order
    direction: npt.NDArray[np.float32]
    order: npt.NDArray[np.int64]  # position p holds the caller's row rows[order[p]]
    inside: npt.NDArray[np.int64]  # positions < inside[p] are certainly in p's ball
    lo: npt.NDArray[np.int64]  # positions < lo[p] or >= hi[p] are certainly outside p's ball
    hi: npt.NDArray[np.int64]
    needed: int  # pairs p < q the bounds leave undecided


def _ordered(
    rows: npt.NDArray[np.int64],
    block: npt.NDArray[np.float32],
    alpha: float,
    margin: float,
    direction: npt.NDArray[np.float32] | None = None,
) -> _Ordered:
    """The rows ``rows`` (unit float32 ``block``) in angle order to ``direction`` (default: their mean)."""
    direction = mean_direction(block) if direction is None else direction
    order, lower, upper = angle_bounds(block, direction, margin)
    return _with_bounds(rows[order], block[order], direction, order, lower, upper, alpha)


def _with_bounds(
    rows: npt.NDArray[np.int64],
    block: npt.NDArray[np.float32],
    direction: npt.NDArray[np.float32],
    order: npt.NDArray[np.int64],
    lower: npt.NDArray[np.float64],
    upper: npt.NDArray[np.float64],
    alpha: float,
) -> _Ordered:
    """``rows``/``block`` already in angle order to ``direction``, with ascending bounds on each angle."""
    limit = math.acos(alpha)
    # row p: certainly inside for positions q with upper_p + upper_q <= limit, certainly outside where
    # |lower_q - upper_p| or |lower_p - upper_q| >= limit (bounds ascend with the position)
    inside = np.searchsorted(upper, limit - ANGLE_SLACK - upper, side="right")
    lo = np.searchsorted(upper, lower - limit - ANGLE_SLACK, side="left")
    hi = np.searchsorted(lower, upper + limit + ANGLE_SLACK, side="left")
    c = rows.size
    needed = int(np.maximum(hi - np.maximum(inside, np.arange(1, c + 1)), 0).sum())
    return _Ordered(rows, block, direction, order, inside, lo, hi, needed)


def _decider(vectors: Vectors, rows: npt.NDArray[np.int64], alpha: float, margin: float) -> Decide:
    """Exact decisions for products of the rows ``rows`` (in angle order), float64 inside the band."""

    def decide(
        S: npt.NDArray[np.float32], p: npt.NDArray[np.int64], q: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        B = alpha + margin <= S
        bi, bj = np.divmod(np.flatnonzero((alpha - margin <= S) & ~B), S.shape[1])
        if bi.size:
            B[bi, bj] = decide_pairs(S[bi, bj], alpha, margin, vectors, rows[p[bi]], rows[q[bj]])
        return B

    return decide


def _balls(
    vectors: Vectors, cell: _Ordered, alpha: float, margin: float, tile: int, tiled_up_to: float
) -> Balls:
    c = cell.rows.size
    S: npt.NDArray[np.float32] | None = None
    if cell.needed > tiled_up_to * c * c:
        S, B, (bi, bj, bs) = _full_block(cell.block, alpha, margin)
        computed = c * c
    else:
        B, (bi, bj, bs), computed = _tiles(cell.block, cell.inside, cell.hi, alpha, margin, tile)
    if bi.size > _FULL_FLOAT64_FRACTION * c * c / 2:
        X64 = vectors.unit64(cell.rows)
        B = alpha - ACCEPT_TOLERANCE <= X64 @ X64.T
        B &= B.T
    elif bi.size:
        B[bi, bj] = B[bj, bi] = decide_pairs(bs, alpha, margin, vectors, cell.rows[bi], cell.rows[bj])
    np.fill_diagonal(B, True)
    return Balls(direction=cell.direction, order=cell.order, block=cell.block, B=B, S=S, computed=computed)


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
    cell = _ordered(rows, vectors.unit32[rows], alpha, margin)
    return _balls(vectors, cell, alpha, margin, tile, tiled_up_to)


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


def _cover_part(
    vectors: Vectors,
    cell: _Ordered,
    alpha: float,
    margin: float,
    *,
    reassign: bool,
    lazy_first: bool,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Representative row and float32 similarity of every row (in the caller's order), representatives."""
    c = cell.rows.size
    decide = _decider(vectors, cell.rows, alpha, margin)
    lazy = None
    if lazy_first:  # a few ball rows may prove every greedy choice (one family plus outliers)
        lazy = lazy_greedy(cell.block, cell.lo, cell.hi, decide)
    if lazy is None:
        balls = _balls(vectors, cell, alpha, margin, TILE, TILES_WORTH_IT)
        reps, assignment = greedy_set_cover(balls.B)
        scores = _scores(balls, reps)
    else:
        reps, assignment, _ = lazy
        S = cell.block @ cell.block[reps].T
        inball = decide(S, np.arange(c), reps)
        inball[reps, np.arange(reps.size)] = True
        scores = np.where(inball, S, np.float32(-np.inf))
    if reassign:
        pick = np.argmax(scores, axis=1)
    else:
        column = np.empty(c, dtype=np.int64)
        column[reps] = np.arange(reps.size)
        pick = column[assignment]
    pick[reps] = np.arange(reps.size)  # a representative always belongs to its own cluster
    out_assignment = np.empty_like(cell.rows)
    out_similarity = np.empty(c, dtype=np.float32)
    out_assignment[cell.order] = cell.rows[reps[pick]]
    out_similarity[cell.order] = scores[np.arange(c), pick]
    return out_assignment, out_similarity, cell.rows[reps]


def cover_cell(
    vectors: Vectors,
    rows: npt.NDArray[np.int64],
    alpha: float,
    margin: float,
    *,
    reassign: bool,
    lazy_first: bool = True,
    peel_first: bool = True,
) -> CellCover:
    """Greedy cover of the cell ``rows``; ``reassign`` moves every row to its most similar representative
    (ties: the representative chosen first).

    ``peel_first`` splits the cell into parts no ball crosses (:mod:`.peel`) and covers each; ``lazy_first``
    tries :func:`~.lazygreedy.lazy_greedy` before building a part's ball matrix (the same cover, usually with
    far fewer products and no ``c x c`` matrix on near-duplicate families).
    """
    block = vectors.unit32[rows]
    direction = mean_direction(block)
    if rows.size == 1:
        return CellCover(rows.copy(), rows.copy(), np.ones(1, dtype=np.float32), direction)
    c = rows.size
    parts = peel(block, alpha, margin, direction) if peel_first else []
    if len(parts) <= 1:
        cell = _ordered(rows, block, alpha, margin, direction)
        assignment, similarity, reps = _cover_part(
            vectors, cell, alpha, margin, reassign=reassign, lazy_first=lazy_first
        )
        return CellCover(np.sort(reps), assignment, similarity, direction)
    assignment = np.empty_like(rows)
    similarity = np.empty(c, dtype=np.float32)
    found = []
    for part in parts:
        at = part.positions
        if part.bounds is None:
            piece = _ordered(rows[at], block[at], alpha, margin)
        else:  # peeled rows come in angle order to the part's pivot, with their bounds
            pivot, lower, upper = part.bounds
            piece = _with_bounds(rows[at], block[at], pivot, np.arange(at.size), lower, upper, alpha)
        assignment[at], similarity[at], reps = _cover_part(
            vectors, piece, alpha, margin, reassign=reassign, lazy_first=lazy_first
        )
        found.append(reps)
    return CellCover(np.sort(np.concatenate(found)), assignment, similarity, direction)
