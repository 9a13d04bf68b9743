"""Lazy greedy and peeling change how many similarities a cell needs, never the cover's choices."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st

from quartermaster.clustering.angles import angle_bounds, mean_direction
from quartermaster.clustering.cover import _ordered, cover_cell
from quartermaster.clustering.greedy import greedy_set_cover
from quartermaster.clustering.lazygreedy import Decide, lazy_greedy
from quartermaster.clustering.peel import peel
from quartermaster.clustering.similarity import Vectors, decide_pairs, float32_margin
from quartermaster.clustering.validation import normalized_float32


def _vectors(X: npt.NDArray[np.floating]) -> Vectors:
    unit, norms, _ = normalized_float32(X)
    return Vectors(unit32=unit, raw=X, norms=norms)


def _reference_balls(vec: Vectors, rows: npt.NDArray[np.int64], alpha: float) -> npt.NDArray[np.bool_]:
    """Every pair decided from its float32 similarity, float64 inside the band."""
    margin = float32_margin(vec.d)
    block = vec.unit32[rows]
    S = block @ block.T
    i, j = np.triu_indices(rows.size, 1)
    B = np.eye(rows.size, dtype=np.bool_)
    B[i, j] = B[j, i] = decide_pairs(S[i, j], alpha, margin, vec, rows[i], rows[j])
    return B


def _families(seed: int, d: int, n: int, spread: float, outliers: float) -> npt.NDArray[np.float64]:
    """Well-separated families of near-duplicates (Zipf-sized) plus one-off rows."""
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 6))
    sizes = rng.multinomial(n, 1.0 / np.arange(1, k + 1) / np.sum(1.0 / np.arange(1, k + 1)))
    centres = rng.standard_normal((k, d))
    X = np.concatenate([centres[f] + spread * rng.standard_normal((s, d)) for f, s in enumerate(sizes)])
    X[rng.random(n) < outliers] = rng.standard_normal((1, d)) * 3
    return X[rng.permutation(n)]


def _decider(vec: Vectors, rows: npt.NDArray[np.int64], alpha: float) -> Decide:
    """Exact decisions of every pair of a product block (float64 for all pairs inside the band)."""
    margin = float32_margin(vec.d)

    def decide(
        S: npt.NDArray[np.float32], p: npt.NDArray[np.int64], q: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        a, b = np.meshgrid(p, q, indexing="ij")
        return decide_pairs(S.ravel(), alpha, margin, vec, rows[a.ravel()], rows[b.ravel()]).reshape(S.shape)

    return decide


def _lazy_inputs(
    vec: Vectors, rows: npt.NDArray[np.int64], alpha: float
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Rows in angle order to their mean, with the range outside which the bounds exclude a ball."""
    cell = _ordered(rows, vec.unit32[rows], alpha, float32_margin(vec.d))
    return cell.block, cell.rows, cell.lo, cell.hi


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    alpha=st.floats(0.5, 0.95),
    spread=st.floats(0.01, 0.4),
    outliers=st.floats(0.0, 0.2),
    d=st.sampled_from([2, 3, 24, 64]),
)
def test_lazy_greedy_makes_the_textbook_choices(
    seed: int, alpha: float, spread: float, outliers: float, d: int
) -> None:
    vec = _vectors(_families(seed, d, 120, spread, outliers))
    block, rows, lo, hi = _lazy_inputs(vec, np.arange(120, dtype=np.int64), alpha)
    B = _reference_balls(vec, rows, alpha)
    result = lazy_greedy(block, lo, hi, _decider(vec, rows, alpha), budget=200, hopeless=0.0)
    assert result is not None  # with the budget of every row it always finishes
    reps, assignment, computed = result
    ref_reps, ref_assignment = greedy_set_cover(B)
    assert reps.tolist() == ref_reps.tolist()
    assert assignment.tolist() == ref_assignment.tolist()
    assert computed <= 2 * 120 * 120  # every ball row at most, plus the final columns


