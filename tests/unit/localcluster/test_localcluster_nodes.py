from __future__ import annotations

from quartermaster.localcluster import binaries
from quartermaster.localcluster.nodes import DEFAULT_POOLS, GPU_RESOURCE, POOL_LABEL, node_manifests


def test_default_pools_match_the_documented_gpu_fleet() -> None:
    nodes = node_manifests(DEFAULT_POOLS)
    gpus: dict[str, list[int]] = {}
    for node in nodes:
        pool = node["metadata"]["labels"][POOL_LABEL]
        gpus.setdefault(pool, []).append(int(node["status"]["capacity"].get(GPU_RESOURCE, 0)))
    assert gpus == {"h100": [8] * 2, "a100": [8] * 4, "l40s": [4] * 4, "a10g": [1] * 8, "cpu": [0] * 2}


def test_gpu_nodes_are_tainted_and_cpu_nodes_are_not() -> None:
    for node in node_manifests(DEFAULT_POOLS):
        has_gpu = GPU_RESOURCE in node["status"]["capacity"]
        assert bool(node["spec"]["taints"]) == has_gpu
        assert node["status"]["allocatable"] == node["status"]["capacity"]
        assert node["metadata"]["annotations"] == {"kwok.x-k8s.io/node": "fake"}


def test_cache_dir_is_keyed_by_every_pinned_version() -> None:
    versions = binaries.versions()
    path = str(binaries.bin_dir())
    for key in ("K8S_VERSION", "ETCD_VERSION", "KWOK_VERSION", "HELM_VERSION"):
        assert versions[key] in path
    assert not path.startswith(str(binaries.REPO_ROOT))
