"""The chart, the container image definition and the Python package agree with each other."""

from __future__ import annotations

import re
from typing import Any

import yaml

import quartermaster
from quartermaster.operator.settings import OperatorSettings

from .conftest import CHART, REPO_ROOT


def test_chart_app_version_is_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == quartermaster.__version__


def test_default_image_is_the_operators_default_job_image(default_objects: Any) -> None:
    container = default_objects.one("Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == OperatorSettings.model_fields["operator_image"].default


def test_dockerfile_runs_as_the_uid_the_chart_expects_with_the_cli_entrypoint() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    user = re.findall(r"^USER\s+(\d+):(\d+)\s*$", dockerfile, re.MULTILINE)
    assert user == [
        (str(values["podSecurityContext"]["runAsUser"]), str(values["podSecurityContext"]["runAsGroup"]))
    ]
    assert re.search(r"^FROM\s+\$\{PYTHON_IMAGE\}\s*$", dockerfile, re.MULTILINE)
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in dockerfile
    assert re.search(r'^ENTRYPOINT \["quartermaster"\]$', dockerfile, re.MULTILINE)
    assert re.search(r"pip install \.", dockerfile)


def test_dockerignore_sends_only_what_the_dockerfile_copies() -> None:
    lines = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    copied = set(
        re.findall(r"^COPY (?!--from)(.+) \S+$", (REPO_ROOT / "Dockerfile").read_text(), re.MULTILINE)
    )
    sources = {src.rstrip("/") for group in copied for src in group.split()}
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert sources == allowed
