"""hack/build-binaries.sh fails with one clear message naming the step, the command and the fix."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

from quartermaster.localcluster.binaries import HACK_DIR


def run_build(tmp_path: pathlib.Path, path: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path, "QM_CACHE_DIR": str(tmp_path / "cache")}
    return subprocess.run(
        ["bash", str(HACK_DIR / "build-binaries.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_missing_go_toolchain_names_the_step_and_the_fix(tmp_path: pathlib.Path) -> None:
    python_dir = str(pathlib.Path(sys.executable).parent)
    done = run_build(tmp_path, f"{python_dir}:/usr/bin:/bin")
    assert done.returncode == 1
    assert 'FAILED at step "find Go toolchain"' in done.stderr
    assert "install Go >= 1.26" in done.stderr
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("kube-apiserver"))


def test_too_old_go_is_refused(tmp_path: pathlib.Path) -> None:
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "go").write_text('#!/bin/sh\n[ "$1 $2" = "env GOVERSION" ] && echo go1.22.0\n')
    (fake / "go").chmod(0o755)
    done = run_build(tmp_path, f"{fake}:{pathlib.Path(sys.executable).parent}:/usr/bin:/bin")
    assert done.returncode == 1
    assert 'step "check Go version"' in done.stderr
    assert "needs Go >= 1.26" in done.stderr
