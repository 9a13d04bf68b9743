"""Coarse split of a partition into cells of bounded size: two-level spherical k-means (faiss) with a beam.

A partition of ``m`` rows gets ``K = ceil(m / cell_size)`` cells, like the paper's single mini-batch k-means
with ``K = Theta(n)``, but built in two levels so that no row is ever scored against all ``K`` centroids:

1. ``k1 ~ sqrt(K)`` top centroids (faiss k-means on a sample of ``k1 * max_points_per_centroid`` rows); every
   row is assigned to its nearest top centroid.
2. Each top group of ``m_t`` rows gets ``ceil(m_t / cell_size)`` leaf centroids (faiss k-means on a sample).
3. Every row then joins its nearest leaf among the leaves of its top group's ``beam`` nearest top groups
   (itself included) — close to the global nearest leaf at ``O(m * beam * sqrt(K) * d)`` cost instead of
   ``O(m * K * d)``. Products are BLAS matrix products per top group.

Cells above ``2 * cell_size`` rows (k-means imbalance in dense regions) are split again with k-means, or cut
into contiguous chunks when k-means cannot separate them (identical rows), so the cover's block
never exceeds ``(2 * cell_size)^2``: peak memory ``O(cell_size^2)``, cover time ``O(m * cell_size * d)``.
Cells only limit which rows are compared, so any split keeps the guarantee; a poor split only costs
representatives (e.g. identical rows that k-means cannot separate are chunked).

:class:`Cells` adds each cell's unit mean direction (computed by the cover, which gathers the cell anyway)
and its ``neighbors`` nearest cells by that direction (faiss k-NN), used by the cross-cell pass.
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

from quartermaster.clustering.angles import mean_direction
from quartermaster.clustering.jobs import Jobs

__all__ = ["Cells", "faiss_single_thread", "faiss_threads", "split_into_cells"]

logger = logging.getLogger(__name__)

# Rows per BLAS product in _nearest: small blocks stay in cache and reuse heap memory; 64k-row gathers
# (100 MB each) page-faulted a fresh mapping every time and were 2-6x slower.
_CHUNK = 4096


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


def faiss_single_thread() -> None:
    """One OpenMP thread for faiss in the calling thread.

    OpenMP's thread count is per thread: a worker of :class:`~.jobs.Jobs` would otherwise run faiss k-means
    with every core, whose parallel reductions give slightly different centroids (results would depend on
    ``n_jobs``).
    """
    faiss.omp_set_num_threads(1)


@dataclass(frozen=True)
class Cells:
    """Cells of one partition: row indices (ascending within each cell), unit centroids, neighbour cells."""

    members: list[npt.NDArray[np.int64]]
    centroids: npt.NDArray[np.float32]  # (n_cells, d), unit mean direction of each cell
    near: npt.NDArray[np.int64]  # (n_cells, <= neighbors) nearest cells by centroid, the cell itself first

    @staticmethod
    def with_neighbours(
        members: list[npt.NDArray[np.int64]], centroids: npt.NDArray[np.float32], neighbors: int = 256
    ) -> Cells:
        """Cells with their ``neighbors`` nearest cells by centroid."""
        return Cells(members=members, centroids=centroids, near=_near(centroids, neighbors))


def _kmeans(
    X32: npt.NDArray[np.float32],
    rows: npt.NDArray[np.int64],
    k: int,
    *,
    niter: int,
    max_points_per_centroid: int,
    rng: np.random.Generator,
) -> npt.NDArray[np.float32]:
    """Unit centroids of a spherical faiss k-means with ``k`` centroids, trained on a sample of ``rows``."""
    m = rows.size
    n_train = min(m, k * max_points_per_centroid)
    sample = rows if n_train == m else rows[np.sort(rng.choice(m, size=n_train, replace=False))]
    km = faiss.Kmeans(
        X32.shape[1],
        k,
        niter=niter,
        seed=int(rng.integers(1, 2**31 - 1)),
        spherical=True,
        verbose=False,
        min_points_per_centroid=1,
        max_points_per_centroid=max_points_per_centroid,
    )
    km.train(np.ascontiguousarray(X32[sample]))
    return np.ascontiguousarray(km.centroids, dtype=np.float32)


def _nearest(
    X32: npt.NDArray[np.float32],
    rows: npt.NDArray[np.int64],
    centroids: npt.NDArray[np.float32],
    jobs: Jobs | None = None,
) -> npt.NDArray[np.int64]:
    """Index of the nearest centroid (inner product) of every row; BLAS products in chunks."""
    out = np.empty(rows.size, dtype=np.int64)
    ct = np.ascontiguousarray(centroids.T)
    contiguous = rows.size > 0 and int(rows[-1] - rows[0]) + 1 == rows.size

    def chunk(start: int) -> None:
        stop = min(rows.size, start + _CHUNK)
        block = X32[rows[start] : rows[start] + stop - start] if contiguous else X32[rows[start:stop]]
        out[start:stop] = np.argmax(block @ ct, axis=1)

    list((jobs or Jobs(1)).map(chunk, range(0, rows.size, _CHUNK)))
    return out


def _near(centroids: npt.NDArray[np.float32], k: int) -> npt.NDArray[np.int64]:
    """Each centroid's ``k`` nearest centroids (faiss k-NN, inner product), itself first."""
    k = min(k, centroids.shape[0])
    _, near = faiss.knn(centroids, centroids, k, metric=faiss.METRIC_INNER_PRODUCT)
    near = np.asarray(near, dtype=np.int64)
    own = np.arange(centroids.shape[0])
    has_self = (near == own[:, None]).any(axis=1)
    near[~has_self, -1] = own[~has_self]  # identical centroids may push a cell out of its own list
    first = np.argmax(near == own[:, None], axis=1)
    near[np.arange(near.shape[0]), first] = near[:, 0]
    near[:, 0] = own
    return near


