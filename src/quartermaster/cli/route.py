"""``quartermaster route fit|calibrate|config``: Stage-1 routing, escalation thresholds, the router config."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(
    help="Route query clusters to models under a budget, calibrate escalation, build the router config."
)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Bad input -> one message and exit code 2 (no traceback)."""
    from quartermaster.api.routerconfig import RouterConfigError
    from quartermaster.routing.errors import RoutingError

    try:
        yield
    except (RoutingError, RouterConfigError, OSError) as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )


@app.command()
def fit(
    eval_table: Annotated[Path, typer.Argument(help="Evaluation table (Parquet/CSV, long format).")],
    budget: Annotated[float, typer.Option(help="Mean cost per request allowed (TPOT seconds or USD).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write routing.json.")],
    cost: Annotated[str, typer.Option(help="Cost unit: tpot (s/token) or usd (per query).")] = "tpot",
    representatives: Annotated[
        Path | None, typer.Option(help="Assign queries to the nearest representative of this file.")
    ] = None,
    embeddings_source: Annotated[
        Path | None, typer.Option(help="Clustering input holding embeddings of representatives.parquet.")
    ] = None,
    k: Annotated[
        int | None, typer.Option(help="Cluster query embeddings with k-means into k clusters.")
    ] = None,
    prior_strength: Annotated[str, typer.Option(help="Shrinkage strength: auto or a number >= 0.")] = "auto",
    mix: Annotated[bool, typer.Option(help="Split one region boundary to spend the budget exactly.")] = False,
    strict: Annotated[
        bool, typer.Option(help="Fail instead of warning when the budget is too small.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of k-means.")] = 0,
) -> None:
    """Stage 1: per-cluster errors, Pareto pruning, crossovers, lambda* and the cluster->model table."""
    from quartermaster.routing.errors import RoutingError
    from quartermaster.routing.evaluation import assign_to_representatives, kmeans_clusters, load_eval_table
    from quartermaster.routing.io import load_representatives
    from quartermaster.routing.stage1 import instance_from_table, solve

    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    with user_errors():
        if cost not in ("tpot", "usd"):
            raise RoutingError(f"--cost {cost!r}: use tpot or usd")
        strength: float | Literal["auto"]
        try:
            strength = "auto" if prior_strength == "auto" else float(prior_strength)
        except ValueError:
            raise RoutingError(f"--prior-strength {prior_strength!r}: use auto or a number >= 0") from None
        with _progress() as progress:
            progress.add_task(f"reading {eval_table}", total=None)
            table = load_eval_table(eval_table, cost="usd" if cost == "usd" else "tpot")
            if representatives is not None:
                if table.embeddings is None:
                    raise RoutingError(f"{eval_table} has no embedding column to match representatives")
                reps, rep_cluster = load_representatives(representatives, embeddings_source)
                ids = tuple(dict.fromkeys(rep_cluster))
                idx = np.array([ids.index(c) for c in rep_cluster])
                assigned, _ = assign_to_representatives(table.embeddings, reps, idx)
                table = table.with_clusters(assigned, ids)
            elif k is not None:
                if table.embeddings is None:
                    raise RoutingError(f"--k needs an embedding column in {eval_table}")
                table = table.with_clusters(kmeans_clusters(table.embeddings, k, random_state=seed))
            routing = solve(
                instance_from_table(table, prior_strength=strength), budget, mix=mix, strict=strict
            )
        output.write_text(routing.to_json())
    _print_routing(routing)
    console.print(f"wrote {output}")


def _print_routing(routing: object) -> None:
    from quartermaster.routing.stage1 import RoutingTable

    assert isinstance(routing, RoutingTable)
    t = Table(
        title=f"lambda* = {routing.lambda_star:.4g}  accuracy {routing.accuracy:.4f}  cost {routing.cost:.4g}"
    )
    for col in ("cluster", "size", "models", "accuracy", "cost", "ladder"):
        t.add_column(col)
    for c in routing.clusters[:50]:
        models = ", ".join(f"{m} {s:.2f}" if s < 1 else m for m, s in c.models.items())
        t.add_row(
            c.cluster,
            f"{c.size:g}",
            models,
            f"{c.predicted_accuracy:.3f}",
            f"{c.predicted_cost:.4g}",
            " > ".join(c.ladder),
        )
    console.print(t)
    if len(routing.clusters) > 50:
        console.print(f"... {len(routing.clusters) - 50} more clusters in the output file")
    if not routing.budget_met:
        err_console.print(
            f"[yellow]budget {routing.budget:g} not met: cheapest routing costs {routing.cost:.4g}"
        )


