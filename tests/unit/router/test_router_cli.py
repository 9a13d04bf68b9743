"""``quartermaster router``: config check output, bad input (exit 2, no traceback), and serve end to end."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
from typer.testing import CliRunner

from quartermaster.cli import app
from quartermaster.router.stub import Server, StubOpenAI


def test_check_prints_the_routing_table(kit: SimpleNamespace, tmp_path: Path) -> None:
    config = kit.build_config(
        {
            "billing": [
                kit.target("small", "http://s:8000/v1", 3),
                kit.target("large", "http://l:8000/v1", 1),
            ],
            "other": [kit.target("large", "http://l:8000/v1")],
        },
        reps={"billing": [kit.unit(1), kit.unit(2)]},
        ladder=["small", "large"],
    )
    path = tmp_path / "router-config.json"
    kit.write_config(path, config)
    result = CliRunner().invoke(app, ["router", "check", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "billing (default)" in result.output
    assert "small: 0.75, large: 0.25" in result.output
    assert "small -> large" in result.output


def test_check_rejects_a_broken_config_with_one_message(kit: SimpleNamespace, tmp_path: Path) -> None:
    path = tmp_path / "router-config.json"
    path.write_text('{"schemaVersion": 7}')
    result = CliRunner().invoke(app, ["router", "check", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert "schemaVersion=7" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(app, ["router", "check", str(tmp_path / "missing.json")])
    assert result.exit_code == 2
    assert "cannot read" in result.output


def test_serve_rejects_bad_options_with_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    for args, needle in (
        (["--port", "70000"], "--port"),
        (["--log-level", "loud"], "--log-level"),
        (["--index", "ivf"], "--index"),
        (["--embeddings-url", "embed:8000"], "--embeddings-url"),
        (["--embeddings-url", "http://e/v1", "--sentence-transformer", "m"], "alternatives"),
        (["--config", str(tmp_path)], "is a directory"),
    ):
        result = runner.invoke(app, ["router", "serve", *args], env={"COLUMNS": "200"})
        assert result.exit_code == 2, (args, result.output)
        assert needle in result.output, (args, result.output)
        assert "Traceback" not in result.output


def test_serve_runs_uvicorn_and_routes(
    kit: SimpleNamespace, tmp_path: Path, servers: Callable[[Any], Server]
) -> None:
    up = StubOpenAI("m")
    url = servers(up.app()).url + "/v1"
    path = tmp_path / "router-config.json"
    kit.write_config(path, kit.build_config({"c": [kit.target("m", url)]}))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "QM_ROUTER_CONFIG": str(path),
        "QM_ROUTER_PORT": str(port),
        "QM_ROUTER_HOST": "127.0.0.1",
    }
    log = (tmp_path / "router.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from quartermaster.cli import main; main()",
            "router",
            "serve",
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, (tmp_path / "router.log").read_text()
            assert time.monotonic() < deadline, "router did not become ready"
            time.sleep(0.05)
        r = httpx.post(base + "/v1/completions", json={"prompt": "hi", "max_tokens": 1000})
        assert r.status_code == 200
        assert r.headers["x-quartermaster-model"] == "m"
        assert up.received()[-1]["body"]["max_tokens"] == 64
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
