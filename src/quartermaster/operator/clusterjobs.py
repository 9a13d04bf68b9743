"""Desired objects of a QueryClusterJob run as a Kubernetes Job (pure builders).

Unsharded: one Job whose init containers fetch the input (URL inputs) and run ``quartermaster cluster``
into an emptyDir, and whose main container publishes the result ConfigMaps
(``quartermaster operator publish``). Sharded (``spec.shards > 1``): an Indexed Job whose pods each
cluster rows ``--shard $(JOB_COMPLETION_INDEX)/N`` into a directory on the input's PersistentVolumeClaim,
then a second Job merges the shards (``quartermaster cluster merge``) and publishes.

The pods run under a per-QueryClusterJob ServiceAccount bound to a Role that may only ``get``/``patch``
the result ConfigMaps of that QueryClusterJob (``resourceNames``); the operator creates those ConfigMaps
empty beforehand because ``create`` cannot be limited by name.
"""

from __future__ import annotations

from typing import Any

from quartermaster.api.clusterjob import QueryClusterJobSpec
from quartermaster.operator.clusterresult import chunk_count
from quartermaster.operator.objects import Owner, config_map, dns_name

WORK = "/work"
SECURITY_CONTEXT = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def result_name(job_name: str) -> str:
    return dns_name(job_name, "result", limit=253)


def chunk_names(job_name: str, max_bytes: int) -> list[str]:
    """Names of the ConfigMaps that may hold representative chunks (bounded by maxRepresentativeBytes)."""
    return [dns_name(job_name, "reps", str(i), limit=253) for i in range(chunk_count(max_bytes))]


def service_account_name(owner: Owner) -> str:
    return dns_name(owner.name, "clusterer")


def writer_rbac(owner: Owner, spec: QueryClusterJobSpec) -> list[dict[str, Any]]:
    """ServiceAccount + Role + RoleBinding letting the Job patch only its own result ConfigMaps."""
    name = service_account_name(owner)
    meta = {
        "namespace": owner.namespace,
        "labels": {"app.kubernetes.io/managed-by": "quartermaster"},
        "ownerReferences": [owner.reference()],
    }
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {**meta, "name": name}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {**meta, "name": name},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["configmaps"],
                    "resourceNames": [
                        result_name(owner.name),
                        *chunk_names(owner.name, spec.max_representative_bytes),
                    ],
                    "verbs": ["get", "patch", "update"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {**meta, "name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": owner.namespace}],
        },
    ]


def empty_results(owner: Owner, spec: QueryClusterJobSpec) -> list[dict[str, Any]]:
    """The result ConfigMaps, created empty so the Job only needs ``patch`` on known names."""
    labels = {"quartermaster.dev/query-cluster-job": owner.name}
    names = [result_name(owner.name), *chunk_names(owner.name, spec.max_representative_bytes)]
    return [config_map(owner, name, {}, labels=labels) for name in names]


def cluster_args(spec: QueryClusterJobSpec, input_path: str, out: str) -> list[str]:
    args = [
        "cluster",
        input_path,
        "--alpha",
        repr(spec.alpha),
        "--embedding-column",
        spec.input.embedding_column,
        "--seed",
        str(spec.seed),
        "--out",
        out,
    ]
    if spec.input.attributes:
        args += ["--attributes", ",".join(spec.input.attributes)]
    if spec.trim_coverage is not None:
        args += ["--trim-coverage", repr(spec.trim_coverage)]
    if spec.min_cluster_size is not None:
        args += ["--min-cluster-size", str(spec.min_cluster_size)]
    return args


def publish_args(owner: Owner, spec: QueryClusterJobSpec, result_dir: str, input_path: str) -> list[str]:
    args = [
        "operator",
        "publish",
        result_dir,
        "--input",
        input_path,
        "--name",
        owner.name,
        "--namespace",
        owner.namespace,
        "--max-representative-bytes",
        str(spec.max_representative_bytes),
    ]
    if spec.total_rate is not None:
        args += ["--total-rate", repr(spec.total_rate)]
    return args


def _container(name: str, image: str, args: list[str], spec: QueryClusterJobSpec) -> dict[str, Any]:
    resources = {"cpu": spec.resources.cpu, "memory": spec.resources.memory}
    return {
        "name": name,
        "image": image,
        "args": args,
        "resources": {"requests": dict(resources), "limits": dict(resources)},
        "securityContext": SECURITY_CONTEXT,
        "volumeMounts": [{"name": "work", "mountPath": WORK}, {"name": "tmp", "mountPath": "/tmp"}],
    }


