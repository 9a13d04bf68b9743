"""Bad input and infeasible instances raise typed errors that name the field and the binding constraint."""

from __future__ import annotations

import pytest

from quartermaster.api.catalog import ModelCatalogSpec
from quartermaster.api.pool import InferencePoolSpec
from quartermaster.planner import solve
from quartermaster.planner.errors import (
    BudgetInfeasibleError,
    InfeasibleError,
    InvalidSpecError,
    UnknownGpuTypeError,
    UnknownModelError,
)
from quartermaster.planner.explain import explain_infeasibility, explain_rejections
from quartermaster.planner.instance import Instance

from .conftest import build, model, pool, qclass


def _specs(**pool_extra: object) -> tuple[ModelCatalogSpec, InferencePoolSpec]:
    catalog = ModelCatalogSpec(models=[model("m"), model("q", "qwen-7b", error=0.1)])
    spec = InferencePoolSpec(
        catalog_ref="c",
        classes=[qclass("chat", 2.0)],
        node_pools=[pool("l40s")],
        **pool_extra,  # type: ignore[arg-type]
    )
    return catalog, spec


def test_unknown_gpu_type_names_the_field_and_the_choices() -> None:
    catalog, spec = _specs()
    bad = spec.model_copy(update={"node_pools": [pool("x", "B300")]})
    with pytest.raises(UnknownGpuTypeError) as info:
        Instance.from_specs(catalog, bad)
    assert info.value.field == "spec.nodePools[0].gpuType"
    assert "'B300'" in str(info.value)
    assert "H100-80GB" in str(info.value)


def test_gpu_aliases_from_the_price_table_are_accepted() -> None:
    catalog, spec = _specs()
    alias = spec.model_copy(update={"node_pools": [pool("x", "H100-SXM", gpus=8, per_node=8)]})
    assert Instance.from_specs(catalog, alias).tiers[0].gpu.name == "H100-80GB"


def test_unknown_model_names_the_field() -> None:
    catalog, spec = _specs(models=["m", "llama-405b"])
    with pytest.raises(UnknownModelError) as info:
        Instance.from_specs(catalog, spec)
    assert info.value.field == "spec.models[1]"
    assert "llama-405b" in str(info.value)
    assert "ModelCatalog 'c'" in str(info.value)


def test_classes_from_without_classes() -> None:
    catalog = ModelCatalogSpec(models=[model("m")])
    spec = InferencePoolSpec(catalog_ref="c", classes_from="job", node_pools=[pool("l40s")])
    with pytest.raises(InvalidSpecError, match="classesFrom='job': no query classes given"):
        Instance.from_specs(catalog, spec)


def test_negative_rates_are_refused_when_replaying() -> None:
    inst = build([model("m")], [pool("l")], [qclass("chat", 1.0)])
    with pytest.raises(InvalidSpecError, match=r"class 'chat': rate=-1\.0"):
        inst.with_rates([-1.0])


def test_no_option_meets_ttft_explains_the_best_one() -> None:
    inst = build(
        [model("m")],
        [pool("l"), pool("h", "H100-80GB", gpus=8, per_node=8)],
        [qclass("chat", 1.0, 4000, 100, ttft_seconds=0.01)],
    )
    with pytest.raises(InfeasibleError) as info:
        solve(inst, solver="auto")
    lines = info.value.explanations
    assert any(
        line.startswith("class 'chat': no option meets TTFT 0.01 s; best is m bf16 on h (H100-80GB) TP")
        for line in lines
    ), lines
    assert lines[0].endswith(" s")


def test_no_option_meets_tpot() -> None:
    inst = build([model("m")], [pool("l")], [qclass("chat", 1.0, 500, 100, tpot_seconds=0.001)])
    with pytest.raises(InfeasibleError) as info:
        solve(inst, solver="milp")
    assert "no option meets TPOT 0.001 s/token" in str(info.value)


def test_error_bound_below_every_model() -> None:
    inst = build([model("m", error=0.3)], [pool("l")], [qclass("chat", 1.0, max_error=0.05)])
    with pytest.raises(InfeasibleError) as info:
        solve(inst, solver="agh")
    assert "has error <= 0.05; best is m" in str(info.value)


def test_not_enough_gpus_for_the_demand() -> None:
    inst = build([model("m")], [pool("l", gpus=1, per_node=1)], [qclass("chat", 500.0)])
    with pytest.raises(InfeasibleError) as info:
        solve(inst, solver="auto")
    assert any("needs 500 req/s but the pools carry at most" in line for line in info.value.explanations)
    assert explain_infeasibility(inst)


def test_budget_below_the_cheapest_plan() -> None:
    inst = build([model("m")], [pool("l")], [qclass("chat", 30.0)], budget=0.5)
    with pytest.raises(BudgetInfeasibleError) as info:
        solve(inst, solver="auto")
    err = info.value
    assert err.field == "spec.budgetPerHour"
    assert err.cheapest_cost > err.budget == 0.5
    assert "below the cheapest feasible plan" in str(err)
    assert "C5 budget" in str(err)
    assert (
        solve(inst.with_budget(err.cheapest_cost), solver="auto").gpu_cost_per_hour
        <= err.cheapest_cost + 1e-9
    )


def test_every_option_has_a_verdict_per_class() -> None:
    inst = build([model("m")], [pool("l")], [qclass("chat", 1.0, tpot_seconds=0.02)], prune=False)
    lines = explain_rejections(inst, "chat")
    assert len(lines) >= len(inst.options)
    assert any("TPOT" in line for line in lines)


def test_unknown_solver_and_bad_time_limit() -> None:
    inst = build([model("m")], [pool("l")], [qclass("chat", 1.0)])
    with pytest.raises(Exception, match="solver='fast' is unknown"):
        solve(inst, solver="fast")
    with pytest.raises(Exception, match="time limit"):
        solve(inst, time_limit=0)