def test_lazy_greedy_needs_few_products_on_one_family_and_gives_up_on_spread_rows() -> None:
    rng = np.random.default_rng(1)
    d = 64
    family = rng.standard_normal(d) + 0.05 * rng.standard_normal((300, d))
    X = np.concatenate([family, 3 * rng.standard_normal((20, d))])  # plus one-off rows far away
    vec = _vectors(X)
    block, rows, lo, hi = _lazy_inputs(vec, np.arange(320, dtype=np.int64), 0.7)
    cover = cover_cell(vec, np.arange(320, dtype=np.int64), 0.7, float32_margin(d), reassign=True)
    assert cover.representatives.size == 21
    result = lazy_greedy(block, lo, hi, _decider(vec, rows, 0.7))
    assert result is not None
    assert result[2] < 320 * 320 // 4  # one ball row, then the 20 outliers' columns
    spread = _vectors(rng.standard_normal((300, d)))
    block, rows, lo, hi = _lazy_inputs(spread, np.arange(300, dtype=np.int64), 0.3)
    assert lazy_greedy(block, lo, hi, _decider(spread, rows, 0.3)) is None


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    alpha=st.floats(0.3, 0.95),
    spread=st.floats(0.01, 0.5),
    outliers=st.floats(0.0, 0.3),
    d=st.sampled_from([2, 3, 24, 64]),
    min_part=st.sampled_from([2, 8, 32]),
)
def test_peeled_parts_are_never_crossed_by_a_ball(
    seed: int, alpha: float, spread: float, outliers: float, d: int, min_part: int
) -> None:
    """In 2-3 dimensions the triangle inequality for angles is nearly tight: a loose gap test would show."""
    vec = _vectors(_families(seed, d, 200, spread, outliers))
    rows = np.arange(200, dtype=np.int64)
    parts = [part.positions for part in peel(vec.unit32, alpha, float32_margin(d), min_part=min_part)]
    assert sorted(np.concatenate(parts).tolist()) == rows.tolist()
    B = _reference_balls(vec, rows, alpha)
    label = np.empty(200, dtype=np.int64)
    for k, part in enumerate(parts):
        label[part] = k
    i, j = np.nonzero(B)
    assert (label[i] == label[j]).all()


def test_peeling_splits_separated_families_and_the_cover_is_greedy_on_each_part() -> None:
    rng = np.random.default_rng(3)
    d = 96
    X = np.concatenate(
        [
            c + 0.04 * rng.standard_normal((s, d))
            for c, s in zip(rng.standard_normal((4, d)), (200, 120, 80, 40), strict=True)
        ]
        + [rng.standard_normal((30, d))]
    )[rng.permutation(470)]
    rows = np.sort(rng.choice(600, 470, replace=False)).astype(np.int64)
    wide = rng.standard_normal((600, d))  # rows of other cells
    wide[rows] = X
    vec = _vectors(wide)
    margin = float32_margin(d)
    block = vec.unit32[rows]
    parts = peel(block, 0.7, margin)
    assert len(parts) >= 4
    for lazy in (True, False):
        whole = cover_cell(vec, rows, 0.7, margin, reassign=False, lazy_first=lazy)
        for part in parts:  # the textbook greedy on the part, ties to the row nearest its pivot (or mean)
            at = part.positions
            if part.bounds is None:
                at = at[angle_bounds(block[at], mean_direction(block[at]), margin)[0]]
            reps, first = greedy_set_cover(_reference_balls(vec, rows[at], 0.7))
            assert whole.assignment[at].tolist() == rows[at][first].tolist()
            assert set(rows[at][reps].tolist()) <= set(whole.representatives.tolist())
    unpeeled = cover_cell(vec, rows, 0.7, margin, reassign=True, peel_first=False, lazy_first=False)
    assert whole.representatives.size == unpeeled.representatives.size


def test_peeling_keeps_a_row_just_inside_the_ball_with_its_family() -> None:
    """On a circle the angle bound is nearly exact: a row arccos(alpha) - 0.002 rad from a tight family must
    stay with it (a gap test loosened by 0.01 rad cuts it off), and a family 0.9 rad further on is cut off."""
    alpha = 0.7
    limit = math.acos(alpha)
    family = np.linspace(0.0, 0.001, 1000)
    near = 0.001 + limit - 0.002
    angles = np.concatenate([family, [near], near + 0.9 + np.linspace(0.0, 0.05, 20)])
    X = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    vec = _vectors(X)
    parts = peel(vec.unit32, alpha, float32_margin(2), min_part=2)
    assert sorted(len(p.positions) for p in parts) == [20, 1001]
    assert float(np.cos(angles[999] - near)) >= alpha  # the row really is inside the last family row's ball
