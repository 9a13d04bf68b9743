"""Upstream pool against real loopback servers: rotation, retries, ejection, timeouts, streaming."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from quartermaster.router.stub import Server, StubOpenAI
from quartermaster.router.upstream import (
    UpstreamPool,
    UpstreamResponse,
    UpstreamSettings,
    UpstreamStream,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)

Start = Callable[[Any], Server]
BODY = {"prompt": "one two three", "max_tokens": 5}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_round_robin_spreads_calls_over_replicas(servers: Start) -> None:
    stubs = [StubOpenAI(f"r{i}") for i in range(3)]
    urls = [servers(s.app()).url + "/v1" for s in stubs]

    async def run() -> list[str]:
        pool = UpstreamPool()
        pool.set_endpoints({"m": urls})
        try:
            return [(await pool.post("m", "completions", BODY)).endpoint for _ in range(9)]
        finally:
            await pool.aclose()

    endpoints = asyncio.run(run())
    assert sorted(endpoints) == sorted(urls * 3)
    assert [len(s.received()) for s in stubs] == [3, 3, 3]


def test_preferred_endpoint_goes_first_and_failures_move_on(servers: Start, free_url: str) -> None:
    busy = StubOpenAI("busy", fail_status=503)
    ok = StubOpenAI("ok")
    busy_url, ok_url = servers(busy.app()).url + "/v1", servers(ok.app()).url + "/v1"
    clock = Clock()
    retries: list[str] = []

    async def run() -> tuple[UpstreamResponse, list[str], list[str]]:
        pool = UpstreamPool(
            UpstreamSettings(max_attempts=3, eject_seconds=10), clock=clock, on_retry=retries.append
        )
        pool.set_endpoints({"m": [free_url, busy_url, ok_url]})
        try:
            first = await pool.post("m", "completions", BODY, prefer=free_url)
            # the refused endpoint is ejected: it comes last now, even when preferred
            order_ejected = pool.candidates("m", prefer=free_url)
            clock.now = 11.0  # ejection over
            order_later = pool.candidates("m", prefer=free_url)
            return first, order_ejected, order_later
        finally:
            await pool.aclose()

    first, order_ejected, order_later = asyncio.run(run())
    assert first.status_code == 200
    assert first.endpoint == ok_url
    assert first.attempts == 3
    assert retries == ["m", "m"]
    assert len(busy.received()) == 1
    assert order_ejected[-1] == free_url
    assert free_url not in order_ejected[:2]
    assert order_later[0] == free_url


def test_all_replicas_down_raises_unavailable(free_url: str) -> None:
    async def run() -> None:
        pool = UpstreamPool(UpstreamSettings(max_attempts=2, connect_timeout=1))
        pool.set_endpoints({"m": [free_url], "empty": []})
        try:
            with pytest.raises(UpstreamUnavailableError, match="2 attempt"):
                await pool.post("m", "completions", BODY)
            with pytest.raises(UpstreamUnavailableError, match="no endpoint"):
                await pool.post("empty", "completions", BODY)
        finally:
            await pool.aclose()

    asyncio.run(run())


def test_read_timeout_is_not_retried(servers: Start) -> None:
    slow = StubOpenAI("slow", delay_s=0.5)
    fast = StubOpenAI("fast")
    slow_url, fast_url = servers(slow.app()).url + "/v1", servers(fast.app()).url + "/v1"

    async def run() -> None:
        pool = UpstreamPool(UpstreamSettings(read_timeout=0.1))
        pool.set_endpoints({"m": [slow_url, fast_url]})
        try:
            with pytest.raises(UpstreamTimeoutError):
                await pool.post("m", "completions", BODY, prefer=slow_url)
        finally:
            await pool.aclose()

    asyncio.run(run())
    assert fast.received() == []  # a timed-out generation is not duplicated on another replica


def test_upstream_4xx_is_returned_not_retried(servers: Start) -> None:
    bad = StubOpenAI("bad", fail_status=400)
    other = StubOpenAI("other")
    urls = [servers(bad.app()).url + "/v1", servers(other.app()).url + "/v1"]

    async def run() -> UpstreamResponse | UpstreamStream:
        pool = UpstreamPool()
        pool.set_endpoints({"m": urls})
        try:
            return await pool.stream("m", "completions", {**BODY, "stream": True}, prefer=urls[0])
        finally:
            await pool.aclose()

    result = asyncio.run(run())
    assert isinstance(result, UpstreamResponse)
    assert result.status_code == 400
    assert b"unavailable" in result.content
    assert other.received() == []


def test_stream_returns_the_open_response(servers: Start) -> None:
    up = StubOpenAI("s", answer=lambda m, p: p, chunk_delay_s=0.01)
    url = servers(up.app()).url + "/v1"

    async def run() -> bytes:
        pool = UpstreamPool()
        pool.set_endpoints({"m": [url]})
        try:
            result = await pool.stream("m", "completions", {**BODY, "stream": True})
            assert isinstance(result, UpstreamStream)
            data = b"".join([chunk async for chunk in result.response.aiter_bytes()])
            await result.response.aclose()
            return data
        finally:
            await pool.aclose()

    data = asyncio.run(run())
    assert data.endswith(b"data: [DONE]\n\n")
    assert data.count(b"data: ") == 5  # 3 words (under max_tokens 5) + final chunk + [DONE]