def _group(rows: npt.NDArray[np.int64], labels: npt.NDArray[np.int64], k: int) -> list[npt.NDArray[np.int64]]:
    order = np.lexsort((rows, labels))
    return np.split(rows[order], np.cumsum(np.bincount(labels, minlength=k))[:-1])


def _split(
    X32: npt.NDArray[np.float32],
    cell: npt.NDArray[np.int64],
    seed: int,
    cell_size: int,
    *,
    niter: int,
    max_points_per_centroid: int,
) -> tuple[list[npt.NDArray[np.int64]], bool]:
    """Split an oversized cell again with k-means (dense regions); contiguous chunks (final) if k-means
    cannot separate its rows (e.g. identical rows)."""
    k = math.ceil(cell.size / cell_size)
    rng = np.random.default_rng(seed)
    centres = _kmeans(X32, cell, k, niter=niter, max_points_per_centroid=max_points_per_centroid, rng=rng)
    parts = [p for p in _group(cell, _nearest(X32, cell, centres), k) if p.size]
    if len(parts) > 1:
        return parts, False
    logger.debug("cell of %d rows cut into chunks of <= %d", cell.size, 2 * cell_size)
    return np.array_split(cell, math.ceil(cell.size / (2 * cell_size))), True


def split_into_cells(
    X32: npt.NDArray[np.float32],
    rows: npt.NDArray[np.int64],
    *,
    cell_size: int,
    niter: int,
    max_points_per_centroid: int,
    seed: int,
    beam: int = 3,
    jobs: Jobs | None = None,
) -> list[npt.NDArray[np.int64]]:
    """Split ``rows`` (ascending input row indices) into cells of at most ``2 * cell_size`` rows."""
    rng = np.random.default_rng(seed)
    jobs = jobs or Jobs(1)
    m = rows.size
    K = math.ceil(m / cell_size)
    if K <= 1:
        return [rows]
    with faiss_threads(1):
        k1 = max(1, min(m, round(math.sqrt(K))))
        top = (
            _kmeans(X32, rows, k1, niter=niter, max_points_per_centroid=max_points_per_centroid, rng=rng)
            if k1 > 1
            else mean_direction(X32[rows])[None, :]
        )
        groups = _group(rows, _nearest(X32, rows, top, jobs), k1)
        # every k-means below gets its own seed, drawn in a fixed order: the split does not depend on n_jobs
        group_seeds = rng.integers(1, 2**31 - 1, size=k1)

        def leaf_kmeans(t: int) -> npt.NDArray[np.float32]:
            group = groups[t]
            k2 = min(group.size, math.ceil(group.size / cell_size))
            if k2 <= 1:
                return mean_direction(X32[group])[None, :]
            leaf_rng = np.random.default_rng(group_seeds[t])
            return _kmeans(
                X32, group, k2, niter=niter, max_points_per_centroid=max_points_per_centroid, rng=leaf_rng
            )

        filled = [t for t, g in enumerate(groups) if g.size]
        leaf_centroids = dict(zip(filled, jobs.map(leaf_kmeans, filled), strict=True))
        first_leaf = np.zeros(k1 + 1, dtype=np.int64)
        for t in range(k1):
            first_leaf[t + 1] = first_leaf[t] + (leaf_centroids[t].shape[0] if t in leaf_centroids else 0)
        leaves = np.concatenate([leaf_centroids[t] for t in filled])
        top_near = _near(top, beam)
        labels = np.empty(m, dtype=np.int64)
        positions = np.searchsorted(rows, np.concatenate(groups)) if m else np.zeros(0, dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum([g.size for g in groups])])

        def assign(t: int) -> None:  # rows of group t join their nearest leaf among the beam's groups
            candidates = np.concatenate([np.arange(first_leaf[u], first_leaf[u + 1]) for u in top_near[t]])
            pos = positions[offsets[t] : offsets[t + 1]]
            labels[pos] = candidates[_nearest(X32, groups[t], leaves[candidates])]

        list(jobs.map(assign, filled))
        cells: list[npt.NDArray[np.int64]] = []
        pending = [cell for cell in _group(rows, labels, leaves.shape[0]) if cell.size]

        def split(job: tuple[npt.NDArray[np.int64], int]) -> tuple[list[npt.NDArray[np.int64]], bool]:
            return _split(X32, *job, cell_size, niter=niter, max_points_per_centroid=max_points_per_centroid)

        while pending:
            cells += [cell for cell in pending if cell.size <= 2 * cell_size]
            big = [cell for cell in pending if cell.size > 2 * cell_size]
            seeds = rng.integers(1, 2**31 - 1, size=len(big)).tolist()
            pending = []
            for parts, final in jobs.map(split, list(zip(big, seeds, strict=True))):
                (cells if final else pending).extend(parts)
    return cells
