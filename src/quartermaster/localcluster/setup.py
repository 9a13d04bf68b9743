"""Populates a fresh control plane: the fake GPU nodes, then waits until kwok reports them Ready."""

from __future__ import annotations

import pathlib
import time

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from quartermaster.localcluster.nodes import NodePool, node_manifests


class NodesNotReadyError(RuntimeError):
    pass


def create_nodes(kubeconfig: pathlib.Path, pools: tuple[NodePool, ...], *, deadline: float) -> None:
    api_client = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    try:
        core = client.CoreV1Api(api_client)
        manifests = node_manifests(pools)
        for manifest in manifests:
            try:
                core.create_node(manifest)  # type: ignore[arg-type]  # the client accepts dicts
            except ApiException as exc:
                if exc.status != 409:
                    raise
        names = {m["metadata"]["name"] for m in manifests}
        not_ready = set(names)
        while time.monotonic() < deadline:
            not_ready = set(names)
            for node in core.list_node().items:
                status, meta = node.status, node.metadata
                conditions = {c.type: c.status for c in (status.conditions if status else None) or []}
                if meta and conditions.get("Ready") == "True":
                    not_ready.discard(meta.name)
            if not not_ready:
                return
            time.sleep(0.2)
        raise NodesNotReadyError(
            f"kwok did not mark nodes {sorted(not_ready)} Ready in time; see the kwok log"
        )
    finally:
        api_client.close()
