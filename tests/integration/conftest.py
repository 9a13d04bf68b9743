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
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
from kubernetes import client, config

from quartermaster.localcluster import binaries
from quartermaster.localcluster.launcher import LocalCluster

T = TypeVar("T")


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
