"""Starts and stops a real Kubernetes control plane on 127.0.0.1 from locally built binaries.

Components: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and the kwok controller (which
plays the kubelet for fake nodes: marks pods Running/Ready, completes Job pods, heartbeats nodes). Every
component gets a free port, logs to ``<state>/logs/<name>.log`` and is recorded with its PID in
``<state>/state.json`` so another process (``make cluster-down``) can stop exactly what was started. If a
component fails to become healthy, everything already started is stopped and the error carries the
component's log tail.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pathlib
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from quartermaster.localcluster import binaries, kubeconfig, pki
from quartermaster.localcluster.nodes import DEFAULT_POOLS, KWOK_ANNOTATION, NodePool

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
SERVICE_CIDR = "10.96.0.0/12"


class ClusterError(RuntimeError):
    """The local control plane could not be started or stopped; the message says which part and why."""


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _log_tail(path: pathlib.Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); reap it if it is ours.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


@dataclass
class LocalCluster:
    """A local control plane rooted at ``state_dir``.

    ``start()`` is idempotent only in the sense that it refuses to start over a running cluster in the
    same directory; use ``stop()`` (or ``make cluster-down``) first.
    """

    state_dir: pathlib.Path
    bin_dir: pathlib.Path | None = None
    pools: tuple[NodePool, ...] = DEFAULT_POOLS
    ports: dict[str, int] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)

    @property
    def kubeconfig(self) -> pathlib.Path:
        return self.state_dir / "kubeconfig"

    @property
    def state_file(self) -> pathlib.Path:
        return self.state_dir / "state.json"

    @property
    def logs(self) -> pathlib.Path:
        return self.state_dir / "logs"

    @property
    def server(self) -> str:
        return f"https://{HOST}:{self.ports['kube-apiserver']}"

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self, *, timeout: float = 60.0) -> None:
        if self.state_file.exists():
            previous = json.loads(self.state_file.read_text())
            alive = [n for n, p in previous.get("pids", {}).items() if pid_alive(int(p))]
            if alive:
                raise ClusterError(
                    f"a cluster is already running from {self.state_dir} (components {alive}); "
                    "stop it with `make cluster-down` or use another state directory"
                )
            shutil.rmtree(self.state_dir)
        bins = self.bin_dir or binaries.ensure_built()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        started = time.monotonic()
        keys = pki.generate(self.state_dir / "pki")
        self.ports = {
            name: free_port()
            for name in (
                "etcd",
                "etcd-peer",
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
                "kwok",
            )
        }
        kubeconfig.write(self.kubeconfig, self.server, keys)
        try:
            self._start_etcd(bins)
            self._start_apiserver(bins, keys)
            self._start_controller_manager(bins, keys)
            self._start_scheduler(bins)
            self._start_kwok(bins)
            self._create_nodes(deadline=time.monotonic() + timeout)
        except BaseException:
            self.stop(remove_state=False)
            raise
        log.info("control plane up in %.1f s at %s", time.monotonic() - started, self.server)

    def stop(self, *, remove_state: bool = True) -> None:
        """Stops every recorded component (SIGTERM, then SIGKILL after 5 s)."""
        if not self.pids and self.state_file.exists():
            self.pids = {k: int(v) for k, v in json.loads(self.state_file.read_text())["pids"].items()}
        for name in reversed(list(self.pids)):
            pid = self.pids[name]
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for name, pid in list(self.pids.items()):
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if pid_alive(pid):
                log.info("%s (pid %d) still running after SIGTERM; sending SIGKILL", name, pid)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
        for proc in self._procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=1)
        self._procs = {}
        self.pids = {}
        if remove_state:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        elif self.state_file.exists():
            self._save_state()

    # -- components ----------------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log_file = (self.logs / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            argv,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # own process group: survives the caller, killed as a group
            cwd=self.state_dir,
        )
        log_file.close()
        self.pids[name] = proc.pid
        self._procs[name] = proc  # kept so that it is reaped (and not warned about) when stopped
        self._save_state()
        return proc

    def _save_state(self) -> None:
        self.state_file.write_text(
            json.dumps({"pids": self.pids, "ports": self.ports, "server": self.server}, indent=2)
        )

    def _wait(
        self, name: str, proc: subprocess.Popen[bytes], ready: Callable[[], bool], timeout: float = 45.0
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ClusterError(
                    f"{name} exited with code {proc.returncode} during start-up; last log lines "
                    f"({self.logs / (name + '.log')}):\n{_log_tail(self.logs / (name + '.log'))}"
                )
            if ready():
                return
            time.sleep(0.1)
        raise ClusterError(
            f"{name} did not become healthy within {timeout:.0f} s; last log lines:\n"
            f"{_log_tail(self.logs / (name + '.log'))}"
        )

    def _https_ok(self, port: int, path: str, *, client_cert: bool) -> bool:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        if client_cert:
            context.load_cert_chain(self.state_dir / "pki/admin.crt", self.state_dir / "pki/admin.key")
        try:
            with urllib.request.urlopen(f"https://{HOST}:{port}{path}", context=context, timeout=2) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _start_etcd(self, bins: pathlib.Path) -> None:
        client = f"http://{HOST}:{self.ports['etcd']}"
        peer = f"http://{HOST}:{self.ports['etcd-peer']}"
        proc = self._spawn(
            "etcd",
            [
                str(bins / "etcd"),
                "--name=qm",
                f"--data-dir={self.state_dir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=qm={peer}",
                "--unsafe-no-fsync=true",
                "--quota-backend-bytes=4294967296",
                "--log-level=warn",
            ],
        )

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"{client}/health", timeout=2) as r:
                    return b'"health":"true"' in r.read()
            except (urllib.error.URLError, OSError):
                return False

        self._wait("etcd", proc, healthy)

    def _start_apiserver(self, bins: pathlib.Path, keys: pki.Pki) -> None:
        port = self.ports["kube-apiserver"]
        proc = self._spawn(
            "kube-apiserver",
            [
                str(bins / "kube-apiserver"),
                f"--etcd-servers=http://{HOST}:{self.ports['etcd']}",
                f"--bind-address={HOST}",
                f"--advertise-address={HOST}",
                f"--secure-port={port}",
                f"--cert-dir={self.state_dir / 'apiserver-certs'}",
                f"--tls-cert-file={keys.admin_cert}",
                f"--tls-private-key-file={keys.admin_key}",
                f"--client-ca-file={keys.ca_cert}",
                f"--service-account-key-file={keys.admin_key}",
                f"--service-account-signing-key-file={keys.admin_key}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                "--allow-privileged=true",
                "--endpoint-reconciler-type=none",
                "--enable-priority-and-fairness=false",
                "--max-requests-inflight=0",
                "--max-mutating-requests-inflight=0",
            ],
        )
        self._wait(
            "kube-apiserver",
            proc,
            lambda: self._https_ok(port, "/readyz", client_cert=True),
            timeout=60,
        )

    def _start_controller_manager(self, bins: pathlib.Path, keys: pki.Pki) -> None:
        port = self.ports["kube-controller-manager"]
        kc = str(self.kubeconfig)
        proc = self._spawn(
            "kube-controller-manager",
            [
                str(bins / "kube-controller-manager"),
                f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                f"--bind-address={HOST}",
                f"--secure-port={port}",
                f"--service-account-private-key-file={keys.admin_key}",
                f"--root-ca-file={keys.ca_cert}",
                f"--cluster-signing-cert-file={keys.ca_cert}",
                f"--cluster-signing-key-file={keys.ca_key}",
                "--leader-elect=false",
                "--use-service-account-credentials=false",
                "--controllers=*",
                "--concurrent-deployment-syncs=10",
                "--concurrent-replicaset-syncs=10",
            ],
        )
        self._wait(
            "kube-controller-manager", proc, lambda: self._https_ok(port, "/healthz", client_cert=False)
        )

    def _start_scheduler(self, bins: pathlib.Path) -> None:
        port = self.ports["kube-scheduler"]
        kc = str(self.kubeconfig)
        proc = self._spawn(
            "kube-scheduler",
            [
                str(bins / "kube-scheduler"),
                f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                f"--bind-address={HOST}",
                f"--secure-port={port}",
                "--leader-elect=false",
            ],
        )
        self._wait("kube-scheduler", proc, lambda: self._https_ok(port, "/healthz", client_cert=False))

    def _start_kwok(self, bins: pathlib.Path) -> None:
        stages = bins.parent / "kwok-stages.yaml"
        if not stages.exists():
            raise ClusterError(f"{stages} is missing; rebuild with hack/build-binaries.sh")
        port = self.ports["kwok"]
        proc = self._spawn(
            "kwok",
            [
                str(bins / "kwok"),
                f"--kubeconfig={self.kubeconfig}",
                f"--config={stages}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION[0]}={KWOK_ANNOTATION[1]}",
                "--node-lease-duration-seconds=40",
                "--cidr=10.0.0.1/16",
                f"--node-ip={HOST}",
                f"--server-address={HOST}:{port}",
            ],
        )

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://{HOST}:{port}/healthz", timeout=2) as r:
                    return bool(r.status == 200)
            except (urllib.error.URLError, OSError):
                return False

        self._wait("kwok", proc, healthy)

    def _create_nodes(self, *, deadline: float) -> None:
        from quartermaster.localcluster import setup

        try:
            setup.create_nodes(self.kubeconfig, self.pools, deadline=deadline)
        except Exception as exc:
            tail = _log_tail(self.logs / "kwok.log")
            raise ClusterError(f"creating the fake GPU nodes failed: {exc}; kwok log tail:\n{tail}") from exc
