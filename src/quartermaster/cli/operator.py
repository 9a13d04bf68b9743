"""``quartermaster operator run|publish|fetch``: the operator process and the clustering Job's helpers."""

from __future__ import annotations

import json
import logging
import pathlib
import secrets
from typing import Annotated

import typer

app = typer.Typer(help="Run the Quartermaster operator, or the steps of a clustering Job.")


@app.command("run")
def run_operator(
    namespace: Annotated[
        list[str] | None, typer.Option("--namespace", "-n", help="Watch these namespaces (repeatable).")
    ] = None,
    all_namespaces: Annotated[
        bool, typer.Option("--all-namespaces", "-A", help="Watch the cluster.")
    ] = False,
    liveness: Annotated[str, typer.Option(help="kopf liveness endpoint.")] = "",
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the operator (settings from QM_* environment variables, see operator/settings.py)."""
    import kopf

    from quartermaster.operator import handlers  # noqa: F401  (registers the handlers)
    from quartermaster.operator.settings import OperatorSettings

    settings = OperatorSettings()
    namespaces = namespace or ([settings.namespace] if settings.namespace else [])
    if not namespaces and not all_namespaces:
        typer.echo("operator: pass --namespace NS (or QM_NAMESPACE) or --all-namespaces", err=True)
        raise typer.Exit(2)
    kopf.configure(
        verbose=verbose,
        log_format=kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.PLAIN,
    )
    kopf.run(
        clusterwide=all_namespaces,
        namespaces=namespaces,
        standalone=settings.peering is None,
        peering_name=settings.peering,
        # Peers with equal priorities all pause; a random one elects a single active replica.
        priority=secrets.randbelow(2**31) + 1 if settings.peering else None,
        liveness_endpoint=liveness or f"http://0.0.0.0:{settings.health_port}/healthz",
    )


@app.command()
def publish(
    result_dir: Annotated[pathlib.Path, typer.Argument(help="Output directory of `quartermaster cluster`.")],
    input_path: Annotated[pathlib.Path, typer.Option("--input", help="The clustered input file.")],
    name: Annotated[str, typer.Option(help="QueryClusterJob name.")],
    namespace: Annotated[str, typer.Option(help="QueryClusterJob namespace.")],
    max_representative_bytes: Annotated[int, typer.Option()] = 8 * 1024 * 1024,
    total_rate: Annotated[float | None, typer.Option(help="Total request rate (req/s).")] = None,
    embedding_column: Annotated[str, typer.Option()] = "embedding",
) -> None:
    """Write a clustering result into the QueryClusterJob's result ConfigMaps (patch only)."""
    import pyarrow.parquet as pq
    from kubernetes import client

    from quartermaster.clustering.pipeline import ClusteringResult
    from quartermaster.operator.clusterjobs import chunk_names, result_name
    from quartermaster.operator.clusterresult import CHUNK_KEY, ResultTooLargeError
    from quartermaster.operator.kube import load_api_client
    from quartermaster.operator.publish import result_documents

    logging.basicConfig(level=logging.INFO)
    result = ClusteringResult(
        assignments=pq.read_table(result_dir / "assignments.parquet"),
        representatives=pq.read_table(result_dir / "representatives.parquet"),
        summary=json.loads((result_dir / "summary.json").read_text()),
    )
    chunks = chunk_names(name, max_representative_bytes)
    try:
        docs = result_documents(
            result,
            input_path,
            embedding_column=embedding_column,
            spec_rate=total_rate,
            chunk_names=chunks,
            max_bytes=max_representative_bytes,
        )
    except ResultTooLargeError as exc:
        typer.echo(f"publish: {exc}", err=True)
        raise typer.Exit(1) from exc
    core = client.CoreV1Api(load_api_client())
    patches = {result_name(name): docs.data}
    patches |= {chunk: {CHUNK_KEY: payload} for chunk, payload in zip(chunks, docs.chunks, strict=False)}
    for cm_name, data in patches.items():
        core.patch_namespaced_config_map(cm_name, namespace, {"data": data})
        typer.echo(f"published {namespace}/{cm_name} ({sum(len(v) for v in data.values())} bytes)")


@app.command()
def fetch(
    url: Annotated[str, typer.Argument(help="http(s) URL of the input file.")],
    target: Annotated[pathlib.Path, typer.Argument(help="Where to write it.")],
) -> None:
    """Download the clustering input (the Job's first init container)."""
    import httpx

    target.parent.mkdir(parents=True, exist_ok=True)
    with httpx.stream("GET", url, timeout=60, follow_redirects=True) as response, target.open("wb") as f:
        if response.status_code >= 400:
            typer.echo(f"fetch: GET {url} answered {response.status_code}", err=True)
            raise typer.Exit(1)
        for block in response.iter_bytes():
            f.write(block)
    typer.echo(f"fetched {url} -> {target}")
