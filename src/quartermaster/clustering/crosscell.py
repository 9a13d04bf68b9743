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
from dataclasses import dataclass

import faiss
import numpy as np
import numpy.typing as npt

from quartermaster.clustering.similarity import decide_pairs

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
    X32: npt.NDArray[np.float32],
    X: npt.NDArray[np.floating],
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

    qi, kj = np.nonzero(cand >= 0)
    ok = decide_pairs(sims[qi, kj], alpha, margin, X, rows[qi], reps[cand[qi, kj]])
    cand[qi[~ok], kj[~ok]] = -1
    sims[cand < 0] = -np.inf
    by_sim = np.argsort(-sims, axis=1, kind="stable")
    return np.take_along_axis(cand, by_sim, axis=1), np.take_along_axis(sims, by_sim, axis=1)


def cross_cell_pass(
    X32: npt.NDArray[np.float32],
    X: npt.NDArray[np.floating],
    rows: npt.NDArray[np.int64],
    assignment: npt.NDArray[np.int64],
    centroids: npt.NDArray[np.float32],
    alpha: float,
    margin: float,
    params: CrossCellParams,
    *,
    reassign: bool,
) -> npt.NDArray[np.int64]:
    """New representative row for every row of ``rows`` (one partition with at least two cells)."""
    reps = np.unique(assignment)
    if reps.size < 2:
        return assignment
    rep_pos = np.searchsorted(reps, assignment)
    sizes = np.bincount(rep_pos, minlength=reps.size)
    small = sizes <= params.max_size
    cand, sims = _candidates(X32, X, rows, rep_pos, reps, small, centroids, alpha, margin, params)

    alive = np.ones(reps.size, dtype=np.bool_)
    settled = np.zeros(reps.size, dtype=np.bool_)
    alive_l = alive.tolist()
    settled_l = settled.tolist()
    order_rows = np.argsort(rep_pos, kind="stable")
    bounds = np.searchsorted(rep_pos[order_rows], np.arange(reps.size + 1))
    members: list[list[int]] = [order_rows[bounds[r] : bounds[r + 1]].tolist() for r in range(reps.size)]
    pos = rep_pos.copy()
    dropped = 0
    for r in np.lexsort((reps, sizes)).tolist():
        mem = members[r]
        targets: list[int] | None
        if len(mem) <= _PYTHON_PATH_MAX:
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
                targets = C[np.arange(len(mem)), col].tolist()
        if targets is None:
            settled[r] = settled_l[r] = True
            continue
        alive[r] = alive_l[r] = False
        dropped += 1
        for row, t in zip(mem, targets, strict=True):
            pos[row] = t
            if not settled_l[t]:
                members[t].append(row)
        members[r] = []

    if reassign:
        usable = (cand >= 0) & alive[np.maximum(cand, 0)]
        has = np.asarray(usable.any(axis=1), dtype=np.bool_)
        first = np.argmax(usable, axis=1)
        ar = np.arange(cand.shape[0])
        best_pos, best_sim = cand[ar, first], sims[ar, first]
        move = np.zeros(rows.size, dtype=np.bool_)
        for start in range(0, rows.size, _SEARCH_CHUNK):
            sl = slice(start, start + _SEARCH_CHUNK)
            cur_sim = np.einsum("ij,ij->i", X32[rows[sl]], X32[reps[pos[sl]]])
            move[sl] = has[sl] & (best_sim[sl] > cur_sim)
        pos[move] = best_pos[move]
    survivors = np.flatnonzero(alive)
    pos[np.searchsorted(rows, reps[survivors])] = survivors  # a representative belongs to its own cluster
    logger.debug("cross-cell pass dropped %d of %d representatives", dropped, reps.size)
    out: npt.NDArray[np.int64] = reps[pos]
    return out
