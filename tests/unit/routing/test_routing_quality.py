"""Quality estimators, threshold calibration and the cascade simulator."""

from __future__ import annotations

import json
import logging
import pickle
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quartermaster.routing.cascade import calibrate_threshold, simulate_cascade
from quartermaster.routing.errors import EstimatorError
from quartermaster.routing.quality import (
    HeuristicEstimator,
    HttpJudgeEstimator,
    QualityEstimator,
    TrainedEstimator,
    load_estimator,
    score_all,
)


def _synthetic(n: int, seed: int) -> tuple[list[str], list[str], list[int], np.ndarray]:
    """Answers from a weak model: hedged or long-winded answers on 'hard' topics are mostly wrong."""
    rng = np.random.default_rng(seed)
    qs, ans, toks, y = [], [], [], []
    for _ in range(n):
        hard = rng.random() < 0.4
        topic = rng.choice(
            ["calculus proof", "organic chemistry"] if hard else ["capital city", "simple sum"]
        )
        ok = rng.random() < (0.3 if hard else 0.9)
        hedge = "I think it might be " if (not ok and rng.random() < 0.7) else "The answer is "
        qs.append(f"Question on {topic}: item {rng.integers(1000)}")
        ans.append(hedge + str(rng.integers(100)))
        toks.append(int(rng.integers(200, 400) if hard else rng.integers(20, 80)))
        y.append(int(ok))
    return qs, ans, toks, np.array(y)


def test_estimators_satisfy_the_protocol() -> None:
    assert isinstance(HeuristicEstimator(), QualityEstimator)
    assert isinstance(TrainedEstimator(), QualityEstimator)
    judge = HttpJudgeEstimator("http://127.0.0.1:9/judge")
    assert isinstance(judge, QualityEstimator)
    judge.close()


def test_heuristic_ranks_refusals_and_truncation_below_plain_answers() -> None:
    h = HeuristicEstimator(max_tokens=100)
    plain = h.score("What is 2+2?", "The answer is 4.", 6)
    assert h.score("What is 2+2?", "I'm sorry, I cannot answer that.", 8) < plain
    assert h.score("What is 2+2?", "I think it might be 4, maybe 5.", 10) < plain
    assert h.score("What is 2+2?", "Let us consider the sum", 100) < plain
    assert h.score("What is 2+2?", "   ", 0) == 0.0
    assert 0.0 <= plain <= 1.0


def test_trained_estimator_learns_save_load_and_thread_safety(tmp_path: Path) -> None:
    qs, ans, toks, y = _synthetic(600, 0)
    est = TrainedEstimator(random_state=0).fit(qs, ans, toks, y)
    tq, ta, tt, ty = _synthetic(400, 1)
    p = est.score_many(tq, ta, tt)
    # Ranking quality on held-out answers: correct answers score higher on average (AUC > 0.8).
    pos, neg = p[ty == 1], p[ty == 0]
    auc = float((pos[:, None] > neg[None, :]).mean())
    assert auc > 0.8
    assert np.all((p >= 0) & (p <= 1))
    path = tmp_path / "qe.pkl"
    est.save(path)
    loaded = load_estimator(path)
    np.testing.assert_allclose(loaded.score_many(tq, ta, tt), p)
    with ThreadPoolExecutor(4) as pool:
        par = list(pool.map(lambda i: loaded.score(tq[i], ta[i], tt[i]), range(100)))
    np.testing.assert_allclose(par, p[:100])
    np.testing.assert_allclose(score_all(HeuristicEstimator(), tq[:5], ta[:5], tt[:5]).shape, (5,))


