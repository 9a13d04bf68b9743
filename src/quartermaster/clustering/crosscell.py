"""Cross-cell pass: remove representatives made redundant by the cell boundaries (partition noise).

The per-cell covers never look across a cell boundary, so a cluster near a boundary may exist only because the
rows that would cover it sit in the neighbouring cell. This pass is a *reverse delete* over the
representatives of one partition (attribute-pure, so attributes are always identical):

1. Candidates. A faiss IVF index holds the partition's representatives; its coarse quantiser is the
   partition's own cell centroids (``nprobe`` nearest cells are searched). Every row of a *small* cluster
   (``size <= max_size``) looks up its ``neighbors`` most similar representatives; every row of a larger
   cluster gets the ``neighbors`` representatives nearest to *its representative*. Every candidate pair is
   checked with the exact ball test :func:`~quartermaster.clustering.similarity.decide_pairs`
   (``cos >= alpha``); failing candidates are discarded.
2. Reverse delete. Representatives are visited from the smallest cluster up. A representative ``r`` is dropped
   only if *every* current member of ``r`` (``r`` itself and rows moved into ``r`` earlier included) has
   another live candidate; each member then moves to one, preferring representatives already known to stay,
   then the most similar. Otherwise ``r`` stays for good.
3. Optionally (``reassign``) every row joins its most similar live candidate when that beats its current
   representative.

Correctness: a row only ever moves to a representative it was verified to be within ``alpha`` of, and a
representative disappears only when all its members — itself included — moved to verified live
representatives. The guarantee of the per-cell covers is therefore preserved, and the number of
representatives never grows.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import faiss
import numpy as np
import numpy.typing as npt

from quartermaster.clustering.similarity import Vectors, decide_pairs

__all__ = ["CrossCellParams", "cross_cell_pass"]

logger = logging.getLogger(__name__)

_SEARCH_CHUNK = 65536
_PYTHON_PATH_MAX = 32  # clusters up to this size are checked with plain Python (less overhead than numpy)


@dataclass(frozen=True)
class CrossCellParams:
    """Knobs of the cross-cell pass (see module docstring)."""

    max_size: int = 16
    neighbors: int = 8
    nprobe: int = 8


def _search(
    index: faiss.Index, X32: npt.NDArray[np.float32], rows: npt.NDArray[np.int64], k: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    dist = np.empty((rows.size, k), dtype=np.float32)
    ids = np.empty((rows.size, k), dtype=np.int64)
    for start in range(0, rows.size, _SEARCH_CHUNK):
        q = np.ascontiguousarray(X32[rows[start : start + _SEARCH_CHUNK]])
        dist[start : start + q.shape[0]], ids[start : start + q.shape[0]] = index.search(q, k)
    return dist, ids


def _candidates(
    vectors: Vectors,
    rows: npt.NDArray[np.int64],
    rep_pos: npt.NDArray[np.int64],
    reps: npt.NDArray[np.int64],
    small: npt.NDArray[np.bool_],
    centroids: npt.NDArray[np.float32],
    alpha: float,
    margin: float,
    params: CrossCellParams,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Verified candidate representative positions per row (``-1`` = none) and their float32 similarity."""
    X32 = vectors.unit32
    d = X32.shape[1]
    quantizer = faiss.IndexFlatIP(d)
    quantizer.add(np.ascontiguousarray(centroids))
    index = faiss.IndexIVFFlat(quantizer, d, centroids.shape[0], faiss.METRIC_INNER_PRODUCT)
    index.add(np.ascontiguousarray(X32[reps]))
    index.nprobe = min(centroids.shape[0], params.nprobe)
    k = min(params.neighbors, reps.size)
    cand = np.full((rows.size, k), -1, dtype=np.int64)
    sims = np.full((rows.size, k), -np.inf, dtype=np.float32)

    query = np.flatnonzero(small[rep_pos])  # rows of small clusters: their own nearest representatives
    if query.size:
        dist, ids = _search(index, X32, rows[query], k)
        cand[query], sims[query] = ids, dist

    big = np.flatnonzero(~small)  # larger clusters: representatives near their representative
    if big.size:
        _, nbr = _search(index, X32, reps[big], k)
        order = np.argsort(rep_pos, kind="stable")
        bounds = np.searchsorted(rep_pos[order], np.arange(reps.size + 1))
        for b, targets in zip(big.tolist(), nbr, strict=True):
            members = order[bounds[b] : bounds[b + 1]]
            t = targets[targets >= 0]
            block = X32[rows[members]] @ X32[reps[t]].T
            cand[members, : t.size] = t
            sims[members, : t.size] = block

    certain = sims >= alpha + margin
    qi, kj = np.nonzero(~certain & (sims >= alpha - margin) & (cand >= 0))
    if qi.size:
        certain[qi, kj] = decide_pairs(sims[qi, kj], alpha, margin, vectors, rows[qi], reps[cand[qi, kj]])
    cand[~certain] = -1
    sims[~certain] = -np.inf
    if big.size:  # faiss results are sorted already; sort the rows that got their representative's neighbours
        sel = np.flatnonzero(~small[rep_pos])
        by_sim = np.argsort(-sims[sel], axis=1, kind="stable")
        cand[sel] = np.take_along_axis(cand[sel], by_sim, axis=1)
        sims[sel] = np.take_along_axis(sims[sel], by_sim, axis=1)
    return cand, sims


def cross_cell_pass(
    vectors: Vectors,
    rows: npt.NDArray[np.int64],
    assignment: npt.NDArray[np.int64],
    similarity32: npt.NDArray[np.float32],
    centroids: npt.NDArray[np.float32],
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
    small = sizes <= params.max_size
    t0 = time.perf_counter()
    cand, sims = _candidates(vectors, rows, rep_pos, reps, small, centroids, alpha, margin, params)
    t1 = time.perf_counter()

    alive = np.ones(reps.size, dtype=np.bool_)
    settled = np.zeros(reps.size, dtype=np.bool_)
    alive_l = alive.tolist()
    settled_l = settled.tolist()
    order_rows = np.argsort(rep_pos, kind="stable")
    bounds = np.searchsorted(rep_pos[order_rows], np.arange(reps.size + 1)).tolist()
    moved_in: dict[int, list[int]] = {}  # rows moved into a representative that may still be dropped
    pos = rep_pos.copy()
    dropped = 0
    for r in np.lexsort((reps, sizes)).tolist():
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
