"""Desired Kubernetes objects, built by pure functions from the plan and the specs (golden-file tested).

Every object carries the ``app.kubernetes.io/managed-by: quartermaster`` label, the owning custom
resource's label and an owner reference, so garbage collection removes what a deleted owner left behind
and the operator can list exactly what it owns.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from quartermaster.api.crdgen import GROUP, VERSION
from quartermaster.api.pool import NodePoolSpec
from quartermaster.api.poolstatus import PlannedDeployment

MANAGED_BY = {"app.kubernetes.io/managed-by": "quartermaster"}
POOL_LABEL = f"{GROUP}/inference-pool"
DEPLOYMENT_LABEL = f"{GROUP}/deployment"
PLAN_HASH_ANNOTATION = f"{GROUP}/plan-hash"
CONTENT_HASH_ANNOTATION = f"{GROUP}/content-hash"
GPU_RESOURCE = "nvidia.com/gpu"
VLLM_PORT = 8000


@dataclass(frozen=True)
class Owner:
    """The custom resource that owns the objects (from its metadata)."""

    kind: str
    name: str
    namespace: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def dns_name(*parts: str, limit: int = 63) -> str:
    """An RFC 1123 label from ``parts``; too long names keep a hash suffix so they stay unique."""
    raw = "-".join(p for p in parts if p)
    name = re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-")
    name = re.sub(r"-{2,}", "-", name)
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
    return f"{name[: limit - 9].rstrip('-')}-{digest}"


def deployment_name(pool: str, option: str) -> str:
    """Name of a plan's Deployment: a change of model, precision, node pool or parallelism is a new name."""
    return dns_name(pool, option.replace("/", "-"))


def _metadata(owner: Owner, name: str, extra_labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": {**MANAGED_BY, POOL_LABEL: owner.name, **(extra_labels or {})},
        "ownerReferences": [owner.reference()],
    }


def vllm_deployment(
    owner: Owner, d: PlannedDeployment, node_pool: NodePoolSpec, *, image: str, plan_hash: str
) -> dict[str, Any]:
    """The vLLM Deployment of one planned deployment (``d.name`` is its object name)."""
    name = d.name
    selector = {DEPLOYMENT_LABEL: name}
    gpus = d.tensor_parallel * d.pipeline_parallel
    labels = {
        **selector,
        "app.kubernetes.io/name": "vllm",
        "app.kubernetes.io/instance": name,
        f"{GROUP}/model": dns_name(d.model),
        f"{GROUP}/node-pool": node_pool.name,
    }
    meta = _metadata(owner, name, labels)
    meta["annotations"] = {PLAN_HASH_ANNOTATION: plan_hash}
    container = {
        "name": "vllm",
        "image": d.image or image,
        "args": list(d.args),
        "ports": [{"name": "http", "containerPort": VLLM_PORT, "protocol": "TCP"}],
        "resources": {"limits": {GPU_RESOURCE: str(gpus)}, "requests": {GPU_RESOURCE: str(gpus)}},
        "readinessProbe": {
            "httpGet": {"path": "/health", "port": "http"},
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        "startupProbe": {
            "httpGet": {"path": "/health", "port": "http"},
            "periodSeconds": 10,
            "failureThreshold": 180,
        },
        "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": d.replicas,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [container],
                    "nodeSelector": dict(node_pool.node_selector),
                    "tolerations": [
                        t.model_dump(by_alias=True, exclude_none=True) for t in node_pool.tolerations
                    ],
                    "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory"}}],
                },
            },
        },
    }


def vllm_service(owner: Owner, d: PlannedDeployment) -> dict[str, Any]:
    name = d.name
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(owner, name, {DEPLOYMENT_LABEL: name}),
        "spec": {
            "selector": {DEPLOYMENT_LABEL: name},
            "ports": [{"name": "http", "port": VLLM_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def service_url(owner: Owner, d: PlannedDeployment) -> str:
    return f"http://{d.name}.{owner.namespace}.svc:{VLLM_PORT}/v1"


def config_map(
    owner: Owner, name: str, data: dict[str, str], *, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    """A ConfigMap with a content-hash annotation (the SHA-256 over its sorted keys and values)."""
    digest = hashlib.sha256()
    for key in sorted(data):
        digest.update(key.encode() + b"\0" + data[key].encode() + b"\0")
    meta = _metadata(owner, name, labels)
    meta["annotations"] = {CONTENT_HASH_ANNOTATION: digest.hexdigest()}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}
