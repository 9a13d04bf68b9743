"""Desired objects are pure functions of the plan and the specs: golden files pin them down.

Regenerate after an intended change with ``QM_UPDATE_GOLDEN=1 pytest tests/unit/operator``.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import pytest
import yaml

from quartermaster.api.clusterjob import QueryClusterJobSpec
from quartermaster.api.pool import NodePoolSpec
from quartermaster.api.poolstatus import PlannedDeployment
from quartermaster.operator.clusterjobs import clustering_job, sharded_jobs, writer_rbac
from quartermaster.operator.objects import (
    Owner,
    config_map,
    deployment_name,
    dns_name,
    vllm_deployment,
    vllm_service,
)

GOLDEN = pathlib.Path(__file__).parent / "golden"
OWNER = Owner(kind="InferencePool", name="assistant", namespace="serving", uid="1234-5678")
JOB_OWNER = Owner(kind="QueryClusterJob", name="banking", namespace="serving", uid="abcd-ef01")
NODE_POOL = NodePoolSpec.model_validate(
    {
        "name": "h100",
        "gpuType": "H100-80GB",
        "gpus": 16,
        "gpusPerNode": 8,
        "nodeSelector": {"quartermaster.dev/pool": "h100"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    }
)
PLANNED = PlannedDeployment(
    name=deployment_name("assistant", "llama-3-1-70b/fp8/h100/tp4pp1"),
    option="llama-3-1-70b/fp8/h100/tp4pp1",
    model="llama-3-1-70b",
    model_id="neuralmagic/Meta-Llama-3.1-70B-Instruct-FP8",
    precision="fp8",
    node_pool="h100",
    gpu_type="H100-80GB",
    tensor_parallel=4,
    pipeline_parallel=1,
    replicas=2,
    gpus=8,
    cost_per_hour=31.6,
    max_num_seqs=128,
    args=["--model", "neuralmagic/Meta-Llama-3.1-70B-Instruct-FP8", "--tensor-parallel-size", "4"],
)


def check_golden(name: str, objects: Any) -> None:
    text = yaml.safe_dump_all(objects if isinstance(objects, list) else [objects], sort_keys=True)
    path = GOLDEN / f"{name}.yaml"
    if os.environ.get("QM_UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.exists(), f"{path} is missing; run with QM_UPDATE_GOLDEN=1 once and review it"
    assert text == path.read_text(), f"{name} changed; if intended, regenerate with QM_UPDATE_GOLDEN=1"


def test_vllm_deployment_and_service_golden() -> None:
    deployment = vllm_deployment(
        OWNER, PLANNED, NODE_POOL, image="vllm/vllm-openai:v0.11.0", plan_hash="f" * 64
    )
    check_golden("vllm-deployment", [deployment, vllm_service(OWNER, PLANNED)])


def test_vllm_deployment_requests_tp_times_pp_gpus_on_the_pool() -> None:
    deployment = vllm_deployment(OWNER, PLANNED, NODE_POOL, image="img", plan_hash="0" * 64)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert pod["nodeSelector"] == {"quartermaster.dev/pool": "h100"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/health"
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == "1234-5678"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_clustering_job_and_rbac_golden() -> None:
    spec = QueryClusterJobSpec.model_validate(
        {"input": {"url": "http://data.serving.svc/q.parquet", "attributes": ["intent"]}, "alpha": 0.75}
    )
    check_golden(
        "clustering-job", [*writer_rbac(JOB_OWNER, spec), clustering_job(JOB_OWNER, spec, image="qm:1")]
    )


def test_sharded_run_is_an_indexed_job_then_a_merge() -> None:
    spec = QueryClusterJobSpec.model_validate(
        {
            "input": {"persistentVolumeClaim": {"claimName": "logs", "path": "q.parquet"}},
            "alpha": 0.8,
            "shards": 4,
        }
    )
    indexed, merge = sharded_jobs(JOB_OWNER, spec, image="qm:1")
    assert indexed["spec"]["completionMode"] == "Indexed"
    assert indexed["spec"]["completions"] == 4
    args = indexed["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--shard") + 1] == "$(JOB_COMPLETION_INDEX)/4"
    merge_args = merge["spec"]["template"]["spec"]["initContainers"][0]["args"]
    assert merge_args[:2] == ["cluster", "merge"]
    assert len([a for a in merge_args if "/shard-" in a]) == 4


def test_writer_role_names_only_its_own_result_config_maps() -> None:
    spec = QueryClusterJobSpec.model_validate({"input": {"url": "https://x/q.parquet"}, "alpha": 0.7})
    role = next(o for o in writer_rbac(JOB_OWNER, spec) if o["kind"] == "Role")
    (rule,) = role["rules"]
    assert rule["verbs"] == ["get", "patch", "update"]
    assert rule["resourceNames"][0] == "banking-result"
    assert all(n.startswith("banking-") for n in rule["resourceNames"])


@pytest.mark.parametrize("parts", [("a" * 80,), ("Pool", "Llama/3.1", "H100"), ("x", "", "y")])
def test_dns_names_are_valid_labels_and_stay_unique(parts: tuple[str, ...]) -> None:
    name = dns_name(*parts)
    assert len(name) <= 63
    assert name == name.lower()
    assert name[0].isalnum()
    assert name[-1].isalnum()
    assert dns_name("b" * 70) != dns_name("b" * 71)


def test_config_map_content_hash_changes_with_content_only() -> None:
    one = config_map(OWNER, "cm", {"a": "1", "b": "2"})
    same = config_map(OWNER, "cm", {"b": "2", "a": "1"})
    other = config_map(OWNER, "cm", {"a": "1", "b": "3"})
    key = "quartermaster.dev/content-hash"
    assert one["metadata"]["annotations"][key] == same["metadata"]["annotations"][key]
    assert one["metadata"]["annotations"][key] != other["metadata"]["annotations"][key]