def test_estimator_artefact_checks(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(pickle.dumps({"format": "other"}))
    with pytest.raises(EstimatorError, match="format"):
        load_estimator(bad)
    qs, ans, toks, y = _synthetic(100, 2)
    good = tmp_path / "good.pkl"
    TrainedEstimator().fit(qs, ans, toks, y).save(good)
    payload = pickle.loads(good.read_bytes())
    payload["sklearn"] = "0.0.1"
    good.write_bytes(pickle.dumps(payload))
    with pytest.raises(EstimatorError, match=r"scikit-learn 0\.0\.1"):
        load_estimator(good)
    with pytest.raises(EstimatorError, match="does not exist"):
        load_estimator(tmp_path / "none.pkl")
    with pytest.raises(EstimatorError, match="both correct and incorrect"):
        TrainedEstimator().fit(qs, ans, toks, np.ones(len(qs)))
    with pytest.raises(EstimatorError, match="0/1"):
        TrainedEstimator().fit(qs, ans, toks, np.full(len(qs), 0.5))
    with pytest.raises(EstimatorError, match="not trained"):
        TrainedEstimator().score("q", "a", 1)


def test_http_judge_reads_the_probability_and_applies_on_error(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        if body["answer"] == "boom":
            return httpx.Response(500)
        if body["answer"] == "weird":
            return httpx.Response(200, json={"accept_probability": 7})
        return httpx.Response(200, json={"accept_probability": 0.25})

    judge = HttpJudgeEstimator("http://judge.local/score", transport=httpx.MockTransport(handler))
    assert judge.score("q", "a", 3) == 0.25
    assert seen[0] == {"question": "q", "answer": "a", "tokens": 3}
    with caplog.at_level(logging.WARNING):
        assert judge.score("q", "boom", 3) == 1.0
        assert judge.score("q", "weird", 3) == 1.0
    assert "judge.local" in caplog.text
    strict = HttpJudgeEstimator(
        "http://judge.local/score", on_error="escalate", transport=httpx.MockTransport(handler)
    )
    assert strict.score("q", "boom", 3) == 0.0
    with pytest.raises(EstimatorError, match="http"):
        HttpJudgeEstimator("ftp://x")


def test_calibration_meets_the_target_with_the_fewest_escalations() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.9, 0.95, 0.99])
    cheap = np.array([0, 0, 1, 0, 1, 1, 1, 1])
    strong = np.array([1, 1, 1, 1, 1, 1, 0, 1])
    choice = calibrate_threshold(scores, cheap, strong, target_accuracy=0.8)
    assert choice.met
    assert choice.threshold == pytest.approx(0.3)  # escalating only 0.1 gives 6/8 < 0.8; 0.1 and 0.2 give 7/8
    assert choice.escalation_rate == pytest.approx(0.25)
    r = simulate_cascade(
        np.c_[cheap, strong], np.c_[np.ones(8), np.full(8, 10.0)], np.c_[scores, scores], choice.threshold
    )
    assert r.accuracy == pytest.approx(choice.accuracy)
    assert r.mean_cost == pytest.approx(1 + 0.25 * 10)
    rel = calibrate_threshold(scores, cheap, strong, target_relative=1.0)
    assert rel.accuracy >= strong.mean() - 1e-12
    assert rel.met
    with pytest.raises(EstimatorError, match="exactly one"):
        calibrate_threshold(scores, cheap, strong)
    with pytest.raises(EstimatorError, match="0/1"):
        calibrate_threshold(scores, cheap * 0.5, strong, target_accuracy=0.5)


def test_unreachable_target_warns_and_takes_the_best(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        c = calibrate_threshold([0.2, 0.8], [0, 1], [0, 0], target_accuracy=0.9)
    assert not c.met
    assert c.accuracy == 0.5
    assert "no threshold" in caplog.text


@settings(max_examples=40, deadline=None)
@given(data=st.data(), n=st.integers(1, 30), levels=st.integers(1, 4))
def test_cascade_accounting(data: st.DataObject, n: int, levels: int) -> None:
    y = np.array(data.draw(st.lists(st.integers(0, 1), min_size=n * levels, max_size=n * levels)))
    s = np.array(data.draw(st.lists(st.floats(0, 1), min_size=n * levels, max_size=n * levels)))
    y, s = y.reshape(n, levels), s.reshape(n, levels)
    cost = np.tile(np.arange(1, levels + 1, dtype=float), (n, 1))
    t = data.draw(st.floats(0, 1))
    r = simulate_cascade(y, cost, s, t)
    assert 0 <= r.escalation_rate <= 1
    assert sum(r.answered_by_level) == pytest.approx(1.0)
    # Cost = sum over levels of (share of queries calling that level) x its cost.
    assert r.mean_cost == pytest.approx(sum(c * (k + 1) for k, c in enumerate(r.calls_per_level)))
    never = simulate_cascade(y, cost, s, 0.0)
    assert never.escalation_rate == 0
    assert never.accuracy == pytest.approx(y[:, 0].mean())
    always = simulate_cascade(y, cost, s, 1.1)
    assert always.accuracy == pytest.approx(y[:, -1].mean())
    one = simulate_cascade(y, cost, s, 1.1, max_escalations=1)
    assert one.accuracy == pytest.approx(y[:, min(1, levels - 1)].mean())
