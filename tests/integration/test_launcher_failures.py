"""cluster-up failure handling: a crashing component fails loudly and leaves no orphan processes."""

from __future__ import annotations

import json
import pathlib

import pytest

from quartermaster.localcluster.launcher import ClusterError, LocalCluster, pid_alive


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
    recorded = json.loads((tmp_path / "state" / "state.json").read_text())["pids"]
    assert set(recorded) == {"etcd", "kube-apiserver"}
    assert not any(pid_alive(int(pid)) for pid in recorded.values())
