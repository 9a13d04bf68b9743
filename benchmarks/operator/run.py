"""Operator benchmark on the local control plane (real API server, scheduler, kwok).

1. Apply latency: create an InferencePool (examples/pool.yaml, autoApply) and time until every planned
   Deployment is Available and the router ConfigMap exists; 20 runs, p50/p95 (goal p95 <= 5 s).
2. Scale: create 100 InferencePools at once; time until all are Applied, the operator's peak resident
   memory, and per-reconcile solve times from its Prometheus metrics.

The benchmark cluster has larger fake GPU pools than `make cluster-up` so that 100 pools fit.
Usage: ``.venv/bin/python -m benchmarks.operator.run [--runs 20] [--pools 100] [--quick]``.
"""

from __future__ import annotations

import argparse
import copy
import json
import pathlib
import statistics
import tempfile
import time
import urllib.request
from typing import Any

import psutil
import yaml
from benchmarks.machine import describe
from kubernetes import client, config

from quartermaster.api.crdgen import GROUP, VERSION, crd
from quartermaster.api.crds import KINDS
from quartermaster.localcluster.launcher import LocalCluster, free_port
from quartermaster.localcluster.nodes import NodePool
from quartermaster.localcluster.operatorprocess import spawn_operator

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
POOLS = (
    NodePool("h100", "H100-80GB", "NVIDIA-H100-80GB-HBM3", 8, 8, 81559),
    NodePool("a100", "A100-80GB", "NVIDIA-A100-SXM4-80GB", 8, 8, 81920),
    NodePool("l40s", "L40S", "NVIDIA-L40S", 100, 4, 46068),
    NodePool("a10g", "A10G", "NVIDIA-A10G", 16, 1, 23028),
    NodePool("cpu", "none", "none", 2, 0),
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


class Bench:
    def __init__(self, kubeconfig: pathlib.Path, namespace: str) -> None:
        self.api = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
        self.custom = client.CustomObjectsApi(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.core = client.CoreV1Api(self.api)
        self.namespace = namespace

    def create(self, plural: str, body: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, body)

    def status(self, name: str) -> dict[str, Any]:
        body = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "inferencepools", name
        )
        return dict(body.get("status") or {})

    def converged(self, name: str) -> bool:
        deployments = self.apps.list_namespaced_deployment(
            self.namespace, label_selector=f"quartermaster.dev/inference-pool={name}"
        ).items
        if not deployments or any((d.status.available_replicas or 0) < d.spec.replicas for d in deployments):
            return False
        try:
            self.core.read_namespaced_config_map(f"{name}-router", self.namespace)
        except client.exceptions.ApiException:
            return False
        return True


def pool_body(name: str) -> dict[str, Any]:
    body = copy.deepcopy(yaml.safe_load((REPO / "examples" / "pool.yaml").read_text()))
    body["metadata"] = {"name": name}
    body["spec"]["autoApply"] = True
    for node_pool in body["spec"]["nodePools"]:  # the benchmark cluster is larger
        node_pool["gpus"] = {"h100": 64, "a100": 64, "l40s": 400, "a10g": 16}[node_pool["name"]]
    return body


def solve_seconds(metrics_port: int) -> tuple[float, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith("quartermaster_solve_seconds_sum"):
            total = float(line.split()[-1])
        elif line.startswith("quartermaster_solve_seconds_count"):
            count = float(line.split()[-1])
    return total, count


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--pools", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="5 runs and 10 pools")
    args = parser.parse_args()
    runs, pools = (5, 10) if args.quick else (args.runs, args.pools)

    with tempfile.TemporaryDirectory() as tmp:
        cluster = LocalCluster(pathlib.Path(tmp) / "cluster", pools=POOLS)
        started = time.monotonic()
        cluster.start(timeout=120)
        startup = time.monotonic() - started
        namespace = "bench"
        bench = Bench(cluster.kubeconfig, namespace)
        bench.core.create_namespace({"metadata": {"name": namespace}})
        from kubernetes.dynamic import DynamicClient

        crd_api = DynamicClient(bench.api).resources.get(  # type: ignore[no-untyped-call]
            api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition"
        )
        for kind in KINDS:
            body = crd(kind)
            crd_api.server_side_apply(body=body, name=body["metadata"]["name"], field_manager="bench")
        time.sleep(2)
        metrics_port = free_port()
        operator = spawn_operator(
            cluster.kubeconfig, namespace, pathlib.Path(tmp) / "operator.log", metrics_port=str(metrics_port)
        )
        proc = psutil.Process(operator.pid)
        peak_rss = 0
        try:
            time.sleep(3)
            bench.create("modelcatalogs", yaml.safe_load((REPO / "examples" / "catalog.yaml").read_text()))
            latencies = []
            for run in range(runs):
                name = f"latency-{run}"
                t0 = time.monotonic()
                bench.create("inferencepools", pool_body(name))
                while not bench.converged(name):
                    peak_rss = max(peak_rss, proc.memory_info().rss)
                    time.sleep(0.05)
                latencies.append(time.monotonic() - t0)
                print(f"run {run}: {latencies[-1]:.2f} s", flush=True)
            solve_before = solve_seconds(metrics_port)
            t0 = time.monotonic()
            names = [f"scale-{i}" for i in range(pools)]
            for name in names:
                bench.create("inferencepools", pool_body(name))
            pending = set(names)
            while pending:
                peak_rss = max(peak_rss, proc.memory_info().rss)
                pending = {n for n in pending if bench.status(n).get("phase") != "Applied"}
                time.sleep(0.5)
            scale_seconds = time.monotonic() - t0
            solve_after = solve_seconds(metrics_port)
            rss_after = proc.memory_info().rss
        finally:
            operator.terminate()
            operator.wait(timeout=30)
            cluster.stop()

    solves = solve_after[1] - solve_before[1]
    mean_solve = (solve_after[0] - solve_before[0]) / solves if solves else float("nan")
    results = {
        "machine": describe(),
        "control_plane_start_seconds": round(startup, 2),
        "apply_latency_seconds": {
            "runs": runs,
            "p50": round(statistics.median(latencies), 3),
            "p95": round(percentile(latencies, 0.95), 3),
            "max": round(max(latencies), 3),
        },
        "scale": {
            "pools": pools,
            "all_applied_seconds": round(scale_seconds, 2),
            "per_pool_seconds": round(scale_seconds / pools, 3),
            "solves": int(solves),
            "mean_solve_seconds": round(mean_solve, 4),
            "operator_peak_rss_mib": round(peak_rss / 2**20, 1),
            "operator_rss_after_mib": round(rss_after / 2**20, 1),
        },
    }
    if not args.quick:  # quick runs only print; the committed results are full runs
        (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
