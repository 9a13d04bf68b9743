"""Pure decision logic of the operator: diffs, hysteresis, conditions, ladders, result documents."""

from __future__ import annotations

import datetime
import json
from typing import Any

import numpy as np
import pytest

from quartermaster.api.catalog import ModelSpec
from quartermaster.api.pool import InferencePoolSpec
from quartermaster.api.poolstatus import PlannedClass, PlannedDeployment, PlanSummary
from quartermaster.operator.clusterresult import ClusterStats, ResultTooLargeError, build_result, parse_result
from quartermaster.operator.conditions import set_condition
from quartermaster.operator.horizon import adopt, recent_changes
from quartermaster.operator.rollout import diff
from quartermaster.operator.routerconfigmap import ladder

NOW = datetime.datetime(2026, 11, 22, 12, 0, tzinfo=datetime.UTC)


def deployment(name: str, replicas: int) -> PlannedDeployment:
    return PlannedDeployment(
        name=name,
        option=name,
        model="m",
        model_id="org/m",
        precision="bf16",
        node_pool="l40s",
        gpu_type="L40S",
        tensor_parallel=1,
        pipeline_parallel=1,
        replicas=replicas,
        gpus=replicas,
        cost_per_hour=2.0 * replicas,
        max_num_seqs=64,
    )


def summary(cost: float, replicas: dict[str, int], rate: float = 10.0, generation: int = 1) -> PlanSummary:
    return PlanSummary(
        hash=f"{cost}-{sorted(replicas.items())}",
        generation=generation,
        solver="agh",
        cost_per_hour=cost,
        solve_seconds=0.01,
        planned_at="2026-11-22T11:00:00Z",
        replicas=sum(replicas.values()),
        deployments=[deployment(n, r) for n, r in replicas.items()],
        classes=[PlannedClass(name="chat", rate=rate, shares={next(iter(replicas)): 1.0})],
    )


def live(name: str, replicas: int) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"replicas": replicas}}


def test_diff_lists_creates_scales_and_deletes() -> None:
    changes = diff(summary(10, {"a": 2, "b": 1}), [live("a", 1), live("c", 3)])
    assert changes == [
        {"action": "scale", "deployment": "a", "replicasFrom": 1, "replicasTo": 2},
        {"action": "create", "deployment": "b", "replicasFrom": 0, "replicasTo": 1},
        {"action": "delete", "deployment": "c", "replicasFrom": 3, "replicasTo": 0},
    ]


@pytest.fixture
def pool_spec() -> InferencePoolSpec:
    return InferencePoolSpec.model_validate(
        {
            "catalogRef": "c",
            "classes": [{"name": "chat", "rate": 10, "promptTokens": 100, "outputTokens": 100}],
            "nodePools": [{"name": "l40s", "gpuType": "L40S", "gpus": 4, "gpusPerNode": 4}],
            "planner": {"hysteresis": {"minSavingFraction": 0.1, "maxChangesPerHour": 2}},
        }
    )


def test_timer_replan_keeps_the_applied_plan_when_the_saving_is_small(pool_spec: InferencePoolSpec) -> None:
    current, cheaper = summary(10.0, {"a": 5}), summary(9.5, {"a": 4, "b": 1})
    adopted, why = adopt(pool_spec, current, cheaper, {}, 1, timer=True, now=NOW)
    assert not adopted
    assert "below 10%" in why
    adopted, _ = adopt(pool_spec, current, summary(8.0, {"b": 4}), {}, 1, timer=True, now=NOW)
    assert adopted


def test_spec_changes_and_slo_risk_bypass_hysteresis(pool_spec: InferencePoolSpec) -> None:
    current = summary(10.0, {"a": 5})
    adopted, why = adopt(pool_spec, current, summary(9.9, {"b": 5}), {}, 2, timer=True, now=NOW)
    assert adopted
    assert "spec changed" in why
    busier = summary(10.5, {"a": 6}, rate=20.0)
    adopted, why = adopt(pool_spec, current, busier, {}, 1, timer=True, now=NOW)
    assert adopted
    assert "SLO at risk" in why


def test_change_rate_cap_holds_back_saving_changes(pool_spec: InferencePoolSpec) -> None:
    history = {"changesApplied": ["2026-11-22T11:30:00Z", "2026-11-22T11:45:00Z", "2026-11-22T10:00:00Z"]}
    assert recent_changes(history, NOW) == ["2026-11-22T11:30:00Z", "2026-11-22T11:45:00Z"]
    current = summary(10.0, {"a": 5})
    adopted, why = adopt(pool_spec, current, summary(5.0, {"b": 2}), history, 1, timer=True, now=NOW)
    assert not adopted
    assert "cap" in why


