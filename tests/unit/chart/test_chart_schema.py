"""values.schema.json: strict at every level, and helm rejects bad values with a message naming them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from .conftest import CHART

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
# Helm passes a parent chart's globals to subcharts; they are not ours to restrict.
OPEN_ON_PURPOSE = {"$.properties.global"}


def object_schemas(node: Any, path: str = "$") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if node.get("type") == "object":
            yield path, node
        for key, value in node.items():
            yield from object_schemas(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from object_schemas(value, f"{path}[{index}]")


def test_every_object_level_forbids_unknown_keys() -> None:
    found = dict(object_schemas(SCHEMA))
    assert len(found) > 40
    for path, node in found.items():
        if path in OPEN_ON_PURPOSE:
            continue
        extra = node.get("additionalProperties")
        assert extra is False or (isinstance(extra, dict) and extra.get("type") == "string"), path
        if extra is False:
            assert node.get("properties"), f"{path} accepts no key at all"


def test_every_value_in_values_yaml_is_described_by_the_schema() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        if "$ref" in node:
            return resolve(SCHEMA["definitions"][node["$ref"].rsplit("/", 1)[-1]])
        if "allOf" in node:
            return resolve(node["allOf"][0])
        return node

    def walk(value: Any, node: dict[str, Any], path: str) -> None:
        node = resolve(node)
        if isinstance(value, dict) and node.get("additionalProperties") is False:
            for key, child in value.items():
                assert key in node["properties"], f"{path}.{key} is in values.yaml but not in the schema"
                walk(child, node["properties"][key], f"{path}.{key}")

    walk(values, SCHEMA, "$")
    assert set(values) == set(SCHEMA["properties"]) - {"global"}


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"replicas": 2}, "replicas"),
        ({"crds": {"enable": True}}, "enable"),
        ({"operator": {"logformat": "json"}}, "logformat"),
        ({"router": {"service": {"nodePort": 30000}}}, "nodePort"),
        ({"securityContext": {"runAsRoot": True}}, "runAsRoot"),
        ({"operator": {"extraEnv": [{"name": "X", "valu": "1"}]}}, "valu"),
    ],
)
def test_unknown_values_are_rejected_naming_the_key(helm: Any, values: dict[str, Any], named: str) -> None:
    result = helm.template_raw(values, check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert named in result.stderr


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"replicaCount": -1}, "replicaCount"),
        ({"replicaCount": "2"}, "replicaCount"),
        ({"operator": {"logFormat": "xml"}}, "logFormat"),
        ({"watchNamespace": "Team_A"}, "watchNamespace"),
        ({"image": {"digest": "latest"}}, "digest"),
        ({"router": {"port": 70000}}, "port"),
        ({"crds": {"keep": "yes"}}, "keep"),
    ],
)
def test_values_of_the_wrong_type_or_range_are_rejected(
    helm: Any, values: dict[str, Any], named: str
) -> None:
    result = helm.template_raw(values, check=False)
    assert result.returncode != 0
    assert named in result.stderr
