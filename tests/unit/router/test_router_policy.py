"""Routing policy: weighted model choice, token budgets, escalation ladders, abandonment, bad input."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quartermaster.api.routerconfig import Abandonment
from quartermaster.router.errors import RouterError
from quartermaster.router.policy import RoutingPolicy, requested_max_tokens
from quartermaster.router.table import RoutingTable, compile_table

URL = {m: f"http://{m}.ns.svc:8000/v1" for m in ("small", "mid", "large")}


def _table(kit: SimpleNamespace, **kw: object) -> RoutingTable:
    routes = {
        "billing": [kit.target("small", URL["small"], 3.0), kit.target("mid", URL["mid"], 1.0)],
        "weather": [kit.target("large", URL["large"])],
    }
    reps = {"billing": np.stack([kit.unit(1), kit.unit(2)]), "weather": kit.unit(3)}
    config = kit.build_config(
        routes,
        reps=reps,
        ladder=["small", "mid", "large"],
        max_tokens={"billing": 100, "weather": 400},
        default="weather",
        **kw,
    )
    return compile_table(config)


def test_weighted_choice_follows_the_plan_weights(kit: SimpleNamespace) -> None:
    table = _table(kit)
    policy = RoutingPolicy(random_state=7)
    n = 4000
    picks = [policy.decide(table, {"model": "auto"}, cluster_hint="billing").target.model for _ in range(n)]
    share = picks.count("small") / n
    # weights 3:1 -> 0.75; binomial sd at n=4000 is ~0.007, allow 5 sd
    assert abs(share - 0.75) < 0.035
    assert set(picks) == {"small", "mid"}


def test_same_seed_gives_the_same_decisions(kit: SimpleNamespace) -> None:
    table = _table(kit)
    a, b = RoutingPolicy(3), RoutingPolicy(3)
    seq_a = [a.decide(table, {}, cluster_hint="billing").target.model for _ in range(50)]
    seq_b = [b.decide(table, {}, cluster_hint="billing").target.model for _ in range(50)]
    assert seq_a == seq_b


@settings(max_examples=60, deadline=None)
@given(
    requested=st.one_of(st.none(), st.integers(1, 10_000)),
    field=st.sampled_from(["max_tokens", "max_completion_tokens"]),
)
def test_max_tokens_never_exceeds_the_cluster_budget(
    kit: SimpleNamespace, requested: int | None, field: str
) -> None:
    table = _table(kit)
    body = {} if requested is None else {field: requested}
    d = RoutingPolicy(0).decide(table, body, cluster_hint="billing")
    assert d.max_tokens <= 100
    assert d.max_tokens == (100 if requested is None else min(requested, 100))
    assert d.clamped == (requested is not None and requested > 100)
    assert d.max_tokens_field == (field if requested is not None else "max_tokens")


@pytest.mark.parametrize("bad", [0, -3, 2.5, "10", True])
def test_non_positive_or_non_integer_max_tokens_is_a_400(bad: object) -> None:
    with pytest.raises(RouterError) as err:
        requested_max_tokens({"max_tokens": bad})
    assert err.value.status_code == 400
    assert err.value.param == "max_tokens"


def test_embedding_picks_the_nearest_cluster_or_the_default(kit: SimpleNamespace) -> None:
    table = _table(kit, alpha=0.9)
    policy = RoutingPolicy(0)
    near = (kit.unit(2) + 0.05 * kit.unit(99)).astype(np.float32)
    d = policy.decide(table, {}, embedding=near)
    assert (d.cluster, d.cluster_source) == ("billing", "embedding")
    assert d.similarity is not None
    assert d.similarity >= 0.9
    far = kit.unit(1234).astype(np.float32)
    d = policy.decide(table, {}, embedding=far)
    assert (d.cluster, d.cluster_source) == ("weather", "out-of-distribution")
    d = policy.decide(table, {})
    assert (d.cluster, d.cluster_source) == ("weather", "no-embedding")


def test_escalation_ladder_starts_after_the_chosen_model(kit: SimpleNamespace) -> None:
    table = _table(kit, max_escalations=2)
    policy = RoutingPolicy(1)
    for _ in range(30):
        d = policy.decide(table, {}, cluster_hint="billing")
        expected = {"small": ["mid", "large"], "mid": ["large"]}[d.target.model]
        assert [t.model for t in d.escalation] == expected
        assert [t.url for t in d.escalation] == [URL[m] for m in expected]
    # the last model of the ladder has nowhere to go
    d = policy.decide(table, {}, cluster_hint="weather")
    assert d.escalation == ()


def test_max_escalations_limits_the_ladder(kit: SimpleNamespace) -> None:
    table = _table(kit, max_escalations=1)
    d = RoutingPolicy(0).decide(table, {"model": "small"}, cluster_hint="billing")
    assert d.escalation == ()  # pinned models never escalate
    cluster = table.cluster("billing")
    assert [t.model for t in RoutingPolicy.ladder_after(table, cluster, "small")] == ["mid"]


def test_pinned_model_is_used_and_unknown_model_is_a_404(kit: SimpleNamespace) -> None:
    table = _table(kit)
    d = RoutingPolicy(0).decide(table, {"model": "large", "max_tokens": 1000}, cluster_hint="billing")
    assert (d.target.model, d.max_tokens) == ("large", 100)
    with pytest.raises(RouterError) as err:
        RoutingPolicy(0).decide(table, {"model": "gpt-17"})
    assert err.value.status_code == 404
    assert err.value.code == "model_not_found"
    assert "gpt-17" in err.value.message
    assert "auto" in err.value.message


def test_unknown_cluster_header_and_wrong_dimension_are_400(kit: SimpleNamespace) -> None:
    table = _table(kit)
    with pytest.raises(RouterError, match="names no cluster") as err:
        RoutingPolicy(0).decide(table, {}, cluster_hint="nope")
    assert err.value.status_code == 400
    with pytest.raises(RouterError, match="dimensions") as err:
        RoutingPolicy(0).decide(table, {}, embedding=np.ones(3, dtype=np.float32))
    assert err.value.status_code == 400


def test_abandonment_policies(kit: SimpleNamespace) -> None:
    cheap = kit.build_config(
        {
            "c": [kit.target("large", URL["large"])],
            "d": [kit.target("large", URL["large"])],
            "e": [kit.target("large", URL["large"])],
        },
        ladder=["small", "large"],
        escalation_targets=[kit.target("small", URL["small"])],
        abandonment={
            "c": Abandonment(abandoned=True, policy="cheapest-model", model="small", max_tokens=8),
            "d": Abandonment(abandoned=True, policy="short-answer", max_tokens=5),
            "e": Abandonment(abandoned=True, policy="refuse", message="no budget"),
        },
    )
    table = compile_table(cheap)
    policy = RoutingPolicy(0)
    c = policy.decide(table, {"max_tokens": 50}, cluster_hint="c")
    assert (c.target.model, c.max_tokens, c.escalation, c.refusal) == ("small", 8, (), None)
    d = policy.decide(table, {}, cluster_hint="d")
    assert (d.target.model, d.max_tokens, d.escalation) == ("large", 5, ())
    e = policy.decide(table, {}, cluster_hint="e")
    assert e.refusal == "no budget"
