"""Compiling router configs: representative references (ConfigMaps, PVC, URL), labels, broken documents."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from quartermaster.api.routerconfig import (
    PvcRef,
    RepresentativeEmbeddings,
    RouterConfig,
    RouterConfigError,
    dump_router_config,
    representatives_bytes,
    split_configmap_chunks,
)
from quartermaster.router.config import load_table
from quartermaster.router.stub import Server
from quartermaster.router.table import ReferenceMounts, compile_table


def _config(kit: SimpleNamespace) -> RouterConfig:
    reps = {"a": np.stack([kit.unit(1), kit.unit(2)]), "b": kit.unit(3)}
    return kit.build_config(
        {
            "a": [kit.target("m1", "http://m1:8000/v1", 2), kit.target("m2", "http://m2:8000/v1", 1)],
            "b": [kit.target("m2", "http://m2:8000/v1"), kit.target("m2", "http://m2b:8000/v1", 1, "m2-b")],
            "c": [kit.target("m1", "http://m1:8000/v1")],
        },
        reps=reps,
        default="c",
        ladder=["m1", "m2"],
    )


def test_compiled_table_labels_rows_and_normalises_weights(kit: SimpleNamespace) -> None:
    table = compile_table(_config(kit))
    assert table.index.labels == ["a", "a", "b"]
    assert table.clusters["a"].cumulative_weights == pytest.approx((2 / 3, 1.0))
    assert table.model_urls == {
        "m1": ("http://m1:8000/v1",),
        "m2": ("http://m2:8000/v1", "http://m2b:8000/v1"),
    }
    assert table.served_models == {"m1", "m2"}
    assert table.version.startswith("pool/1@")
    assert table.index.assign(kit.unit(3)).cluster == "b"


def _with_reference(config: RouterConfig, reps: RepresentativeEmbeddings) -> RouterConfig:
    return config.model_copy(update={"representatives": reps})


def _matrix(config: RouterConfig) -> np.ndarray:
    assert config.representatives is not None
    return config.representatives.decode()


def test_configmap_chunk_reference(kit: SimpleNamespace, tmp_path: Path) -> None:
    config = _config(kit)
    raw = representatives_bytes(_matrix(config), "float32")
    chunks = split_configmap_chunks(raw, max_chunk_bytes=100)
    names = [f"reps-{i}" for i in range(len(chunks))]
    for name, chunk in zip(names, chunks, strict=True):
        (tmp_path / name).mkdir()
        (tmp_path / name / "embeddings.b64").write_text(chunk + "\n")
    ref = RepresentativeEmbeddings(
        dim=kit.DIM,
        count=3,
        dtype="float32",
        storage="configMaps",
        config_maps=names,
        sha256=hashlib.sha256(raw).hexdigest(),
    )
    table = compile_table(_with_reference(config, ref), mounts=ReferenceMounts(config_maps_dir=tmp_path))
    np.testing.assert_allclose(table.index.vectors, _matrix(config), atol=1e-6)
    # a missing chunk names the fix
    (tmp_path / names[-1] / "embeddings.b64").unlink()
    with pytest.raises(RouterConfigError, match="mount the referenced"):
        compile_table(_with_reference(config, ref), mounts=ReferenceMounts(config_maps_dir=tmp_path))


def test_pvc_and_url_references_are_verified(
    kit: SimpleNamespace, tmp_path: Path, servers: Callable[[Any], Server]
) -> None:
    config = _config(kit)
    raw = representatives_bytes(_matrix(config), "float16")
    (tmp_path / "claim" / "d").mkdir(parents=True)
    (tmp_path / "claim" / "d" / "reps.f16").write_bytes(raw)
    sha = hashlib.sha256(raw).hexdigest()
    pvc = RepresentativeEmbeddings(
        dim=kit.DIM, count=3, storage="pvc", pvc=PvcRef(claim_name="claim", path="d/reps.f16"), sha256=sha
    )
    table = compile_table(_with_reference(config, pvc), mounts=ReferenceMounts(pvc_dir=tmp_path))
    np.testing.assert_allclose(table.index.vectors, _matrix(config), atol=2e-3)

    async def serve_bytes(request: Any) -> Response:
        return Response(raw, media_type="application/octet-stream")

    srv = servers(Starlette(routes=[Route("/reps", serve_bytes)]))
    url = RepresentativeEmbeddings(dim=kit.DIM, count=3, storage="url", url=srv.url + "/reps", sha256=sha)
    table = compile_table(_with_reference(config, url))
    assert len(table.index) == 3
    wrong = url.model_copy(update={"sha256": "0" * 64})
    with pytest.raises(RouterConfigError, match="sha256"):
        compile_table(_with_reference(config, wrong))
    gone = url.model_copy(update={"url": srv.url + "/missing"})
    with pytest.raises(RouterConfigError, match="reachable"):
        compile_table(_with_reference(config, gone))


def test_overlapping_representative_rows_are_rejected(kit: SimpleNamespace) -> None:
    config = _config(kit)
    clusters = list(config.clusters)
    clusters[1] = clusters[1].model_copy(update={"representatives": clusters[0].representatives})
    with pytest.raises(RouterConfigError, match="claimed by clusters"):
        compile_table(config.model_copy(update={"clusters": clusters}))


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda text: text[: len(text) // 2], "not valid JSON"),
        (lambda text: text.replace('"maxTokens":64', '"maxTokens":65', 1), "contentHash"),
        (lambda text: text.replace('"schemaVersion":1', '"schemaVersion":2'), "upgrade the router"),
        (lambda text: text.replace('"defaultCluster":"c"', '"defaultCluster":"zzz"'), "defaultCluster"),
    ],
)
def test_broken_documents_are_rejected_with_the_reason(
    kit: SimpleNamespace, mutate: Callable[[str], str], match: str
) -> None:
    text = dump_router_config(_config(kit))
    broken = mutate(text)
    assert broken != text
    with pytest.raises(RouterConfigError, match=match):
        load_table(broken.encode(), mounts=ReferenceMounts())
