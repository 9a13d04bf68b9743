"""Property tests: the guarantee and attribute exactness hold for random data, alphas and attribute mixes."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quartermaster.clustering import GuardrailedClustering
from quartermaster.clustering.validation import UNIT_NORM_TOLERANCE, normalized_float32

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(
    n=st.integers(1, 160),
    d=st.integers(2, 24),
    k=st.integers(1, 8),
    spread=st.floats(0.05, 2.0),
    alpha=st.floats(0.05, 1.0),
    cell_size=st.sampled_from([2, 5, 16, 64, 1024]),
    cross_cell=st.booleans(),
    reassign=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_guarantee_holds_for_random_data(
    blobs: Callable[..., npt.NDArray[np.float32]],
    check_guarantee: Callable[..., float],
    n: int,
    d: int,
    k: int,
    spread: float,
    alpha: float,
    cell_size: int,
    cross_cell: bool,
    reassign: bool,
    seed: int,
) -> None:
    X = blobs(n, d, k=k, spread=spread, seed=seed)
    est = GuardrailedClustering(
        alpha, cell_size=cell_size, cross_cell=cross_cell, reassign=reassign, random_state=seed
    ).fit(X)
    min_sim = check_guarantee(X, est.labels_, est.representatives_, alpha)
    assert est.min_similarity_ >= alpha - 1e-12
    assert abs(est.min_similarity_ - min_sim) < 1e-9
    assert est.labels_.shape == (n,)
    assert est.cluster_sizes_.sum() == n
    assert not est.trimmed_.any()


@SETTINGS
@given(
    n=st.integers(1, 150),
    n_attrs=st.integers(1, 3),
    cardinality=st.integers(1, 6),
    alpha=st.floats(0.05, 0.99),
    cell_size=st.sampled_from([3, 8, 64]),
    seed=st.integers(0, 2**16),
)
def test_attributes_are_matched_exactly(
    blobs: Callable[..., npt.NDArray[np.float32]],
    check_guarantee: Callable[..., float],
    n: int,
    n_attrs: int,
    cardinality: int,
    alpha: float,
    cell_size: int,
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    X = blobs(n, 8, k=3, spread=0.5, seed=seed)
    # mixed types: strings, ints and a column with missing values
    columns: dict[str, list[object]] = {}
    for j in range(n_attrs):
        values = rng.integers(0, cardinality, size=n)
        if j == 0:
            columns[f"a{j}"] = [f"v{v}" for v in values]
        elif j == 1:
            columns[f"a{j}"] = [int(v) for v in values]
        else:
            columns[f"a{j}"] = [None if v == 0 else f"x{v}" for v in values]
    est = GuardrailedClustering(alpha, cell_size=cell_size, random_state=seed).fit(X, columns)
    check_guarantee(
        X, est.labels_, est.representatives_, alpha, [np.asarray(c, dtype=object) for c in columns.values()]
    )
    n_partitions = len({tuple(c[i] for c in columns.values()) for i in range(n)})
    assert est.n_partitions_ == n_partitions
    assert est.n_clusters_ >= n_partitions


def test_attribute_types_are_not_conflated() -> None:
    # identical vectors whose attribute values are 1, "1" and True must stay apart
    X = np.ones((3, 4), dtype=np.float32)
    est = GuardrailedClustering(0.5).fit(X, {"a": np.asarray([1, "1", True], dtype=object)})
    assert est.n_clusters_ == 3


def test_trimming_keeps_largest_clusters_up_to_coverage(
    blobs: Callable[..., npt.NDArray[np.float32]],
) -> None:
    X = blobs(400, 16, k=6, spread=0.4, seed=3)
    full = GuardrailedClustering(0.7, random_state=0).fit(X)
    trimmed = GuardrailedClustering(0.7, trim_coverage=0.8, random_state=0).fit(X)
    assert (trimmed.labels_ == full.labels_).all()  # trimming does not change clusters
    kept = ~trimmed.cluster_trimmed_
    sizes = trimmed.cluster_sizes_
    assert sizes[kept].sum() >= 0.8 * 400
    # minimal: dropping the smallest kept cluster falls below the target
    assert sizes[kept].sum() - sizes[kept].min() < 0.8 * 400
    # every kept cluster is at least as large as every trimmed one
    if (~kept).any():
        assert sizes[kept].min() >= sizes[~kept].max()
    assert (trimmed.trimmed_ == trimmed.cluster_trimmed_[trimmed.labels_]).all()

    by_size = GuardrailedClustering(0.7, min_cluster_size=3, random_state=0).fit(X)
    assert ((by_size.cluster_sizes_ >= 3) == ~by_size.cluster_trimmed_).all()


@SETTINGS
@given(
    n=st.integers(2, 200),
    d=st.integers(2, 64),
    alpha=st.floats(0.3, 0.99),
    norm_error=st.sampled_from([0.0, 1e-7, 1e-5, 9e-5]),
    cell_size=st.sampled_from([4, 32, 1024]),
    seed=st.integers(0, 2**16),
)
def test_guarantee_holds_for_near_unit_float32_rows_used_without_a_copy(
    check_guarantee: Callable[..., float],
    n: int,
    d: int,
    alpha: float,
    norm_error: float,
    cell_size: int,
    seed: int,
) -> None:
    """Rows at cosine alpha +- a few 1e-6 from an anchor, stored as float32 with norms 1 +- norm_error: the
    estimator clusters them in place (no normalised copy) and must still decide every pair exactly."""
    rng = np.random.default_rng(seed)
    anchor = rng.standard_normal(d)
    anchor /= np.linalg.norm(anchor)
    ortho = rng.standard_normal((n, d))
    ortho -= np.outer(ortho @ anchor, anchor)
    ortho /= np.maximum(np.linalg.norm(ortho, axis=1, keepdims=True), 1e-300)
    cos = np.clip(alpha + rng.uniform(-5e-6, 5e-6, size=n), -1.0, 1.0)
    X = cos[:, None] * anchor + np.sqrt(1.0 - cos**2)[:, None] * ortho
    X[0] = anchor
    X *= 1.0 + norm_error * rng.choice([-1.0, 1.0], size=(n, 1))
    X32 = X.astype(np.float32)
    assert np.abs(np.linalg.norm(X32.astype(np.float64), axis=1) - 1.0).max() <= UNIT_NORM_TOLERANCE
    unit, _, used_error = normalized_float32(X32, reuse_unit=True)
    assert unit is X32
    assert used_error <= UNIT_NORM_TOLERANCE
    est = GuardrailedClustering(alpha, cell_size=cell_size, random_state=seed).fit(X32)
    check_guarantee(X32, est.labels_, est.representatives_, alpha)


def test_rows_that_are_not_unit_are_normalised_into_a_copy() -> None:
    X = np.full((3, 4), 0.5, dtype=np.float32) * np.array([[1.0], [1.001], [1.0]], dtype=np.float32)
    unit, norms, error = normalized_float32(X, reuse_unit=True)
    assert unit is not X
    assert error == 0.0
    assert np.allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-6)
    assert np.allclose(norms, [1.0, 1.001, 1.0])
