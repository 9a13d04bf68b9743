"""The operator end to end: catalog + pool -> Deployments on the planned GPU pools."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from quartermaster.api.routerconfig import ROUTER_CONFIG_KEY, load_router_config
from quartermaster.localcluster.nodes import POOL_LABEL

Example = Callable[[str], dict[str, Any]]
Wait = Callable[..., Any]


def owned_deployments(api_client: client.ApiClient, namespace: str, pool: str) -> dict[str, Any]:
    items = (
        client.AppsV1Api(api_client)
        .list_namespaced_deployment(namespace, label_selector=f"quartermaster.dev/inference-pool={pool}")
        .items
    )
    return {d.metadata.name: d for d in items}


def apply_examples(resources: Any, example: Example, **pool_spec: Any) -> dict[str, Any]:
    resources.create("modelcatalogs", example("catalog.yaml"))
    pool = example("pool.yaml")
    pool["spec"] |= {"autoApply": True, **pool_spec}
    return dict(resources.create("inferencepools", pool))


def test_pool_plans_and_applies_deployments_on_the_planned_gpu_pools(
    operator: Any,
    resources: Any,
    example: Example,
    api_client: client.ApiClient,
    namespace: str,
    wait_for: Wait,
) -> None:
    pool = apply_examples(resources, example)
    name = pool["metadata"]["name"]
    status = wait_for(resources.in_phase("inferencepools", name, "Applied"), timeout=90, what="pool Applied")

    plan = status["plan"]
    planned = {d["name"]: d for d in plan["deployments"]}
    live = owned_deployments(api_client, namespace, name)
    assert set(live) == set(planned)
    core = client.CoreV1Api(api_client)
    for dep_name, d in planned.items():
        deployment = live[dep_name]
        assert deployment.spec.replicas == d["replicas"]
        assert deployment.status.available_replicas == d["replicas"]
        limits = deployment.spec.template.spec.containers[0].resources.limits
        assert limits["nvidia.com/gpu"] == str(d["tensorParallel"] * d["pipelineParallel"])
        pods = core.list_namespaced_pod(
            namespace, label_selector=f"quartermaster.dev/deployment={dep_name}"
        ).items
        assert len(pods) == d["replicas"]
        for pod in pods:
            assert core.read_node(pod.spec.node_name).metadata.labels[POOL_LABEL] == d["nodePool"]
        service = core.read_namespaced_service(dep_name, namespace)
        assert service.spec.selector == {"quartermaster.dev/deployment": dep_name}

    router_cm = core.read_namespaced_config_map(status["routerConfigMap"], namespace)
    config = load_router_config(router_cm.data[ROUTER_CONFIG_KEY])
    assert config.plan.plan_hash == plan["hash"]
    for planned_class in plan["classes"]:
        route = next(c for c in config.clusters if c.id == planned_class["name"])
        assert {r.deployment: r.weight for r in route.routes} == pytest.approx(planned_class["shares"])
    assert sum(d["costPerHour"] for d in plan["deployments"]) == pytest.approx(
        status["costPerHour"], rel=1e-3
    )
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Applied"]["status"] == "True"
    assert conditions["Infeasible"]["status"] == "False"
    assert all(c["observedGeneration"] == pool["metadata"]["generation"] for c in conditions.values())


def test_spec_change_replans_and_patches_the_deployments(
    operator: Any,
    resources: Any,
    example: Example,
    api_client: client.ApiClient,
    namespace: str,
    wait_for: Wait,
) -> None:
    pool = apply_examples(resources, example)
    name = pool["metadata"]["name"]
    before = wait_for(resources.in_phase("inferencepools", name, "Applied"), timeout=90, what="first plan")
    classes = [{**c, "rate": c["rate"] * 4} for c in pool["spec"]["classes"]]
    patched = resources.patch("inferencepools", name, {"spec": {"classes": classes, "budgetPerHour": 500}})

    def replanned() -> dict[str, Any] | None:
        status: dict[str, Any] = resources.status("inferencepools", name)
        done = (
            status.get("phase") == "Applied"
            and status.get("observedGeneration") == patched["metadata"]["generation"]
        )
        return status if done else None

    after = wait_for(replanned, timeout=120, what="re-plan after the rate change")
    assert after["plan"]["hash"] != before["plan"]["hash"]
    assert after["replicas"] > before["replicas"]
    live = owned_deployments(api_client, namespace, name)
    assert {n: d.spec.replicas for n, d in live.items()} == {
        d["name"]: d["replicas"] for d in after["plan"]["deployments"]
    }


def test_impossible_budget_is_infeasible_and_leaves_running_deployments_alone(
    operator: Any,
    resources: Any,
    example: Example,
    api_client: client.ApiClient,
    namespace: str,
    wait_for: Wait,
) -> None:
    pool = apply_examples(resources, example)
    name = pool["metadata"]["name"]
    wait_for(resources.in_phase("inferencepools", name, "Applied"), timeout=90, what="first plan applied")
    before = {
        n: (d.metadata.resource_version, d.spec.replicas)
        for n, d in owned_deployments(api_client, namespace, name).items()
    }

    resources.patch("inferencepools", name, {"spec": {"budgetPerHour": 0.5}})
    status = wait_for(resources.in_phase("inferencepools", name, "Infeasible"), timeout=90, what="Infeasible")
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Infeasible"]["status"] == "True"
    assert conditions["BudgetExceeded"]["status"] == "True"
    assert "budget" in status["message"].lower()
    after = {
        n: (d.metadata.resource_version, d.spec.replicas)
        for n, d in owned_deployments(api_client, namespace, name).items()
    }
    assert after == before


def test_deleting_the_pool_garbage_collects_what_it_owned(
    operator: Any,
    resources: Any,
    example: Example,
    api_client: client.ApiClient,
    namespace: str,
    wait_for: Wait,
) -> None:
    pool = apply_examples(resources, example)
    name = pool["metadata"]["name"]
    status = wait_for(resources.in_phase("inferencepools", name, "Applied"), timeout=90, what="pool Applied")
    core = client.CoreV1Api(api_client)
    assert owned_deployments(api_client, namespace, name)
    resources.delete("inferencepools", name)

    def collected() -> bool:
        services = core.list_namespaced_service(
            namespace, label_selector=f"quartermaster.dev/inference-pool={name}"
        )
        try:
            core.read_namespaced_config_map(status["routerConfigMap"], namespace)
            config_map_left = True
        except ApiException as exc:
            config_map_left = exc.status != 404
        return (
            not owned_deployments(api_client, namespace, name) and not services.items and not config_map_left
        )

    wait_for(
        collected, timeout=60, what="garbage collection of Deployments, Services and the router ConfigMap"
    )


def test_auto_apply_false_only_reports_the_plan_and_the_diff(
    operator: Any,
    resources: Any,
    example: Example,
    api_client: client.ApiClient,
    namespace: str,
    wait_for: Wait,
) -> None:
    pool = apply_examples(resources, example, autoApply=False)
    name = pool["metadata"]["name"]
    status = wait_for(resources.in_phase("inferencepools", name, "Planned"), timeout=90, what="pool Planned")
    assert owned_deployments(api_client, namespace, name) == {}
    pending = {c["deployment"]: c for c in status["pendingChanges"]}
    assert set(pending) == {d["name"] for d in status["plan"]["deployments"]}
    assert all(c["action"] == "create" and c["replicasFrom"] == 0 for c in pending.values())


def test_steady_state_reconciles_write_nothing(
    operator: Any,
    resources: Any,
    example: Example,
    api_client: client.ApiClient,
    namespace: str,
    wait_for: Wait,
) -> None:
    pool = apply_examples(resources, example)
    name = pool["metadata"]["name"]
    status = wait_for(resources.in_phase("inferencepools", name, "Applied"), timeout=90, what="pool Applied")
    core = client.CoreV1Api(api_client)

    def versions() -> dict[str, str]:
        found = {f"pool/{name}": resources.get("inferencepools", name)["metadata"]["resourceVersion"]}
        for dep_name, d in owned_deployments(api_client, namespace, name).items():
            found[f"deployment/{dep_name}"] = d.metadata.resource_version
        for svc in core.list_namespaced_service(namespace).items:
            found[f"service/{svc.metadata.name}"] = svc.metadata.resource_version
        cm = core.read_namespaced_config_map(status["routerConfigMap"], namespace)
        found[f"configmap/{cm.metadata.name}"] = cm.metadata.resource_version
        return found

    # Let the last apply settle (the pool's status write after Applied), then watch two timer rounds.
    before = wait_for(lambda: (v := versions()) == versions() and v, what="a settled state")
    ticks = operator.log_tail(10_000).count("Timer 'pool_tick' succeeded")
    wait_for(
        lambda: operator.log_tail(10_000).count("Timer 'pool_tick' succeeded") >= ticks + 2,
        timeout=30,
        what="two more timer rounds",
    )
    assert versions() == before


def test_metrics_and_liveness_endpoints_report_the_plans(
    operator: Any, resources: Any, example: Example, wait_for: Wait
) -> None:
    pool = apply_examples(resources, example, autoApply=False)
    status = wait_for(
        resources.in_phase("inferencepools", pool["metadata"]["name"], "Planned"), timeout=90, what="plan"
    )

    def scrape() -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{operator.metrics_port}/metrics", timeout=2) as r:
                text: str = r.read().decode()
        except OSError:
            return None
        return text if 'quartermaster_plans_total{outcome="feasible"}' in text else None

    text = wait_for(scrape, timeout=30, what="the plans counter on /metrics")
    cost = next(line for line in text.splitlines() if line.startswith("quartermaster_cost_per_hour_usd{"))
    assert float(cost.split()[-1]) == pytest.approx(status["costPerHour"])
    assert "quartermaster_solve_seconds_count" in text
    with urllib.request.urlopen(f"http://127.0.0.1:{operator.health_port}/healthz", timeout=5) as response:
        assert response.status == 200
