"""Crash-restart convergence and API-server validation of invalid custom resources."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

Example = Callable[[str], dict[str, Any]]
Wait = Callable[..., Any]


def test_killing_the_operator_mid_apply_converges_without_duplicates_or_orphans(
    operator: Any,
    resources: Any,
    example: Example,
    api_client: client.ApiClient,
    namespace: str,
    wait_for: Wait,
) -> None:
    apps = client.AppsV1Api(api_client)
    resources.create("modelcatalogs", example("catalog.yaml"))
    pool = example("pool.yaml")
    pool["spec"]["autoApply"] = True
    resources.create("inferencepools", pool)
    name = pool["metadata"]["name"]

    # Kill the operator as soon as it has started writing Deployments (before it finished the apply).
    wait_for(lambda: apps.list_namespaced_deployment(namespace).items, timeout=90, what="first Deployment")
    operator.kill()
    operator.start()

    status = wait_for(
        resources.in_phase("inferencepools", name, "Applied"),
        timeout=120,
        what="pool Applied after the restart",
    )
    planned = sorted(d["name"] for d in status["plan"]["deployments"])
    live = sorted(d.metadata.name for d in apps.list_namespaced_deployment(namespace).items)
    assert live == planned  # nothing duplicated, nothing orphaned
    services = sorted(
        s.metadata.name for s in client.CoreV1Api(api_client).list_namespaced_service(namespace).items
    )
    assert services == planned
    config_maps = client.CoreV1Api(api_client).list_namespaced_config_map(
        namespace, label_selector="app.kubernetes.io/component=router-config"
    )
    assert [c.metadata.name for c in config_maps.items] == [status["routerConfigMap"]]


@pytest.mark.parametrize(
    ("plural", "mutate", "message"),
    [
        (
            "inferencepools",
            lambda b: b["spec"].update(classesFrom="some-job"),
            "set exactly one of classes",
        ),
        ("inferencepools", lambda b: b["spec"].pop("nodePools"), "nodePools"),
        ("inferencepools", lambda b: b["spec"]["nodePools"][0].update(gpus=-1), "gpus"),
        ("modelcatalogs", lambda b: b["spec"]["models"][0].pop("hfId"), "hfId"),
        ("modelcatalogs", lambda b: b["spec"]["models"][0].update(precisions=["fp4"]), "precisions"),
    ],
)
def test_invalid_resources_are_rejected_by_the_api_server_with_the_field_named(
    crds: list[str],
    resources: Any,
    example: Example,
    plural: str,
    mutate: Callable[[dict[str, Any]], None],
    message: str,
) -> None:
    body = example("pool.yaml" if plural == "inferencepools" else "catalog.yaml")
    mutate(body)
    with pytest.raises(ApiException) as rejected:
        resources.create(plural, body)
    assert rejected.value.status == 422
    assert message in json.loads(rejected.value.body)["message"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 1.5}, "alpha"),
        (
            {"alpha": 0.8, "trimCoverage": 0.9, "minClusterSize": 3},
            "at most one of trimCoverage or minClusterSize",
        ),
        ({"alpha": 0.8, "shards": 4}, "shards > 1 needs"),
        (
            {
                "alpha": 0.8,
                "input": {
                    "url": "https://x/y.parquet",
                    "persistentVolumeClaim": {"claimName": "c", "path": "p"},
                },
            },
            "set exactly one of input.persistentVolumeClaim or input.url",
        ),
    ],
)
def test_invalid_query_cluster_jobs_are_rejected(
    crds: list[str], resources: Any, spec: dict[str, Any], message: str
) -> None:
    body = {
        "apiVersion": "quartermaster.dev/v1alpha1",
        "kind": "QueryClusterJob",
        "metadata": {"name": "bad"},
        "spec": {"input": {"url": "https://data.example/queries.parquet"}, **spec},
    }
    with pytest.raises(ApiException) as rejected:
        resources.create("queryclusterjobs", body)
    assert rejected.value.status == 422
    assert message in json.loads(rejected.value.body)["message"]
