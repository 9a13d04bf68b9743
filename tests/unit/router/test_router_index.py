"""Nearest-representative index: exact top-1, the alpha threshold, the default cluster, bad vectors."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from quartermaster.router.index import RepresentativeIndex, RepresentativeIndexError


def _unit_rows(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 60),
    d=st.integers(2, 24),
    seed=st.integers(0, 2**31),
    alpha=st.floats(-1.0, 1.0),
    precision=st.sampled_from(["float16", "float32"]),
)
@example(n=7, d=15, seed=15, alpha=0.0, precision="float16")  # faiss rounds a component unlike numpy
def test_assignment_is_the_thresholded_argmax_of_cosine_similarity(
    n: int, d: int, seed: int, alpha: float, precision: Literal["float16", "float32"]
) -> None:
    reps = _unit_rows(n, d, seed)
    labels = [f"c{i % 5}" for i in range(n)]
    index = RepresentativeIndex(
        reps * 3.0, labels, alpha=alpha, default_cluster="default", precision=precision
    )
    # what the index keeps: faiss' own float16 encoding (its rounding can differ from numpy's by an ulp)
    stored = index._index.reconstruct_n(0, n).astype(np.float64)
    assert np.allclose(stored, reps.astype(np.float32).astype(precision), atol=2e-3)
    queries = np.random.default_rng(seed + 1).normal(size=(8, d))
    for q, a in zip(queries, index.assign_many(queries), strict=True):
        sims = stored @ (q / np.linalg.norm(q))
        best = float(sims.max())
        assert a.similarity == pytest.approx(best, abs=1e-5)
        assert sims[a.representative] == pytest.approx(best, abs=1e-5)
        if best >= alpha + 1e-5:
            assert a.in_distribution
            assert a.cluster == labels[a.representative]
        elif best < alpha - 1e-5:
            assert not a.in_distribution
            assert a.cluster == "default"


@pytest.mark.parametrize(("precision", "tol"), [("float32", 1e-6), ("float16", 1e-3)])
def test_query_on_a_representative_gets_its_cluster_and_far_queries_the_default(
    precision: Literal["float16", "float32"], tol: float
) -> None:
    reps = _unit_rows(10, 8, 0)
    labels = ["a"] * 5 + ["b"] * 5
    index = RepresentativeIndex(reps, labels, alpha=0.9, default_cluster="ood", precision=precision)
    assert index.assign(reps[7]).cluster == "b"
    assert index.assign(reps[7]).similarity == pytest.approx(1.0, abs=tol)
    # a vector orthogonal to every representative is out of distribution
    q = np.linalg.svd(reps)[2][-1]
    a = index.assign(q)
    assert (a.cluster, a.in_distribution) == ("ood", False)


def test_empty_index_sends_everything_to_the_default_cluster() -> None:
    index = RepresentativeIndex(np.zeros((0, 0)), [], alpha=0.5, default_cluster="d")
    a = index.assign(np.ones(4))
    assert (a.cluster, a.representative, a.in_distribution) == ("d", -1, False)


@pytest.mark.parametrize(
    ("query", "match"),
    [
        (np.ones(5), "dimensions"),
        (np.zeros(8), "all-zero"),
        (np.array([np.nan] * 8), "NaN"),
    ],
)
def test_bad_query_vectors_are_rejected_with_the_fix(query: np.ndarray, match: str) -> None:
    index = RepresentativeIndex(_unit_rows(3, 8, 1), ["a", "b", "c"], alpha=0.5, default_cluster="a")
    with pytest.raises(RepresentativeIndexError, match=match):
        index.assign(query)


def test_mismatched_labels_and_bad_alpha_are_rejected() -> None:
    with pytest.raises(RepresentativeIndexError, match="one cluster label per representative"):
        RepresentativeIndex(_unit_rows(3, 4, 0), ["a"], alpha=0.5, default_cluster="a")
    with pytest.raises(RepresentativeIndexError, match="alpha"):
        RepresentativeIndex(_unit_rows(3, 4, 0), ["a"] * 3, alpha=1.5, default_cluster="a")


@settings(max_examples=20, deadline=None)
@given(arrays(np.float32, (4, 6), elements=st.floats(-10, 10, width=32)))
def test_search_never_returns_more_than_unit_similarity(rows: np.ndarray) -> None:
    rows = rows.copy()
    rows[np.linalg.norm(rows, axis=1) < 1e-3] = 1.0  # a zero vector has no direction (tested above)
    index = RepresentativeIndex(
        _unit_rows(20, 6, 3), [str(i) for i in range(20)], alpha=0.0, default_cluster="0"
    )
    sims, _ = index.search(rows)
    assert np.all(sims <= 1.0 + 1e-5)
    assert np.all(sims >= -1.0 - 1e-5)


def test_hnsw_search_finds_well_separated_clusters_and_reports_exact_similarity() -> None:
    rng = np.random.default_rng(5)
    centres = _unit_rows(20, 32, 11)
    reps = np.concatenate([c + 0.05 * rng.normal(size=(30, 32)) for c in centres])
    labels = [f"c{i}" for i in range(20) for _ in range(30)]
    exact = RepresentativeIndex(reps, labels, alpha=0.5, default_cluster="d", precision="float32")
    hnsw = RepresentativeIndex(reps, labels, alpha=0.5, default_cluster="d", search="hnsw", hnsw_ef_search=32)
    queries = np.concatenate([centres + 0.05 * rng.normal(size=centres.shape), _unit_rows(5, 32, 99)])
    a_exact, a_hnsw = exact.assign_many(queries), hnsw.assign_many(queries)
    assert [a.cluster for a in a_hnsw] == [a.cluster for a in a_exact]
    unit = reps / np.linalg.norm(reps, axis=1, keepdims=True)
    for q, a in zip(queries, a_hnsw, strict=True):
        assert a.similarity == pytest.approx(
            float(unit[a.representative] @ (q / np.linalg.norm(q))), abs=1e-5
        )
    with pytest.raises(RepresentativeIndexError, match="efSearch"):
        RepresentativeIndex(reps, labels, alpha=0.5, default_cluster="d", search="hnsw", hnsw_ef_search=0)
