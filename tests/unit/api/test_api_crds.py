"""CRDs are generated from the models: the committed copy must match and every schema be structural."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
from pydantic import BaseModel, Field

from quartermaster.api.crdgen import SchemaError, structural
from quartermaster.api.crds import KINDS, render

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]


def test_committed_crds_match_the_models() -> None:
    for name, text in render().items():
        committed = REPO_ROOT / "crds" / name
        assert committed.exists(), f"crds/{name} is missing: run `make manifests`"
        assert committed.read_text() == text, f"crds/{name} drifted from the models: run `make manifests`"


def _walk(node: dict[str, Any], path: str) -> None:
    assert not {"$ref", "anyOf", "allOf"} & set(node), path
    assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), f"{path} has no type"
    assert node.get("default", 0) is not None, f"{path} has a null default"
    for name, sub in node.get("properties", {}).items():
        _walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        _walk(node["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_every_schema_node_is_structural_and_documented(kind: Any) -> None:
    for part in (kind.spec, kind.status):
        schema = structural(part)
        _walk(schema, part.__name__)
        for name, sub in schema["properties"].items():
            assert sub.get("description"), f"{part.__name__}.{name} has no description (kubectl explain)"


def test_short_names_avoid_the_gateway_api_inference_pool() -> None:
    names = {n for kind in KINDS for n in kind.short_names}
    assert not names & {"infpool", "inferencepool", "ip", "pool"}
    assert len(names) == sum(len(k.short_names) for k in KINDS)


def test_nullable_exclusive_bounds_and_enums_translate_to_openapi_v3() -> None:
    class Inner(BaseModel):
        level: int = Field(ge=1, description="level")

    class Sample(BaseModel):
        share: float | None = Field(default=None, gt=0, le=1, description="share")
        mode: str = Field(default="a", pattern="^[ab]$", description="mode")
        inner: Inner = Field(description="inner")
        weights: dict[str, float] = Field(default_factory=dict, description="weights")

    schema = structural(Sample)
    share = schema["properties"]["share"]
    assert share == {
        "type": "number",
        "minimum": 0,
        "exclusiveMinimum": True,
        "maximum": 1,
        "description": "share",
        "nullable": True,
    }
    assert schema["properties"]["inner"]["properties"]["level"]["minimum"] == 1
    assert schema["properties"]["weights"]["additionalProperties"] == {"type": "number"}


def test_untyped_fields_are_refused_with_their_path() -> None:
    class Loose(BaseModel):
        anything: Any = None

    with pytest.raises(SchemaError, match=r"Loose\.anything"):
        structural(Loose)