def _input(spec: QueryClusterJobSpec) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    """(input path in the pod, extra volumes, extra volume mounts)."""
    pvc = spec.input.persistent_volume_claim
    if pvc is not None:
        volume = {"name": "input", "persistentVolumeClaim": {"claimName": pvc.claim_name}}
        mount = {"name": "input", "mountPath": "/input"}
        return f"/input/{pvc.path.lstrip('/')}", [volume], [mount]
    return f"{WORK}/input.parquet", [], []


def clustering_job(owner: Owner, spec: QueryClusterJobSpec, *, image: str) -> dict[str, Any]:
    """The batch/v1 Job of an unsharded run (init: fetch, cluster; main: publish)."""
    input_path, volumes, mounts = _input(spec)
    init: list[dict[str, Any]] = []
    if spec.input.url is not None:
        init.append(_container("fetch", image, ["operator", "fetch", spec.input.url, input_path], spec))
    init.append(_container("cluster", image, cluster_args(spec, input_path, f"{WORK}/out"), spec))
    publish = _container("publish", image, publish_args(owner, spec, f"{WORK}/out", input_path), spec)
    for container in [*init, publish]:
        container["volumeMounts"] += [{**m, "readOnly": True} for m in mounts]
    return _job(owner, spec, dns_name(owner.name, "cluster"), [publish], init=init, volumes=volumes)


def shard_dir(owner: Owner) -> str:
    return f"/input/.quartermaster/{owner.name}-{owner.uid[:8]}"


def _job(
    owner: Owner,
    spec: QueryClusterJobSpec,
    name: str,
    containers: list[dict[str, Any]],
    *,
    init: list[dict[str, Any]] | None = None,
    volumes: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A Job whose pods run as the writer ServiceAccount, non-root, with scratch ``work`` and ``tmp``."""
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": service_account_name(owner),
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "fsGroup": 65532},
        "containers": containers,
        "volumes": [{"name": "work", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}, *(volumes or [])],
    }
    if init:
        pod_spec["initContainers"] = init
    labels = {
        "app.kubernetes.io/managed-by": "quartermaster",
        "quartermaster.dev/query-cluster-job": owner.name,
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": owner.namespace,
            "labels": labels,
            "ownerReferences": [owner.reference()],
        },
        "spec": {
            "backoffLimit": spec.backoff_limit,
            "ttlSecondsAfterFinished": spec.ttl_seconds_after_finished,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    **pod_spec,
                    "nodeSelector": dict(spec.node_selector),
                    "tolerations": [t.model_dump(by_alias=True, exclude_none=True) for t in spec.tolerations],
                },
            },
        },
    }


def sharded_jobs(
    owner: Owner, spec: QueryClusterJobSpec, *, image: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(Indexed Job clustering one shard per pod onto the PVC, merge-and-publish Job)."""
    pvc = spec.input.persistent_volume_claim
    if pvc is None:
        raise ValueError("spec.shards > 1 needs input.persistentVolumeClaim (shards are written next to it)")
    input_path = _input(spec)[0]
    rw_input = [{"name": "input", "mountPath": "/input"}]
    shards = shard_dir(owner)
    volumes = [{"name": "input", "persistentVolumeClaim": {"claimName": pvc.claim_name}}]
    worker_args = cluster_args(spec, input_path, f"{shards}/shard-$(JOB_COMPLETION_INDEX)")
    worker_args[2:2] = ["--shard", f"$(JOB_COMPLETION_INDEX)/{spec.shards}"]
    worker = _container("cluster", image, worker_args, spec)
    worker["volumeMounts"] += rw_input
    indexed = _job(owner, spec, dns_name(owner.name, "shards"), [worker], volumes=volumes)
    indexed["spec"] |= {"completionMode": "Indexed", "completions": spec.shards, "parallelism": spec.shards}
    merge = _container(
        "merge",
        image,
        ["cluster", "merge", *[f"{shards}/shard-{i}" for i in range(spec.shards)], "--out", f"{WORK}/out"],
        spec,
    )
    merge["volumeMounts"] += rw_input
    publish = _container("publish", image, publish_args(owner, spec, f"{WORK}/out", input_path), spec)
    publish["volumeMounts"] += rw_input
    merger = _job(owner, spec, dns_name(owner.name, "merge"), [publish], init=[merge], volumes=volumes)
    return indexed, merger