def test_condition_transition_time_changes_only_with_status() -> None:
    first = set_condition([], "Applied", True, "AllAvailable", "", 1, "2026-01-01T00:00:00Z")
    again = set_condition(first, "Applied", True, "AllAvailable", "still", 2, "2026-01-02T00:00:00Z")
    flipped = set_condition(again, "Applied", False, "WaitingForAvailability", "", 3, "2026-01-03T00:00:00Z")
    assert again[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert again[0]["observedGeneration"] == 2
    assert flipped[0]["lastTransitionTime"] == "2026-01-03T00:00:00Z"


def model(name: str, params: float, error: float, **errors: float) -> ModelSpec:
    return ModelSpec.model_validate(
        {
            "name": name,
            "hfId": f"org/{name}",
            "paramsB": params,
            "layers": 32,
            "hiddenSize": 4096,
            "kvHeads": 8,
            "headDim": 128,
            "defaultError": error,
            "classErrors": errors,
        }
    )


def test_escalation_ladder_is_pareto_models_cheapest_first() -> None:
    models = [model("big", 70, 0.1), model("small", 8, 0.3), model("mid", 32, 0.35), model("huge", 400, 0.05)]
    assert ladder("chat", models) == ["small", "big", "huge"]  # mid is dominated by small
    assert ladder("math", [model("small", 8, 0.3, math=0.05), model("big", 70, 0.1)]) == ["small"]


def test_result_documents_round_trip_and_refuse_to_truncate() -> None:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(3, 16)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    clusters = [
        ClusterStats(0, 0.5, 100.0, 20.0),
        ClusterStats(4, 0.3, None, None),
        ClusterStats(7, 0.1, 50, 5),
    ]
    docs = build_result(
        clusters,
        emb,
        {"alpha": 0.8, "d": 16},
        total_rate=10.0,
        trimmed_share=0.1,
        default_tokens=(80.0, 10.0),
        chunk_names=["r-0"],
        max_bytes=10_000,
    )
    result = parse_result(docs.data)
    rates = {c.name: c.rate for c in result.classes}
    assert rates == pytest.approx({"cluster-0": 5.0, "cluster-4": 3.0, "cluster-7": 1.0, "default": 1.0})
    assert result.default_class == "default"
    assert result.ranges["cluster-4"] == (1, 1)
    assert result.representatives is not None
    np.testing.assert_allclose(result.representatives.decode(), emb, atol=2e-3)
    assert json.loads(docs.data["summary.json"])["alpha"] == 0.8
    with pytest.raises(ResultTooLargeError, match="maxRepresentativeBytes"):
        build_result(
            clusters,
            emb,
            {"alpha": 0.8},
            total_rate=1.0,
            trimmed_share=0.0,
            default_tokens=(None, None),
            chunk_names=["r-0"],
            max_bytes=64,
        )


def test_large_results_are_chunked_across_config_maps() -> None:
    emb = np.ones((1000, 384), dtype=np.float32) / np.sqrt(384)  # 768,000 bytes in float16
    clusters = [ClusterStats(i, 1 / 1000, None, None) for i in range(1000)]
    docs = build_result(
        clusters,
        emb,
        {"alpha": 0.9, "d": 384},
        total_rate=1.0,
        trimmed_share=0.0,
        default_tokens=(None, None),
        chunk_names=["r-0", "r-1", "r-2"],
        max_bytes=10**7,
    )
    assert len(docs.chunks) == 2
    reps = parse_result(docs.data).representatives
    assert reps is not None
    assert reps.storage == "configMaps"
    assert reps.config_maps == ["r-0", "r-1"]
    assert all(len(chunk) < 1_000_000 for chunk in docs.chunks)


def test_token_budget_caps_classes_and_abandons_the_least_valuable_when_scarce() -> None:
    from quartermaster.operator.budgets import ABANDONED_MAX_TOKENS, token_caps

    spec = InferencePoolSpec.model_validate(
        {
            "catalogRef": "c",
            "classes": [
                {"name": "short", "rate": 10, "promptTokens": 100, "outputTokens": 100},
                {"name": "long", "rate": 1, "promptTokens": 100, "outputTokens": 4000},
            ],
            "nodePools": [{"name": "l40s", "gpuType": "L40S", "gpus": 4, "gpusPerNode": 4}],
            "tokenBudget": 150,
        }
    )
    assert spec.classes is not None
    caps = token_caps(spec, list(spec.classes))
    assert caps is not None
    used = sum(c.rate * caps.max_tokens[c.name] for c in spec.classes if c.name not in caps.abandoned)
    assert used <= 150 * 11 + 1  # within the budget (ceil per class)
    assert caps.max_tokens["short"] >= 90  # the cheap, frequent class keeps most of its tokens
    assert "long" in caps.abandoned
    assert caps.max_tokens["long"] == ABANDONED_MAX_TOKENS
    assert {c.name: c.output_tokens for c in caps.classes}["long"] == ABANDONED_MAX_TOKENS
    no_budget = spec.model_copy(update={"token_budget": None})
    assert token_caps(no_budget, list(spec.classes)) is None
