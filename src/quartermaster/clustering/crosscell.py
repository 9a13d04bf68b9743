"""Cross-cell pass: remove representatives made redundant by the cell boundaries (partition noise).

The per-cell covers never look across a cell boundary, so a cluster near a boundary may exist only because the
rows that would cover it sit in the neighbouring cell. This pass is a *reverse delete* over the
representatives of one partition (attribute-pure, so attributes are always identical):

1. Candidates. Every row of a cluster of at most ``max_size`` rows (the only clusters this pass may remove)
   needs alternatives. Representatives of those clusters probe their ``nprobe`` nearest cells (by centroid,
   among their cell's neighbours) of an inverted file that files each representative under its own cell,
   and keep their ``neighbors`` most similar representatives with a float32 similarity of at least
   ``alpha - margin`` (exact products per probed cell; nothing below could pass the check). The other members
   matter only for clusters whose representative found an alternative: they score their representative's
   candidates (one small product per cluster — neighbours of a row are mostly neighbours of its
   representative), and only members left without any are searched like representatives. Every candidate
   pair is checked with the exact ball test :func:`~quartermaster.clustering.similarity.decide_pairs`
   (``cos >= alpha``); failing candidates are discarded.
2. Reverse delete. Representatives of those clusters are visited from the smallest cluster up. A
   representative ``r`` is dropped only if *every* current member of ``r`` (``r`` itself and rows moved into
   ``r`` earlier included) has another live candidate; each member then moves to one, preferring
   representatives already known to stay, then the most similar. Otherwise ``r`` stays for good.
3. Optionally (``reassign``) every row that has candidates joins its most similar live candidate when that
   beats its current representative.

Correctness: a row only ever moves to a representative it was verified to be within ``alpha`` of, and a
representative disappears only when all its members — itself included — moved to verified live
representatives. The guarantee of the per-cell covers is therefore preserved, and the number of
representatives never grows.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from quartermaster.clustering.cells import Cells
from quartermaster.clustering.similarity import Vectors, decide_pairs

__all__ = ["CrossCellParams", "cross_cell_pass", "fixed_rows"]

logger = logging.getLogger(__name__)

_PYTHON_PATH_MAX = 32  # clusters up to this size are checked with plain Python (less overhead than numpy)
_QUERY_CHUNK = 8192  # query rows per product in the probe step


@dataclass(frozen=True)
class CrossCellParams:
    """Knobs of the cross-cell pass (see module docstring)."""

    max_size: int = 64
    neighbors: int = 8
    nprobe: int = 8


def _nearest_cells(
    queries: npt.NDArray[np.float32],
    pos: npt.NDArray[np.int64],
    cell_of: npt.NDArray[np.int64],
    cells: Cells,
    p: int,
) -> npt.NDArray[np.int64]:
    """The ``p`` nearest centroids of each query (the unit rows of positions ``pos``) among its cell's
    neighbour cells (one BLAS product per cell, or per chunk of rows when the lists hold every cell)."""
    p = min(p, cells.near.shape[1])
    out = np.empty((pos.size, p), dtype=np.int64)

    def top(scores: npt.NDArray[np.float32]) -> npt.NDArray[np.intp]:
        if p < scores.shape[1]:
            return np.argpartition(-scores, p - 1, axis=1)[:, :p]
        return np.argsort(-scores, axis=1)

    if cells.near.shape[1] == len(cells.members):  # every cell neighbours every cell: one product per chunk
        for start in range(0, pos.size, _QUERY_CHUNK):
            chunk = pos[start : start + _QUERY_CHUNK]
            out[start : start + chunk.size] = top(queries[start : start + chunk.size] @ cells.centroids.T)
        return out
    order = np.argsort(cell_of[pos], kind="stable")
    bounds = np.searchsorted(cell_of[pos][order], np.arange(len(cells.members) + 1))

    for c in np.flatnonzero(np.diff(bounds)).tolist():
        sel = order[bounds[c] : bounds[c + 1]]
        near = cells.near[c]
        out[sel] = near[top(queries[sel] @ cells.centroids[near].T)]
    return out


def _search_probed(
    X32: npt.NDArray[np.float32],
    queries: npt.NDArray[np.float32],
    reps: npt.NDArray[np.int64],
    rep_home: npt.NDArray[np.int64],
    probes: npt.NDArray[np.int64],
    k: int,
    floor: float,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Each query's (unit rows ``queries``) ``k`` most similar representatives with a float32 similarity
    ``>= floor`` among those filed under its probed cells (``-1`` / ``-inf`` fill the rest).

    An inverted-file search done per probed cell: all queries probing cell ``j`` are scored at once against
    the representatives filed under ``j``; pairs below ``floor`` (which no check could accept) are dropped
    at once, and each row keeps its best ``k`` of the rest.
    """
    n_q, p = probes.shape
    rep_order = np.argsort(rep_home, kind="stable")
    n_cells = int(max(rep_home.max(initial=0), probes.max(initial=0))) + 1
    rep_bounds = np.searchsorted(rep_home[rep_order], np.arange(n_cells + 1))
    flat = probes.ravel()
    by_cell = np.argsort(flat, kind="stable")
    probe_bounds = np.searchsorted(flat[by_cell], np.arange(n_cells + 1))
    found_q: list[npt.NDArray[np.int64]] = []
    found_r: list[npt.NDArray[np.int64]] = []
    found_s: list[npt.NDArray[np.float32]] = []
    for j in np.flatnonzero(np.diff(probe_bounds) * np.diff(rep_bounds)).tolist():
        qi = by_cell[probe_bounds[j] : probe_bounds[j + 1]] // p
        pool = rep_order[rep_bounds[j] : rep_bounds[j + 1]]
        scores = queries[qi] @ X32[reps[pool]].T
        a, b = np.divmod(np.flatnonzero(scores >= floor), pool.size)
        found_q.append(qi[a])
        found_r.append(pool[b])
        found_s.append(scores[a, b])
    cand = np.full((n_q, k), -1, dtype=np.int64)
    sims = np.full((n_q, k), -np.inf, dtype=np.float32)
    if not found_q:
        return cand, sims
    q, r, s = np.concatenate(found_q), np.concatenate(found_r), np.concatenate(found_s)
    order = np.lexsort((-s, q))  # by query, most similar first
    q, r, s = q[order], r[order], s[order]
    rank = np.arange(q.size) - np.searchsorted(q, q, side="left")
    keep = rank < k
    cand[q[keep], rank[keep]] = r[keep]
    sims[q[keep], rank[keep]] = s[keep]
    return cand, sims


