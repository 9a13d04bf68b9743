"""cluster-up failure handling: a crashing component fails loudly and leaves no orphan processes."""

from __future__ import annotations

import json
import pathlib

import psutil
import pytest

from quartermaster.localcluster.launcher import ClusterError, LocalCluster


def test_crashing_apiserver_fails_with_its_log_and_stops_etcd(
    bin_dir: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    fake_bins = tmp_path / "bin"
    fake_bins.mkdir()
    for binary in bin_dir.iterdir():
        (fake_bins / binary.name).symlink_to(binary)
    (tmp_path / "kwok-stages.yaml").symlink_to(bin_dir.parent / "kwok-stages.yaml")
    (fake_bins / "kube-apiserver").unlink()
    crash = "#!/bin/sh\necho 'error: unknown flag --frobnicate' >&2\nexit 3\n"
    (fake_bins / "kube-apiserver").write_text(crash)
    (fake_bins / "kube-apiserver").chmod(0o755)

    cluster = LocalCluster(tmp_path / "state", bin_dir=fake_bins)
    with pytest.raises(ClusterError) as failed:
        cluster.start(timeout=30)
    message = str(failed.value)
    assert "kube-apiserver exited with code 3" in message
    assert "unknown flag --frobnicate" in message
    assert (tmp_path / "state" / "logs" / "etcd.log").exists()  # etcd had been started ...
    orphans = [
        p.info["pid"]
        for p in psutil.process_iter(["pid", "cmdline"])
        if any(str(tmp_path) in part for part in p.info["cmdline"] or [])
    ]
    assert orphans == []  # ... and nothing started from this state directory is left running
    assert json.loads((tmp_path / "state" / "state.json").read_text())["pids"] == {}
