"""QueryClusterJob on the local control plane: inline and as a Kubernetes Job, feeding an InferencePool."""

from __future__ import annotations

import functools
import http.server
import os
import pathlib
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from kubernetes import client

from quartermaster.api.routerconfig import ROUTER_CONFIG_KEY, load_router_config
from quartermaster.localcluster.launcher import free_port

Wait = Callable[..., Any]
DATA = (
    pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "data" / "queries" / "banking77.parquet"
)
ALPHA = 0.7


@pytest.fixture(scope="module")
def queries(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The first 2,000 banking77 queries (real all-MiniLM-L6-v2 embeddings) as a Parquet input."""
    assert DATA.exists(), f"{DATA} is missing: the shared data set is required (see ../shared/data/README.md)"
    table = pq.read_table(DATA, columns=["text", "intent", "embedding"]).slice(0, 2000)
    path = tmp_path_factory.mktemp("queries") / "queries.parquet"
    pq.write_table(table, path)
    return path


def job_spec(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "quartermaster.dev/v1alpha1",
        "kind": "QueryClusterJob",
        "metadata": {"name": "banking"},
        "spec": {"input": {"url": url}, "alpha": ALPHA, "minClusterSize": 15, "totalRate": 20.0, **extra},
    }


def succeeded(resources: Any, name: str) -> Callable[[], dict[str, Any] | None]:
    def probe() -> dict[str, Any] | None:
        status: dict[str, Any] = resources.status("queryclusterjobs", name)
        if status.get("phase") == "Failed":
            pytest.fail(f"QueryClusterJob failed: {status.get('message')}")
        return status if status.get("phase") == "Succeeded" else None

    return probe


def test_inline_clustering_feeds_an_inference_pool_and_its_router_config(
    operator: Any,
    resources: Any,
    example: Callable[[str], dict[str, Any]],
    api_client: client.ApiClient,
    namespace: str,
    queries: pathlib.Path,
    wait_for: Wait,
) -> None:
    resources.create("queryclusterjobs", job_spec(queries.as_uri(), executor="inline"))
    status = wait_for(succeeded(resources, "banking"), timeout=120, what="inline clustering Succeeded")
    assert status["minSimilarity"] >= ALPHA
    assert status["clustersKept"] >= 5
    assert status["reductionFactor"] > 1

    resources.create("modelcatalogs", example("catalog.yaml"))
    pool = example("pool.yaml")
    pool["spec"].pop("classes")
    pool["spec"] |= {"classesFrom": "banking", "autoApply": True, "budgetPerHour": 500}
    resources.create("inferencepools", pool)

    applied = resources.in_phase("inferencepools", pool["metadata"]["name"], "Applied")
    pool_status = wait_for(applied, timeout=120, what="pool planned from the clustering Applied")
    classes = {c["name"] for c in pool_status["plan"]["classes"]}
    assert len([c for c in classes if c.startswith("cluster-")]) == status["clustersKept"]
    assert sum(c["rate"] for c in pool_status["plan"]["classes"]) == pytest.approx(20.0, rel=1e-6)

    core = client.CoreV1Api(api_client)
    config = load_router_config(
        core.read_namespaced_config_map(pool_status["routerConfigMap"], namespace).data[ROUTER_CONFIG_KEY]
    )
    assert config.clustering.alpha == ALPHA
    assert config.representatives is not None
    reps = config.representatives.decode()
    assert reps.shape == (status["clustersKept"], 384)
    # Each kept cluster's representative really is an input row (the router finds requests' clusters by it).
    embeddings = np.stack(
        pq.read_table(queries, columns=["embedding"]).column(0).to_numpy(zero_copy_only=False)
    )
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    best = (reps @ embeddings.T).max(axis=1)
    assert np.all(best > 0.999)


@pytest.fixture
def http_server(queries: pathlib.Path) -> Iterator[str]:
    """Serves the input's directory on 127.0.0.1 (an in-cluster URL stand-in)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(queries.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{queries.name}"
    server.shutdown()
    server.server_close()


def run_pod_locally(pod_spec: Any, work: pathlib.Path, kubeconfig: pathlib.Path) -> None:
    """Plays the kubelet: runs the pod's init containers and its container in order, /work -> ``work``."""
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    for container in [*(pod_spec.init_containers or []), *pod_spec.containers]:
        args = [a.replace("/work", str(work)) for a in container.args]
        done = subprocess.run(
            [sys.executable, "-m", "quartermaster.cli", *args],
            env=env,
            check=False,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert done.returncode == 0, f"container {container.name} failed:\n{done.stdout}\n{done.stderr}"


def test_job_executor_runs_under_a_least_privilege_service_account(
    operator: Any,
    resources: Any,
    api_client: client.ApiClient,
    namespace: str,
    kubeconfig: pathlib.Path,
    http_server: str,
    tmp_path: pathlib.Path,
    wait_for: Wait,
) -> None:
    # Pin the pod to a pool that does not exist: it stays Pending until the test has run it (as a kubelet
    # would) and then binds it to a fake node, where kwok completes it.
    resources.create(
        "queryclusterjobs", job_spec(http_server, nodeSelector={"quartermaster.dev/pool": "hold"})
    )
    batch, core = client.BatchV1Api(api_client), client.CoreV1Api(api_client)
    job = wait_for(lambda: batch.list_namespaced_job(namespace).items, timeout=60, what="the clustering Job")[
        0
    ]
    assert job.metadata.owner_references[0].kind == "QueryClusterJob"
    assert job.spec.backoff_limit == 2
    assert job.spec.ttl_seconds_after_finished == 3600
    pod_spec = job.spec.template.spec
    assert pod_spec.service_account_name == "banking-clusterer"
    assert [c.name for c in pod_spec.init_containers] == ["fetch", "cluster"]

    review = client.AuthorizationV1Api(api_client)

    def allowed(verb: str, name: str | None) -> bool:
        body = {
            "spec": {
                "user": f"system:serviceaccount:{namespace}:banking-clusterer",
                "resourceAttributes": {
                    "namespace": namespace,
                    "verb": verb,
                    "resource": "configmaps",
                    "name": name,
                },
            }
        }
        return bool(review.create_subject_access_review(body).status.allowed)

    assert allowed("patch", "banking-result")
    assert not allowed("patch", "someone-elses-config")
    assert not allowed("create", None)
    assert not allowed("delete", "banking-result")

    pod = wait_for(lambda: core.list_namespaced_pod(namespace).items, timeout=30, what="the Job's pod")[0]
    work = tmp_path / "work"
    work.mkdir()
    run_pod_locally(pod_spec, work, kubeconfig)
    core.create_namespaced_pod_binding(
        pod.metadata.name,
        namespace,
        client.V1Binding(
            metadata=client.V1ObjectMeta(name=pod.metadata.name),
            target=client.V1ObjectReference(api_version="v1", kind="Node", name="cpu-0"),
        ),
        _preload_content=False,  # the API answers with a Status, which the client cannot parse as a Binding
    )
    status = wait_for(succeeded(resources, "banking"), timeout=90, what="Job executor Succeeded")
    assert status["resultConfigMap"] == "banking-result"
    assert status["minSimilarity"] >= ALPHA
    assert status["jobName"] == job.metadata.name
