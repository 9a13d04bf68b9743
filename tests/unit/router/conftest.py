"""Fixtures for the router tests: real loopback servers (uvicorn in threads) and config builders."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pytest

from quartermaster.api.routerconfig import (
    Abandonment,
    ClusteringParams,
    ClusterRoute,
    Escalation,
    PlanRef,
    QualityEstimatorSpec,
    RepresentativeRange,
    RouterConfig,
    RouteTarget,
    dump_router_config,
    encode_representatives,
)
from quartermaster.router.app import RouterSettings, create_app
from quartermaster.router.embedder import OpenAIEmbeddingsEmbedder
from quartermaster.router.escalation import default_judge_factory
from quartermaster.router.stub import Server, serve
from quartermaster.router.upstream import UpstreamSettings

DIM = 16


def unit(seed: int, dim: int = DIM) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=dim)
    return v / np.linalg.norm(v)


def target(model: str, url: str, weight: float = 1.0, deployment: str | None = None) -> RouteTarget:
    port = httpx.URL(url).port or 80
    return RouteTarget(
        model=model,
        deployment=deployment or f"{model}-dep",
        service=f"{model}-svc",
        port=port,
        url=url,
        weight=weight,
    )


def build_config(
    routes: dict[str, list[RouteTarget]],
    *,
    reps: dict[str, np.ndarray] | None = None,
    ladder: list[str] | None = None,
    threshold: float = 0.5,
    max_escalations: int = 1,
    max_tokens: int | dict[str, int] = 64,
    alpha: float = 0.8,
    default: str | None = None,
    escalation_targets: list[RouteTarget] | None = None,
    abandonment: dict[str, Abandonment] | None = None,
    estimator: QualityEstimatorSpec | None = None,
    generation: int = 1,
) -> RouterConfig:
    """A RouterConfig: ``reps`` maps cluster -> (k, DIM) representative rows."""
    reps = reps or {}
    rows: list[np.ndarray] = []
    clusters = []
    for cid, targets in routes.items():
        rng = None
        if cid in reps:
            block = np.atleast_2d(reps[cid])
            rng = RepresentativeRange(offset=len(rows), count=block.shape[0])
            rows.extend(block)
        mt = max_tokens[cid] if isinstance(max_tokens, dict) else max_tokens
        clusters.append(
            ClusterRoute(
                id=cid,
                representatives=rng,
                max_tokens=mt,
                routes=targets,
                escalation=Escalation(
                    ladder=ladder or [], quality_threshold=threshold, max_escalations=max_escalations
                ),
                abandonment=(abandonment or {}).get(cid, Abandonment()),
            )
        )
    matrix = encode_representatives(np.asarray(rows), "float32") if rows else None
    return RouterConfig(
        plan=PlanRef(name="pool", namespace="ns", generation=generation),
        clustering=ClusteringParams(alpha=alpha, embedding_model="stub-embed", dimension=DIM),
        default_cluster=default or next(iter(routes)),
        clusters=clusters,
        representatives=matrix,
        escalation_targets=escalation_targets or [],
        quality_estimator=estimator or QualityEstimatorSpec(kind="none"),
    )


def write_config(path: Path, config: RouterConfig) -> None:
    """Write like the kubelet does: a new file renamed over the old one (atomic)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(dump_router_config(config))
    tmp.replace(path)


def wait_until(predicate: Callable[[], bool], *, timeout_s: float = 10.0, what: str = "condition") -> None:
    """Poll ``predicate`` until true (deadline, no fixed sleeps)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def servers() -> Iterator[Callable[[Any], Server]]:
    """Start ASGI apps on loopback; all are stopped at teardown."""
    started: list[Server] = []

    def start(app: Any) -> Server:
        server = serve(app)
        started.append(server)
        return server

    yield start
    for s in reversed(started):
        s.stop()


@pytest.fixture
def free_url() -> str:
    """A loopback URL on which nothing listens (a replica that is down)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def start_router(
    start: Callable[[Any], Server],
    path: Path,
    config: RouterConfig | None,
    *,
    judge: Any = None,
    embeddings_url: str | None = None,
    **settings: Any,
) -> tuple[Server, Any]:
    """Write ``config`` (unless None) to ``path`` and serve a router on it; returns (server, service).

    ``judge`` replaces the quality estimator of every config; by default the config's own is used."""
    if config is not None:
        write_config(path, config)
    upstream = settings.pop(
        "upstream", UpstreamSettings(connect_timeout=1.0, read_timeout=5.0, eject_seconds=30)
    )
    app = create_app(
        RouterSettings(
            config_path=path, reload_interval_s=0.05, random_state=0, upstream=upstream, **settings
        ),
        judge_factory=(lambda spec, pool: judge) if judge is not None else default_judge_factory,
        embedder_factory=(lambda pool: OpenAIEmbeddingsEmbedder(pool, embeddings_url))
        if embeddings_url
        else None,
    )
    return start(app), app.state.router


def chat(text: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"model": "auto", "messages": [{"role": "user", "content": text}], **extra}


@pytest.fixture(scope="session")
def kit() -> SimpleNamespace:
    """The helpers above, for test modules (conftest modules cannot be imported under importlib mode)."""
    return SimpleNamespace(
        DIM=DIM,
        unit=unit,
        target=target,
        build_config=build_config,
        write_config=write_config,
        wait_until=wait_until,
        start_router=start_router,
        chat=chat,
    )
