"""Spec models and the manifest loader: valid manifests load; bad ones name the field, value and fix."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from quartermaster.api.catalog import ModelCatalogSpec
from quartermaster.api.manifests import ManifestError, load_manifests, parse_documents
from quartermaster.api.pool import InferencePoolSpec, NodePoolSpec

REPO = Path(__file__).resolve().parents[3]
CATALOG = REPO / "examples" / "catalog.yaml"
POOL = REPO / "examples" / "pool.yaml"


def _pool_doc() -> dict[str, Any]:
    doc = yaml.safe_load(POOL.read_text())
    assert isinstance(doc, dict)
    return doc


def _error(doc: dict[str, Any]) -> str:
    with pytest.raises(ManifestError) as info:
        parse_documents([doc], "pool.yaml")
    return str(info.value)


def test_examples_load_with_camel_case_fields() -> None:
    manifests = load_manifests([CATALOG, POOL])
    name, pool = manifests.pool()
    assert name == "assistant"
    catalog = manifests.catalog_for(pool)
    assert [m.name for m in catalog.models][:2] == ["llama-3-1-8b", "qwen2-5-7b"]
    assert [p.gpu_type for p in pool.node_pools] == ["H100-80GB", "A100-80GB", "L40S", "A10G"]
    assert [p.gpus for p in pool.node_pools] == [16, 32, 16, 8]
    assert pool.node_pools[0].node_selector == {"quartermaster.dev/pool": "h100"}
    assert {c.name for c in manifests.classes_for(pool)} == {
        "chat",
        "code-completion",
        "math",
        "summarization",
    }
    dumped = pool.model_dump(by_alias=True, exclude_none=True)
    assert "nodePools" in dumped
    assert "gpusPerNode" in dumped["nodePools"][0]


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("classes", 0, "rate"), -1, "spec.classes[0].rate"),
        (("nodePools", 0, "gpus"), 0, "spec.nodePools[0].gpus"),
        (("nodePools", 1, "gpusPerNode"), 0, "spec.nodePools[1].gpusPerNode"),
        (("nodePools", 2, "gpus"), 6, "not a multiple of gpusPerNode"),
        (("nodePools", 2, "maxTensorParallel"), 8, "maxTensorParallel=8 is larger than gpusPerNode=4"),
        (("classes", 1, "maxError"), 1.5, "spec.classes[1].maxError"),
        (("planner", "solver"), "simplex", "spec.planner.solver"),
    ],
)
def test_bad_values_name_the_field(path: tuple[Any, ...], value: Any, expected: str) -> None:
    doc = _pool_doc()
    target = doc["spec"]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    message = _error(doc)
    assert expected in message
    assert "InferencePool 'assistant'" in message


def test_missing_rate_and_unknown_field() -> None:
    doc = _pool_doc()
    del doc["spec"]["classes"][0]["rate"]
    assert "spec.classes[0].rate: Field required" in _error(doc)
    doc = _pool_doc()
    doc["spec"]["nodePools"][0]["gpuCount"] = 3
    assert "spec.nodePools[0].gpuCount" in _error(doc)


def test_classes_or_classes_from_exactly_one() -> None:
    doc = _pool_doc()
    doc["spec"]["classesFrom"] = "job"
    assert "exactly one of classes" in _error(doc)
    del doc["spec"]["classes"]
    del doc["spec"]["classesFrom"]
    assert "exactly one of classes" in _error(doc)


def test_duplicate_names_rejected() -> None:
    doc = _pool_doc()
    doc["spec"]["nodePools"][1]["name"] = "h100"
    assert "nodePools[1].name='h100' is used twice" in _error(doc)
    doc = _pool_doc()
    doc["spec"]["classes"][1]["name"] = "chat"
    assert "classes[1].name='chat' is used twice" in _error(doc)


def test_unserved_share_needs_a_penalty() -> None:
    doc = _pool_doc()
    doc["spec"]["classes"][0]["maxUnservedShare"] = 0.2
    assert "needs a penalty" in _error(doc)


def test_catalog_checks() -> None:
    base = yaml.safe_load(CATALOG.read_text())["spec"]
    bad = copy.deepcopy(base)
    bad["models"][0]["precisions"] = ["bf16", "int4"]
    with pytest.raises(ValidationError, match=r"needs quantizedIds\.int4"):
        ModelCatalogSpec.model_validate(bad)
    bad = copy.deepcopy(base)
    bad["models"][0]["kvHeads"] = 5
    with pytest.raises(ValidationError, match="multiple of kvHeads"):
        ModelCatalogSpec.model_validate(bad)
    bad = copy.deepcopy(base)
    bad["models"][0]["classErrors"]["chat"] = 2.0
    with pytest.raises(ValidationError, match=r"classErrors\['chat'\]=2.0"):
        ModelCatalogSpec.model_validate(bad)


def test_classes_from_resolves_a_classes_file_and_a_query_cluster_job() -> None:
    doc = _pool_doc()
    classes = doc["spec"].pop("classes")
    doc["spec"]["classesFrom"] = "support-clusters"
    manifests = parse_documents([doc, {"classes": classes}], "x.yaml")
    pool = manifests.pools["assistant"]
    assert [c.name for c in manifests.classes_for(pool)] == [c["name"] for c in classes]
    job = {
        "apiVersion": "quartermaster.dev/v1alpha1",
        "kind": "QueryClusterJob",
        "metadata": {"name": "support-clusters"},
        "spec": {},
        "status": {"classes": classes[:2]},
    }
    manifests = parse_documents([doc, job], "x.yaml")
    assert len(manifests.classes_for(manifests.pools["assistant"])) == 2
    pending = dict(job, status={})
    manifests = parse_documents([doc, pending], "x.yaml")
    with pytest.raises(ManifestError, match=r"has no status\.classes yet"):
        manifests.classes_for(manifests.pools["assistant"])


def test_loader_errors(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no such file"):
        load_manifests([tmp_path / "missing.yaml"])
    broken = tmp_path / "broken.yaml"
    broken.write_text("spec: [unclosed")
    with pytest.raises(ManifestError, match="not valid YAML"):
        load_manifests([broken])
    doc = _pool_doc()
    doc["apiVersion"] = "quartermaster.dev/v2"
    with pytest.raises(ManifestError, match=r"use quartermaster\.dev/v1alpha1"):
        parse_documents([doc])
    manifests = parse_documents([_pool_doc()])
    with pytest.raises(ManifestError, match="catalogRef='default'"):
        manifests.catalog_for(manifests.pools["assistant"])
    other = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}
    assert parse_documents([other]).pools == {}


def test_models_are_crd_friendly() -> None:
    """No free-form objects: every property has a type and a description (kubectl explain)."""
    for model in (ModelCatalogSpec, InferencePoolSpec, NodePoolSpec):
        schema = model.model_json_schema(by_alias=True)
        defs = [schema, *schema.get("$defs", {}).values()]
        for definition in defs:
            for name, prop in definition.get("properties", {}).items():
                assert prop.get("description"), f"{definition.get('title')}.{name} has no description"
                assert prop != {"type": "object"}, f"{name} is a free-form object"
