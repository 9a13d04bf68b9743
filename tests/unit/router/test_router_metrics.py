"""Rates for the rolling horizon (sliding window, injectable clock), Prometheus exposition, SSE usage."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest

from quartermaster.router.metrics import (
    RATES_FORMAT_VERSION,
    RatesFormatError,
    RateTracker,
    RouterMetrics,
    sum_rates,
)
from quartermaster.router.sse import UsageSniffer


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_rates_average_over_the_window_and_forget_old_requests() -> None:
    clock = Clock()
    rates = RateTracker(window_seconds=10, clock=clock)
    for second in range(10):
        clock.now = 1000.0 + second
        for _ in range(3):
            rates.record("a", "small", completion_tokens=10)
        rates.record("b", "large", escalations=1)
    clock.now = 1010.0
    doc = rates.snapshot("v1")
    assert doc["formatVersion"] == RATES_FORMAT_VERSION
    assert doc["configVersion"] == "v1"
    assert doc["windowSeconds"] == 10
    assert doc["clusters"]["a"]["requestsPerSecond"] == pytest.approx(3.0)
    assert doc["clusters"]["a"]["completionTokensPerSecond"] == pytest.approx(30.0)
    assert doc["clusters"]["a"]["models"] == {"small": pytest.approx(3.0)}
    assert doc["clusters"]["b"]["escalationRate"] == pytest.approx(1.0)
    assert doc["totalRequestsPerSecond"] == pytest.approx(4.0)
    clock.now = 1030.0  # everything is older than the window
    assert rates.snapshot()["clusters"] == {}
    json.dumps(doc)  # the document is plain JSON


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("xyz"), st.integers(0, 30)), max_size=200))
def test_rate_counts_equal_requests_inside_the_window(events: list[tuple[str, int]]) -> None:
    clock = Clock(0.0)
    rates = RateTracker(window_seconds=20, clock=clock)
    for cluster, t in sorted(events, key=lambda e: e[1]):
        clock.now = float(t)
        rates.record(cluster, "m")
    clock.now = 30.5
    doc = rates.snapshot()
    for cluster in "xyz":
        expected = sum(1 for c, t in events if c == cluster and t + 1 > clock.now - 20)
        got = doc["clusters"].get(cluster, {}).get("requestsPerSecond", 0.0) * doc["coveredSeconds"]
        assert got == pytest.approx(expected)


def test_window_must_be_at_least_a_second() -> None:
    with pytest.raises(ValueError, match="window_seconds"):
        RateTracker(window_seconds=0.5)


def test_metrics_have_their_own_registry_and_one_config_info_series() -> None:
    a, b = RouterMetrics(), RouterMetrics()
    a.requests.labels("c", "m", "ok").inc()
    a.set_config_info("v1", "d1")
    a.set_config_info("v2", "d2")
    text = generate_latest(a.registry).decode()
    assert 'quartermaster_router_requests_total{cluster="c",model="m",outcome="ok"} 1.0' in text
    assert 'quartermaster_router_config_info{digest="d2",version="v2"} 1.0' in text
    assert 'version="v1"' not in text
    assert 'cluster="c"' not in generate_latest(b.registry).decode()  # separate registries


def _sse(chunks: list[str], usage: dict[str, int] | None) -> bytes:
    events = [{"choices": [{"delta": {"content": c}}]} for c in chunks]
    if usage is not None:
        events.append({"choices": [], "usage": usage})
    return b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events) + b"data: [DONE]\n\n"


@settings(max_examples=60, deadline=None)
@given(
    words=st.lists(st.text('ab "{}:', min_size=1, max_size=6), min_size=1, max_size=20),
    with_usage=st.booleans(),
    cuts=st.lists(st.integers(1, 50), max_size=30),
)
def test_usage_sniffer_is_independent_of_chunk_boundaries(
    words: list[str], with_usage: bool, cuts: list[int]
) -> None:
    usage = {"prompt_tokens": 7, "completion_tokens": 99} if with_usage else None
    data = _sse(words, usage)
    sniffer = UsageSniffer()
    pos = 0
    for cut in cuts:
        sniffer.feed(data[pos : pos + cut])
        pos += cut
    sniffer.feed(data[pos:])
    if with_usage:
        assert (sniffer.prompt_tokens, sniffer.completion_tokens) == (7, 99)
    else:
        assert sniffer.completion_tokens == len(words)


def test_sum_rates_adds_replicas_and_checks_the_format() -> None:
    clock = Clock(100.0)
    replicas = [RateTracker(10, clock=clock), RateTracker(10, clock=clock)]
    clock.now = 105.0
    for i, n in enumerate((4, 6)):
        for _ in range(n):
            replicas[i].record("a", "m")
    replicas[1].record("b", "m")
    clock.now = 110.0
    docs = [r.snapshot() for r in replicas]
    assert sum_rates(docs) == pytest.approx({"a": 1.0, "b": 0.1})
    with pytest.raises(RatesFormatError, match="formatVersion=2"):
        sum_rates([{**docs[0], "formatVersion": 2}])
