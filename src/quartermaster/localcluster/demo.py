"""``make demo``: the whole flow on the local control plane with fake GPU node pools.

1. start the control plane (or reuse the one recorded in ``.cluster/``);
2. ``helm upgrade --install`` the chart (CRDs, RBAC, metrics Service; the operator Deployment is scaled to 0
   because no container runtime exists here — kwok would only pretend to run it);
3. run the operator locally against that API server (the same code the image runs);
4. apply ``examples/``: the ModelCatalog, a QueryClusterJob clustering real banking77 queries inline, an
   InferencePool with inline classes and one planned from the clustering;
5. print each plan and the objects created, then stop the operator (the cluster keeps running).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import time
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from quartermaster.localcluster.binaries import REPO_ROOT, ensure_built
from quartermaster.localcluster.launcher import LocalCluster, pid_alive
from quartermaster.localcluster.operatorprocess import spawn_operator

NAMESPACE = "demo"
SHARED_QUERIES = REPO_ROOT.parent / "shared" / "data" / "queries" / "banking77.parquet"
console = Console(width=160)


class DemoError(RuntimeError):
    pass


def _cluster(state_dir: pathlib.Path) -> LocalCluster:
    cluster = LocalCluster(state_dir)
    state = state_dir / "state.json"
    if state.exists():
        pids = json.loads(state.read_text()).get("pids", {})
        if pids and all(pid_alive(int(p)) for p in pids.values()):
            console.print(f"reusing the control plane in {state_dir}")
            return cluster
    started = time.monotonic()
    cluster.start(timeout=90)
    console.print(f"control plane up in {time.monotonic() - started:.1f} s")
    return cluster


def _run(argv: list[str], env: dict[str, str], *, input_text: str | None = None) -> str:
    done = subprocess.run(argv, env=env, input=input_text, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise DemoError(f"`{' '.join(argv[:4])} ...` failed:\n{done.stderr or done.stdout}")
    return done.stdout


def _manifests() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for name in ("catalog.yaml", "pool.yaml", "queryclusterjob.yaml", "pool-from-clusters.yaml"):
        for doc in yaml.safe_load_all((REPO_ROOT / "examples" / name).read_text()):
            if not doc:
                continue
            if doc["kind"] == "QueryClusterJob":
                # The example reads an in-cluster URL; locally the operator reads the shared data set.
                doc["spec"]["executor"] = "inline"
                doc["spec"]["input"]["url"] = SHARED_QUERIES.as_uri()
            if doc["kind"] == "InferencePool":
                doc["spec"]["autoApply"] = True
            doc["metadata"]["namespace"] = NAMESPACE
            docs.append(doc)
    return docs


def _wait(
    kubectl: list[str], env: dict[str, str], kind: str, name: str, phases: set[str], timeout: float
) -> Any:
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = json.loads(_run([*kubectl, "get", kind, name, "-n", NAMESPACE, "-o", "json"], env))
        status = body.get("status") or {}
        if status.get("phase") in phases:
            return status
        time.sleep(0.5)
    raise DemoError(f"{kind}/{name} did not reach {sorted(phases)} in {timeout:.0f} s; status: {status}")


def _plan_table(name: str, status: dict[str, Any]) -> Table:
    plan = status.get("plan") or {}
    table = Table(
        title=f"InferencePool {name}: {status.get('phase')} — ${plan.get('costPerHour', 0):.2f}/h, "
        f"{plan.get('replicas', 0)} replicas, solver {plan.get('solver')}, gap {plan.get('gap')}"
    )
    for column in ("deployment", "model", "precision", "pool", "TP", "PP", "replicas", "$/h"):
        table.add_column(column)
    for d in plan.get("deployments", []):
        table.add_row(
            d["name"], d["model"], d["precision"], d["nodePool"], str(d["tensorParallel"]),
            str(d["pipelineParallel"]), str(d["replicas"]), f"{d['costPerHour']:.2f}",
        )  # fmt: skip
    return table


def _class_table(status: dict[str, Any], limit: int = 12) -> Table:
    table = Table(title="classes (first 12)")
    for column in ("class", "req/s", "shares", "TTFT s", "TPOT s", "error"):
        table.add_column(column)
    for c in (status.get("plan") or {}).get("classes", [])[:limit]:
        shares = ", ".join(f"{k.split('-', 1)[-1]}={v:.2f}" for k, v in c.get("shares", {}).items())
        table.add_row(
            c["name"], f"{c['rate']:.2f}", shares, f"{c.get('ttftSeconds', 0):.3f}",
            f"{c.get('tpotSeconds', 0):.4f}", f"{c.get('error', 0):.3f}",
        )  # fmt: skip
    return table


def run_demo(state_dir: pathlib.Path) -> None:
    if not SHARED_QUERIES.exists():
        raise DemoError(f"{SHARED_QUERIES} is missing; the demo clusters the shared banking77 queries")
    bins = ensure_built()
    cluster = _cluster(state_dir)
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    kubectl = [str(bins / "kubectl")]
    console.rule("Helm chart")
    chart = str(REPO_ROOT / "charts" / "quartermaster")
    helm = [str(bins / "helm"), "upgrade", "--install", "quartermaster", chart, "-n", "quartermaster-system"]
    helm += [
        "--create-namespace",
        "--set",
        "replicaCount=0",
        "--take-ownership",
        "--wait",
        "--timeout",
        "60s",
    ]
    console.print(_run(helm, env).strip())
    _run([*kubectl, "create", "namespace", NAMESPACE, "--dry-run=client", "-o", "yaml"], env)
    _run(
        [*kubectl, "apply", "-f", "-"],
        env,
        input_text=yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}),
    )
    console.rule("Operator")
    log_path = state_dir / "logs" / "operator.log"
    operator = spawn_operator(cluster.kubeconfig, NAMESPACE, log_path, allow_file_urls="true")
    console.print(f"operator running (pid {operator.pid}), log: {log_path}")
    try:
        docs = _manifests()
        _run([*kubectl, "apply", "-f", "-"], env, input_text=yaml.safe_dump_all(docs))
        started = time.monotonic()
        for doc in docs:
            if doc["kind"] == "QueryClusterJob":
                status = _wait(
                    kubectl, env, "queryclusterjob", doc["metadata"]["name"], {"Succeeded", "Failed"}, 180
                )
                console.print(
                    f"QueryClusterJob {doc['metadata']['name']}: {status.get('phase')} — "
                    f"{status.get('clustersKept')} classes, "
                    f"reduction {status.get('reductionFactor', 0):.1f}x, "
                    f"min similarity {status.get('minSimilarity')} ({status.get('message') or 'ok'})"
                )
        for doc in docs:
            if doc["kind"] == "InferencePool":
                name = doc["metadata"]["name"]
                status = _wait(kubectl, env, "inferencepool", name, {"Applied", "Infeasible"}, 240)
                console.print(_plan_table(name, status))
                console.print(_class_table(status))
                if status.get("message"):
                    console.print(f"[yellow]{status['message']}[/yellow]")
        console.print(f"everything applied in {time.monotonic() - started:.1f} s")
        console.rule("Objects")
        console.print(_run([*kubectl, "get", "quartermaster", "-n", NAMESPACE], env))
        console.print(_run([*kubectl, "get", "deployments,services,configmaps", "-n", NAMESPACE], env))
        console.print(
            _run(
                [*kubectl, "get", "pods", "-n", NAMESPACE, "-o", "wide", "-L", "quartermaster.dev/node-pool"],
                env,
            )
        )
    finally:
        operator.terminate()
        operator.wait(timeout=15)
    console.print(f"the control plane keeps running: export KUBECONFIG={cluster.kubeconfig}")
    console.print("`make cluster-down` stops it")
