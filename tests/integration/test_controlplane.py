"""Smoke tests of the local control plane: the API server, CRDs with CEL, GPU scheduling, Jobs, tools."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from quartermaster.localcluster import binaries
from quartermaster.localcluster.nodes import GPU_RESOURCE, POOL_LABEL

VERSIONS = binaries.versions()
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}


def gpu_deployment(name: str, gpus: int, pool: str | None) -> dict[str, Any]:
    pod_spec: dict[str, Any] = {
        "containers": [
            {
                "name": "vllm",
                "image": "vllm/vllm-openai:v0.11.0",
                "resources": {"limits": {GPU_RESOURCE: str(gpus)}},
            }
        ],
        "tolerations": [GPU_TOLERATION],
    }
    if pool:
        pod_spec["nodeSelector"] = {POOL_LABEL: pool}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec},
        },
    }


def test_api_server_is_ready_and_reports_the_pinned_version(api_client: client.ApiClient) -> None:
    info = client.VersionApi(api_client).get_code()
    assert info.git_version == VERSIONS["K8S_VERSION"]
    method, url, headers, body, _ = api_client.param_serialize("GET", "/readyz")
    response = api_client.call_api(method, url, headers, body)
    response.read()
    assert response.status == 200
    assert response.data == b"ok"


def test_fake_gpu_node_pools_exist_with_gpu_capacity(api_client: client.ApiClient) -> None:
    nodes = client.CoreV1Api(api_client).list_node(label_selector=POOL_LABEL).items
    gpus_by_pool: dict[str, int] = {}
    for node in nodes:
        pool = node.metadata.labels[POOL_LABEL]
        gpus_by_pool[pool] = gpus_by_pool.get(pool, 0) + int(node.status.allocatable.get(GPU_RESOURCE, "0"))
        assert {c.type: c.status for c in node.status.conditions}["Ready"] == "True"
    assert gpus_by_pool == {"h100": 16, "a100": 32, "l40s": 16, "a10g": 8, "cpu": 0}


def test_crd_with_cel_rule_rejects_invalid_objects(
    api_client: client.ApiClient, namespace: str, wait_for: Callable[..., Any]
) -> None:
    group = f"smoke{uuid.uuid4().hex[:6]}.quartermaster.dev"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {
                                        "minReplicas": {"type": "integer", "minimum": 0},
                                        "maxReplicas": {"type": "integer", "minimum": 0},
                                    },
                                    "x-kubernetes-validations": [
                                        {
                                            "rule": "self.minReplicas <= self.maxReplicas",
                                            "message": "minReplicas must not exceed maxReplicas",
                                        }
                                    ],
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    ext = client.ApiextensionsV1Api(api_client)
    ext.create_custom_resource_definition(crd)
    try:

        def established() -> bool:
            got = ext.read_custom_resource_definition(f"widgets.{group}")
            return any(c.type == "Established" and c.status == "True" for c in got.status.conditions or [])

        wait_for(established, what="CRD Established")
        custom = client.CustomObjectsApi(api_client)

        def widget(name: str, low: int, high: int) -> dict[str, Any]:
            return {
                "apiVersion": f"{group}/v1",
                "kind": "Widget",
                "metadata": {"name": name},
                "spec": {"minReplicas": low, "maxReplicas": high},
            }

        # The CRD's REST mapping can lag Established by a moment: retry the valid create until it lands.
        def create_valid() -> bool:
            try:
                custom.create_namespaced_custom_object(group, "v1", namespace, "widgets", widget("ok", 1, 2))
            except ApiException as exc:
                if exc.status == 404:
                    return False
                raise
            return True

        wait_for(create_valid, what="the Widget resource to be served")
        with pytest.raises(ApiException) as rejected:
            custom.create_namespaced_custom_object(group, "v1", namespace, "widgets", widget("bad", 3, 2))
        assert rejected.value.status == 422
        assert "minReplicas must not exceed maxReplicas" in str(rejected.value.body)
    finally:
        ext.delete_custom_resource_definition(f"widgets.{group}")


def test_gpu_deployment_lands_on_the_selected_pool_and_becomes_available(
    api_client: client.ApiClient, namespace: str, wait_for: Callable[..., Any]
) -> None:
    apps = client.AppsV1Api(api_client)
    core = client.CoreV1Api(api_client)
    apps.create_namespaced_deployment(namespace, gpu_deployment("two-gpus", 2, "l40s"))

    def available() -> bool:
        status = apps.read_namespaced_deployment_status("two-gpus", namespace).status
        return any(c.type == "Available" and c.status == "True" for c in status.conditions or [])

    wait_for(available, timeout=60, what="Deployment two-gpus Available")
    pods = core.list_namespaced_pod(namespace, label_selector="app=two-gpus").items
    assert len(pods) == 1
    node = core.read_node(pods[0].spec.node_name)
    assert node.metadata.labels[POOL_LABEL] == "l40s"
    assert pods[0].status.phase == "Running"


def test_deployment_asking_for_more_gpus_than_any_node_stays_unschedulable(
    api_client: client.ApiClient, namespace: str, wait_for: Callable[..., Any]
) -> None:
    client.AppsV1Api(api_client).create_namespaced_deployment(namespace, gpu_deployment("too-big", 16, None))
    core = client.CoreV1Api(api_client)

    def unschedulable() -> str | None:
        for pod in core.list_namespaced_pod(namespace, label_selector="app=too-big").items:
            for cond in pod.status.conditions or []:
                if cond.type == "PodScheduled" and cond.status == "False":
                    return f"{cond.reason}: {cond.message}"
        return None

    reason = wait_for(unschedulable, timeout=60, what="PodScheduled=False on the too-big pod")
    assert reason.startswith("Unschedulable")
    assert "nvidia.com/gpu" in reason
    pods = core.list_namespaced_pod(namespace, label_selector="app=too-big").items
    assert all(p.status.phase == "Pending" and not p.spec.node_name for p in pods)


def test_job_runs_to_completion(
    api_client: client.ApiClient, namespace: str, wait_for: Callable[..., Any]
) -> None:
    batch = client.BatchV1Api(api_client)
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "hello"},
        "spec": {
            "completions": 2,
            "parallelism": 2,
            "completionMode": "Indexed",
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "hello", "image": "busybox", "command": ["true"]}],
                }
            },
        },
    }
    batch.create_namespaced_job(namespace, job)

    def complete() -> bool:
        status = batch.read_namespaced_job_status("hello", namespace).status
        return any(c.type == "Complete" and c.status == "True" for c in status.conditions or [])

    wait_for(complete, timeout=60, what="Job hello Complete")
    assert batch.read_namespaced_job_status("hello", namespace).status.succeeded == 2


def _run(argv: list[str], kubeconfig: pathlib.Path) -> str:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    return subprocess.run(argv, check=True, capture_output=True, text=True, env=env, timeout=60).stdout


def test_kubectl_and_helm_report_the_pinned_versions(bin_dir: pathlib.Path, kubeconfig: pathlib.Path) -> None:
    kubectl = json.loads(_run([str(bin_dir / "kubectl"), "version", "-o", "json"], kubeconfig))
    assert kubectl["clientVersion"]["gitVersion"] == VERSIONS["K8S_VERSION"]
    assert kubectl["serverVersion"]["gitVersion"] == VERSIONS["K8S_VERSION"]
    helm = _run([str(bin_dir / "helm"), "version", "--template", "{{.Version}}"], kubeconfig)
    assert helm.strip() == VERSIONS["HELM_VERSION"]
    kwok = _run([str(bin_dir / "kwok"), "--version"], kubeconfig)
    assert VERSIONS["KWOK_VERSION"].lstrip("v") in kwok