def _candidates(
    vectors: Vectors,
    rows: npt.NDArray[np.int64],
    rep_pos: npt.NDArray[np.int64],
    reps: npt.NDArray[np.int64],
    droppable: npt.NDArray[np.bool_],
    cells: Cells,
    alpha: float,
    margin: float,
    params: CrossCellParams,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Verified candidate representative positions per row (``-1`` = none) and their float32 similarity.

    Phase 1 searches for the representatives of droppable clusters; phase 2 shortlists, then searches, the
    other members of those droppable clusters whose representative found an alternative (the others cannot
    be dropped anyway).
    """
    cell_of = np.empty(rows.size, dtype=np.int64)
    for c, members in enumerate(cells.members):
        cell_of[np.searchsorted(rows, members)] = c
    k = min(params.neighbors, reps.size)
    cand = np.full((rows.size, k), -1, dtype=np.int64)
    sims = np.full((rows.size, k), -np.inf, dtype=np.float32)
    rep_rows_pos = np.searchsorted(rows, reps)

    def verify(pos: npt.NDArray[np.int64]) -> None:
        sub_c, sub_s = cand[pos], sims[pos]
        certain = sub_s >= alpha + margin
        qi, kj = np.nonzero(~certain & (sub_s >= alpha - margin) & (sub_c >= 0))
        if qi.size:
            certain[qi, kj] = decide_pairs(
                sub_s[qi, kj], alpha, margin, vectors, rows[pos[qi]], reps[sub_c[qi, kj]]
            )
        sub_c[~certain] = -1
        sub_s[~certain] = -np.inf
        cand[pos], sims[pos] = sub_c, sub_s

    X32 = vectors.unit32
    rep_home = cell_of[rep_rows_pos]  # each representative is filed under its own cell

    def search(pos: npt.NDArray[np.int64]) -> None:
        if pos.size == 0:
            return
        queries = X32[rows[pos]]  # gathered once: each query is scored against ``nprobe`` cells
        probes = _nearest_cells(queries, pos, cell_of, cells, params.nprobe)
        cand[pos], sims[pos] = _search_probed(X32, queries, reps, rep_home, probes, k, alpha - margin)
        verify(pos)

    def shortlist(pos: npt.NDArray[np.int64]) -> None:
        """Members try their representative's candidates first (one small product per cluster)."""
        pos = pos[np.argsort(rep_pos[pos], kind="stable")]
        clusters = np.split(pos, np.flatnonzero(np.diff(rep_pos[pos])) + 1)

        for chunk in clusters:
            r = int(rep_pos[chunk[0]])
            short = cand[rep_rows_pos[r]]
            short = short[(short >= 0) & (short != r)]
            if short.size:
                scores = X32[rows[chunk]] @ X32[reps[short]].T
                order = np.argsort(-scores, axis=1, kind="stable")
                cand[chunk, : short.size] = short[order]
                sims[chunk, : short.size] = np.take_along_axis(scores, order, axis=1)
        verify(pos)

    phase1 = rep_rows_pos[droppable]
    search(phase1)
    has_other = ((cand[phase1] >= 0) & (cand[phase1] != np.flatnonzero(droppable)[:, None])).any(axis=1)
    hopeful = np.zeros(reps.size, dtype=np.bool_)
    hopeful[np.flatnonzero(droppable)[has_other]] = True
    phase2 = np.flatnonzero(hopeful[rep_pos])
    members = phase2[rows[phase2] != reps[rep_pos[phase2]]]
    if members.size:
        shortlist(members)
        search(members[(cand[members] < 0).all(axis=1)])
    return cand, sims


def fixed_rows(assignment: npt.NDArray[np.int64], params: CrossCellParams) -> npt.NDArray[np.bool_]:
    """Rows the pass never moves: members of clusters above ``max_size`` (no candidates are searched for
    them, and their representatives are never dropped). Their exact similarities can be computed while the
    pass runs."""
    _, inverse, sizes = np.unique(assignment, return_inverse=True, return_counts=True)
    fixed: npt.NDArray[np.bool_] = sizes[inverse] > params.max_size
    return fixed


def cross_cell_pass(
    vectors: Vectors,
    rows: npt.NDArray[np.int64],
    assignment: npt.NDArray[np.int64],
    similarity32: npt.NDArray[np.float32],
    cells: Cells,
    alpha: float,
    margin: float,
    params: CrossCellParams,
    *,
    reassign: bool,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """New representative row (and float32 similarity to it) of every row of ``rows``.

    ``rows`` is one partition with at least two cells, ``assignment``/``similarity32`` its per-cell result.
    """
    reps = np.unique(assignment)
    if reps.size < 2:
        return assignment, similarity32
    rep_pos = np.searchsorted(reps, assignment)
    sizes = np.bincount(rep_pos, minlength=reps.size)
    t0 = time.perf_counter()
    droppable = sizes <= params.max_size  # the rows of the other clusters are :func:`fixed_rows`
    cand, sims = _candidates(vectors, rows, rep_pos, reps, droppable, cells, alpha, margin, params)
    t1 = time.perf_counter()

    alive = np.ones(reps.size, dtype=np.bool_)
    settled = np.zeros(reps.size, dtype=np.bool_)
    alive_l = alive.tolist()
    settled_l = settled.tolist()
    order_rows = np.argsort(rep_pos, kind="stable")
    bounds = np.searchsorted(rep_pos[order_rows], np.arange(reps.size + 1)).tolist()
    moved_in: dict[int, list[int]] = {}  # rows moved into a representative that may still be dropped
    # a cluster with a member that has no candidate but its own representative can never be dropped
    stuck = np.zeros(reps.size, dtype=np.bool_)
    stuck[rep_pos[~((cand >= 0) & (cand != rep_pos[:, None])).any(axis=1)]] = True
    stuck_l = stuck.tolist()
    pos = rep_pos.copy()
    dropped = 0
    for r in np.lexsort((reps, sizes))[: int(droppable.sum())].tolist():
        if stuck_l[r]:  # the loop below would settle it (rows moved into it stay there)
            moved_in.pop(r, None)
            settled[r] = settled_l[r] = True
            continue
        mem = order_rows[bounds[r] : bounds[r + 1]]
        extra = moved_in.pop(r, None)
        if extra:
            mem = np.concatenate([mem, np.asarray(extra, dtype=np.int64)])
        targets: list[int] | None
        if mem.size <= _PYTHON_PATH_MAX:
            targets = []
            for row_cands in cand[mem].tolist():
                best = -1
                for t in row_cands:
                    if t < 0 or t == r or not alive_l[t]:
                        continue
                    if settled_l[t]:
                        best = t
                        break
                    if best < 0:
                        best = t
                if best < 0:
                    targets = None
                    break
                targets.append(best)
        else:
            C = cand[mem]
            Cc = np.maximum(C, 0)
            ok = (C >= 0) & (r != C) & alive[Cc]
            if not ok.any(axis=1).all():
                targets = None
            else:
                pref = ok & settled[Cc]
                col = np.where(pref.any(axis=1), np.argmax(pref, axis=1), np.argmax(ok, axis=1))
                targets = C[np.arange(mem.size), col].tolist()
        if targets is None:
            settled[r] = settled_l[r] = True
            continue
        alive[r] = alive_l[r] = False
        dropped += 1
        pos[mem] = targets
        for row, t in zip(mem.tolist(), targets, strict=True):
            if not settled_l[t]:
                moved_in.setdefault(t, []).append(row)

    t2 = time.perf_counter()
    sim = similarity32.copy()
    moved = np.flatnonzero(pos != rep_pos)
    if moved.size:  # similarity to the new representative: the matching candidate's
        col = np.argmax(cand[moved] == pos[moved, None], axis=1)
        sim[moved] = sims[moved, col]
    if reassign:
        usable = (cand >= 0) & alive[np.maximum(cand, 0)]
        first = np.argmax(usable, axis=1)
        ar = np.arange(cand.shape[0])
        best_pos, best_sim = cand[ar, first], sims[ar, first]
        move = usable[ar, first] & (best_sim > sim)
        pos[move] = best_pos[move]
        sim[move] = best_sim[move]
    survivors = np.flatnonzero(alive)
    own = np.searchsorted(rows, reps[survivors])
    pos[own] = survivors  # a representative belongs to its own cluster
    sim[own] = 1.0
    logger.debug(
        "cross-cell pass dropped %d of %d representatives (candidates %.2fs, reverse delete %.2fs, "
        "reassign %.2fs)", dropped, reps.size, t1 - t0, t2 - t1, time.perf_counter() - t2,
    )  # fmt: skip
    out: npt.NDArray[np.int64] = reps[pos]
    return out, sim
