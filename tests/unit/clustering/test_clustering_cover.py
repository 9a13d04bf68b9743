"""The greedy cover against the brute-force optimum, and exact ball decisions near the threshold."""

from __future__ import annotations

import itertools
import math

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st

from quartermaster.clustering.cover import ball_matrix, cover_cell
from quartermaster.clustering.greedy import greedy_set_cover
from quartermaster.clustering.similarity import Vectors, decide_pairs, float32_margin
from quartermaster.clustering.validation import normalized_float32


def _vectors(X: npt.NDArray[np.floating]) -> Vectors:
    unit, norms, _ = normalized_float32(X)
    return Vectors(unit32=unit, raw=X, norms=norms)


def _optimum(B: npt.NDArray[np.bool_]) -> int:
    """Smallest number of balls covering every row (exhaustive; tiny instances only)."""
    n = B.shape[0]
    for size in range(1, n + 1):
        for combo in itertools.combinations(range(n), size):
            if B[list(combo)].any(axis=0).all():
                return size
    raise AssertionError("the rows cover themselves, so a cover always exists")


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 10),
    d=st.integers(2, 6),
    alpha=st.floats(0.05, 0.95),
    seed=st.integers(0, 2**16),
)
def test_greedy_is_within_harmonic_bound_of_optimum(n: int, d: int, alpha: float, seed: int) -> None:
    X = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    vec = _vectors(X)
    rows = np.arange(n, dtype=np.int64)
    B = ball_matrix(vec, rows, alpha, float32_margin(d)).B
    reps, assignment = greedy_set_cover(B)
    opt = _optimum(B)
    assert opt <= reps.size <= (1 + math.log(n)) * opt
    # every row is covered by (inside the ball of) its assigned representative
    assert B[assignment, rows].all()
    assert (assignment[reps] == reps).all()


def test_greedy_picks_the_largest_ball_first() -> None:
    # a hub similar to everything and leaves similar only to the hub: one representative suffices
    B = np.eye(6, dtype=np.bool_)
    B[0, :] = B[:, 0] = True
    reps, assignment = greedy_set_cover(B)
    assert reps.tolist() == [0]
    assert (assignment == 0).all()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), d=st.integers(3, 64))
def test_pairs_at_the_threshold_are_decided_in_float64(seed: int, d: int) -> None:
    """alpha set exactly to a pair's float64 cosine: float32 cannot decide, float64 must (and agree)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((3, d))
    X[1] = X[0] + 0.3 * rng.standard_normal(d)
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    cos01 = float(unit[0] @ unit[1])
    vec = _vectors(X)
    rows = np.arange(3, dtype=np.int64)
    margin = float32_margin(d)
    for alpha, expected in ((cos01, True), (cos01 + 1e-9, False), (cos01 - 1e-9, True)):
        if not 0 < alpha <= 1:
            continue
        balls = ball_matrix(vec, rows, alpha, margin)
        p0, p1 = np.argsort(balls.order)[:2]  # positions of rows 0 and 1 in the ball matrix
        assert bool(balls.B[p0, p1]) is expected
        assert bool(balls.B[p1, p0]) is expected
        cover = cover_cell(vec, rows, alpha, margin, reassign=True)
        rep = cover.assignment
        cos = np.einsum("ij,ij->i", unit, unit[rep])
        assert (cos >= alpha - 1e-12).all()


def _reference_balls(X: npt.NDArray[np.floating], rows: npt.NDArray[np.int64], alpha: float) -> npt.NDArray:
    """Every pair decided from its float32 similarity, float64 inside the band (no angle bounds, no tiles)."""
    vec = _vectors(X)
    margin = float32_margin(X.shape[1])
    block = vec.unit32[rows]
    S = block @ block.T
    i, j = np.triu_indices(rows.size, 1)
    upper = decide_pairs(S[i, j], alpha, margin, vec, rows[i], rows[j])
    B = np.eye(rows.size, dtype=np.bool_)
    B[i, j] = B[j, i] = upper
    return B


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    alpha=st.floats(0.3, 0.99),
    spread=st.floats(0.02, 0.8),
    tile=st.sampled_from([1, 7, 32, 128]),
    d=st.sampled_from([2, 3, 24]),
)
def test_angle_bounds_skip_products_but_not_decisions(
    seed: int, alpha: float, spread: float, tile: int, d: int
) -> None:
    """The pruned, tiled ball matrix equals deciding every pair (tight blobs + outliers make pruning bite;
    in 2-3 dimensions the triangle inequality for angles is nearly tight, so a loose bound would show)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((3, d))
    X = centres[rng.integers(0, 3, size=150)] + spread * rng.standard_normal((150, d))
    X[rng.random(150) < 0.1] = rng.standard_normal((1, d)) * 3  # outliers far from every blob
    rows = np.sort(rng.choice(200, size=150, replace=False)).astype(np.int64)
    X_all = rng.standard_normal((200, d))
    X_all[rows] = X
    balls = ball_matrix(_vectors(X_all), rows, alpha, float32_margin(d), tile=tile)
    ordered = rows[balls.order]
    assert sorted(ordered.tolist()) == rows.tolist()
    assert (_reference_balls(X_all, ordered, alpha) == balls.B).all()
    assert (balls.B == balls.B.T).all()


def test_angle_bounds_prune_a_tight_blob() -> None:
    """A tight blob needs no similarity product at all; spread rows need them."""
    rng = np.random.default_rng(0)
    d = 32
    tight = rng.standard_normal(d) + 0.01 * rng.standard_normal((300, d))
    rows = np.arange(300, dtype=np.int64)
    balls = ball_matrix(_vectors(tight), rows, 0.7, float32_margin(d))
    assert balls.computed == 0
    assert balls.B.all()
    loose = rng.standard_normal((300, d))
    balls = ball_matrix(_vectors(loose), rows, 0.7, float32_margin(d))
    assert balls.computed >= 300 * 300 // 2
    assert (_reference_balls(loose, rows[balls.order], 0.7) == balls.B).all()


def _reference_greedy(B: npt.NDArray[np.bool_]) -> tuple[list[int], list[int]]:
    """Textbook greedy: largest count of uncovered rows first, ties to the lowest position."""
    uncovered = np.ones(B.shape[0], dtype=np.bool_)
    assignment = [-1] * B.shape[0]
    chosen: list[int] = []
    while uncovered.any():
        j = int(np.argmax((B & uncovered).sum(axis=1)))
        for u in np.flatnonzero(B[j] & uncovered).tolist():
            assignment[u] = j
        uncovered &= ~B[j]
        chosen.append(j)
    for j in chosen:
        assignment[j] = j
    return chosen, assignment


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), density=st.floats(0.0, 0.3), seed=st.integers(0, 2**16))
def test_greedy_matches_textbook_greedy_including_singleton_tail(n: int, density: float, seed: int) -> None:
    """The vectorised singleton tail makes exactly the textbook greedy's choices (sparse balls)."""
    rng = np.random.default_rng(seed)
    upper = np.triu(rng.random((n, n)) < density, 1)
    B = upper | upper.T
    np.fill_diagonal(B, True)
    reps, assignment = greedy_set_cover(B)
    ref_reps, ref_assignment = _reference_greedy(B)
    assert reps.tolist() == ref_reps
    assert assignment.tolist() == ref_assignment
