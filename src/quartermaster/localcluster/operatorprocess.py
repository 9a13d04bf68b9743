"""The operator as a local subprocess against a kubeconfig (the demo, the tests, the benchmark)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

from quartermaster.localcluster.launcher import free_port


def spawn_operator(
    kubeconfig: pathlib.Path, namespace: str, log_path: pathlib.Path, **settings: str
) -> subprocess.Popen[bytes]:
    """``quartermaster operator run -n NAMESPACE`` logging (text) to ``log_path``.

    ``settings`` become ``QM_<NAME>`` variables (e.g. ``metrics_port="9100"``); by default the metrics
    server is off and the liveness endpoint takes a free port.
    """
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "QM_LOG_FORMAT": "text",
        "QM_METRICS_PORT": "0",
        "QM_HEALTH_PORT": str(free_port()),
        **{f"QM_{name.upper()}": value for name, value in settings.items()},
    }
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "quartermaster.cli", "operator", "run", "-n", namespace],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
