"""``helm install``/``test``/``uninstall`` of charts/quartermaster into the local control plane.

kwok plays the kubelet: the operator pod is scheduled by the real scheduler onto the fake ``cpu`` pool (the
GPU pools are tainted) and marked Running and Ready without running a container, so these tests check
what the chart asks of Kubernetes (objects, scheduling, RBAC decisions, Service endpoints, hook wiring,
clean-up), not the operator's behaviour. CRDs are cluster-scoped and shared with the other integration
tests: the chart adopts the ones the ``crds`` fixture applied (``--take-ownership``), keeps them on
uninstall (``crds.keep``), and no test ever deletes them.
"""

from __future__ import annotations

import functools
import os
import pathlib
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from quartermaster.localcluster.launcher import free_port
from quartermaster.localcluster.nodes import POOL_LABEL
from quartermaster.localcluster.operatorprocess import spawn_operator

REPO = pathlib.Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "quartermaster"
KEEP = "helm.sh/resource-policy"

Helm = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def helm(bin_dir: pathlib.Path, kubeconfig: pathlib.Path, tmp_path: pathlib.Path) -> Helm:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "HELM_CACHE_HOME": str(tmp_path / "helm-cache"),
        "HELM_CONFIG_HOME": str(tmp_path / "helm-config"),
        "HELM_DATA_HOME": str(tmp_path / "helm-data"),
    }

    def run(*args: str | os.PathLike[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [str(bin_dir / "helm"), "--kubeconfig", str(kubeconfig), *map(str, args)]
        result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=240, check=False)
        if check and result.returncode != 0:
            pytest.fail(
                f"{' '.join(argv[1:])} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        return result

    return run


def gone(read: Callable[[], Any]) -> bool:
    try:
        read()
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


def allowed(
    api: client.ApiClient, sa_namespace: str, sa: str, verb: str, group: str, resource: str, **attrs: str
) -> bool:
    """The API server's RBAC decision for the ServiceAccount (a SubjectAccessReview)."""
    review = client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(
            user=f"system:serviceaccount:{sa_namespace}:{sa}",
            groups=[
                "system:serviceaccounts",
                f"system:serviceaccounts:{sa_namespace}",
                "system:authenticated",
            ],
            resource_attributes=client.V1ResourceAttributes(
                verb=verb, group=group, resource=resource, **attrs
            ),
        )
    )
    return bool(client.AuthorizationV1Api(api).create_subject_access_review(review).status.allowed)


def deployment_available(apps: client.AppsV1Api, name: str, namespace: str) -> bool:
    status = apps.read_namespaced_deployment_status(name, namespace).status
    return any(c.type == "Available" and c.status == "True" for c in status.conditions or [])


def test_install_runs_the_operator_with_least_privilege_and_uninstall_keeps_the_crds(
    helm: Helm,
    api_client: client.ApiClient,
    namespace: str,
    crds: list[str],
    wait_for: Callable[..., Any],
) -> None:
    release = f"qm-{namespace.rsplit('-', 1)[-1]}"
    full = f"{release}-quartermaster"
    notes = helm(
        "install", release, CHART, "--namespace", namespace,
        "--set", "crds.enabled=true,crds.keep=true", "--take-ownership", "--wait", "--timeout", "120s",
    ).stdout  # fmt: skip
    assert "are KEPT on `helm uninstall`" in notes
    assert f"helm test {release} -n {namespace}" in notes
    assert f"http://{release}-quartermaster-metrics.{namespace}.svc:8080/metrics" in notes
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    rbac, ext = client.RbacAuthorizationV1Api(api_client), client.ApiextensionsV1Api(api_client)

    wait_for(
        lambda: deployment_available(apps, full, namespace), timeout=60, what=f"Deployment {full} Available"
    )
    selector = f"app.kubernetes.io/instance={release},app.kubernetes.io/component=operator"
    (pod,) = core.list_namespaced_pod(namespace, label_selector=selector).items
    node = core.read_node(pod.spec.node_name)
    assert node.metadata.labels[POOL_LABEL] == "cpu"
    container = pod.spec.containers[0]
    assert container.security_context.read_only_root_filesystem is True
    assert container.security_context.allow_privilege_escalation is False
    assert pod.spec.security_context.run_as_non_root is True
    assert pod.spec.service_account_name == full

    # The chart adopted the CRDs the fixture applied; they stay Established and are marked keep.
    for name in crds:
        got = ext.read_custom_resource_definition(name)
        assert got.metadata.annotations[KEEP] == "keep"
        assert got.metadata.annotations["meta.helm.sh/release-name"] == release
        assert any(c.type == "Established" and c.status == "True" for c in got.status.conditions)

    # The metrics Service selects the operator pod (the endpoints controller found it).
    service = core.read_namespaced_service(f"{full}-metrics", namespace)
    assert service.spec.ports[0].target_port == "metrics"
    discovery = client.DiscoveryV1Api(api_client)

    def metrics_endpoints() -> list[Any]:
        slices = discovery.list_namespaced_endpoint_slice(
            namespace, label_selector=f"kubernetes.io/service-name={full}-metrics"
        ).items
        return [
            e
            for s in slices
            for e in s.endpoints or []
            if e.target_ref and e.target_ref.name == pod.metadata.name
        ]

    wait_for(metrics_endpoints, timeout=30, what="metrics Service endpoint for the operator pod")

    # RBAC as the API server decides it for the operator's ServiceAccount.
    for suffix in ("framework", "application"):
        assert rbac.read_cluster_role(f"{full}-{suffix}").rules
        binding = rbac.read_cluster_role_binding(f"{full}-{suffix}")
        assert [(s.kind, s.name, s.namespace) for s in binding.subjects] == [
            ("ServiceAccount", full, namespace)
        ]
    can = functools.partial(allowed, api_client, namespace, full)
    assert can("patch", "quartermaster.dev", "inferencepools", subresource="status", namespace="other")
    assert can("watch", "quartermaster.dev", "queryclusterjobs")
    assert can("create", "apps", "deployments", namespace="serving")
    assert can("delete", "", "configmaps", namespace="serving")
    assert can("create", "batch", "jobs", namespace="serving")
    assert can("create", "rbac.authorization.k8s.io", "roles", namespace="serving")
    assert can("list", "apiextensions.k8s.io", "customresourcedefinitions")
    assert can("create", "", "events", namespace="serving")
    assert not can("get", "", "secrets", namespace="serving")
    assert not can("delete", "", "namespaces")
    assert not can("create", "rbac.authorization.k8s.io", "clusterroles")
    assert not can("patch", "kopf.dev", "clusterkopfpeerings")  # one replica: no peering rights
    assert not can("delete", "apiextensions.k8s.io", "customresourcedefinitions")

    # The helm test hook is a Job; kwok completes its pod, so this checks the hook wiring end to end.
    result = helm("test", release, "--namespace", namespace, "--timeout", "90s")
    assert "Phase:          Succeeded" in result.stdout

    helm("uninstall", release, "--namespace", namespace, "--wait", "--timeout", "60s")
    wait_for(
        lambda: gone(lambda: apps.read_namespaced_deployment(full, namespace)), what="Deployment deleted"
    )
    for read in (
        lambda: core.read_namespaced_service_account(full, namespace),
        lambda: core.read_namespaced_service(f"{full}-metrics", namespace),
        lambda: rbac.read_cluster_role(f"{full}-framework"),
        lambda: rbac.read_cluster_role(f"{full}-application"),
        lambda: rbac.read_cluster_role_binding(f"{full}-framework"),
        lambda: rbac.read_cluster_role_binding(f"{full}-application"),
    ):
        wait_for(lambda read=read: gone(read), what="release object deleted")
    for name in crds:  # crds.keep: the CRDs (and every custom resource) survive the uninstall
        got = ext.read_custom_resource_definition(name)
        assert got.metadata.deletion_timestamp is None
        assert any(c.type == "Established" and c.status == "True" for c in got.status.conditions)


def test_namespaced_install_with_replicas_uses_roles_and_a_kopf_peering(
    helm: Helm,
    api_client: client.ApiClient,
    namespace: str,
    crds: list[str],
    wait_for: Callable[..., Any],
) -> None:
    release = f"qmp-{namespace.rsplit('-', 1)[-1]}"
    full = f"{release}-quartermaster"
    notes = helm(
        "install", release, CHART, "--namespace", namespace, "--wait", "--timeout", "120s",
        "--set", f"crds.enabled=false,replicaCount=2,watchNamespace={namespace},test.enabled=false",
    ).stdout  # fmt: skip
    assert f'kopf peering "{release}-quartermaster" is on' in notes
    assert "not managed by this release (crds.enabled=false)" in notes
    apps, rbac = client.AppsV1Api(api_client), client.RbacAuthorizationV1Api(api_client)
    custom = client.CustomObjectsApi(api_client)
    wait_for(
        lambda: deployment_available(apps, full, namespace), timeout=60, what=f"Deployment {full} Available"
    )
    deployment = apps.read_namespaced_deployment(full, namespace)
    assert deployment.status.ready_replicas == 2
    env = {e.name: e.value for e in deployment.spec.template.spec.containers[0].env}
    assert env["QM_PEERING"] == full
    assert env["QM_NAMESPACE"] == namespace

    # The peering CRDs came from the chart's crds/ directory, so the peering object could be created.
    peering = custom.get_namespaced_custom_object("kopf.dev", "v1", namespace, "kopfpeerings", full)
    assert peering["metadata"]["labels"]["app.kubernetes.io/instance"] == release
    assert rbac.read_namespaced_role(f"{full}-application", namespace).rules
    assert rbac.read_namespaced_role(f"{full}-framework", namespace).rules
    can = functools.partial(allowed, api_client, namespace, full)
    assert can("create", "apps", "deployments", namespace=namespace)
    assert can("patch", "kopf.dev", "kopfpeerings", namespace=namespace)
    assert not can("create", "apps", "deployments", namespace="elsewhere")
    assert not can("list", "quartermaster.dev", "inferencepools", namespace="elsewhere")

    helm("uninstall", release, "--namespace", namespace, "--wait", "--timeout", "60s")
    wait_for(
        lambda: gone(
            lambda: custom.get_namespaced_custom_object("kopf.dev", "v1", namespace, "kopfpeerings", full)
        ),
        what="KopfPeering deleted",
    )
    wait_for(
        lambda: gone(lambda: rbac.read_namespaced_role(f"{full}-application", namespace)), what="Role deleted"
    )
    wait_for(lambda: gone(lambda: rbac.read_cluster_role(f"{full}-framework")), what="ClusterRole deleted")


def forbidden_lines(log: pathlib.Path) -> list[str]:
    return [line[:400] for line in log.read_text().splitlines() if "forbidden" in line.lower()]


def service_account_kubeconfig(
    api: client.ApiClient, admin_kubeconfig: pathlib.Path, namespace: str, sa: str, path: pathlib.Path
) -> pathlib.Path:
    """A kubeconfig that authenticates as the ServiceAccount (a bound token from the TokenRequest API)."""
    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(expiration_seconds=3600))
    token = client.CoreV1Api(api).create_namespaced_service_account_token(sa, namespace, request).status.token
    admin = yaml.safe_load(admin_kubeconfig.read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])["context"]
    cluster = next(c for c in admin["clusters"] if c["name"] == context["cluster"])
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [cluster],
                "users": [{"name": sa, "user": {"token": token}}],
                "contexts": [{"name": sa, "context": {"cluster": cluster["name"], "user": sa}}],
                "current-context": sa,
            }
        )
    )
    return path


