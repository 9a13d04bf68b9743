"""Coarse split of a partition into cells of bounded size with (hierarchical) spherical k-means (faiss).

A set of ``m > cell_size`` rows is split with faiss k-means into ``k = min(branching, ceil(m / cell_size))``
cells, trained on a sample of at most ``k * max_points_per_centroid`` rows, and every row is assigned to its
nearest centroid (inner product). Cells still larger than ``cell_size`` are split again, so the number of leaf
cells is ``Theta(m / cell_size)`` and every leaf has at most ``cell_size`` rows: peak memory of the cover is
``O(cell_size^2)`` and total time ``O(m * cell_size * d)``. Assignment costs ``O(m * branching * depth * d)``
instead of ``O(m * K * d)`` for a flat k-means with ``K`` cells.

When k-means cannot split a set (e.g. all rows identical), it is cut into contiguous chunks: cells only limit
which rows are compared, so any split keeps the guarantee; it only costs representatives.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import faiss
import numpy as np
import numpy.typing as npt

__all__ = ["Cells", "split_into_cells"]

logger = logging.getLogger(__name__)

_ASSIGN_CHUNK = 65536


@contextmanager
def faiss_threads(n: int) -> Iterator[None]:
    """Run faiss with ``n`` OpenMP threads inside the block (restored afterwards).

    k-means on the small training samples used here is dominated by OpenMP synchronisation; on a busy machine
    spinning threads made it 10-20x slower than one thread, so the coarse split runs single-threaded.
    """
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


@dataclass(frozen=True)
class Cells:
    """Leaf cells of one partition: row indices (ascending within each cell) and unit centroids."""

    members: list[npt.NDArray[np.int64]]
    centroids: npt.NDArray[np.float32]  # (n_cells, d), normalised mean of each cell


def _kmeans_assign(
    X32: npt.NDArray[np.float32],
    rows: npt.NDArray[np.int64],
    k: int,
    *,
    niter: int,
    max_points_per_centroid: int,
    rng: np.random.Generator,
) -> npt.NDArray[np.int64]:
    d = X32.shape[1]
    m = rows.size
    n_train = min(m, k * max_points_per_centroid)
    sample = rows if n_train == m else rows[np.sort(rng.choice(m, size=n_train, replace=False))]
    train = np.ascontiguousarray(X32[sample])
    km = faiss.Kmeans(
        d,
        k,
        niter=niter,
        seed=int(rng.integers(1, 2**31 - 1)),
        spherical=True,
        verbose=False,
        min_points_per_centroid=1,
        max_points_per_centroid=max_points_per_centroid,
    )
    km.train(train)
    index = faiss.IndexFlatIP(d)
    index.add(np.ascontiguousarray(km.centroids, dtype=np.float32))
    labels = np.empty(m, dtype=np.int64)
    contiguous = m > 0 and rows[-1] - rows[0] + 1 == m  # a full range: slice instead of gather
    for start in range(0, m, _ASSIGN_CHUNK):
        stop = min(m, start + _ASSIGN_CHUNK)
        if contiguous:
            block = X32[rows[start] : rows[start] + (stop - start)]
        else:
            block = np.ascontiguousarray(X32[rows[start:stop]])
        _, idx = index.search(block, 1)
        labels[start:stop] = idx[:, 0]
    return labels


def split_into_cells(
    X32: npt.NDArray[np.float32],
    rows: npt.NDArray[np.int64],
    *,
    cell_size: int,
    branching: int,
    niter: int,
    max_points_per_centroid: int,
    seed: int,
) -> Cells:
    """Split ``rows`` (ascending input row indices) into leaf cells of at most ``cell_size`` rows."""
    rng = np.random.default_rng(seed)
    leaves: list[npt.NDArray[np.int64]] = []
    stack = [rows]
    with faiss_threads(1):
        _split(X32, stack, leaves, cell_size, branching, niter, max_points_per_centroid, rng)
    centroids = np.empty((len(leaves), X32.shape[1]), dtype=np.float32)
    for i, leaf in enumerate(leaves):
        mean = X32[leaf].astype(np.float64).mean(axis=0)
        norm = float(np.linalg.norm(mean))
        centroids[i] = mean / norm if norm > 0 else X32[leaf[0]]
    return Cells(members=leaves, centroids=centroids)


def _split(
    X32: npt.NDArray[np.float32],
    stack: list[npt.NDArray[np.int64]],
    leaves: list[npt.NDArray[np.int64]],
    cell_size: int,
    branching: int,
    niter: int,
    max_points_per_centroid: int,
    rng: np.random.Generator,
) -> None:
    while stack:
        node = stack.pop()
        m = node.size
        if m <= cell_size:
            leaves.append(node)
            continue
        k = max(2, min(branching, math.ceil(m / cell_size)))
        labels = _kmeans_assign(
            X32, node, k, niter=niter, max_points_per_centroid=max_points_per_centroid, rng=rng
        )
        order = np.argsort(labels, kind="stable")
        counts = np.bincount(labels, minlength=k)
        if counts.max() == m:
            logger.debug("k-means could not split %d rows; cutting into contiguous chunks", m)
            leaves.extend(np.array_split(node, math.ceil(m / cell_size)))
            continue
        children = np.split(node[order], np.cumsum(counts)[:-1])
        # Push in reverse so cells come out in centroid order (deterministic for a seed).
        stack.extend(child for child in reversed(children) if child.size)
