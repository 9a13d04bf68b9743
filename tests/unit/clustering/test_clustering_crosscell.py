"""The cross-cell pass never moves rows of large clusters (their exact similarities are computed early)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st

from quartermaster.clustering.cells import Cells, split_into_cells
from quartermaster.clustering.cover import cover_cell
from quartermaster.clustering.crosscell import CrossCellParams, cross_cell_pass, fixed_rows
from quartermaster.clustering.similarity import Vectors, float32_margin
from quartermaster.clustering.validation import normalized_float32


def _cover_then_cross(
    X: npt.NDArray[np.float32], alpha: float, max_size: int, seed: int, neighbors: int = 256
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.bool_], npt.NDArray[np.float32]]:
    """Per-cell covers, then the pass: assignments before and after, the fixed rows, the unit rows."""
    d = X.shape[1]
    X32, norms, error = normalized_float32(X)
    vectors = Vectors(unit32=X32, raw=X, norms=norms)
    margin = float32_margin(d, error)
    rows = np.arange(X.shape[0], dtype=np.int64)
    members = split_into_cells(X32, rows, cell_size=60, niter=5, max_points_per_centroid=32, seed=seed)
    before = np.empty(rows.size, dtype=np.int64)
    sim32 = np.empty(rows.size, dtype=np.float32)
    directions = np.empty((len(members), d), dtype=np.float32)
    for c, cell in enumerate(members):
        cover = cover_cell(vectors, cell, alpha, margin, reassign=True)
        before[cell], sim32[cell], directions[c] = cover.assignment, cover.similarity32, cover.direction
    params = CrossCellParams(max_size=max_size)
    fixed = fixed_rows(before, params)
    cells = Cells.with_neighbours(members, directions, neighbors)  # < cells: probes among neighbours only
    after, _ = cross_cell_pass(vectors, rows, before, sim32, cells, alpha, margin, params, reassign=True)
    return before, after, fixed, X32


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    max_size=st.integers(1, 12),
    alpha=st.floats(0.5, 0.8),
    neighbors=st.sampled_from([4, 256]),
)
def test_rows_of_large_clusters_never_move(
    blobs: Callable[..., npt.NDArray[np.float32]], seed: int, max_size: int, alpha: float, neighbors: int
) -> None:
    X = blobs(1500, 16, k=12, spread=0.8, seed=seed)
    before, after, fixed, X32 = _cover_then_cross(X, alpha, max_size, seed, neighbors)
    sizes = np.unique(before, return_counts=True)[1]
    assert fixed.sum() == sizes[sizes > max_size].sum()
    assert np.array_equal(after[fixed], before[fixed])
    moved = after != before
    assert (np.einsum("ij,ij->i", X32[moved], X32[after[moved]]) >= alpha - 1e-4).all()


def test_the_pass_moves_rows_of_small_clusters_only(blobs: Callable[..., npt.NDArray[np.float32]]) -> None:
    before, after, fixed, X32 = _cover_then_cross(blobs(1500, 16, k=12, spread=0.8, seed=0), 0.6, 8, 0)
    moved = after != before
    assert moved.any()  # both kinds of rows exist here
    assert fixed.any()
    assert not (moved & fixed).any()
    assert (np.einsum("ij,ij->i", X32[moved], X32[after[moved]]) >= 0.6 - 1e-4).all()


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), neighbors=st.integers(1, 30), p=st.integers(1, 10))
def test_probes_are_the_nearest_neighbour_cells(seed: int, neighbors: int, p: int) -> None:
    """Each query probes the ``p`` cells nearest to it among its own cell's neighbour list (both code paths:
    neighbour lists shorter than the number of cells, and lists holding every cell)."""
    from quartermaster.clustering.crosscell import _nearest_cells

    rng = np.random.default_rng(seed)
    X32, _, _ = normalized_float32(rng.standard_normal((300, 8)).astype(np.float32))
    rows = np.arange(300, dtype=np.int64)
    cell_of = rng.integers(0, 20, size=300)
    members = [rows[cell_of == c] for c in range(20)]
    directions, _, _ = normalized_float32(rng.standard_normal((20, 8)).astype(np.float32))
    cells = Cells.with_neighbours(members, directions, neighbors)
    pos = np.sort(rng.choice(300, size=50, replace=False))
    probes = _nearest_cells(X32[rows[pos]], pos, cell_of, cells, p)
    k = min(p, cells.near.shape[1])
    for q, got in zip(pos.tolist(), probes.tolist(), strict=True):
        near = cells.near[cell_of[q]]
        expected = near[np.argsort(-(directions[near] @ X32[q]), kind="stable")[:k]]
        assert sorted(got) == sorted(expected.tolist())