def test_the_operator_works_with_exactly_the_charts_rbac(
    helm: Helm,
    api_client: client.ApiClient,
    kubeconfig: pathlib.Path,
    bin_dir: pathlib.Path,
    namespace: str,
    crds: list[str],
    tmp_path: pathlib.Path,
    wait_for: Callable[..., Any],
) -> None:
    """Runs the real operator process as the chart's ServiceAccount (namespaced, so other tests' objects are
    not touched) on examples/ with autoApply: any missing permission shows up as a 403 or a missing object."""
    release = f"qmr-{namespace.rsplit('-', 1)[-1]}"
    full = f"{release}-quartermaster"
    helm(
        "install", release, CHART, "--namespace", namespace, "--wait", "--timeout", "120s",
        "--set", f"crds.enabled=false,watchNamespace={namespace},test.enabled=false,replicaCount=0",
    )  # fmt: skip
    sa_kubeconfig = service_account_kubeconfig(
        api_client, kubeconfig, namespace, full, tmp_path / "sa.kubeconfig"
    )
    # The QueryClusterJob example's Job pods cannot run here (kwok completes them without a container), so
    # the pool fed by it is left out; test_operator_clusterjob.py covers that path.
    docs = [
        d
        for f in sorted((REPO / "examples").glob("*.yaml"))
        for d in yaml.safe_load_all(f.read_text())
        if d and d["kind"] != "QueryClusterJob" and "classesFrom" not in d.get("spec", {})
    ]
    for doc in docs:
        if doc["kind"] == "InferencePool":
            doc["spec"]["autoApply"] = True
    (tmp_path / "examples.yaml").write_text(yaml.safe_dump_all(docs))
    pools = [d["metadata"]["name"] for d in docs if d["kind"] == "InferencePool"]
    assert pools, "examples/ has no InferencePool"

    log_path = tmp_path / "operator.log"
    operator = spawn_operator(sa_kubeconfig, namespace, log_path, metrics_port=str(free_port()))
    try:
        subprocess.run(
            [str(bin_dir / "kubectl"), "--kubeconfig", str(kubeconfig), "-n", namespace, "apply", "-f",
             str(tmp_path / "examples.yaml")],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)

        def applied(pool: str) -> bool:
            if operator.poll() is not None:
                pytest.fail(f"the operator exited ({operator.returncode}):\n{log_path.read_text()[-3000:]}")
            denied = forbidden_lines(log_path)
            if denied:
                pytest.fail("the chart's RBAC denied the operator:\n" + "\n".join(denied[:10]))
            deployments = apps.list_namespaced_deployment(
                namespace, label_selector=f"quartermaster.dev/inference-pool={pool}"
            ).items
            configmaps = [c.metadata.name for c in core.list_namespaced_config_map(namespace).items]
            return bool(deployments) and f"{pool}-router" in configmaps

        for pool in pools:
            wait_for(
                lambda pool=pool: applied(pool),
                timeout=90,
                what=f"Deployments and router ConfigMap of {pool}",
            )
        events = core.list_namespaced_event(
            namespace, field_selector="involvedObject.kind=InferencePool"
        ).items
        assert events, "the operator posted no Event on the InferencePool"
    finally:
        operator.terminate()
        try:
            operator.wait(timeout=30)
        except subprocess.TimeoutExpired:
            operator.kill()
            operator.wait(timeout=10)
    denied = forbidden_lines(log_path)
    assert not denied, "the chart's RBAC denied the operator:\n" + "\n".join(denied[:10])
    helm("uninstall", release, "--namespace", namespace, "--wait", "--timeout", "60s")
