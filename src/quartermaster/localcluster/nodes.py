"""Fake GPU node pools for the local control plane (kwok manages these Node objects).

Every node carries ``quartermaster.dev/pool`` and ``quartermaster.dev/gpu-type`` labels, the NVIDIA GPU
feature-discovery labels (``nvidia.com/gpu.product``, ``nvidia.com/gpu.count``, ``nvidia.com/gpu.memory``),
``nvidia.com/gpu`` capacity/allocatable, and, like a real GPU pool, a ``nvidia.com/gpu=present:NoSchedule``
taint so only pods that tolerate it (the vLLM Deployments) land there. A small CPU pool hosts Jobs and
other pods that need no GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

POOL_LABEL = "quartermaster.dev/pool"
GPU_TYPE_LABEL = "quartermaster.dev/gpu-type"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT = {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}
KWOK_ANNOTATION = ("kwok.x-k8s.io/node", "fake")


@dataclass(frozen=True)
class NodePool:
    """``nodes`` fake nodes with ``gpus_per_node`` GPUs of one product each (0 GPUs = a CPU pool)."""

    name: str
    gpu_type: str
    gpu_product: str
    nodes: int
    gpus_per_node: int
    gpu_memory_mib: int = 0
    cpu: str = "96"
    memory: str = "1024Gi"


DEFAULT_POOLS: tuple[NodePool, ...] = (
    NodePool("h100", "H100-80GB", "NVIDIA-H100-80GB-HBM3", 2, 8, 81559),
    NodePool("a100", "A100-80GB", "NVIDIA-A100-SXM4-80GB", 4, 8, 81920),
    NodePool("l40s", "L40S", "NVIDIA-L40S", 4, 4, 46068, cpu="48", memory="384Gi"),
    NodePool("a10g", "A10G", "NVIDIA-A10G", 8, 1, 23028, cpu="8", memory="32Gi"),
    NodePool("cpu", "none", "none", 2, 0, cpu="16", memory="64Gi"),
)


def node_manifests(pools: tuple[NodePool, ...] = DEFAULT_POOLS) -> list[dict[str, Any]]:
    """The Node objects for ``pools``; names are ``<pool>-<index>``."""
    result: list[dict[str, Any]] = []
    for pool in pools:
        for index in range(pool.nodes):
            name = f"{pool.name}-{index}"
            labels = {
                POOL_LABEL: pool.name,
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            }
            capacity = {"cpu": pool.cpu, "memory": pool.memory, "pods": "110"}
            taints: list[dict[str, str]] = []
            if pool.gpus_per_node:
                labels |= {
                    GPU_TYPE_LABEL: pool.gpu_type,
                    GPU_PRODUCT_LABEL: pool.gpu_product,
                    "nvidia.com/gpu.count": str(pool.gpus_per_node),
                    "nvidia.com/gpu.memory": str(pool.gpu_memory_mib),
                }
                capacity[GPU_RESOURCE] = str(pool.gpus_per_node)
                taints.append(dict(GPU_TAINT))
            result.append(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "labels": labels,
                        "annotations": {KWOK_ANNOTATION[0]: KWOK_ANNOTATION[1]},
                    },
                    "spec": {"taints": taints},
                    "status": {"capacity": capacity, "allocatable": dict(capacity)},
                }
            )
    return result
