"""The router with the routing package's quality estimators: heuristic, trained artefact, bad artefact."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from quartermaster.api.routerconfig import QualityEstimatorSpec, RouterConfig
from quartermaster.router.stub import Server, StubOpenAI
from quartermaster.routing.quality import HeuristicEstimator, TrainedEstimator

Start = Callable[[Any], Server]
HDR = {"X-Quartermaster-Cluster": "c"}


def _answer(model: str, prompt: str) -> str:
    if "hard" in prompt:
        return (
            "I'm sorry, I cannot answer that."
            if model == "cheap"
            else "The answer is 42, because six times seven."
        )
    return f"The answer is {len(prompt)}."


@pytest.fixture
def ladder(servers: Start, kit: SimpleNamespace) -> SimpleNamespace:
    cheap, strong = StubOpenAI("cheap", answer=_answer), StubOpenAI("strong", answer=_answer)
    cheap_url, strong_url = servers(cheap.app()).url + "/v1", servers(strong.app()).url + "/v1"

    def config(spec: QualityEstimatorSpec, generation: int = 1) -> RouterConfig:
        return kit.build_config(
            {"c": [kit.target("cheap", cheap_url)]},
            ladder=["cheap", "strong"],
            escalation_targets=[kit.target("strong", strong_url)],
            max_tokens=200,
            threshold=0.5,
            estimator=spec,
            generation=generation,
        )

    return SimpleNamespace(cheap=cheap, strong=strong, config=config)


def test_heuristic_estimator_escalates_refusals(
    servers: Start, kit: SimpleNamespace, tmp_path: Path, ladder: SimpleNamespace
) -> None:
    router, _ = kit.start_router(
        servers, tmp_path / "cfg.json", ladder.config(QualityEstimatorSpec(kind="heuristic"))
    )
    with httpx.Client(base_url=router.url) as c:
        easy = c.post("/v1/chat/completions", json=kit.chat("what is two plus two"), headers=HDR)
        hard = c.post("/v1/chat/completions", json=kit.chat("a hard question"), headers=HDR)
    # the routing package's estimator is what decided
    est = HeuristicEstimator(max_tokens=200)
    assert est.score("what is two plus two", _answer("cheap", "what is two plus two"), 5) >= 0.5
    assert est.score("a hard question", _answer("cheap", "a hard question"), 7) < 0.5
    assert easy.headers["x-quartermaster-model"] == "cheap"
    assert easy.headers["x-quartermaster-escalated"] == "false"
    assert hard.headers["x-quartermaster-model"] == "strong"
    assert hard.headers["x-quartermaster-escalated"] == "true"
    assert hard.json()["choices"][0]["message"]["content"].startswith("The answer is 42")


def _train(path: Path) -> TrainedEstimator:
    questions = [f"question {i}" for i in range(40)]
    good = [f"The answer is {i}." for i in range(20)]
    bad = ["I'm sorry, I cannot answer that." for _ in range(20)]
    est = TrainedEstimator(n_features=256, random_state=0).fit(
        questions, good + bad, [5] * 20 + [7] * 20, [1] * 20 + [0] * 20
    )
    est.save(path)
    return est


def test_trained_estimator_artifact_is_loaded_and_used(
    servers: Start, kit: SimpleNamespace, tmp_path: Path, ladder: SimpleNamespace
) -> None:
    artifact = tmp_path / "estimator.pkl"
    est = _train(artifact)
    spec = QualityEstimatorSpec(kind="trained", artifact_path=str(artifact))
    router, _ = kit.start_router(servers, tmp_path / "cfg.json", ladder.config(spec))
    with httpx.Client(base_url=router.url) as c:
        for prompt in ("easy one", "a hard one"):
            r = c.post("/v1/chat/completions", json=kit.chat(prompt), headers=HDR)
            cheap_answer = _answer("cheap", prompt)
            p = est.score(prompt, cheap_answer, len(cheap_answer.split()))
            expected = "cheap" if p >= 0.5 else "strong"
            assert r.headers["x-quartermaster-model"] == expected, (prompt, p)
        assert {h["body"]["messages"][0]["content"] for h in ladder.strong.received()} == {"a hard one"}


def test_unloadable_artifact_keeps_the_last_good_config(
    servers: Start, kit: SimpleNamespace, tmp_path: Path, ladder: SimpleNamespace
) -> None:
    path = tmp_path / "cfg.json"
    router, _ = kit.start_router(servers, path, ladder.config(QualityEstimatorSpec(kind="heuristic")))
    with httpx.Client(base_url=router.url) as c:
        good = c.get("/readyz").json()["configVersion"]
        missing = QualityEstimatorSpec(kind="trained", artifact_path=str(tmp_path / "nope.pkl"))
        kit.write_config(path, ladder.config(missing, generation=2))
        kit.wait_until(lambda: c.get("/readyz").json()["status"] == "degraded", what="rejected update")
        ready = c.get("/readyz").json()
        assert ready["configVersion"] == good
        assert "artifactPath" in ready["lastError"]
        assert "nope.pkl" in ready["lastError"]
        r = c.post("/v1/chat/completions", json=kit.chat("a hard one"), headers=HDR)
        assert r.headers["x-quartermaster-escalated"] == "true"  # still the heuristic of the good config
