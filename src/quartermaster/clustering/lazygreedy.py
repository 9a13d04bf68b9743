"""Lazy greedy: the Johnson-Chvatal choices of a cell without its whole ball matrix.

Greedy only ever needs the candidate whose ball holds the most uncovered rows (ties: the lowest position).
The angle bounds of :mod:`.cover` give every count an upper bound for free: in the angle order, row ``p``'s
ball lies inside the positions ``[lo_p, hi_p)`` (every other row is certainly outside), so it holds at most
the uncovered rows there — a prefix-sum difference. As in lazy greedy for submodular maximisation
(Minoux 1978, "CELF"), exact ball rows are computed only for the candidates with the largest keys, where a
key is the exact count once computed and the bound otherwise: when the lowest-positioned candidate with the
largest key has an exact count, it *is* the greedy choice (every other count is at most its key, and lower
positions have smaller keys). Once few rows are left uncovered, the products of every row with just those
columns finish the greedy exactly (:func:`~.greedy.greedy_set_cover` on that rectangle).

Every decision goes through the caller's exact ``decide`` (float32 with the proven margin, float64 in the
band), so the choices and assignments equal those of the greedy on the whole ball matrix. Near-duplicate
regions (a cell that is one dense blob plus scattered outliers) need a handful of ball rows instead of
``c^2 / 2`` products; when the bounds are too loose to prove a choice within ``budget`` ball rows (real
sentence embeddings, usually, where no pair is decided by the bounds) :func:`lazy_greedy` returns None and
the caller computes the whole matrix.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from quartermaster.clustering.greedy import greedy_set_cover

__all__ = ["Decide", "lazy_greedy"]

#: ``decide(S, p, q)``: exact membership ``cos(x_p[i], x_q[j]) >= alpha`` of the pairs whose float32
#: similarities are ``S`` (``len(p) x len(q)``), for positions ``p`` and ``q`` of the cell's angle order.
Decide = Callable[
    [npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.int64]], npt.NDArray[np.bool_]
]

#: Ball rows computed per evaluation after the first (one BLAS product of ``c x d x BATCH``).
BATCH = 8
#: Ball rows the lazy phase may compute before giving up on a cell (the first row, then two batches).
BUDGET = 1 + 2 * BATCH
#: Give up as soon as the best computed count is below this fraction of the largest bound still open (the
#: bounds are then too loose to prove a choice soon: real sentence embeddings, usually).
HOPELESS = 0.5
#: The lazy phase stops once at most this fraction of the cell is uncovered; the rest is one product.
DENSE_BELOW = 0.125


def lazy_greedy(
    block: npt.NDArray[np.float32],
    lo: npt.NDArray[np.int64],
    hi: npt.NDArray[np.int64],
    decide: Decide,
    *,
    batch: int = BATCH,
    budget: int = BUDGET,
    dense_below: float = DENSE_BELOW,
    hopeless: float = HOPELESS,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], int] | None:
    """Greedy cover of the cell ``block`` (unit rows in angle order), or None if the bounds are too loose.

    ``[lo[p], hi[p])`` must contain every position whose row may lie in row ``p``'s ball. Returns the chosen
    positions (in the order chosen), the chosen position covering every position (a representative covers
    itself) and the number of similarities computed — the same choices as :func:`~.greedy.greedy_set_cover`
    on the whole ball matrix.
    """
    c = block.shape[0]
    everything = np.arange(c, dtype=np.int64)
    uncovered = np.ones(c, dtype=np.bool_)
    assignment = np.full(c, -1, dtype=np.int64)
    chosen: list[int] = []
    evaluated = np.full(c, -1, dtype=np.int64)  # row of ``balls`` holding each evaluated position's ball
    balls = np.zeros((budget, c), dtype=np.bool_)
    positions = np.zeros(budget, dtype=np.int64)
    n_eval = 0
    computed = 0
    remaining = c
    prefix = np.zeros(c + 1, dtype=np.int64)
    while remaining > dense_below * c:
        np.cumsum(uncovered, out=prefix[1:])
        key = prefix[hi] - prefix[lo]
        if n_eval:
            key[positions[:n_eval]] = np.count_nonzero(balls[:n_eval] & uncovered, axis=1)
        j = int(np.argmax(key))
        if evaluated[j] < 0:
            size = batch if n_eval else 1  # one row first: enough to see a hopeless cell
            best = key[positions[:n_eval]].max(initial=0)
            if n_eval + size > budget or (n_eval and best < hopeless * key[j]):
                return None
            open_ = np.flatnonzero(evaluated < 0)
            top = open_[np.argsort(-key[open_], kind="stable")[:size]]  # ties: lowest position first
            S = (block @ block[top].T).T  # (c x d) @ (d x k): faster than the other way round for small k
            computed += S.size
            found = decide(S, top, everything)
            found[np.arange(top.size), top] = True
            balls[n_eval : n_eval + top.size] = found
            positions[n_eval : n_eval + top.size] = top
            evaluated[top] = np.arange(n_eval, n_eval + top.size)
            n_eval += top.size
            continue
        newly = np.flatnonzero(balls[evaluated[j]] & uncovered)
        assignment[newly] = j
        uncovered[newly] = False
        remaining -= newly.size
        chosen.append(j)
    if remaining:
        rest = np.flatnonzero(uncovered)
        S = block @ block[rest].T
        computed += S.size
        held = decide(S, everything, rest)  # (c, m): candidate p's ball holds rest[u]
        held[rest, np.arange(rest.size)] = True
        more, first = greedy_set_cover(np.ascontiguousarray(held.T), held)
        assignment[rest] = first
        chosen += more.tolist()
    reps = np.asarray(chosen, dtype=np.int64)
    assignment[reps] = reps  # a representative always belongs to its own cluster
    return reps, assignment, computed
