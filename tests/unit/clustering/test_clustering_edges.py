"""Edge cases: one row, identical rows, alpha = 1, very low alpha, one-row partitions, determinism."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from quartermaster.clustering import ClusteringInputError, GuardrailedClustering

Blobs = Callable[..., npt.NDArray[np.float32]]
Check = Callable[..., float]


def test_one_row() -> None:
    est = GuardrailedClustering(0.9).fit(np.array([[0.3, -2.0, 1.0]]))
    assert est.labels_.tolist() == [0]
    assert est.representatives_.tolist() == [0]
    assert est.similarity_[0] == pytest.approx(1.0)


@pytest.mark.parametrize("alpha", [1e-6, 0.5, 1.0])
def test_identical_rows_form_one_cluster(alpha: float) -> None:
    X = np.tile(np.array([[0.1, 0.7, -0.3, 0.2]], dtype=np.float32), (300, 1))
    est = GuardrailedClustering(alpha, cell_size=1024).fit(X)
    assert est.n_clusters_ == 1
    assert est.representatives_.tolist() == [0]
    assert (est.similarity_ >= alpha - 1e-12).all()


def test_alpha_one_groups_only_duplicates(check_guarantee: Check) -> None:
    rng = np.random.default_rng(0)
    base = rng.standard_normal((20, 16)).astype(np.float32)
    X = np.concatenate([base, base[:5], base[:5]])  # 5 rows three times, 15 once
    est = GuardrailedClustering(1.0, cell_size=8).fit(X)
    check_guarantee(X, est.labels_, est.representatives_, 1.0)
    assert est.n_clusters_ == 20
    assert sorted(est.cluster_sizes_.tolist()) == [1] * 15 + [3] * 5


def test_very_low_alpha_still_guaranteed(blobs: Blobs, check_guarantee: Check) -> None:
    X = blobs(600, 12, k=4, spread=1.0, seed=1)
    est = GuardrailedClustering(0.01, cell_size=64, random_state=1).fit(X)
    check_guarantee(X, est.labels_, est.representatives_, 0.01)
    assert est.n_clusters_ < 600 / 10


def test_partition_of_one_row(blobs: Blobs, check_guarantee: Check) -> None:
    X = blobs(50, 8, seed=2)
    attrs = np.array(["a"] * 49 + ["lonely"], dtype=object)
    est = GuardrailedClustering(0.3).fit(X, {"kind": attrs})
    check_guarantee(X, est.labels_, est.representatives_, 0.3, [attrs])
    lonely = est.labels_[49]
    assert est.cluster_sizes_[lonely] == 1
    assert est.representatives_[lonely] == 49


def test_same_seed_same_result_different_seed_still_valid(blobs: Blobs, check_guarantee: Check) -> None:
    X = blobs(3000, 24, k=12, spread=0.6, seed=4)
    a = GuardrailedClustering(0.75, cell_size=128, random_state=7).fit(X)
    b = GuardrailedClustering(0.75, cell_size=128, random_state=7).fit(X)
    assert (a.labels_ == b.labels_).all()
    assert (a.representatives_ == b.representatives_).all()
    assert (a.similarity_ == b.similarity_).all()
    c = GuardrailedClustering(0.75, cell_size=128, random_state=8).fit(X)
    check_guarantee(X, c.labels_, c.representatives_, 0.75)


def test_cross_cell_pass_never_adds_representatives(blobs: Blobs, check_guarantee: Check) -> None:
    X = blobs(4000, 16, k=20, spread=0.5, seed=5)
    plain = GuardrailedClustering(0.8, cell_size=100, cross_cell=False, random_state=3).fit(X)
    improved = GuardrailedClustering(0.8, cell_size=100, cross_cell=True, random_state=3).fit(X)
    check_guarantee(X, improved.labels_, improved.representatives_, 0.8)
    assert improved.n_clusters_before_cross_cell_ == plain.n_clusters_
    assert improved.n_clusters_ < plain.n_clusters_  # cell boundaries do cost representatives here
    assert set(improved.representatives_.tolist()) <= set(plain.representatives_.tolist())


def test_more_cells_than_partitions_are_used_for_large_partitions(blobs: Blobs) -> None:
    X = blobs(2000, 8, seed=6)
    est = GuardrailedClustering(0.9, cell_size=100).fit(X)
    assert est.n_cells_ >= 20


@pytest.mark.parametrize(
    ("X", "message"),
    [
        (np.zeros((0, 3)), "0 rows"),
        (np.array([[1.0, np.nan], [1.0, 0.0]]), "non-finite"),
        (np.array([[1.0, np.inf], [1.0, 0.0]]), "non-finite"),
        (np.array([[0.0, 0.0], [1.0, 0.0]]), "zero-norm"),
        (np.array([1.0, 2.0]), "2-D"),
        (np.array([["a", "b"]]), "dtype"),
    ],
)
def test_bad_embeddings_are_named(X: npt.NDArray[np.generic], message: str) -> None:
    with pytest.raises(ClusteringInputError, match=message):
        GuardrailedClustering(0.5).fit(X)


@pytest.mark.parametrize("alpha", [0.0, -0.1, 1.01, float("nan"), "x"])
def test_alpha_outside_unit_interval(alpha: object) -> None:
    with pytest.raises(ClusteringInputError, match="alpha"):
        GuardrailedClustering(alpha).fit(np.eye(3))  # type: ignore[arg-type]


def test_attribute_column_length_mismatch() -> None:
    with pytest.raises(ClusteringInputError, match="2 values but the embeddings have 3 rows"):
        GuardrailedClustering(0.5).fit(np.eye(3), {"a": ["x", "y"]})


def test_float_attributes_are_rejected() -> None:
    with pytest.raises(ClusteringInputError, match="matched exactly"):
        GuardrailedClustering(0.5).fit(np.eye(3), {"a": np.array([0.1, 0.2, 0.3])})


@pytest.mark.parametrize("n_jobs", [2, 3, -1])
def test_workers_do_not_change_the_result(blobs: Blobs, n_jobs: int) -> None:
    """k-means leaves and row chunks run on threads, cell covers on forked processes; every block computes
    the same values anyway."""
    X = blobs(6000, 24, k=15, spread=0.6, seed=5)
    attrs = {"lang": np.array(["en", "de"] * 3000)}
    one = GuardrailedClustering(0.75, cell_size=96, random_state=3).fit(X, attrs)
    many = GuardrailedClustering(0.75, cell_size=96, random_state=3, n_jobs=n_jobs).fit(X, attrs)
    assert one.n_cells_ > 20  # the parallel paths (cells, cover, row chunks) really ran
    assert one.n_clusters_before_cross_cell_ > one.n_clusters_
    assert np.array_equal(one.labels_, many.labels_)
    assert np.array_equal(one.representatives_, many.representatives_)
    assert np.array_equal(one.similarity_, many.similarity_)


@pytest.mark.parametrize("n_jobs", [0, -2, 1.5, True])
def test_bad_n_jobs_is_named(n_jobs: object) -> None:
    with pytest.raises(ClusteringInputError, match="n_jobs"):
        GuardrailedClustering(0.7, n_jobs=n_jobs).fit(np.eye(3))  # type: ignore[arg-type]


def test_get_and_set_params() -> None:
    est = GuardrailedClustering(0.6, cell_size=50)
    assert est.get_params()["cell_size"] == 50
    assert est.set_params(alpha=0.9).alpha == 0.9
    with pytest.raises(ClusteringInputError, match="unknown parameter"):
        est.set_params(bogus=1)


def test_peak_memory_is_this_process_not_the_parent_that_started_it() -> None:
    """Linux keeps ``ru_maxrss`` across fork + exec: a run started by a big process must not report it."""
    import subprocess
    import sys

    ballast = np.ones(500 * 2**20, dtype=np.uint8)  # 500 MiB resident in the parent
    code = "from quartermaster.clustering.summary import peak_memory_bytes; print(peak_memory_bytes())"
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(ballast.sum()) == ballast.size
    assert 0 < int(child.stdout) < 350 * 2**20
