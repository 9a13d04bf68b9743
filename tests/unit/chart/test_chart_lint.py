"""``helm lint`` (including ``--strict``) with the default and non-default values."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import CHART

# Every optional feature switched on, and every switch that removes objects switched off.
EVERYTHING_ON: dict[str, Any] = {
    "replicaCount": 3,
    "watchNamespace": "team-a",
    "image": {"digest": "sha256:" + "a" * 64},
    "imagePullSecrets": [{"name": "registry"}],
    "operator": {"logFormat": "text", "extraEnv": [{"name": "QM_INLINE_MAX_ROWS", "value": "1000"}]},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": "quartermaster.dev/pool", "operator": "In", "values": ["cpu"]}
                        ]
                    }
                ]
            }
        }
    },
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
    "router": {
        "enabled": True,
        "inferencePool": "demo",
        "embeddingsUrl": "http://embed.default.svc:8000/v1",
        "representatives": {"configMaps": ["demo-reps-0"], "persistentVolumeClaims": ["reps"]},
    },
}
EVERYTHING_OFF: dict[str, Any] = {
    "replicaCount": 0,
    "crds": {"enabled": False, "keep": False},
    "rbac": {"create": False},
    "serviceAccount": {"create": False, "name": "existing"},
    "metrics": {"service": {"enabled": False}},
    "test": {"enabled": False},
}


def test_lint_strict_passes_with_the_default_values(helm: Any) -> None:
    result = helm.run("lint", "--strict", CHART)
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout
    assert "[ERROR]" not in result.stdout


@pytest.mark.parametrize("values", [EVERYTHING_ON, EVERYTHING_OFF], ids=["everything-on", "everything-off"])
def test_lint_strict_passes_with_non_default_values(helm: Any, values: dict[str, Any]) -> None:
    result = helm.run("lint", "--strict", CHART, "--values", helm.values_file(values))
    assert "0 chart(s) failed" in result.stdout, result.stdout


def test_lint_fails_on_a_misspelt_value(helm: Any) -> None:
    result = helm.run("lint", "--strict", CHART, "--values", helm.values_file({"replicas": 2}), check=False)
    assert result.returncode != 0
    assert "replicas" in result.stdout + result.stderr
