"""``helm template`` with default and non-default values: the rendered objects' fields."""

from __future__ import annotations

from typing import Any

import pytest

RELEASE, NAMESPACE, FULLNAME = "qm", "qm-system", "qm-quartermaster"
APP_RESOURCES = {"queryclusterjobs", "modelcatalogs", "inferencepools"}


def operator_pod(objects: Any) -> dict[str, Any]:
    spec: dict[str, Any] = objects.one("Deployment", FULLNAME)["spec"]["template"]["spec"]
    return spec


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def rules_by_resource(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource) -> verbs, merged over the rules."""
    out: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert "resourceNames" not in rule
        assert "nonResourceURLs" not in rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


def test_default_release_renders_the_operator_and_its_supporting_objects(default_objects: Any) -> None:
    kinds = sorted(o["kind"] for o in default_objects)
    assert kinds == sorted(
        ["ServiceAccount", "Deployment", "Service", "Job"]
        + ["CustomResourceDefinition"] * 3
        + ["ClusterRole", "ClusterRoleBinding"] * 2
    )
    for obj in default_objects:
        if obj["kind"] not in ("CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"):
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]["name"]
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"


def test_operator_pod_is_hardened(default_objects: Any) -> None:
    pod = operator_pod(default_objects)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["privileged"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert "add" not in sc["capabilities"]
    # A read-only root needs a writable /tmp (HOME points there).
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert env_of(container)["HOME"] == "/tmp"
    assert container["resources"]["requests"]["cpu"]
    assert container["resources"]["limits"]["memory"]


def test_operator_runs_the_cli_with_liveness_on_healthz_and_settings_from_values(
    default_objects: Any,
) -> None:
    pod = operator_pod(default_objects)
    (container,) = pod["containers"]
    assert container["args"] == ["operator", "run", "--all-namespaces"]
    env = env_of(container)
    assert "QM_NAMESPACE" not in env  # unset: all namespaces
    assert env["QM_METRICS_PORT"] == "8080"
    assert env["QM_HEALTH_PORT"] == "8081"
    assert env["QM_LOG_FORMAT"] == "json"
    assert env["QM_ALLOW_FILE_URLS"] == "false"
    assert env["QM_VLLM_IMAGE"].startswith("vllm/vllm-openai:")
    assert "QM_PEERING" not in env
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}
    probe = container["livenessProbe"]["httpGet"]
    assert probe == {"path": "/healthz", "port": "health"}
    assert pod["serviceAccountName"] == FULLNAME
    deployment = default_objects.one("Deployment", FULLNAME)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_non_default_values_reach_the_operator_container(helm: Any) -> None:
    objects = helm.template(
        {
            "watchNamespace": "team-a",
            "image": {"repository": "registry.local/qm", "tag": "dev"},
            "operator": {
                "vllmImage": "vllm/vllm-openai:v9",
                "logFormat": "text",
                "allowFileUrls": True,
                "metricsPort": 9090,
                "healthPort": 9091,
                "extraEnv": [{"name": "QM_INLINE_MAX_ROWS", "value": "5000"}],
            },
            "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "4Gi"}},
            "nodeSelector": {"quartermaster.dev/pool": "cpu"},
        }
    )
    pod = operator_pod(objects)
    (container,) = pod["containers"]
    env = env_of(container)
    assert env["QM_NAMESPACE"] == "team-a"
    assert container["args"] == ["operator", "run", "--namespace", "team-a"]
    assert env["QM_VLLM_IMAGE"] == "vllm/vllm-openai:v9"
    assert env["QM_LOG_FORMAT"] == "text"
    assert env["QM_ALLOW_FILE_URLS"] == "true"
    assert env["QM_METRICS_PORT"] == "9090"
    assert env["QM_HEALTH_PORT"] == "9091"
    assert env["QM_INLINE_MAX_ROWS"] == "5000"
    assert container["image"] == env["QM_OPERATOR_IMAGE"] == "registry.local/qm:dev"
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"metrics": 9090, "health": 9091}
    assert container["resources"] == {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "4Gi"}}
    assert pod["nodeSelector"] == {"quartermaster.dev/pool": "cpu"}
    service = objects.one("Service", f"{FULLNAME}-metrics")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"


def test_image_digest_wins_over_the_tag(helm: Any) -> None:
    digest = "sha256:" + "0123456789abcdef" * 4
    objects = helm.template({"image": {"tag": "ignored", "digest": digest}})
    (container,) = operator_pod(objects)["containers"]
    assert container["image"] == f"ghcr.io/quartermaster-dev/quartermaster@{digest}"


def test_cluster_wide_rbac_is_split_into_framework_and_application_roles(default_objects: Any) -> None:
    framework = rules_by_resource(default_objects.one("ClusterRole", f"{FULLNAME}-framework"))
    application = rules_by_resource(default_objects.one("ClusterRole", f"{FULLNAME}-application"))
    assert framework == {
        ("apiextensions.k8s.io", "customresourcedefinitions"): {"get", "list", "watch"},
        ("", "events"): {"create", "patch"},
        ("events.k8s.io", "events"): {"create", "patch"},
    }
    crud = {"get", "list", "watch", "create", "patch", "update", "delete"}
    expected = {("quartermaster.dev", r): {"get", "list", "watch", "patch", "update"} for r in APP_RESOURCES}
    expected |= {("quartermaster.dev", f"{r}/status"): {"get", "patch", "update"} for r in APP_RESOURCES}
    expected |= {("apps", "deployments"): crud}
    expected |= {("", r): crud for r in ("services", "configmaps", "serviceaccounts")}
    expected |= {("batch", "jobs"): crud - {"update"}}
    expected |= {("rbac.authorization.k8s.io", r): crud - {"update"} for r in ("roles", "rolebindings")}
    expected |= {("", "pods"): {"get", "list", "watch"}}
    assert application == expected
    # Least privilege: no wildcards, no secrets, no escalation verbs, nothing on nodes.
    for rules in (framework, application):
        for (group, resource), verbs in rules.items():
            assert "*" not in (group, resource)
            assert "*" not in verbs
            assert resource not in ("secrets", "nodes", "clusterroles", "clusterrolebindings")
            assert not verbs & {"escalate", "bind", "impersonate", "deletecollection"}
    for suffix in ("framework", "application"):
        binding = default_objects.one("ClusterRoleBinding", f"{FULLNAME}-{suffix}")
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": f"{FULLNAME}-{suffix}",
        }
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}]


def test_watch_namespace_turns_the_rbac_into_roles_in_that_namespace(helm: Any) -> None:
    objects = helm.template({"watchNamespace": "team-a"})
    assert not objects.find("ClusterRole", f"{FULLNAME}-application")
    application = objects.one("Role", f"{FULLNAME}-application")
    assert application["metadata"]["namespace"] == "team-a"
    assert ("apps", "deployments") in rules_by_resource(application)
    binding = objects.one("RoleBinding", f"{FULLNAME}-application")
    assert binding["metadata"]["namespace"] == "team-a"
    assert binding["roleRef"]["kind"] == "Role"
    assert binding["subjects"][0]["namespace"] == NAMESPACE
    # Only reading CRDs and namespaces (kopf's namespaced mode lists them) stays cluster-wide; events
    # move into the watched namespace.
    cluster = rules_by_resource(objects.one("ClusterRole", f"{FULLNAME}-framework"))
    assert cluster == {
        ("apiextensions.k8s.io", "customresourcedefinitions"): {"get", "list", "watch"},
        ("", "namespaces"): {"list", "watch"},
    }
    namespaced = objects.one("Role", f"{FULLNAME}-framework")
    assert namespaced["metadata"]["namespace"] == "team-a"
    assert rules_by_resource(namespaced)[("", "events")] == {"create", "patch"}


@pytest.mark.parametrize(
    ("watch", "kind", "resource"),
    [("", "ClusterKopfPeering", "clusterkopfpeerings"), ("team-a", "KopfPeering", "kopfpeerings")],
)
def test_several_replicas_switch_kopf_peering_on(helm: Any, watch: str, kind: str, resource: str) -> None:
    objects = helm.template({"replicaCount": 3, "watchNamespace": watch, "peering": {"name": "qm-peers"}})
    assert objects.one("Deployment", FULLNAME)["spec"]["replicas"] == 3
    (container,) = operator_pod(objects)["containers"]
    assert env_of(container)["QM_PEERING"] == "qm-peers"
    peering = objects.one(kind, "qm-peers")
    assert peering["apiVersion"] == "kopf.dev/v1"
    assert peering["metadata"].get("namespace") == (watch or None)
    role_kind = "Role" if watch else "ClusterRole"
    framework = rules_by_resource(objects.one(role_kind, f"{FULLNAME}-framework"))
    assert framework[("kopf.dev", resource)] == {"get", "list", "watch", "patch"}


def test_peering_crds_ship_in_the_chart_crds_directory(helm: Any) -> None:
    objects = helm.template({"replicaCount": 2}, extra=["--include-crds"])
    names = {o["metadata"]["name"] for o in objects.find("CustomResourceDefinition")}
    assert {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"} <= names
    default_peering = helm.template({"replicaCount": 1})
    assert not default_peering.find("ClusterKopfPeering")


def test_crds_are_gated_and_keep_is_an_annotation(helm: Any, default_objects: Any) -> None:
    crds = default_objects.find("CustomResourceDefinition")
    assert {c["metadata"]["name"] for c in crds} == {f"{r}.quartermaster.dev" for r in APP_RESOURCES}
    for crd in crds:
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    not_kept = helm.template({"crds": {"enabled": True, "keep": False}}).find("CustomResourceDefinition")
    assert len(not_kept) == 3
    assert all("annotations" not in c["metadata"] for c in not_kept)
    disabled = helm.template({"crds": {"enabled": False, "keep": True}})
    assert not disabled.find("CustomResourceDefinition")
    assert disabled.find("Deployment")


def test_metrics_service_selects_only_the_operator_pods(default_objects: Any) -> None:
    service = default_objects.one("Service", f"{FULLNAME}-metrics")
    pod_labels = default_objects.one("Deployment", FULLNAME)["spec"]["template"]["metadata"]["labels"]
    selector = service["spec"]["selector"]
    assert selector.items() <= pod_labels.items()
    assert selector["app.kubernetes.io/component"] == "operator"
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert not default_objects.find("ServiceMonitor")


def test_service_monitor_is_opt_in_and_scrapes_the_metrics_service(helm: Any) -> None:
    objects = helm.template({"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}})
    monitor = objects.one("ServiceMonitor", FULLNAME)
    assert monitor["metadata"]["labels"]["release"] == "prom"
    service = objects.one("Service", f"{FULLNAME}-metrics")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    result = helm.template_raw(
        {"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}}, check=False
    )
    assert result.returncode != 0
    assert "metrics.service.enabled=true" in result.stderr


def test_router_is_optional_and_mounts_the_pools_router_configmap(helm: Any, default_objects: Any) -> None:
    assert not [o for o in default_objects if o["metadata"]["name"].endswith("-router")]
    objects = helm.template(
        {
            "router": {
                "enabled": True,
                "inferencePool": "demo",
                "namespace": "serving",
                "port": 9000,
                "embeddingsUrl": "http://embed:8000/v1",
                "representatives": {
                    "configMaps": ["demo-reps-0", "demo.reps.1"],
                    "persistentVolumeClaims": ["r"],
                },
            }
        }
    )
    deployment = objects.one("Deployment", f"{FULLNAME}-router")
    assert deployment["metadata"]["namespace"] == "serving"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert container["args"] == ["router", "serve"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    env = env_of(container)
    assert env["QM_ROUTER_PORT"] == "9000"
    assert env["QM_ROUTER_EMBEDDINGS_URL"] == "http://embed:8000/v1"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    config_dir, _, config_key = env["QM_ROUTER_CONFIG"].rpartition("/")
    assert config_key == "router-config.json"
    assert volumes[mounts[config_dir]]["configMap"] == {"name": "demo-router", "optional": True}
    reps = env["QM_ROUTER_REPRESENTATIVES_DIR"]
    for name in ("demo-reps-0", "demo.reps.1"):
        assert volumes[mounts[f"{reps}/{name}"]]["configMap"] == {"name": name}
    assert volumes[mounts[f"{env['QM_ROUTER_PVC_DIR']}/r"]]["persistentVolumeClaim"] == {
        "claimName": "r",
        "readOnly": True,
    }
    service = objects.one("Service", f"{FULLNAME}-router")
    assert service["metadata"]["namespace"] == "serving"
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "router"
    # The operator knows the router image (it defaults to the operator's own).
    (operator,) = operator_pod(objects)["containers"]
    assert env_of(operator)["QM_ROUTER_IMAGE"] == container["image"] == operator["image"]


def test_router_configmap_name_can_be_set_and_pool_is_required_otherwise(helm: Any) -> None:
    objects = helm.template({"router": {"enabled": True, "configMap": "custom"}})
    pod = objects.one("Deployment", f"{FULLNAME}-router")["spec"]["template"]["spec"]
    assert {"name": "custom", "optional": True} in [v.get("configMap") for v in pod["volumes"]]
    result = helm.template_raw({"router": {"enabled": True}}, check=False)
    assert result.returncode != 0
    assert "router.inferencePool is required" in result.stderr


def test_helm_test_hook_checks_the_metrics_service(default_objects: Any, helm: Any) -> None:
    job = default_objects.one("Job", f"{FULLNAME}-test")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "test"
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["args"][-1] == f"http://{FULLNAME}-metrics.{NAMESPACE}.svc:8080/metrics"
    with_router = helm.template({"router": {"enabled": True, "inferencePool": "p"}})
    (container,) = with_router.one("Job", f"{FULLNAME}-test")["spec"]["template"]["spec"]["containers"]
    assert container["args"][-1] == f"http://{FULLNAME}-router.{NAMESPACE}.svc:80/healthz"
    assert not helm.template({"test": {"enabled": False}}).find("Job")


def test_disabling_objects_removes_them(helm: Any) -> None:
    objects = helm.template(
        {
            "replicaCount": 0,
            "rbac": {"create": False},
            "serviceAccount": {"create": False, "name": "existing"},
            "metrics": {"service": {"enabled": False}},
        }
    )
    assert objects.kinds() == {"CustomResourceDefinition", "Deployment", "Job"}
    assert objects.one("Deployment")["spec"]["replicas"] == 0
    assert operator_pod(objects)["serviceAccountName"] == "existing"
    result = helm.template_raw({"serviceAccount": {"create": False}}, check=False)
    assert result.returncode != 0
    assert "serviceAccount.name is required" in result.stderr


def test_long_release_names_stay_valid_object_names(helm: Any) -> None:
    objects = helm.template(release="a-very-long-release-name-that-fills-the-helm-limit-53")
    for obj in objects:
        name = obj["metadata"]["name"]
        if obj["kind"] != "CustomResourceDefinition":
            assert len(name) <= 63, name
            assert not name.endswith("-"), name
    assert objects.one("Service")["metadata"]["name"].endswith("-metrics")
    assert len({o["metadata"]["name"] for o in objects.find("ClusterRole")}) == 2
