"""Fixtures for the Helm chart tests: the real ``helm`` binary (built by hack/build-binaries.sh)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from quartermaster.localcluster import binaries

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
CHART = REPO_ROOT / "charts" / "quartermaster"


class Rendered(list[dict[str, Any]]):
    """The objects ``helm template`` rendered, with look-ups by kind and name."""

    def find(self, kind: str, name: str | None = None) -> list[dict[str, Any]]:
        return [o for o in self if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = self.find(kind, name)
        names = [o["metadata"]["name"] for o in found]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {names}"
        return found[0]

    def kinds(self) -> set[str]:
        return {o["kind"] for o in self}


@dataclass(frozen=True)
class Helm:
    """Runs ``helm`` with private cache/config directories and no cluster access."""

    binary: pathlib.Path
    home: pathlib.Path

    def run(
        self, *args: str | os.PathLike[str], check: bool = True, cwd: pathlib.Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
            "KUBECONFIG": str(self.home / "no-kubeconfig"),
        }
        result = subprocess.run(
            [str(self.binary), *map(str, args)],
            capture_output=True,
            text=True,
            env=env,
            cwd=cwd,
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(f"helm {' '.join(map(str, args))} failed ({result.returncode}):\n{result.stderr}")
        return result

    def values_file(self, values: dict[str, Any]) -> pathlib.Path:
        path = self.home / f"values-{uuid.uuid4().hex[:12]}.yaml"
        path.write_text(yaml.safe_dump(values))
        return path

    def template_raw(
        self,
        values: dict[str, Any] | None = None,
        *,
        chart: pathlib.Path = CHART,
        release: str = "qm",
        namespace: str = "qm-system",
        extra: Sequence[str] = (),
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        args: list[str | os.PathLike[str]] = ["template", release, chart, "--namespace", namespace, *extra]
        if values is not None:
            args += ["--values", self.values_file(values)]
        return self.run(*args, check=check)

    def template(self, values: dict[str, Any] | None = None, **kwargs: Any) -> Rendered:
        """The rendered objects (hooks included), in helm's order."""
        out = self.template_raw(values, **kwargs).stdout
        return Rendered(doc for doc in yaml.safe_load_all(out) if doc)


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    binary = binaries.ensure_built() / "helm"
    return Helm(binary, tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="session")
def default_objects(helm: Helm) -> Rendered:
    return helm.template()
