"""CustomResourceDefinitions generated from the pydantic models (the models are the source of truth).

Pydantic emits JSON Schema 2020-12 with ``$defs``/``$ref``; Kubernetes wants a *structural* OpenAPI v3.0
schema: every node typed, no references, no ``anyOf`` carrying types, ``nullable`` instead of a null type,
boolean ``exclusiveMinimum``. :func:`structural` performs that translation and keeps descriptions (for
``kubectl explain``), defaults, enums, bounds, patterns and CEL rules placed on a model with
``json_schema_extra={"x-kubernetes-validations": [...]}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

GROUP = "quartermaster.dev"
VERSION = "v1alpha1"
CATEGORY = "quartermaster"

_KEEP = {
    "type",
    "description",
    "default",
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "pattern",
    "format",
    "items",
    "properties",
    "required",
    "additionalProperties",
    "x-kubernetes-validations",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-int-or-string",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "nullable",
    "minProperties",
    "maxProperties",
}
_FORMATS = {"int32", "int64", "float", "double", "byte", "date-time", "date", "duration", "uri"}


class SchemaError(ValueError):
    """A model cannot be expressed as a structural schema; the message names the path."""


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        extra = {k: v for k, v in node.items() if k != "$ref"}
        node = {**defs[name], **extra}
    return node


def _convert(node: dict[str, Any], defs: dict[str, Any], path: str) -> dict[str, Any]:
    node = _resolve(dict(node), defs)
    nullable = False
    if "anyOf" in node or "oneOf" in node:
        options = [_resolve(o, defs) for o in node.pop("anyOf", None) or node.pop("oneOf")]
        typed = [o for o in options if o.get("type") != "null"]
        nullable = len(typed) != len(options)
        if len(typed) != 1:
            raise SchemaError(f"{path}: unions of several types are not structural; use one type")
        merged = {**typed[0], **{k: v for k, v in node.items() if k not in ("anyOf", "oneOf")}}
        node = _resolve(merged, defs)
    if "allOf" in node:
        parts = node.pop("allOf")
        for part in parts:
            node = {**_resolve(part, defs), **node}
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if "exclusiveMinimum" in node:
        node["minimum"] = node.pop("exclusiveMinimum")
        node["exclusiveMinimum"] = True
    if "exclusiveMaximum" in node:
        node["maximum"] = node.pop("exclusiveMaximum")
        node["exclusiveMaximum"] = True
    if "type" not in node:
        if "enum" in node:
            node["type"] = "string" if all(isinstance(v, str) for v in node["enum"]) else "number"
        elif "properties" in node:
            node["type"] = "object"
        elif not node.get("x-kubernetes-preserve-unknown-fields"):
            raise SchemaError(f"{path}: no type (Any fields are not structural)")
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: _convert(sub, defs, f"{path}.{name}") for name, sub in value.items()}
        elif key == "items":
            out[key] = _convert(value, defs, f"{path}[]")
        elif key == "additionalProperties":
            if isinstance(value, dict):
                out[key] = _convert(value, defs, f"{path}{{}}")
            elif value is True:
                out["x-kubernetes-preserve-unknown-fields"] = True
        elif key == "format":
            if value in _FORMATS:
                out[key] = value
        elif key == "default" and value is None:
            continue
        elif key in ("exclusiveMinimum", "exclusiveMaximum") or key in _KEEP:
            out[key] = value
    if nullable:
        out["nullable"] = True
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out.setdefault("x-kubernetes-preserve-unknown-fields", True)
    if out.get("required") == []:
        del out["required"]
    return out


def structural(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of ``model`` as Kubernetes accepts it (camelCase field names)."""
    schema = model.model_json_schema(by_alias=True, mode="validation", ref_template="#/$defs/{model}")
    defs = schema.pop("$defs", {})
    return _convert(schema, defs, model.__name__)


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    type: str = "string"
    description: str = ""
    priority: int = 0

    def as_dict(self) -> dict[str, Any]:
        column: dict[str, Any] = {"name": self.name, "type": self.type, "jsonPath": self.json_path}
        if self.description:
            column["description"] = self.description
        if self.priority:
            column["priority"] = self.priority
        return column


@dataclass(frozen=True)
class Kind:
    """One custom resource kind: its names and its spec/status models."""

    kind: str
    plural: str
    short_names: tuple[str, ...]
    spec: type[BaseModel]
    status: type[BaseModel]
    description: str
    columns: tuple[PrinterColumn, ...] = field(default=())

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


def crd(kind: Kind) -> dict[str, Any]:
    """The apiextensions.k8s.io/v1 CustomResourceDefinition for ``kind``."""
    columns = [c.as_dict() for c in kind.columns]
    columns.append({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"})
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": kind.crd_name,
            "labels": {"app.kubernetes.io/part-of": "quartermaster"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.kind.lower(),
                "shortNames": list(kind.short_names),
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": kind.description,
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": structural(kind.spec),
                                "status": structural(kind.status),
                            },
                        }
                    },
                }
            ],
        },
    }
