"""The router over real loopback HTTP: OpenAI stubs as upstreams (JSON and SSE), routing headers,
token budgets, escalation, upstream failure, bad input, config reload while serving."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pytest

from quartermaster.api.routerconfig import QualityEstimatorSpec, RouterConfig
from quartermaster.router.stub import Server, StubOpenAI

Start = Callable[[Any], Server]


class KeywordJudge:
    """Accept probability 0 for answers containing 'not sure', else 1 (a deterministic estimator)."""

    on_error = "accept"

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, int]] = []

    async def accept_probability(
        self, question: str, answer: str, completion_tokens: int, max_tokens: int
    ) -> float:
        self.seen.append((question, answer, completion_tokens))
        return 0.0 if "not sure" in answer else 1.0


def _router(
    start: Start, path: Path, config: RouterConfig | None, kit: SimpleNamespace, **kw: Any
) -> tuple[Server, Any]:
    return kit.start_router(start, path, config, **kw)  # type: ignore[no-any-return]


def _chat(text: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"model": "auto", "messages": [{"role": "user", "content": text}], **extra}


@pytest.fixture
def two_models(servers: Start, kit: SimpleNamespace) -> SimpleNamespace:
    """Stubs for a cheap model that hedges on 'hard' prompts and a strong one; a two-cluster config."""
    cheap = StubOpenAI("cheap", answer=lambda m, p: "I am not sure" if "hard" in p else f"cheap says {p}")
    strong = StubOpenAI("strong", answer=lambda m, p: f"strong says {p} in detail")
    cheap_srv, strong_srv = servers(cheap.app()), servers(strong.app())
    cheap_url, strong_url = cheap_srv.url + "/v1", strong_srv.url + "/v1"
    config = kit.build_config(
        {
            "billing": [kit.target("cheap", cheap_url)],
            "weather": [kit.target("strong", strong_url)],
        },
        reps={"billing": kit.unit(1), "weather": kit.unit(2)},
        ladder=["cheap", "strong"],
        max_tokens={"billing": 8, "weather": 50},
        alpha=0.8,
    )
    return SimpleNamespace(
        cheap=cheap, strong=strong, cheap_url=cheap_url, strong_url=strong_url, config=config
    )


def test_routes_by_cluster_header_with_headers_and_budget(
    servers: Start, kit: SimpleNamespace, tmp_path: Path, two_models: SimpleNamespace
) -> None:
    router, _ = _router(servers, tmp_path / "cfg.json", two_models.config, kit)
    with httpx.Client(base_url=router.url) as c:
        r = c.post(
            "/v1/chat/completions",
            json=_chat("a b c d e f g h i j", max_tokens=500),
            headers={"X-Quartermaster-Cluster": "billing"},
        )
        assert r.status_code == 200, r.text
        assert r.headers["x-quartermaster-cluster"] == "billing"
        assert r.headers["x-quartermaster-model"] == "cheap"
        assert r.headers["x-quartermaster-escalated"] == "false"
        assert r.headers["x-quartermaster-config"].startswith("pool/1@")
        body = r.json()
        assert body["model"] == "cheap"
        assert body["usage"]["completion_tokens"] == 8
        sent = two_models.cheap.received()[-1]["body"]
        assert sent["model"] == "cheap"
        assert sent["max_tokens"] == 8
        r = c.post(
            "/v1/completions",
            json={"prompt": "x y", "max_tokens": 7},
            headers={"X-Quartermaster-Cluster": "weather"},
        )
        assert r.status_code == 200
        assert r.headers["x-quartermaster-model"] == "strong"
        assert two_models.strong.received()[-1]["body"]["max_tokens"] == 7  # under the budget: unchanged
        assert r.json()["choices"][0]["text"].startswith("strong says")


def test_routes_by_client_embedding_and_by_upstream_embedder(
    servers: Start, kit: SimpleNamespace, tmp_path: Path, two_models: SimpleNamespace
) -> None:
    vectors = {"pay my bill": kit.unit(1) + 0.1 * kit.unit(7), "rain tomorrow?": kit.unit(2)}
    embed = StubOpenAI("embed", embed=lambda t: [float(x) for x in vectors.get(t, kit.unit(555))])
    embed_srv = servers(embed.app())
    router, _ = _router(
        servers, tmp_path / "cfg.json", two_models.config, kit, embeddings_url=embed_srv.url + "/v1"
    )
    with httpx.Client(base_url=router.url) as c:
        # client-supplied embedding (b64 float32) wins over the embedder
        raw = np.asarray(kit.unit(2), dtype="<f4").tobytes()
        import base64

        r = c.post(
            "/v1/chat/completions",
            json=_chat("pay my bill"),
            headers={"X-Quartermaster-Embedding": "b64:" + base64.b64encode(raw).decode()},
        )
        assert r.headers["x-quartermaster-cluster"] == "weather"
        n_embed_calls = len(embed.received())
        assert n_embed_calls == 0
        r = c.post("/v1/chat/completions", json=_chat("pay my bill"))
        assert r.headers["x-quartermaster-cluster"] == "billing"
        r = c.post("/v1/chat/completions", json=_chat("rain tomorrow?"))
        assert r.headers["x-quartermaster-cluster"] == "weather"
        r = c.post("/v1/chat/completions", json=_chat("something else entirely"))
        assert r.headers["x-quartermaster-cluster"] == "billing"  # below alpha -> the default cluster
        assert {q["body"]["model"] for q in embed.received()} == {"stub-embed"}  # the config's model
        assert [q["body"]["input"] for q in embed.received()] == [
            ["pay my bill"],
            ["rain tomorrow?"],
            ["something else entirely"],
        ]


def test_sse_stream_passes_through_byte_for_byte(
    servers: Start, kit: SimpleNamespace, tmp_path: Path, two_models: SimpleNamespace
) -> None:
    router, _ = _router(servers, tmp_path / "cfg.json", two_models.config, kit)
    req = _chat("one two three four", stream=True, max_tokens=20, stream_options={"include_usage": True})
    with httpx.Client() as c:
        with c.stream(
            "POST",
            router.url + "/v1/chat/completions",
            json=req,
            headers={"X-Quartermaster-Cluster": "weather"},
        ) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            assert r.headers["x-quartermaster-model"] == "strong"
            via_router = b"".join(r.iter_bytes())
        direct_req = {**req, "model": "strong"}
        with c.stream("POST", two_models.strong_url + "/chat/completions", json=direct_req) as r:
            direct = b"".join(r.iter_bytes())
    events = [e for e in via_router.decode().split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    text = "".join(ch["choices"][0]["delta"].get("content", "") for ch in chunks if ch["choices"])
    assert text == "strong says one two three four in detail"
    # identical to what the upstream sends, apart from the per-request id
    strip = lambda b: [json.loads(e[6:]).get("choices") for e in b.decode().split("\n\n")[:-2]]  # noqa: E731
    assert strip(via_router) == strip(direct)


def test_escalation_resends_rejected_answers_up_the_ladder(
    servers: Start, kit: SimpleNamespace, tmp_path: Path, two_models: SimpleNamespace
) -> None:
    judge = KeywordJudge()
    router, _service = _router(servers, tmp_path / "cfg.json", two_models.config, kit, judge=judge)
    with httpx.Client(base_url=router.url) as c:
        hdr = {"X-Quartermaster-Cluster": "billing"}
        easy = c.post("/v1/chat/completions", json=_chat("easy"), headers=hdr)
        assert easy.headers["x-quartermaster-model"] == "cheap"
        assert easy.headers["x-quartermaster-escalated"] == "false"
        hard = c.post("/v1/chat/completions", json=_chat("a hard one"), headers=hdr)
        assert hard.status_code == 200
        assert hard.headers["x-quartermaster-model"] == "strong"
        assert hard.headers["x-quartermaster-escalated"] == "true"
        assert hard.json()["choices"][0]["message"]["content"].startswith("strong says a hard one")
        # the escalated request keeps the cluster's budget
        assert two_models.strong.received()[-1]["body"]["max_tokens"] == 8
        # streamed answers are never judged
        c.post("/v1/chat/completions", json=_chat("hard stream", stream=True), headers=hdr)
        metrics = c.get("/metrics").text
    assert [s[1] for s in judge.seen] == ["cheap says easy", "I am not sure"]
    assert judge.seen[1][0] == "a hard one"
    assert judge.seen[1][2] == 4
    assert (
        'quartermaster_router_escalations_total{cluster="billing",from_model="cheap",to_model="strong"} 1.0'
        in metrics
    )
    assert 'quartermaster_router_quality_rejects_total{cluster="billing",model="cheap"} 1.0' in metrics
    assert (
        'quartermaster_router_requests_total{cluster="billing",model="strong",outcome="escalated"} 1.0'
        in metrics
    )


def test_http_quality_hook_and_failed_escalation_keeps_the_first_answer(
    servers: Start, kit: SimpleNamespace, tmp_path: Path, two_models: SimpleNamespace
) -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def judge(request: Request) -> JSONResponse:
        doc = await request.json()
        assert set(doc) == {"question", "answer", "tokens"}
        return JSONResponse({"accept_probability": 0.1 if "not sure" in doc["answer"] else 0.9})

    hook = servers(Starlette(routes=[Route("/judge", judge, methods=["POST"])]))
    config = two_models.config.model_copy(
        update={"quality_estimator": QualityEstimatorSpec(kind="http", url=hook.url + "/judge")}
    )
    router, _ = _router(servers, tmp_path / "cfg.json", config, kit)
    with httpx.Client(base_url=router.url) as c:
        hdr = {"X-Quartermaster-Cluster": "billing"}
        r = c.post("/v1/chat/completions", json=_chat("hard"), headers=hdr)
        assert r.headers["x-quartermaster-model"] == "strong"
        two_models.strong.fail_status = 503  # the strong model goes away
        r = c.post("/v1/chat/completions", json=_chat("hard again"), headers=hdr)
        assert r.status_code == 200
        assert r.headers["x-quartermaster-model"] == "cheap"
        assert r.json()["choices"][0]["message"]["content"] == "I am not sure"


def test_upstream_down_is_a_503_with_retry_after_and_the_router_keeps_serving(
    servers: Start, kit: SimpleNamespace, tmp_path: Path, free_url: str
) -> None:
    up = StubOpenAI("m")
    up_url = servers(up.app()).url + "/v1"
    config = kit.build_config({"down": [kit.target("gone", free_url)], "up": [kit.target("m", up_url)]})
    router, _ = _router(servers, tmp_path / "cfg.json", config, kit)
    with httpx.Client(base_url=router.url) as c:
        r = c.post("/v1/chat/completions", json=_chat(), headers={"X-Quartermaster-Cluster": "down"})
        assert r.status_code == 503
        assert int(r.headers["retry-after"]) > 0
        err = r.json()["error"]
        assert err["type"] == "service_unavailable"
        assert err["code"] == "upstream_unavailable"
        assert "gone" in err["message"]
        r = c.post(
            "/v1/chat/completions", json=_chat(stream=True), headers={"X-Quartermaster-Cluster": "down"}
        )
        assert r.status_code == 503
        assert "retry-after" in r.headers
        r = c.post("/v1/chat/completions", json=_chat(), headers={"X-Quartermaster-Cluster": "up"})
        assert r.status_code == 200
        assert c.get("/healthz").status_code == 200


def test_retry_moves_to_another_replica(
    servers: Start, kit: SimpleNamespace, tmp_path: Path, free_url: str
) -> None:
    busy = StubOpenAI("m", fail_status=503)
    ok = StubOpenAI("m")
    busy_url, ok_url = servers(busy.app()).url + "/v1", servers(ok.app()).url + "/v1"
    config = kit.build_config(
        {
            "c": [
                kit.target("m", free_url, 1, "d0"),
                kit.target("m", busy_url, 1, "d1"),
                kit.target("m", ok_url, 1, "d2"),
            ]
        }
    )
    router, _ = _router(servers, tmp_path / "cfg.json", config, kit)
    with httpx.Client(base_url=router.url) as c:
        for _ in range(12):
            r = c.post("/v1/chat/completions", json=_chat())
            assert r.status_code == 200
        metrics = c.get("/metrics").text
    assert len(ok.received()) == 12
    assert 'quartermaster_router_upstream_retries_total{model="m"}' in metrics


@pytest.mark.parametrize(
    ("content", "headers", "status", "param"),
    [
        (b"{not json", {}, 400, None),
        (b"[1, 2]", {}, 400, None),
        (json.dumps({"model": "auto"}).encode(), {}, 400, "messages"),
        (json.dumps({"messages": [{"content": "x"}]}).encode(), {}, 400, "messages[0]"),
        (json.dumps(_chat(stream="yes")).encode(), {}, 400, "stream"),
        (json.dumps(_chat(max_tokens=-1)).encode(), {}, 400, "max_tokens"),
        (json.dumps({**_chat(), "model": "gpt-17"}).encode(), {}, 404, "model"),
        (json.dumps(_chat()).encode(), {"X-Quartermaster-Cluster": "nope"}, 400, "X-Quartermaster-Cluster"),
        (
            json.dumps(_chat()).encode(),
            {"X-Quartermaster-Embedding": "1,2,x"},
            400,
            "X-Quartermaster-Embedding",
        ),
        (json.dumps(_chat("x" * 5000)).encode(), {}, 413, None),
    ],
)
def test_bad_input_gets_openai_style_4xx(
    servers: Start,
    kit: SimpleNamespace,
    tmp_path: Path,
    two_models: SimpleNamespace,
    content: bytes,
    headers: dict[str, str],
    status: int,
    param: str | None,
) -> None:
    router, _ = _router(servers, tmp_path / "cfg.json", two_models.config, kit, max_body_bytes=4096)
    with httpx.Client(base_url=router.url) as c:
        r = c.post(
            "/v1/chat/completions", content=content, headers={"content-type": "application/json", **headers}
        )
        assert r.status_code == status, r.text
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"}
        assert err["param"] == param
        assert err["message"]
        assert c.get("/healthz").status_code == 200
    assert two_models.cheap.received() == []
    assert two_models.strong.received() == []


def test_unknown_path_and_method_are_openai_style(
    servers: Start, kit: SimpleNamespace, tmp_path: Path, two_models: SimpleNamespace
) -> None:
    router, _ = _router(servers, tmp_path / "cfg.json", two_models.config, kit)
    with httpx.Client(base_url=router.url) as c:
        assert c.get("/v1/nothing").json()["error"]["type"] == "not_found_error"
        assert c.get("/v1/chat/completions").status_code == 405
        models = [m["id"] for m in c.get("/v1/models").json()["data"]]
        assert models == ["auto", "cheap", "strong"]


def test_config_reload_while_serving_and_broken_update_keeps_last_good(
    servers: Start, kit: SimpleNamespace, tmp_path: Path, two_models: SimpleNamespace
) -> None:
    path = tmp_path / "cfg.json"
    router, _service = _router(servers, path, two_models.config, kit)
    stop = threading.Event()
    failures: list[str] = []
    counts = {"cheap": 0, "strong": 0}

    def load() -> None:
        with httpx.Client(base_url=router.url) as c:
            while not stop.is_set():
                r = c.post(
                    "/v1/chat/completions", json=_chat(), headers={"X-Quartermaster-Cluster": "billing"}
                )
                if r.status_code != 200:
                    failures.append(r.text)
                else:
                    counts[r.headers["x-quartermaster-model"]] += 1

    workers = [threading.Thread(target=load) for _ in range(4)]
    for w in workers:
        w.start()
    try:
        with httpx.Client(base_url=router.url) as c:
            v1 = c.get("/readyz").json()["configVersion"]
            kit.wait_until(lambda: counts["cheap"] > 10, what="traffic on the first config")
            # the new plan sends billing to the strong model
            new = kit.build_config(
                {
                    "billing": [kit.target("strong", two_models.strong_url)],
                    "weather": [kit.target("strong", two_models.strong_url)],
                },
                reps={"billing": kit.unit(1), "weather": kit.unit(2)},
                generation=2,
            )
            kit.write_config(path, new)
            kit.wait_until(lambda: c.get("/readyz").json()["configVersion"] != v1, what="reload")
            v2 = c.get("/readyz").json()["configVersion"]
            assert v2.startswith("pool/2@")
            seen_strong = counts["strong"]
            kit.wait_until(lambda: counts["strong"] > seen_strong + 10, what="traffic on the new config")
            # a broken update: truncated JSON, then a wrong schema version
            path.write_text(path.read_text()[:100])
            kit.wait_until(lambda: c.get("/readyz").json()["status"] == "degraded", what="degraded")
            ready = c.get("/readyz")
            assert ready.status_code == 200
            assert ready.json()["configVersion"] == v2
            assert ready.json()["stale"] is True
            assert "not valid JSON" in ready.json()["lastError"]
            doc = json.loads(json.dumps(new.model_dump(mode="json", by_alias=True)))
            doc["schemaVersion"] = 99
            path.write_text(json.dumps(doc))
            kit.wait_until(
                lambda: "schemaVersion=99" in (c.get("/readyz").json()["lastError"] or ""),
                what="version error",
            )
            metrics = c.get("/metrics").text
            assert "quartermaster_router_config_stale 1.0" in metrics
            assert "quartermaster_router_config_last_reload_success 0.0" in metrics
            before = counts["strong"]
            kit.wait_until(lambda: counts["strong"] > before + 10, what="traffic on the last good config")
            # a good update clears the state
            kit.write_config(path, two_models.config)
            kit.wait_until(lambda: c.get("/readyz").json()["status"] == "ok", what="recovery")
            assert c.get("/readyz").json()["configVersion"] == v1
    finally:
        stop.set()
        for w in workers:
            w.join(10)
    assert failures == []


def test_not_ready_without_config_then_ready_when_it_appears(
    servers: Start, kit: SimpleNamespace, tmp_path: Path, two_models: SimpleNamespace
) -> None:
    path = tmp_path / "cfg.json"
    router, _ = _router(servers, path, None, kit)
    with httpx.Client(base_url=router.url) as c:
        r = c.get("/readyz")
        assert r.status_code == 503
        assert r.json()["status"] == "not-ready"
        r = c.post("/v1/chat/completions", json=_chat())
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "router_not_ready"
        assert "retry-after" in r.headers
        kit.write_config(path, two_models.config)
        kit.wait_until(lambda: c.get("/readyz").status_code == 200, what="ready")
        assert c.post("/v1/chat/completions", json=_chat()).status_code == 200


def test_rates_endpoint_reports_per_cluster_rates(
    servers: Start, kit: SimpleNamespace, tmp_path: Path, two_models: SimpleNamespace
) -> None:
    router, _ = _router(servers, tmp_path / "cfg.json", two_models.config, kit, rates_window_s=60)
    with httpx.Client(base_url=router.url) as c:
        for cluster, n in (("billing", 6), ("weather", 2)):
            for _ in range(n):
                c.post("/v1/chat/completions", json=_chat(), headers={"X-Quartermaster-Cluster": cluster})
        doc = c.get("/v1/quartermaster/rates").json()
    assert doc["formatVersion"] == 1
    assert doc["configVersion"].startswith("pool/1@")
    rates = {k: v["requestsPerSecond"] * doc["coveredSeconds"] for k, v in doc["clusters"].items()}
    assert rates == pytest.approx({"billing": 6, "weather": 2})
    assert doc["totalRequestsPerSecond"] * doc["coveredSeconds"] == pytest.approx(8)
    assert set(doc["clusters"]["billing"]["models"]) == {"cheap"}


def test_abandoned_cluster_refusal_is_answered_without_a_model(
    servers: Start, kit: SimpleNamespace, tmp_path: Path
) -> None:
    from quartermaster.api.routerconfig import Abandonment

    up = StubOpenAI("m")
    url = servers(up.app()).url + "/v1"
    config = kit.build_config(
        {"c": [kit.target("m", url)]},
        abandonment={"c": Abandonment(abandoned=True, policy="refuse", message="Out of budget today.")},
    )
    router, _ = _router(servers, tmp_path / "cfg.json", config, kit)
    with httpx.Client(base_url=router.url) as c:
        r = c.post("/v1/chat/completions", json=_chat())
        assert r.status_code == 200
        assert r.json()["choices"][0]["message"]["content"] == "Out of budget today."
        assert r.headers["x-quartermaster-model"] == "quartermaster/refusal"
        r = c.post("/v1/completions", json={"prompt": "x", "stream": True})
        events = [e for e in r.text.split("\n\n") if e]
        assert events[-1] == "data: [DONE]"
        assert json.loads(events[0].removeprefix("data: "))["choices"][0]["text"] == "Out of budget today."
    assert up.received() == []


def test_embedder_failure_falls_back_to_the_default_cluster(
    servers: Start, kit: SimpleNamespace, tmp_path: Path, two_models: SimpleNamespace, free_url: str
) -> None:
    router, _ = _router(servers, tmp_path / "cfg.json", two_models.config, kit, embeddings_url=free_url)
    with httpx.Client(base_url=router.url) as c:
        r = c.post("/v1/chat/completions", json=_chat("pay my bill"))
        assert r.status_code == 200
        assert r.headers["x-quartermaster-cluster"] == "billing"  # the default cluster
        metrics = c.get("/metrics").text
    assert "quartermaster_router_embedding_failures_total 1.0" in metrics
