"""Router ConfigMap schema: round trips, version and hash checks, embedding storage, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from quartermaster.api.routerconfig import (
    SCHEMA_VERSION,
    Abandonment,
    ClusteringParams,
    ClusterRoute,
    Escalation,
    PlanRef,
    RepresentativeEmbeddings,
    RepresentativeRange,
    RouterConfig,
    RouterConfigError,
    RouteTarget,
    dump_router_config,
    encode_representatives,
    join_configmap_chunks,
    load_router_config,
    representatives_bytes,
    split_configmap_chunks,
    to_configmap_data,
)


def _target(model: str, weight: float = 1.0) -> RouteTarget:
    return RouteTarget(
        model=model,
        deployment=f"{model}-dep",
        service=f"{model}-svc",
        port=8000,
        url=f"http://{model}-svc.ns.svc:8000/v1",
        weight=weight,
    )


def _config(reps: np.ndarray | None = None) -> RouterConfig:
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(5, 8)) if reps is None else reps
    matrix = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    return RouterConfig(
        plan=PlanRef(name="pool", namespace="ns", generation=3),
        clustering=ClusteringParams(alpha=0.7, embedding_model="all-MiniLM-L6-v2", dimension=matrix.shape[1]),
        default_cluster="c0",
        clusters=[
            ClusterRoute(
                id="c0",
                representatives=RepresentativeRange(offset=0, count=2),
                max_tokens=512,
                routes=[_target("small", 3.0), _target("mid", 1.0)],
                escalation=Escalation(ladder=["small", "mid", "large"], quality_threshold=0.6),
            ),
            ClusterRoute(
                id="c1",
                representatives=RepresentativeRange(offset=2, count=3),
                max_tokens=64,
                routes=[_target("small")],
                abandonment=Abandonment(
                    abandoned=True, policy="cheapest-model", model="small", max_tokens=64
                ),
            ),
        ],
        representatives=encode_representatives(matrix, "float32"),
        escalation_targets=[_target("large")],
    )


def test_round_trip_is_identical_and_camel_case() -> None:
    cfg = _config()
    text = dump_router_config(cfg)
    doc = json.loads(text)
    assert doc["schemaVersion"] == SCHEMA_VERSION
    assert doc["clusters"][0]["maxTokens"] == 512
    assert "max_tokens" not in text
    back = load_router_config(text)
    assert back.model_dump(exclude={"content_hash"}) == cfg.model_dump(exclude={"content_hash"})
    assert dump_router_config(back) == text
    assert back.targets_for("large")[0].deployment == "large-dep"
    np.testing.assert_allclose(back.representatives.decode(), cfg.representatives.decode())  # type: ignore[union-attr]


def test_hash_detects_edits_and_version_is_checked() -> None:
    doc = json.loads(dump_router_config(_config()))
    doc["clusters"][0]["maxTokens"] = 4096
    with pytest.raises(RouterConfigError, match="contentHash"):
        load_router_config(doc)
    assert load_router_config(doc, verify_hash=False).clusters[0].max_tokens == 4096
    doc["schemaVersion"] = SCHEMA_VERSION + 1
    with pytest.raises(RouterConfigError, match="upgrade the router"):
        load_router_config(doc)
    del doc["schemaVersion"]
    with pytest.raises(RouterConfigError, match="no schemaVersion"):
        load_router_config(doc)
    with pytest.raises(RouterConfigError, match="not valid JSON"):
        load_router_config("{")


@pytest.mark.parametrize(
    ("path", "value", "needle"),
    [
        (("defaultCluster",), "nope", "defaultCluster"),
        (("clusters", 0, "escalation", "ladder"), ["small", "huge"], "huge"),
        (("clusters", 0, "routes", 0, "port"), 9000, "port"),
        (("clusters", 1, "representatives", "count"), 30, "representative rows"),
        (("clusters", 0, "escalation", "qualityThreshold"), 1.5, "qualityThreshold"),
        (("clusters", 0, "unknownField"), 1, "unknownField"),
    ],
)
def test_bad_documents_name_the_field(path: tuple[object, ...], value: object, needle: str) -> None:
    doc = json.loads(dump_router_config(_config()))
    node = doc
    for key in path[:-1]:
        node = node[key]  # type: ignore[index]
    node[path[-1]] = value  # type: ignore[index]
    with pytest.raises(RouterConfigError, match=needle):
        load_router_config(doc, verify_hash=False)


def test_reference_storage_and_chunks() -> None:
    matrix = np.random.default_rng(1).normal(size=(40, 16))
    raw = representatives_bytes(matrix, "float16")
    chunks = split_configmap_chunks(raw, max_chunk_bytes=100)
    assert len(chunks) > 1
    assert join_configmap_chunks(chunks) == raw
    inline = encode_representatives(matrix, "float16")
    ref = RepresentativeEmbeddings(
        dim=16,
        count=40,
        dtype="float16",
        storage="configMaps",
        config_maps=[f"reps-{i}" for i in range(len(chunks))],
        sha256=inline.sha256,
    )
    np.testing.assert_allclose(ref.decode(join_configmap_chunks(chunks)), matrix, atol=2e-3)
    with pytest.raises(RouterConfigError, match="sha256"):
        ref.decode(raw[:-2] + b"\0\0")
    with pytest.raises(RouterConfigError, match="decode"):
        ref.decode()
    with pytest.raises(ValidationError, match="sha256"):
        RepresentativeEmbeddings(dim=16, count=40, storage="url", url="http://x/reps.bin")


def test_oversized_inline_document_is_refused() -> None:
    big = np.random.default_rng(2).normal(size=(2000, 384))
    cfg = _config(big)
    with pytest.raises(RouterConfigError, match="by reference"):
        to_configmap_data(cfg)


@settings(max_examples=30, deadline=None)
@given(
    weights=st.lists(st.floats(0.01, 100.0), min_size=1, max_size=4),
    max_tokens=st.integers(1, 100_000),
    alpha=st.floats(-1.0, 1.0),
)
def test_round_trip_property(weights: list[float], max_tokens: int, alpha: float) -> None:
    cfg = RouterConfig(
        plan=PlanRef(name="p", generation=0),
        clustering=ClusteringParams(alpha=alpha, embedding_model="e", dimension=4),
        default_cluster="x",
        clusters=[
            ClusterRoute(
                id="x", max_tokens=max_tokens, routes=[_target(f"m{i}", w) for i, w in enumerate(weights)]
            )
        ],
    )
    back = load_router_config(dump_router_config(cfg))
    assert back.clusters[0].routes == cfg.clusters[0].routes
    assert back.clustering.alpha == alpha
