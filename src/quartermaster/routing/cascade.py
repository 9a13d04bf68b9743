"""Escalation cascade: threshold calibration and a simulator over labelled data.

A query starts at some level of a ladder (models ordered by cost, cheapest first). The answer of level
``l`` is accepted iff its estimator score ``>= threshold[l]``; otherwise the query is re-sent to level
``l+1``. The last level (or the level after ``max_escalations`` re-sends) is always accepted. Cost is the sum
of the costs of every call made (cheap call + escalation rate x strong call for a two-level ladder).

:func:`calibrate_threshold` picks, on validation data, the lowest escalation rate whose cascade accuracy
meets a target (absolute, or relative to always using the strong model).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from quartermaster.routing.errors import EstimatorError

log = logging.getLogger(__name__)
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class CascadeResult:
    """Accuracy, mean cost per query, share of queries escalated at least once, and calls per level."""

    accuracy: float
    mean_cost: float
    escalation_rate: float
    calls_per_level: tuple[float, ...]
    answered_by_level: tuple[float, ...]


def simulate_cascade(
    correct: npt.ArrayLike,
    cost: npt.ArrayLike,
    scores: npt.ArrayLike,
    thresholds: npt.ArrayLike | float,
    *,
    start: npt.ArrayLike | None = None,
    max_escalations: int | None = None,
) -> CascadeResult:
    """Simulate a ladder: ``correct``, ``cost``, ``scores`` are ``(queries, levels)``.

    ``scores[:, l]`` judges level ``l``'s answer; ``thresholds`` is one value or one per level; ``start`` is
    each query's first level (default 0, e.g. the Stage-1 routed model's position on its ladder).
    """
    y = np.asarray(correct, dtype=np.float64)
    c = np.asarray(cost, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 2 or c.shape != y.shape or s.shape != y.shape:
        raise EstimatorError(
            f"correct {y.shape}, cost {c.shape} and scores {s.shape} must share (queries, levels)"
        )
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(c)) and np.all(np.isfinite(s))):
        raise EstimatorError("cascade inputs must be finite (drop queries without labels for every level)")
    n, levels = y.shape
    th = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (levels,))
    level = np.zeros(n, dtype=np.int64) if start is None else np.asarray(start, dtype=np.int64).copy()
    if level.shape != (n,) or (level < 0).any() or (level >= levels).any():
        raise EstimatorError(f"start must hold one level in [0, {levels}) per query")
    first = level.copy()
    limit = levels - 1 if max_escalations is None else np.minimum(first + max_escalations, levels - 1)
    rows = np.arange(n)
    spent = c[rows, level].copy()
    calls = np.zeros(levels)
    np.add.at(calls, level, 1.0)
    active = np.ones(n, dtype=bool)
    for _ in range(levels):
        escalate = active & (level < limit) & (s[rows, level] < th[level])
        if not escalate.any():
            break
        level = np.where(escalate, level + 1, level)
        spent += np.where(escalate, c[rows, level], 0.0)
        np.add.at(calls, level[escalate], 1.0)
        active = escalate
    answered = np.bincount(level, minlength=levels) / max(n, 1)
    return CascadeResult(
        accuracy=float(y[rows, level].mean()) if n else 0.0,
        mean_cost=float(spent.mean()) if n else 0.0,
        escalation_rate=float((level > first).mean()) if n else 0.0,
        calls_per_level=tuple(float(v) / max(n, 1) for v in calls),
        answered_by_level=tuple(float(v) for v in answered),
    )


@dataclass(frozen=True)
class ThresholdChoice:
    """A calibrated threshold and its validation accuracy, escalation rate and whether the target was met."""

    threshold: float
    accuracy: float
    escalation_rate: float
    target: float
    met: bool


def calibrate_threshold(
    scores: npt.ArrayLike,
    cheap_correct: npt.ArrayLike,
    strong_correct: npt.ArrayLike,
    *,
    target_accuracy: float | None = None,
    target_relative: float | None = None,
) -> ThresholdChoice:
    """The lowest escalation rate (accept iff score >= threshold) whose validation accuracy meets the target.

    Give ``target_accuracy`` (absolute) or ``target_relative`` (fraction of the strong model's accuracy). When
    no threshold meets it, warns and returns the most accurate threshold (``met=False``). Thresholds lie in
    [0, 1]; a threshold of 1.0 still accepts answers scored exactly 1.0.
    """
    s = np.asarray(scores, dtype=np.float64)
    yc = np.asarray(cheap_correct, dtype=np.float64)
    ys = np.asarray(strong_correct, dtype=np.float64)
    if not (s.shape == yc.shape == ys.shape) or s.ndim != 1 or len(s) == 0:
        raise EstimatorError(
            "scores, cheap_correct and strong_correct must be equal-length non-empty vectors"
        )
    if not np.all(np.isfinite(s)) or (s < 0).any() or (s > 1).any():
        raise EstimatorError("scores must be probabilities in [0, 1]")
    for name, v in (("cheap_correct", yc), ("strong_correct", ys)):
        if not np.all((v == 0) | (v == 1)):
            raise EstimatorError(f"{name} must be 0/1 labels")
    if (target_accuracy is None) == (target_relative is None):
        raise EstimatorError("give exactly one of target_accuracy or target_relative")
    target = (
        float(target_accuracy) if target_accuracy is not None else float(target_relative or 0) * ys.mean()
    )
    order = np.argsort(s, kind="stable")
    ss, dc, ds = s[order], yc[order], ys[order]
    n = len(s)
    # Escalating the k lowest-scored queries; only k at score boundaries are realisable by a threshold.
    acc = (yc.sum() + np.concatenate([[0.0], np.cumsum(ds - dc)])) / n
    ks = np.array([0, *(np.flatnonzero(np.diff(ss) > 0) + 1).tolist(), n])
    thresholds = np.array([0.0, *ss[ks[1:-1]].tolist(), 1.0])
    ok = np.flatnonzero(acc[ks] >= target - 1e-12)
    if len(ok):
        i = int(ok[0])
        met = True
    else:
        i = int(np.argmax(acc[ks]))
        met = False
        log.warning(
            "no threshold reaches accuracy %.4f (best %.4f); using the most accurate", target, acc[ks][i]
        )
    return ThresholdChoice(
        threshold=float(thresholds[i]),
        accuracy=float(acc[ks[i]]),
        escalation_rate=float(ks[i] / n),
        target=target,
        met=met,
    )
