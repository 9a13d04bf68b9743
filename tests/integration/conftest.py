"""Integration fixtures: a real control plane for the whole session and a fresh namespace per test.

By default the session starts its own local control plane (etcd, kube-apiserver, controller-manager,
scheduler, kwok with fake GPU nodes) in a temporary directory and stops it at the end; if it cannot start,
every integration test errors with the component's log tail — nothing is skipped. To run the same suite
against another cluster you started yourself (e.g. kind), opt in explicitly with
``QM_TEST_KUBECONFIG=/path/to/kubeconfig``; the suite never touches any other cluster.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
import yaml
from kubernetes import client, config

from quartermaster.api.crdgen import GROUP, VERSION
from quartermaster.localcluster import binaries
from quartermaster.localcluster.launcher import LocalCluster, free_port
from quartermaster.localcluster.operatorprocess import spawn_operator

T = TypeVar("T")
REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = pathlib.Path(__file__).parent
    for item in items:
        if here in pathlib.Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pathlib.Path]:
    external = os.environ.get("QM_TEST_KUBECONFIG")
    if external:
        yield pathlib.Path(external)
        return
    cluster = LocalCluster(tmp_path_factory.mktemp("controlplane"))
    cluster.start(timeout=90)
    try:
        yield cluster.kubeconfig
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def bin_dir() -> pathlib.Path:
    return binaries.ensure_built()


@pytest.fixture(scope="session")
def api_client(kubeconfig: pathlib.Path) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(kubeconfig))
    yield api
    api.close()


@pytest.fixture
def namespace(api_client: client.ApiClient) -> Iterator[str]:
    name = f"qm-test-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api_client)
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name, propagation_policy="Background")


def wait_for(
    probe: Callable[[], T | None], *, timeout: float = 30.0, interval: float = 0.2, what: str = "condition"
) -> T:
    """Polls ``probe`` until it returns a truthy value; fails with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}; last value: {last!r}")


@pytest.fixture(name="wait_for")
def wait_for_fixture() -> Callable[..., object]:
    return wait_for


@pytest.fixture(scope="session")
def crds(api_client: client.ApiClient) -> list[str]:
    """Server-side-applies the generated CRDs once per run and waits until they are Established."""
    from kubernetes.dynamic import DynamicClient

    from quartermaster.api.crdgen import crd
    from quartermaster.api.crds import KINDS

    resource = DynamicClient(api_client).resources.get(
        api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition"
    )
    names = []
    for kind in KINDS:
        body = crd(kind)
        resource.server_side_apply(
            body=body,
            name=body["metadata"]["name"],
            field_manager="quartermaster-tests",
            force_conflicts=True,
        )
        names.append(body["metadata"]["name"])
    ext = client.ApiextensionsV1Api(api_client)

    def established() -> bool:
        for name in names:
            got = ext.read_custom_resource_definition(name)
            if not any(c.type == "Established" and c.status == "True" for c in got.status.conditions or []):
                return False
        return True

    wait_for(established, what=f"CRDs {names} Established")
    return names


# -- the operator under test ------------------------------------------------------------------------


@dataclass
class OperatorProcess:
    kubeconfig: pathlib.Path
    namespace: str
    log_path: pathlib.Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    metrics_port: int = field(default_factory=free_port)
    health_port: int = field(default_factory=free_port)

    def start(self) -> None:
        self.proc = spawn_operator(
            self.kubeconfig,
            self.namespace,
            self.log_path,
            metrics_port=str(self.metrics_port),
            health_port=str(self.health_port),
            allow_file_urls="true",
        )

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, as when a node dies mid-apply."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
            self.proc = None

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@pytest.fixture
def example() -> Callable[[str], dict[str, Any]]:
    """Loads a fresh copy of an ``examples/`` manifest."""

    def load(name: str) -> dict[str, Any]:
        return dict(yaml.safe_load((REPO_ROOT / "examples" / name).read_text()))

    return load


class Resources:
    """Typed-enough access to the custom resources of one namespace."""

    def __init__(self, api_client: client.ApiClient, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(api_client)
        self.namespace = namespace

    def create(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, body))

    def get(self, plural: str, name: str) -> dict[str, Any]:
        return dict(self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name))

    def patch(self, plural: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(
            self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name, body)
        )

    def delete(self, plural: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name)

    def status(self, plural: str, name: str) -> dict[str, Any]:
        return dict(self.get(plural, name).get("status") or {})

    def in_phase(self, plural: str, name: str, wanted: str) -> Callable[[], dict[str, Any] | None]:
        """A ``wait_for`` probe: the status once ``status.phase == wanted``."""

        def probe() -> dict[str, Any] | None:
            status = self.status(plural, name)
            return status if status.get("phase") == wanted else None

        return probe


@pytest.fixture
def resources(api_client: client.ApiClient, namespace: str) -> Resources:
    return Resources(api_client, namespace)


@pytest.fixture
def operator(
    kubeconfig: pathlib.Path, namespace: str, crds: list[str], tmp_path: pathlib.Path
) -> Iterator[OperatorProcess]:
    """The operator, running as a subprocess watching the test's namespace; its log is shown on failure."""
    proc = OperatorProcess(kubeconfig, namespace, tmp_path / "operator.log")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
        print(f"--- operator log tail ---\n{proc.log_tail()}")
