"""The ``helm test`` Job's script, run here against real HTTP servers on loopback."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import quartermaster


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        routes = {
            "/metrics": b"# HELP up x\n# TYPE up gauge\nup 1\n",
            "/healthz": b"{}",
            "/plain/metrics": b"hi",
        }
        body = routes.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def hook_command(helm: Any) -> list[str]:
    objects = helm.template({"router": {"enabled": True, "inferencePool": "p"}})
    (container,) = objects.one("Job")["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-c"]
    return [sys.executable, "-c", container["args"][0]]


def test_the_hook_passes_when_every_endpoint_answers(helm: Any, server: str) -> None:
    cmd = hook_command(helm)
    result = subprocess.run(
        [*cmd, "10", f"{server}/metrics", f"{server}/healthz"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"quartermaster {quartermaster.__version__}",
        f"ok {server}/metrics",
        f"ok {server}/healthz",
    ]


@pytest.mark.parametrize(("path", "reason"), [("/missing", "404"), ("/plain/metrics", "not Prometheus text")])
def test_the_hook_fails_naming_the_endpoint(helm: Any, server: str, path: str, reason: str) -> None:
    cmd = hook_command(helm)
    result = subprocess.run(
        [*cmd, "0", f"{server}{path}"], check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert f"FAILED {server}{path}" in result.stderr
    assert reason in result.stderr
