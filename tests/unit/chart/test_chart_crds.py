"""The chart's CRD templates are exactly what the pydantic models generate (they never drift)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from types import ModuleType
from typing import Any

import hypothesis.strategies as st
import yaml
from hypothesis import given, settings

from quartermaster.api.crdgen import crd
from quartermaster.api.crds import KINDS

from .conftest import CHART, REPO_ROOT


def load_chart_crds() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hack_chart_crds", REPO_ROOT / "hack" / "chart_crds.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


chart_crds = load_chart_crds()
TEMPLATES_DIR = CHART / "templates" / "crds"
ADDED_LABELS = {"helm.sh/chart", "app.kubernetes.io/name", "app.kubernetes.io/instance"}
ADDED_LABELS |= {"app.kubernetes.io/version", "app.kubernetes.io/managed-by"}


def without_chart_metadata(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` minus what the chart adds: the keep annotation and the instance labels."""
    meta = dict(obj["metadata"])
    annotations = {k: v for k, v in meta.pop("annotations", {}).items() if k != "helm.sh/resource-policy"}
    labels = {k: v for k, v in meta.pop("labels", {}).items() if k not in ADDED_LABELS}
    if annotations:
        meta["annotations"] = annotations
    if labels:
        meta["labels"] = labels
    return {**obj, "metadata": meta}


def test_committed_templates_are_regenerated_identically() -> None:
    expected = chart_crds.templates()
    committed = {p.name: p.read_text() for p in TEMPLATES_DIR.glob("*.quartermaster.dev.yaml")}
    assert set(committed) == set(expected), "run `make manifests` (hack/chart_crds.py)"
    for name, text in expected.items():
        assert committed[name] == text, f"{name} is stale: run `make manifests` (hack/chart_crds.py)"


def test_rendered_crds_equal_the_generated_objects(default_objects: Any) -> None:
    rendered = {c["metadata"]["name"]: c for c in default_objects.find("CustomResourceDefinition")}
    generated = {crd(kind)["metadata"]["name"]: crd(kind) for kind in KINDS}
    assert set(rendered) == set(generated)
    for name, obj in generated.items():
        assert without_chart_metadata(rendered[name]) == obj, name
        assert rendered[name]["metadata"]["labels"]["app.kubernetes.io/instance"] == "qm"


def test_committed_crds_dir_agrees_with_the_chart(default_objects: Any) -> None:
    """``crds/`` (for kubectl users) and the chart install the same objects."""
    rendered = {c["metadata"]["name"]: c for c in default_objects.find("CustomResourceDefinition")}
    for path in (REPO_ROOT / "crds").glob("*.quartermaster.dev.yaml"):
        obj = yaml.safe_load(path.read_text())
        assert without_chart_metadata(rendered[obj["metadata"]["name"]]) == obj, path.name


def test_writing_removes_stale_templates_only(tmp_path: Any) -> None:
    (tmp_path / "gone.quartermaster.dev.yaml").write_text("stale")
    (tmp_path / "other.yaml").write_text("kept")
    written = chart_crds.write(tmp_path)
    assert sorted(p.name for p in written) == sorted(
        p.name for p in tmp_path.glob("*.quartermaster.dev.yaml")
    )
    assert (tmp_path / "other.yaml").read_text() == "kept"
    assert chart_crds.main(["a", "b"]) == 2


# Text the template engine would otherwise interpret, and YAML-significant characters.
TRICKY = st.text(alphabet=st.sampled_from(list("{}-. \"'|:#$%\\\nabc")), min_size=1, max_size=40)


@settings(max_examples=8, deadline=None)
@given(descriptions=st.lists(TRICKY, min_size=1, max_size=6), annotate=st.booleans())
def test_generated_text_reaches_the_api_server_verbatim(
    helm: Any, tmp_path_factory: Any, descriptions: list[str], annotate: bool
) -> None:
    chart = tmp_path_factory.mktemp("chart")
    shutil.copy(CHART / "Chart.yaml", chart / "Chart.yaml")
    (chart / "templates").mkdir()
    shutil.copy(CHART / "templates" / "_helpers.tpl", chart / "templates" / "_helpers.tpl")
    (chart / "values.yaml").write_text("crds: {enabled: true, keep: true}\n")
    docs = []
    for index, text in enumerate([*descriptions, "{{ .Values.crds.enabled }}", '{{- fail "no" }}']):
        doc = {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"x{index}.example.dev", "labels": {"a": "{{ b }}"}},
            "spec": {"description": text, "list": [text, {"k": text}]},
        }
        if annotate:
            doc["metadata"]["annotations"] = {"note": text}
        (chart / "templates" / f"x{index}.yaml").write_text(chart_crds.template_for(doc))
        docs.append(doc)
    rendered = helm.template(chart=chart)
    assert len(rendered) == len(docs)
    by_name = {o["metadata"]["name"]: o for o in rendered}
    for doc in docs:
        out = by_name[doc["metadata"]["name"]]
        assert out["spec"] == doc["spec"]
        assert out["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert without_chart_metadata(out) == doc
