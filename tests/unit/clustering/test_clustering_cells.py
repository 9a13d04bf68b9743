"""The coarse split: every row in exactly one cell, cells bounded, neighbours well formed, deterministic."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st

from quartermaster.clustering.cells import Cells, split_into_cells
from quartermaster.clustering.validation import normalized_float32


@settings(max_examples=20, deadline=None)
@given(n=st.integers(2, 1500), cell_size=st.integers(8, 400), seed=st.integers(0, 2**16))
def test_cells_partition_rows_with_bounded_size(
    blobs: Callable[..., npt.NDArray[np.float32]], n: int, cell_size: int, seed: int
) -> None:
    X, _, _ = normalized_float32(blobs(n, 12, k=7, spread=0.5, seed=seed))
    rows = np.arange(n, dtype=np.int64)
    cells = split_into_cells(X, rows, cell_size=cell_size, niter=5, max_points_per_centroid=32, seed=seed)
    assert np.array_equal(np.sort(np.concatenate(cells)), rows)  # each row exactly once
    assert max(m.size for m in cells) <= max(2 * cell_size, n if n <= cell_size else 0)
    assert all((np.diff(m) > 0).all() for m in cells)


@settings(max_examples=20, deadline=None)
@given(n_cells=st.integers(1, 40), neighbors=st.integers(1, 50), duplicates=st.booleans())
def test_neighbour_lists_start_with_the_cell_itself(n_cells: int, neighbors: int, duplicates: bool) -> None:
    rng = np.random.default_rng(n_cells)
    centroids, _, _ = normalized_float32(rng.standard_normal((n_cells, 6)).astype(np.float32))
    if duplicates:  # identical centroids may push a cell out of its own k-NN list
        centroids[:] = centroids[0]
    members = [np.array([i], dtype=np.int64) for i in range(n_cells)]
    cells = Cells.with_neighbours(members, centroids, neighbors)
    assert cells.near.shape == (n_cells, min(neighbors, n_cells))
    assert (cells.near[:, 0] == np.arange(n_cells)).all()
    assert all(len(set(row)) == len(row) for row in cells.near.tolist())  # no cell twice


def test_identical_rows_are_chunked() -> None:
    X, _, _ = normalized_float32(np.ones((1000, 4), dtype=np.float32))
    rows = np.arange(1000, dtype=np.int64)
    cells = split_into_cells(X, rows, cell_size=100, niter=5, max_points_per_centroid=32, seed=0)
    assert sum(m.size for m in cells) == 1000
    assert max(m.size for m in cells) <= 200


def test_split_is_deterministic_for_a_seed(blobs: Callable[..., npt.NDArray[np.float32]]) -> None:
    X, _, _ = normalized_float32(blobs(5000, 16, k=9, seed=1))
    rows = np.arange(5000, dtype=np.int64)
    a = split_into_cells(X, rows, cell_size=300, niter=5, max_points_per_centroid=32, seed=3)
    b = split_into_cells(X, rows, cell_size=300, niter=5, max_points_per_centroid=32, seed=3)
    assert len(a) == len(b)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_worker_threads_run_faiss_single_threaded() -> None:
    """OpenMP's thread count is per thread: without the initializer a worker would run faiss k-means on every
    core, and its parallel reductions made 300k-row results depend on n_jobs (720 vs 727 cells)."""
    import faiss

    from quartermaster.clustering.cells import faiss_single_thread
    from quartermaster.clustering.jobs import Jobs

    def probe(_: int) -> int:
        return int(faiss.omp_get_max_threads())

    with Jobs(2, faiss_single_thread) as jobs:
        assert set(jobs.map(probe, range(8))) == {1}
    if faiss.omp_get_max_threads() > 1:  # the machine default leaks into plain workers
        with Jobs(2) as jobs:
            assert set(jobs.map(probe, range(8))) == {faiss.omp_get_max_threads()}
