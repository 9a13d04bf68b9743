"""``GuardrailedClustering``: the two-stage clustering with a checkable guarantee (arXiv 2607.19704).

Promise: for every row ``r`` with representative ``rep(r)``, ``cos(x_r, x_rep(r)) >= alpha`` (checked in
float64, see :mod:`.verify`) and ``attrs(r) == attrs(rep(r))`` exactly. Calling the LLM once per
representative is then safe for every member.

Pipeline (per partition of rows with identical attributes, each processed independently with a seed derived
from ``random_state`` and the partition's attribute values, so sharding by partition reproduces the
unsharded result exactly):

1. :func:`~.cells.split_into_cells` — two-level spherical k-means (faiss) into ``~n / cell_size`` cells;
2. :func:`~.cover.cover_cell` — greedy Johnson-Chvatal set cover over alpha-balls in each cell;
3. :func:`~.crosscell.cross_cell_pass` — reverse delete of representatives made redundant by cell boundaries
   (an improvement over the paper; never breaks the guarantee, never adds representatives);
4. :mod:`~.trim` — keep the largest clusters up to a coverage target and/or a minimum size.

Cluster ids are ordered by representative row index. Peak memory is ``O(n d + cell_size^2)``: the input, one
float32 normalised copy (none when the input already holds float32 unit rows), and one cell block at a time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Self

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from quartermaster.clustering.cells import Cells, faiss_single_thread, faiss_threads, split_into_cells
from quartermaster.clustering.cover import CellCover, cover_cell
from quartermaster.clustering.crosscell import CrossCellParams, cross_cell_pass, fixed_rows
from quartermaster.clustering.errors import ClusteringInputError
from quartermaster.clustering.forked import fork_map
from quartermaster.clustering.jobs import Jobs, resolve_n_jobs
from quartermaster.clustering.partition import as_attribute_columns, partition_rows
from quartermaster.clustering.similarity import Vectors, float32_margin
from quartermaster.clustering.trim import check_trim, kept_clusters
from quartermaster.clustering.validation import check_alpha, normalized_float32

__all__ = ["DEFAULT_CELL_SIZE", "GuardrailedClustering", "ProgressCallback"]

logger = logging.getLogger(__name__)

#: ``progress(stage, done, total)`` — called as work completes (stages: "cover", "similarity").
ProgressCallback = Callable[[str, int, int], None]

#: Target rows per cell. Measured on 100k synthetic rows and banking77/CLINC150 at alpha 0.7: 768 needs
#: 0.0-0.8 % more representatives than 1024 after the cross-cell pass for ~30 % less cover time.
DEFAULT_CELL_SIZE = 768

# Rows per float64 similarity block in the final pass: small blocks stay in cache (~1.5x faster than 16k).
_SIMILARITY_CHUNK = 2048


def _check_int(name: str, value: int, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ClusteringInputError(f"{name}={value!r} must be an integer >= {low}")
    return int(value)


class GuardrailedClustering:
    """Guardrailed clustering of embedding rows (scikit-learn style estimator).

    Parameters
    ----------
    alpha:
        Cosine threshold in (0, 1]: every row is at least this similar to its representative.
    attributes:
        Names of the attribute columns to match exactly, selected from the mapping/table passed to ``fit``;
        ``None`` uses every column passed to ``fit``.
    cell_size:
        Target rows per cell of the coarse split; cells hold at most ``2 * cell_size`` rows (memory
        ``O(cell_size^2)``, time ``O(n cell_size d)``). Larger cells: fewer representatives, more time.
    beam:
        Top-level groups searched when assigning a row to its cell (:mod:`.cells`).
    kmeans_iter, kmeans_points_per_centroid:
        faiss k-means iterations and training sample size per centroid.
    reassign:
        Move every row to its most similar valid representative after the cover (guarantee preserved).
    cross_cell:
        Run the cross-cell reverse-delete pass (fewer representatives at the same alpha).
    cross_cell_max_size, cross_cell_neighbors, cross_cell_nprobe:
        Knobs of the cross-cell pass (:class:`~.crosscell.CrossCellParams`).
    trim_coverage, min_cluster_size:
        Tail trimming (:mod:`.trim`); ``None`` keeps every cluster.
    n_jobs:
        Workers for the independent blocks: threads for k-means leaves and row chunks (:mod:`.jobs`), forked
        processes for the cell covers where the platform can fork (:mod:`.forked`). ``None`` = 1, ``-1`` =
        every CPU. The result does not depend on it.
    random_state:
        Seed of the k-means sampling and initialisation.

    Attributes
    ----------
    labels_ : (n,) int64 cluster id of each row; ids ordered by representative row index.
    representatives_ : (n_clusters_,) int64 row index of each cluster's representative (ascending).
    similarity_ : (n,) float64 cosine of each row to its representative (computed in float64).
    trimmed_ : (n,) bool, row belongs to a trimmed cluster.
    cluster_sizes_, cluster_trimmed_ : per cluster.
    cluster_partition_ : (n_clusters_,) index into ``partition_values_`` (attribute tuples).
    n_clusters_, n_clusters_kept_, n_partitions_, n_cells_, n_clusters_before_cross_cell_ : counts.
    min_similarity_ : float; timings_ : seconds per stage; n_features_in_ : int.
    """

    def __init__(
        self,
        alpha: float = 0.7,
        *,
        attributes: Sequence[str] | None = None,
        cell_size: int = DEFAULT_CELL_SIZE,
        beam: int = 3,
        kmeans_iter: int = 5,
        kmeans_points_per_centroid: int = 64,
        reassign: bool = True,
        cross_cell: bool = True,
        cross_cell_max_size: int = 64,
        cross_cell_neighbors: int = 8,
        cross_cell_nprobe: int = 8,
        trim_coverage: float | None = None,
        min_cluster_size: int | None = None,
        n_jobs: int | None = None,
        random_state: int = 0,
    ) -> None:
        self.alpha = alpha
        self.attributes = attributes
        self.cell_size = cell_size
        self.beam = beam
        self.kmeans_iter = kmeans_iter
        self.kmeans_points_per_centroid = kmeans_points_per_centroid
        self.reassign = reassign
        self.cross_cell = cross_cell
        self.cross_cell_max_size = cross_cell_max_size
        self.cross_cell_neighbors = cross_cell_neighbors
        self.cross_cell_nprobe = cross_cell_nprobe
        self.trim_coverage = trim_coverage
        self.min_cluster_size = min_cluster_size
        self.n_jobs = n_jobs
        self.random_state = random_state

    # -- parameters ------------------------------------------------------------------------------------------
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters (scikit-learn protocol)."""
        del deep
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> Self:
        """Set constructor parameters (scikit-learn protocol)."""
        for name, value in params.items():
            if name not in self._param_names():
                raise ClusteringInputError(
                    f"unknown parameter {name!r}; valid: {sorted(self._param_names())}"
                )
            setattr(self, name, value)
        return self

    @staticmethod
    def _param_names() -> tuple[str, ...]:
        return (
            "alpha", "attributes", "cell_size", "beam", "kmeans_iter", "kmeans_points_per_centroid",
            "reassign", "cross_cell", "cross_cell_max_size", "cross_cell_neighbors", "cross_cell_nprobe",
            "trim_coverage", "min_cluster_size", "n_jobs", "random_state",
        )  # fmt: skip

    def _validated(self) -> tuple[float, CrossCellParams, int]:
        alpha = check_alpha(self.alpha)
        _check_int("cell_size", self.cell_size, 2)
        _check_int("beam", self.beam, 1)
        _check_int("kmeans_iter", self.kmeans_iter, 1)
        _check_int("kmeans_points_per_centroid", self.kmeans_points_per_centroid, 1)
        _check_int("random_state", self.random_state, 0)
        check_trim(self.trim_coverage, self.min_cluster_size)
        params = CrossCellParams(
            max_size=_check_int("cross_cell_max_size", self.cross_cell_max_size, 1),
            neighbors=_check_int("cross_cell_neighbors", self.cross_cell_neighbors, 1),
            nprobe=_check_int("cross_cell_nprobe", self.cross_cell_nprobe, 1),
        )
        return alpha, params, resolve_n_jobs(self.n_jobs)

    def _attribute_columns(self, attributes: object, n: int) -> dict[str, Any]:
        if isinstance(attributes, pa.Table):
            attributes = {name: attributes.column(name) for name in attributes.column_names}
        columns = as_attribute_columns(attributes, n)
        if self.attributes is None:
            return columns
        missing = [name for name in self.attributes if name not in columns]
        if missing:
            raise ClusteringInputError(
                f"attribute column(s) {missing} not found; available: {sorted(columns)}; pass them to fit() "
                "or remove them from attributes="
            )
        return {name: columns[name] for name in self.attributes}

    def _partition_seed(self, key: int) -> int:
        state = np.random.SeedSequence([int(self.random_state), key]).generate_state(1, dtype=np.uint32)
        return int(state[0])

    # -- fit -------------------------------------------------------------------------------------------------
    def fit(self, X: object, attributes: object = None, *, progress: ProgressCallback | None = None) -> Self:
        """Cluster the rows of ``X`` (n x d), matching ``attributes`` exactly. Returns ``self``."""
        alpha, cc_params, n_jobs = self._validated()
        t0 = time.perf_counter()
        X_in = np.asarray(X) if not isinstance(X, np.ndarray) else X
        n_cells = 0
        before_cross = 0
        t_cells = t_cover = t_cross = 0.0
        done = 0
        # Cells are small: one BLAS/faiss thread per call avoids synchronisation overhead that dominated on a
        # busy 2-core machine (several times slower than single-threaded); n_jobs runs blocks side by side.
        with (
            threadpool_limits(1, user_api="blas"),
            faiss_threads(1),
            Jobs(n_jobs, faiss_single_thread) as jobs,
        ):
            # validates shape, finiteness and norms; unit float32 input is used without a copy
            X32, norms, norm_error = normalized_float32(X_in, reuse_unit=True, jobs=jobs)
            vectors = Vectors(unit32=X32, raw=X_in, norms=norms)
            n, d = X32.shape
            margin = float32_margin(d, norm_error)
            parts = partition_rows(self._attribute_columns(attributes, n), n)
            t_valid = time.perf_counter()
            assignment = np.empty(n, dtype=np.int64)
            sim32 = np.empty(n, dtype=np.float32)
            similarity = np.empty(n, dtype=np.float64)  # exact (float64) similarity to the representative
            scheduled = np.zeros(n, dtype=np.bool_)
            pending: list[Callable[[], None]] = []

            def cosine(rows: npt.NDArray[np.int64], targets: npt.NDArray[np.int64]) -> None:
                for start in range(0, rows.size, _SIMILARITY_CHUNK):
                    chunk = slice(start, start + _SIMILARITY_CHUNK)
                    similarity[rows[chunk]] = vectors.cosine64(rows[chunk], targets[chunk])

            for rows, key in zip(parts.members, parts.keys, strict=True):
                ts = time.perf_counter()
                if rows.size <= self.cell_size:
                    members = [rows]
                else:
                    members = split_into_cells(
                        X32,
                        rows,
                        cell_size=self.cell_size,
                        beam=self.beam,
                        niter=self.kmeans_iter,
                        max_points_per_centroid=self.kmeans_points_per_centroid,
                        seed=self._partition_seed(key),
                        jobs=jobs,
                    )
                tc = time.perf_counter()
                # largest cells first: balanced threads
                largest_first = sorted(range(len(members)), key=lambda c: -members[c].size)
                centroids = np.empty((len(members), d), dtype=np.float32)

                def cover(cell: npt.NDArray[np.int64]) -> CellCover:
                    return cover_cell(vectors, cell, alpha, margin, reassign=self.reassign)

                # covers hold the GIL most of the time: several workers are processes, not threads
                covers = fork_map(cover, [members[c] for c in largest_first], n_jobs)
                for c, cov in zip(largest_first, covers, strict=True):
                    cell = members[c]
                    centroids[c] = cov.direction
                    assignment[cell] = cov.assignment
                    sim32[cell] = cov.similarity32
                    before_cross += cov.representatives.size
                    done += cell.size
                    if progress is not None:
                        progress("cover", done, n)
                tx = time.perf_counter()
                if self.cross_cell and len(members) > 1:
                    # rows the pass cannot move get their exact similarities on another thread meanwhile
                    fixed = rows[fixed_rows(assignment[rows], cc_params)]
                    scheduled[fixed] = True
                    pending.append(jobs.submit(partial(cosine, fixed, assignment[fixed])))
                    cells = Cells.with_neighbours(members, centroids)
                    assignment[rows], sim32[rows] = cross_cell_pass(
                        vectors, rows, assignment[rows], sim32[rows], cells, alpha, margin,
                        cc_params, reassign=self.reassign,
                    )  # fmt: skip
                n_cells += len(members)
                t_cells += tc - ts
                t_cover += tx - tc
                t_cross += time.perf_counter() - tx

            ts = time.perf_counter()
            reps = np.unique(assignment)
            labels = np.searchsorted(reps, assignment).astype(np.int64)
            for wait in pending:
                wait()
            rest = np.flatnonzero(~scheduled)
            finished = int(scheduled.sum())

            def finish(rows: npt.NDArray[np.int64]) -> int:
                cosine(rows, assignment[rows])
                return rows.size

            blocks = [rest[i : i + _SIMILARITY_CHUNK] for i in range(0, rest.size, _SIMILARITY_CHUNK)]
            for size in jobs.map(finish, blocks):
                finished += size
                if progress is not None:
                    progress("similarity", finished, n)
        sizes = np.bincount(labels, minlength=reps.size).astype(np.int64)
        keep = kept_clusters(sizes, coverage=self.trim_coverage, min_size=self.min_cluster_size)

        self.n_features_in_ = d
        self.labels_ = labels
        self.representatives_ = reps
        self.similarity_ = similarity
        self.cluster_sizes_ = sizes
        self.cluster_trimmed_ = ~keep
        self.trimmed_ = ~keep[labels]
        self.partition_values_ = parts.values
        self.cluster_partition_ = parts.codes[reps]
        self.n_clusters_ = int(reps.size)
        self.n_clusters_kept_ = int(keep.sum())
        self.n_partitions_ = len(parts.members)
        self.n_cells_ = n_cells
        self.n_clusters_before_cross_cell_ = before_cross
        self.min_similarity_ = float(similarity.min())
        self.timings_ = {
            "validate": t_valid - t0,
            "cells": t_cells,
            "cover": t_cover,
            "cross_cell": t_cross,
            "finalize": time.perf_counter() - ts,
            "total": time.perf_counter() - t0,
        }
        logger.info(
            "clustered %d rows into %d clusters (%d before cross-cell, %d partitions, %d cells) in %.2fs",
            n, reps.size, before_cross, len(parts.members), n_cells, self.timings_["total"],
        )  # fmt: skip
        return self

    def fit_predict(self, X: object, attributes: object = None) -> npt.NDArray[np.int64]:
        """``fit`` and return ``labels_``."""
        labels: npt.NDArray[np.int64] = self.fit(X, attributes).labels_
        return labels
