"""Where the locally built control-plane binaries live, and building them when missing.

The binaries are built from Go modules by ``hack/build-binaries.sh`` into a cache directory keyed by
the pinned versions in ``hack/versions.env``, outside the repository. This module only uses the
standard library so the shell scripts can call it before the package's dependencies are installed.
"""

from __future__ import annotations

import os
import pathlib
import subprocess

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
HACK_DIR = REPO_ROOT / "hack"
BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
    "kwokctl",
    "helm",
)


class BinariesMissingError(RuntimeError):
    """The control-plane binaries are not built and could not be built."""


def versions(path: pathlib.Path | None = None) -> dict[str, str]:
    """Parses ``hack/versions.env`` (KEY=VALUE lines) into a dict."""
    path = path or HACK_DIR / "versions.env"
    result: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            result[key.strip()] = value.strip()
    return result


def cache_root() -> pathlib.Path:
    if "QM_CACHE_DIR" in os.environ:
        return pathlib.Path(os.environ["QM_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(pathlib.Path.home() / ".cache")
    return pathlib.Path(base) / "quartermaster"


def bin_dir() -> pathlib.Path:
    """``<cache>/k8s-v1.37.1_etcd-v3.7.0_kwok-v0.8.0_helm-v3.22.0/bin``."""
    v = versions()
    key = "_".join(
        f"{name}-{v[var]}"
        for name, var in (
            ("k8s", "K8S_VERSION"),
            ("etcd", "ETCD_VERSION"),
            ("kwok", "KWOK_VERSION"),
            ("helm", "HELM_VERSION"),
        )
    )
    return cache_root() / key / "bin"


def missing() -> list[str]:
    directory = bin_dir()
    return [name for name in BINARIES if not os.access(directory / name, os.X_OK)]


def ensure_built() -> pathlib.Path:
    """Returns the bin directory, building missing binaries first (tens of minutes when cold)."""
    if missing():
        result = subprocess.run(["bash", str(HACK_DIR / "build-binaries.sh")], check=False)
        if result.returncode != 0 or missing():
            raise BinariesMissingError(
                f"control-plane binaries {missing()} are missing from {bin_dir()} and "
                "hack/build-binaries.sh failed; its output above names the failing step"
            )
    return bin_dir()