@app.command()
def calibrate(
    data: Annotated[
        Path, typer.Argument(help="CSV/Parquet: question, answer, tokens, correct, strong_correct.")
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to save the trained estimator.")],
    target_relative: Annotated[
        float | None, typer.Option(help="Target accuracy as a fraction of the strong model's.")
    ] = 0.98,
    target_accuracy: Annotated[float | None, typer.Option(help="Absolute target accuracy instead.")] = None,
    validation_fraction: Annotated[
        float, typer.Option(help="Share of rows held out to pick the threshold.")
    ] = 0.3,
    seed: Annotated[int, typer.Option(help="Seed of the split and the estimator.")] = 0,
) -> None:
    """Stage 2: train the answer-quality estimator and pick the escalation threshold on held-out rows."""
    from quartermaster.routing.cascade import calibrate_threshold
    from quartermaster.routing.errors import RoutingError
    from quartermaster.routing.io import read_table
    from quartermaster.routing.quality import TrainedEstimator

    with user_errors():
        table = read_table(data)
        need = ["question", "answer", "tokens", "correct", "strong_correct"]
        missing = [c for c in need if c not in table.column_names]
        if missing:
            raise RoutingError(f"{data} lacks column(s) {missing}; it has {table.column_names}")
        if not 0.05 <= validation_fraction <= 0.9:
            raise RoutingError(f"--validation-fraction {validation_fraction}: use a value in [0.05, 0.9]")
        cols = {c: table.column(c).to_pylist() for c in need}
        n = len(cols["question"])
        rng = np.random.default_rng(seed)
        val = rng.random(n) < validation_fraction
        y = np.array(cols["correct"], dtype=np.float64)
        ys = np.array(cols["strong_correct"], dtype=np.float64)
        q, a, tok = cols["question"], cols["answer"], np.array(cols["tokens"], dtype=np.float64)
        tr = np.flatnonzero(~val)
        va = np.flatnonzero(val)
        with _progress() as progress:
            progress.add_task(f"training on {len(tr)} answers", total=None)
            est = TrainedEstimator(random_state=seed).fit(
                [q[i] for i in tr], [a[i] for i in tr], tok[tr], y[tr]
            )
            scores = est.score_many([q[i] for i in va], [a[i] for i in va], tok[va])
        choice = calibrate_threshold(
            scores,
            y[va],
            ys[va],
            target_accuracy=target_accuracy,
            target_relative=None if target_accuracy is not None else target_relative,
        )
        est.save(output)
    t = Table(title="escalation threshold (validation)")
    for col in ("threshold", "accuracy", "target", "escalation rate", "met"):
        t.add_column(col)
    t.add_row(
        f"{choice.threshold:.4f}",
        f"{choice.accuracy:.4f}",
        f"{choice.target:.4f}",
        f"{choice.escalation_rate:.3f}",
        str(choice.met),
    )
    console.print(t)
    console.print(f"wrote {output}")


@app.command()
def config(
    routing_file: Annotated[Path, typer.Argument(help="routing.json from `quartermaster route fit`.")],
    targets: Annotated[
        Path, typer.Option(help="YAML list of deployments {model, deployment, service, ...}.")
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the router config JSON.")],
    plan_name: Annotated[str, typer.Option(help="InferencePool name.")],
    embedding_model: Annotated[str, typer.Option(help="Embedding model the router uses for requests.")],
    alpha: Annotated[float, typer.Option(help="Clustering similarity threshold.")],
    generation: Annotated[int, typer.Option(help="InferencePool metadata.generation.")] = 0,
    allocation: Annotated[Path | None, typer.Option(help="allocation.json from `budget allocate`.")] = None,
    representatives: Annotated[
        Path | None, typer.Option(help="Representatives file (see route fit).")
    ] = None,
    embeddings_source: Annotated[
        Path | None, typer.Option(help="Clustering input for representatives.")
    ] = None,
    threshold: Annotated[float, typer.Option(help="Escalation threshold for every cluster.")] = 0.5,
    default_max_tokens: Annotated[int, typer.Option(help="max_tokens without an allocation.")] = 1024,
) -> None:
    """Build the router ConfigMap document (plus chunk ConfigMaps when representatives are large)."""
    from quartermaster.api.routerconfig import ClusteringParams, PlanRef, dump_router_config
    from quartermaster.routing.budget import Allocation, ItemAllocation
    from quartermaster.routing.config import build_router_config
    from quartermaster.routing.errors import RoutingError
    from quartermaster.routing.io import load_representatives, load_targets
    from quartermaster.routing.stage1 import RoutingTable

    with user_errors():
        routing = RoutingTable.from_json(routing_file.read_text())
        alloc = None
        if allocation is not None:
            raw = json.loads(allocation.read_text())
            if raw.pop("kind", None) != "quartermaster.budget/v1":
                raise RoutingError(f"{allocation} is not an allocation; run `quartermaster budget allocate`")
            alloc = Allocation(**{**raw, "items": tuple(ItemAllocation(**i) for i in raw["items"])})
        reps, rep_cluster = (None, None)
        if representatives is not None:
            reps, rep_cluster = load_representatives(representatives, embeddings_source)
        dim = reps.shape[1] if reps is not None else 1
        built = build_router_config(
            routing,
            load_targets(targets),
            plan=PlanRef(name=plan_name, generation=generation),
            clustering=ClusteringParams(alpha=alpha, embedding_model=embedding_model, dimension=dim),
            allocation=alloc,
            representatives=reps,
            rep_cluster=rep_cluster,
            thresholds=threshold,
            default_max_tokens=default_max_tokens,
        )
        output.write_text(dump_router_config(built.config))
        for name, data in built.configmaps.items():
            (output.parent / f"{name}.json").write_text(json.dumps(data))
    console.print(
        f"wrote {output} ({len(built.config.clusters)} clusters, {len(built.configmaps)} chunk ConfigMaps)"
    )
