"""``quartermaster router serve|check``: the request-time router service and a config checker.

Every ``serve`` option can also be set through an environment variable (``QM_ROUTER_*``, shown in
``--help``), which is how the Helm chart configures the container.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="The OpenAI-compatible router that maps requests to clusters, models and budgets.")
console = Console(stderr=True)
out = Console()

DEFAULT_CONFIG = Path("/etc/quartermaster/router/router-config.json")

ConfigPath = Annotated[
    Path,
    typer.Option("--config", "-c", envvar="QM_ROUTER_CONFIG", help="The mounted router ConfigMap file."),
]
RepsDir = Annotated[
    Path,
    typer.Option(
        "--representatives-dir",
        envvar="QM_ROUTER_REPRESENTATIVES_DIR",
        help="Where representative ConfigMaps (storage=configMaps) are mounted, one sub-directory each.",
    ),
]
PvcDir = Annotated[
    Path,
    typer.Option(
        "--pvc-dir",
        envvar="QM_ROUTER_PVC_DIR",
        help="Where claims (storage=pvc) are mounted, one sub-directory each.",
    ),
]


def _fail(message: str) -> NoReturn:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)


@app.command()
def serve(
    config: ConfigPath = DEFAULT_CONFIG,
    host: Annotated[str, typer.Option(envvar="QM_ROUTER_HOST", help="Address to listen on.")] = "0.0.0.0",
    port: Annotated[
        int, typer.Option(envvar="QM_ROUTER_PORT", min=1, max=65535, help="Port to listen on.")
    ] = 8080,
    reload_interval: Annotated[
        float,
        typer.Option(envvar="QM_ROUTER_RELOAD_INTERVAL", min=0.1, help="Seconds between config checks."),
    ] = 2.0,
    max_body_bytes: Annotated[
        int, typer.Option(envvar="QM_ROUTER_MAX_BODY_BYTES", min=1024, help="Largest accepted request body.")
    ] = 4 * 1024 * 1024,
    connect_timeout: Annotated[
        float,
        typer.Option(envvar="QM_ROUTER_CONNECT_TIMEOUT", min=0.01, help="Upstream connect timeout (s)."),
    ] = 2.0,
    read_timeout: Annotated[
        float, typer.Option(envvar="QM_ROUTER_READ_TIMEOUT", min=0.01, help="Upstream read timeout (s).")
    ] = 300.0,
    max_attempts: Annotated[
        int, typer.Option(envvar="QM_ROUTER_MAX_ATTEMPTS", min=1, max=10, help="Attempts per upstream call.")
    ] = 3,
    retry_after: Annotated[
        int, typer.Option(envvar="QM_ROUTER_RETRY_AFTER", min=1, help="Retry-After (s) sent with 503s.")
    ] = 5,
    embeddings_url: Annotated[
        str | None,
        typer.Option(
            envvar="QM_ROUTER_EMBEDDINGS_URL",
            help="OpenAI-compatible base URL serving /embeddings (e.g. .../v1).",
        ),
    ] = None,
    embeddings_model: Annotated[
        str | None,
        typer.Option(
            envvar="QM_ROUTER_EMBEDDINGS_MODEL",
            help="Model name for --embeddings-url (default: the config's).",
        ),
    ] = None,
    sentence_transformer: Annotated[
        str | None,
        typer.Option(
            envvar="QM_ROUTER_SENTENCE_TRANSFORMER",
            help="Embed in-process with this sentence-transformers model or path (extra: [text]).",
        ),
    ] = None,
    representatives_dir: RepsDir = Path("/etc/quartermaster/representatives"),
    pvc_dir: PvcDir = Path("/mnt/quartermaster"),
    index: Annotated[
        str,
        typer.Option(
            envvar="QM_ROUTER_INDEX",
            help="Representative search: exact (exhaustive, default) or hnsw (approximate, faster at 10k+).",
        ),
    ] = "exact",
    hnsw_ef_search: Annotated[
        int, typer.Option(envvar="QM_ROUTER_HNSW_EF_SEARCH", min=1, help="Search breadth of --index hnsw.")
    ] = 64,
    rates_window: Annotated[
        float,
        typer.Option(envvar="QM_ROUTER_RATES_WINDOW", min=1.0, help="Window (s) of the reported rates."),
    ] = 60.0,
    seed: Annotated[
        int | None, typer.Option(envvar="QM_ROUTER_SEED", help="Seed of the weighted choice.")
    ] = None,
    log_level: Annotated[
        str, typer.Option(envvar="QM_ROUTER_LOG_LEVEL", help="debug, info, warning, error.")
    ] = "info",
) -> None:
    """Serve the router (uvicorn, one process; scale with replicas)."""
    import uvicorn

    from quartermaster.router.app import RouterSettings, create_app
    from quartermaster.router.embedder import Embedder, OpenAIEmbeddingsEmbedder, SentenceTransformerEmbedder
    from quartermaster.router.table import IndexOptions, ReferenceMounts
    from quartermaster.router.upstream import UpstreamPool, UpstreamSettings

    levels = {"debug", "info", "warning", "error"}
    if log_level.lower() not in levels:
        _fail(f"--log-level={log_level!r} is not one of {', '.join(sorted(levels))}.")
    if index not in ("exact", "hnsw"):
        _fail(f"--index={index!r} is not one of exact, hnsw.")
    if embeddings_url and sentence_transformer:
        _fail("--embeddings-url and --sentence-transformer are alternatives; give one of them.")
    if embeddings_url and not embeddings_url.startswith(("http://", "https://")):
        _fail(f"--embeddings-url={embeddings_url!r} must be an http(s) URL such as http://embed:8000/v1.")
    if config.exists() and config.is_dir():
        _fail(f"--config={config} is a directory; point it at the file (key router-config.json).")
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def embedder_factory(pool: UpstreamPool) -> Embedder:
        if embeddings_url:
            return OpenAIEmbeddingsEmbedder(pool, embeddings_url, embeddings_model)
        if sentence_transformer:
            return SentenceTransformerEmbedder(sentence_transformer)
        from quartermaster.router.embedder import NoEmbedder

        return NoEmbedder()

    settings = RouterSettings(
        config_path=config,
        reload_interval_s=reload_interval,
        max_body_bytes=max_body_bytes,
        upstream=UpstreamSettings(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_attempts=max_attempts,
            retry_after_seconds=retry_after,
        ),
        mounts=ReferenceMounts(config_maps_dir=representatives_dir, pvc_dir=pvc_dir),
        rates_window_s=rates_window,
        random_state=seed,
        index=IndexOptions(search="hnsw" if index == "hnsw" else "exact", hnsw_ef_search=hnsw_ef_search),
    )
    application = create_app(settings, embedder_factory=embedder_factory)
    uvicorn.run(
        application,
        host=host,
        port=port,
        log_level=log_level.lower(),
        access_log=log_level.lower() == "debug",
        ws="none",
        lifespan="on",
        timeout_graceful_shutdown=30,
    )


@app.command()
def check(
    config: Annotated[
        Path, typer.Argument(help="A router config JSON file (the ConfigMap's router-config.json).")
    ],
    representatives_dir: RepsDir = Path("/etc/quartermaster/representatives"),
    pvc_dir: PvcDir = Path("/mnt/quartermaster"),
) -> None:
    """Validate a router config exactly as the router would, and print its routing table."""
    from quartermaster.api.routerconfig import RouterConfigError
    from quartermaster.router.config import load_table
    from quartermaster.router.table import ReferenceMounts

    try:
        data = config.read_bytes()
    except OSError as exc:
        _fail(f"cannot read {config}: {exc.strerror}; pass the path of router-config.json.")
    try:
        table = load_table(data, mounts=ReferenceMounts(config_maps_dir=representatives_dir, pvc_dir=pvc_dir))
    except (RouterConfigError, ValueError) as exc:
        _fail(f"{config}: {exc}")
    counts: dict[str, int] = {}
    for label in table.index.labels:
        counts[label] = counts.get(label, 0) + 1
    grid = Table(
        title=f"router config {table.version} — alpha {table.index.alpha}, embeddings {table.embedding_model}"
    )
    for col in (
        "cluster",
        "reps",
        "max_tokens",
        "routes (model: share)",
        "ladder",
        "threshold",
        "abandonment",
    ):
        grid.add_column(col)
    for cid, c in table.clusters.items():
        shares, prev = [], 0.0
        for t, cum in zip(c.targets, c.cumulative_weights, strict=True):
            shares.append(f"{t.model}: {cum - prev:.2f}")
            prev = cum
        marker = " (default)" if cid == table.default_cluster else ""
        grid.add_row(
            cid + marker,
            str(counts.get(cid, 0)),
            str(c.max_tokens),
            ", ".join(shares),
            " -> ".join(c.ladder) or "-",
            f"{c.quality_threshold:g}",
            c.abandonment.policy if c.abandonment.abandoned else "-",
        )
    out.print(grid)
