"""``quartermaster dev-cluster up|down|status``: the local control plane with fake GPU node pools."""

from __future__ import annotations

import json
import logging
import pathlib
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from quartermaster.localcluster.binaries import REPO_ROOT

app = typer.Typer(help="A local Kubernetes control plane with fake GPU nodes (built from Go modules).")
console = Console()
StateDir = Annotated[
    pathlib.Path,
    typer.Option("--state-dir", help="Where the cluster keeps its state, logs and kubeconfig."),
]
DEFAULT_STATE = REPO_ROOT / ".cluster"


@app.command()
def up(state_dir: StateDir = DEFAULT_STATE, timeout: float = 60.0) -> None:
    """Start etcd, kube-apiserver, controller-manager, scheduler and kwok, and create the GPU nodes."""
    from quartermaster.localcluster.binaries import BinariesMissingError
    from quartermaster.localcluster.launcher import ClusterError, LocalCluster

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = time.monotonic()
    cluster = LocalCluster(state_dir.resolve())
    try:
        cluster.start(timeout=timeout)
    except (ClusterError, BinariesMissingError) as exc:
        console.print(f"[red]cluster-up failed:[/red] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"control plane up in {time.monotonic() - started:.1f} s: {cluster.server}")
    console.print(f"export KUBECONFIG={cluster.kubeconfig}")


@app.command()
def down(state_dir: StateDir = DEFAULT_STATE) -> None:
    """Stop every component recorded in the state directory and remove its state."""
    from quartermaster.localcluster.launcher import LocalCluster

    state_dir = state_dir.resolve()
    if not (state_dir / "state.json").exists():
        console.print(f"no cluster recorded in {state_dir}; nothing to stop")
        return
    LocalCluster(state_dir).stop()
    console.print(f"stopped and removed {state_dir}")


@app.command()
def status(state_dir: StateDir = DEFAULT_STATE) -> None:
    """Show the recorded components, their PIDs, ports and whether they are alive."""
    from quartermaster.localcluster.launcher import pid_alive

    state_file = state_dir.resolve() / "state.json"
    if not state_file.exists():
        console.print("no cluster running")
        raise typer.Exit(1)
    state = json.loads(state_file.read_text())
    table = Table("component", "pid", "port", "alive")
    for name, pid in state["pids"].items():
        table.add_row(name, str(pid), str(state["ports"].get(name, "")), str(pid_alive(int(pid))))
    console.print(table)
    console.print(f"KUBECONFIG={state_dir.resolve() / 'kubeconfig'}")


@app.command()
def demo(state_dir: StateDir = DEFAULT_STATE) -> None:
    """Start the control plane, install the chart, run the operator and apply examples/ (`make demo`)."""
    from quartermaster.localcluster.binaries import BinariesMissingError
    from quartermaster.localcluster.demo import DemoError, run_demo
    from quartermaster.localcluster.launcher import ClusterError

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        run_demo(state_dir.resolve())
    except (DemoError, ClusterError, BinariesMissingError) as exc:
        console.print(f"[red]demo failed:[/red] {exc}")
        raise typer.Exit(1) from exc
