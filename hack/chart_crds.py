"""Turns the generated CRDs into the Helm chart's CRD templates (cert-manager style).

``make manifests`` writes the CRDs generated from ``quartermaster.api`` into ``crds/`` and calls this to
write ``charts/quartermaster/templates/crds/<plural>.<group>.yaml``: the same objects, wrapped in
``{{- if .Values.crds.enabled }}``, with ``helm.sh/resource-policy: keep`` when ``crds.keep`` is true and
the chart's instance labels added. Generated text that looks like a template action (``{{``) is escaped,
so descriptions reach the API server verbatim. A unit test compares the committed templates with
:func:`templates` and renders them with ``helm template`` against the generator's objects.

Usage: ``python hack/chart_crds.py [DIR]`` (default ``charts/quartermaster/templates/crds``).
"""

from __future__ import annotations

import pathlib
import sys
from typing import Any

import yaml

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_DIR = REPO_ROOT / "charts" / "quartermaster" / "templates" / "crds"
KEEP_ANNOTATION = "helm.sh/resource-policy"
HEADER = (
    "{{- /* Generated from quartermaster.api by `make manifests` (hack/chart_crds.py); do not edit. */}}\n"
)


def escape(text: str) -> str:
    """Makes ``text`` literal inside a Go template (``{{`` opens an action; a lone ``}}`` is plain text)."""
    return text.replace("{{", '{{ "{{" }}')


def _yaml(value: Any, indent: int) -> str:
    """Block YAML of ``value`` indented by ``indent`` spaces, escaped for the template engine."""
    text = yaml.safe_dump(value, sort_keys=False, width=100, default_flow_style=False)
    pad = " " * indent
    return escape("".join(pad + line if line.strip() else line for line in text.splitlines(keepends=True)))


def template_for(doc: dict[str, Any]) -> str:
    """The chart template of one generated CRD object (``doc`` as produced by ``crdgen.crd``)."""
    meta = dict(doc["metadata"])
    name = meta.pop("name")
    labels: dict[str, str] = meta.pop("labels", None) or {}
    annotations: dict[str, str] = meta.pop("annotations", None) or {}
    if meta:
        raise ValueError(
            f"CRD {name}: metadata fields {sorted(meta)} are not supported by hack/chart_crds.py; "
            "generate only name, labels and annotations (or teach template_for about the new field)"
        )
    if KEEP_ANNOTATION in annotations:
        raise ValueError(
            f"CRD {name}: the generator must not set {KEEP_ANNOTATION}; the chart's crds.keep does"
        )
    parts = [
        HEADER,
        "{{- if .Values.crds.enabled }}\n",
        _yaml({"apiVersion": doc["apiVersion"], "kind": doc["kind"]}, 0),
        "metadata:\n",
        _yaml({"name": name}, 2),
    ]
    if annotations:
        parts += ["  annotations:\n", _yaml(annotations, 4)]
        parts += ["    {{- if .Values.crds.keep }}\n", f"    {KEEP_ANNOTATION}: keep\n", "    {{- end }}\n"]
    else:
        parts += ["  {{- if .Values.crds.keep }}\n", "  annotations:\n", f"    {KEEP_ANNOTATION}: keep\n"]
        parts += ["  {{- end }}\n"]
    parts += ["  labels:\n", _yaml(labels, 4) if labels else ""]
    parts += ['    {{- include "quartermaster.crdLabels" . | nindent 4 }}\n']
    parts += [_yaml({k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}, 0)]
    parts += ["{{- end }}\n"]
    return "".join(parts)


def templates() -> dict[str, str]:
    """File name -> chart template of every CRD, from the current pydantic models."""
    sys.path.insert(0, str(REPO_ROOT / "src"))
    from quartermaster.api.crds import render

    result: dict[str, str] = {}
    for name, text in render().items():
        docs = [d for d in yaml.safe_load_all(text) if d]
        if len(docs) != 1:
            raise ValueError(f"{name}: expected one CRD object, found {len(docs)}")
        result[name] = template_for(docs[0])
    return result


def write(directory: pathlib.Path = DEFAULT_DIR) -> list[pathlib.Path]:
    """Writes the templates into ``directory``, removing stale generated ones; returns the paths written."""
    from quartermaster.api.crdgen import GROUP

    files = templates()
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob(f"*.{GROUP}.yaml"):
        if stale.name not in files:
            stale.unlink()
    written = []
    for name, text in files.items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        print("usage: python hack/chart_crds.py [DIR]", file=sys.stderr)
        return 2
    directory = pathlib.Path(argv[0]) if argv else DEFAULT_DIR
    for path in write(directory):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
