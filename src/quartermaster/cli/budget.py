"""``quartermaster budget fit|allocate``: CLEAR utility curves and token allocation per cluster."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from quartermaster.cli.route import _progress, user_errors

app = typer.Typer(help="Fit accuracy-vs-token curves and allocate a global token budget (CLEAR).")
console = Console()


@app.command()
def fit(
    measurements: Annotated[
        Path, typer.Argument(help="CSV/Parquet: cluster, model, budget, accuracy[, weight].")
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write utilities.json.")],
    flat_tolerance: Annotated[
        float, typer.Option(help="Accuracy spread below which a curve is flat.")
    ] = 0.02,
) -> None:
    """Fit U(b) = a(1 - (1 + beta s) exp(-beta s)), s = b - tau, per (cluster, model)."""
    from quartermaster.routing.io import fit_curves, save_curves

    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    with user_errors():
        with _progress() as progress:
            progress.add_task(f"fitting curves of {measurements}", total=None)
            curves = fit_curves(measurements, flat_tolerance=flat_tolerance)
        save_curves(curves, output)
    t = Table(title="utility curves")
    for col in ("cluster", "model", "a", "1/beta", "tau", "rmse", "flat"):
        t.add_column(col)
    for c in curves[:60]:
        u = c.curve
        t.add_row(
            c.cluster,
            c.model,
            f"{u.a:.3f}",
            f"{1 / u.beta:.4g}",
            f"{u.tau:.4g}",
            f"{u.rmse:.3f}",
            "yes" if u.flat else "",
        )
    console.print(t)
    console.print(f"wrote {output}")


@app.command()
def allocate(
    curves_file: Annotated[Path, typer.Argument(help="utilities.json, or measurements to fit first.")],
    tokens_per_query: Annotated[float, typer.Option(help="Mean output-token budget per query.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write allocation.json.")],
    policy: Annotated[
        str, typer.Option(help="Abandonment: refuse, short-answer or cheapest-model.")
    ] = "refuse",
    fallback_tokens: Annotated[float, typer.Option(help="Token cap of an abandoned query's answer.")] = 0.0,
    fallback_model: Annotated[str | None, typer.Option(help="policy=cheapest-model: the model.")] = None,
    fallback_accuracy: Annotated[float, typer.Option(help="Accuracy of the fallback without a curve.")] = 0.0,
    max_tokens: Annotated[float | None, typer.Option(help="Cap per query (e.g. the context limit).")] = None,
) -> None:
    """Allocate tokens per cluster with one shadow price; abandoned clusters follow the policy."""
    from quartermaster.routing.budget import AbandonPolicy, allocate
    from quartermaster.routing.errors import RoutingError
    from quartermaster.routing.io import budget_items, load_curves

    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    with user_errors():
        if policy not in ("refuse", "short-answer", "cheapest-model"):
            raise RoutingError(f"--policy {policy!r}: use refuse, short-answer or cheapest-model")
        if tokens_per_query <= 0:
            raise RoutingError(f"--tokens-per-query {tokens_per_query}: use a positive number")
        pol = AbandonPolicy(policy, fallback_tokens, fallback_model, fallback_accuracy)  # type: ignore[arg-type]
        items = budget_items(load_curves(curves_file), max_tokens)
        total = tokens_per_query * sum(it.weight for it in items)
        with _progress() as progress:
            progress.add_task(f"allocating {total:.6g} tokens over {len(items)} clusters", total=None)
            result = allocate(items, total, policy=pol)
        output.write_text(result.to_json())
    t = Table(
        title=f"price {result.price:.3g}/token  accuracy {result.accuracy:.4f}  "
        f"abandoned {result.abandoned_share:.1%}  used {result.tokens_used:.6g}/{result.budget:.6g}"
    )
    for col in ("cluster", "model", "max_tokens", "accuracy", "abandoned"):
        t.add_column(col)
    for it in result.items[:60]:
        t.add_row(
            it.name,
            it.model or "-",
            f"{it.tokens:.0f}",
            f"{it.utility:.3f}",
            it.policy if it.abandoned and it.policy else "",
        )
    console.print(t)
    console.print(f"wrote {output}")
