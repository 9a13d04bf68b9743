"""``quartermaster plan``: plan offline from the same manifests users apply (dry-run / what-if).

- ``quartermaster plan -f catalog.yaml -f pool.yaml [-f classes.yaml] [--solver ...] [-o table|json|yaml]``
- ``quartermaster plan generate --classes I --models J --tiers K --seed S [-o FILE]``
- ``quartermaster plan replay -f ... --trace servegen:m-large,m-mid [--days N] [--plot FILE]``

Bad input prints one message naming the field, the value and the fix, and exits with code 2.
"""

from __future__ import annotations

import json
import pathlib
import sys
from typing import Annotated, Any, NoReturn

import numpy as np
import typer
import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from quartermaster.api.manifests import ManifestError, ManifestSet, load_manifests
from quartermaster.planner.errors import PlannerError
from quartermaster.planner.explain import explain_rejections
from quartermaster.planner.horizon import HorizonResult, HorizonSettings, replay, static
from quartermaster.planner.instance import Instance
from quartermaster.planner.plan import Plan
from quartermaster.planner.solve import SOLVERS, solve
from quartermaster.planner.synthetic import data_dir_default, generate_specs, to_manifests
from quartermaster.planner.traces import class_rates

app = typer.Typer(
    name="plan",
    help="Plan LLM serving offline from ModelCatalog/InferencePool manifests (what-if).",
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)
OUTPUTS = ("table", "json", "yaml")

Files = Annotated[
    list[pathlib.Path] | None,
    typer.Option("-f", "--file", help="Manifest file (repeatable): ModelCatalog, InferencePool, classes."),
]
PoolName = Annotated[
    str | None, typer.Option("--pool", help="InferencePool name when the files define several.")
]
Output = Annotated[str, typer.Option("-o", "--output", help="table, json or yaml.")]
DataDir = Annotated[
    pathlib.Path | None, typer.Option("--data-dir", help="Shared data directory (default: ../shared/data).")
]


def fail(message: str, explanations: tuple[str, ...] = ()) -> NoReturn:
    """Print one error (plus explanation lines) to stderr and exit with code 2."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    for line in explanations:
        err.print(f"  - {line}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _load(files: list[pathlib.Path] | None, pool_name: str | None) -> tuple[str, Instance, ManifestSet]:
    if not files:
        fail("no manifests given; pass the ModelCatalog and InferencePool files with -f (and a classes file)")
    manifests = load_manifests(files)
    name, pool = manifests.pool(pool_name)
    catalog = manifests.catalog_for(pool)
    classes = manifests.classes_for(pool)
    return name, Instance.from_specs(catalog, pool, classes), manifests


def _check_choice(value: str, choices: tuple[str, ...], option: str) -> None:
    if value not in choices:
        fail(f"{option}={value!r} is not valid; use one of {', '.join(choices)}")


def _print_plan(name: str, plan: Plan) -> None:
    gap = "-" if plan.gap is None else f"{100 * plan.gap:.2f}%"
    bound = "-" if plan.bound is None else f"{plan.bound:.3f}"
    summary = Table(title=f"Plan for InferencePool {name}", show_header=False)
    summary.add_row("solver", f"{plan.solver} ({plan.status})")
    summary.add_row("cost", f"${plan.gpu_cost_per_hour:.3f}/h on {plan.gpus} GPUs")
    if plan.penalty_per_hour:
        summary.add_row(
            "unserved penalty", f"${plan.penalty_per_hour:.3f}/h ({plan.unserved_rate:.3g} req/s)"
        )
    summary.add_row("MILP bound / gap", f"{bound} / {gap}")
    summary.add_row("solve time", f"{plan.solve_seconds:.3f} s")
    out.print(summary)
    deployments = Table(title="Deployments")
    for col in (
        "deployment",
        "model",
        "prec",
        "pool",
        "TP",
        "PP",
        "replicas",
        "GPUs",
        "$/h",
        "util",
        "max seqs",
    ):
        deployments.add_column(
            col,
            justify="right" if col in ("TP", "PP", "replicas", "GPUs", "$/h", "util", "max seqs") else "left",
        )
    for d in plan.deployments:
        deployments.add_row(
            d.slug, d.model, d.precision, f"{d.node_pool} ({d.gpu_type})", str(d.tensor_parallel),
            str(d.pipeline_parallel), str(d.replicas), str(d.gpus), f"{d.cost_per_hour:.3f}",
            f"{100 * d.utilization:.0f}%", str(d.max_num_seqs),
        )  # fmt: skip
    out.print(deployments)
    classes = Table(title="Query classes")
    for col in (
        "class",
        "req/s",
        "served by (share)",
        "unserved",
        "TTFT pred/SLO",
        "TPOT pred/SLO",
        "error pred/max",
    ):
        classes.add_column(col)
    for c in plan.classes:
        shares = ", ".join(f"{n.replace('/', '-')} {100 * s:.0f}%" for n, s in c.shares) or "-"
        classes.add_row(
            c.name, f"{c.rate:.3g}", shares, f"{100 * c.unserved_share:.1f}%",
            f"{c.predicted_ttft:.3f}/{c.ttft_slo:g} s",
            f"{1000 * c.predicted_tpot:.1f}/{1000 * c.tpot_slo:g} ms",
            f"{c.predicted_error:.3f}/{c.max_error:g}",
        )  # fmt: skip
    out.print(classes)
    if plan.rejected:
        out.print(f"{len(plan.rejected)} options rejected (see -o json, or --explain CLASS)", style="dim")


def _emit(data: Any, output: str) -> None:
    if output == "json":
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        sys.stdout.write(yaml.safe_dump(data, sort_keys=False))


@app.callback(invoke_without_command=True)
def plan(
    ctx: typer.Context,
    files: Files = None,
    pool: PoolName = None,
    solver: Annotated[
        str | None,
        typer.Option("--solver", help="auto, agh, gh or milp (default: the pool's planner.solver)."),
    ] = None,
    time_limit: Annotated[
        float | None, typer.Option("--time-limit", help="Solve time limit in seconds (default: the pool's).")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed (default: the pool's).")] = None,
    output: Output = "table",
    explain: Annotated[
        str | None, typer.Option("--explain", help="List every option's verdict for this class.")
    ] = None,
) -> None:
    """Plan from manifests: deployments, shares, predicted SLOs, $/h, solver and gap."""
    if ctx.invoked_subcommand is not None:
        return
    _check_choice(output, OUTPUTS, "--output")
    try:
        name, instance, manifests = _load(files, pool)
        settings = manifests.pools[name].planner
        chosen = solver or settings.solver
        _check_choice(chosen, SOLVERS, "--solver")
        limit = time_limit if time_limit is not None else settings.time_limit_seconds
        if limit <= 0:
            fail(f"--time-limit={limit} must be > 0 seconds")
        if explain is not None:
            if explain not in {c.name for c in instance.classes}:
                fail(f"--explain={explain!r} is not a class of InferencePool {name}")
            for line in explain_rejections(instance, explain):
                out.print(line, highlight=False, soft_wrap=True)
            return
        result = solve(
            instance, solver=chosen, time_limit=limit, seed=seed if seed is not None else settings.seed
        )
    except (ManifestError, PlannerError) as exc:
        fail(getattr(exc, "message", str(exc)), getattr(exc, "explanations", ()))
    except ValidationError as exc:
        fail(str(exc).splitlines()[0])
    if output == "table":
        _print_plan(name, result)
    else:
        _emit(result.to_dict(), output)


@app.command()
def generate(
    classes: Annotated[int, typer.Option("--classes", help="Number of query classes I.")],
    models: Annotated[int, typer.Option("--models", help="Number of models J.")],
    tiers: Annotated[int, typer.Option("--tiers", help="Number of GPU node pools K.")],
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    output: Annotated[
        pathlib.Path | None,
        typer.Option("-o", "--output", help="Write the manifests here (default: stdout)."),
    ] = None,
    name: Annotated[str, typer.Option("--name", help="InferencePool name.")] = "synthetic",
    data_dir: DataDir = None,
    family: Annotated[
        str,
        typer.Option(
            "--family",
            help="Instance family: default, or long-context (long prompts, tight TTFT, largest models).",
        ),
    ] = "default",
) -> None:
    """Write ModelCatalog + InferencePool manifests of a synthetic instance calibrated on real data."""
    for option, value in (("--classes", classes), ("--models", models), ("--tiers", tiers)):
        if value < 1:
            fail(f"{option}={value} must be >= 1")
    try:
        catalog, pool = generate_specs(
            classes, models, tiers, seed=seed, data_dir=data_dir or data_dir_default(), family=family
        )
    except PlannerError as exc:
        fail(exc.message)
    text = yaml.safe_dump_all(to_manifests(catalog, pool, name), sort_keys=False)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
        err.print(f"wrote {output} ({classes} classes, {models} models, {tiers} node pools)")


def _resample(rates: np.ndarray, window: float, interval: float) -> tuple[float, np.ndarray]:
    if interval <= window:
        return window, rates
    factor = round(interval / window)
    if abs(factor * window - interval) > 1e-6:
        fail(f"--interval={interval:g} must be a multiple of the trace's window ({window:g} s)")
    usable = (len(rates) // factor) * factor
    return window * factor, rates[:usable].reshape(-1, factor, rates.shape[1]).mean(axis=1)


def _plot(path: pathlib.Path, rolling: HorizonResult, fixed: HorizonResult, rates: np.ndarray) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hours = np.arange(len(rolling.windows)) * rolling.interval_s / 3600.0
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    top.plot(hours, rates.sum(axis=1), color="tab:gray")
    top.set_ylabel("total req/s")
    for result, color in ((rolling, "tab:blue"), (fixed, "tab:orange")):
        gpu_cost = [w.gpus for w in result.windows]
        bottom.step(
            hours, gpu_cost, where="post", color=color, label=f"{result.name} (${result.total_cost:.0f})"
        )
    bottom.set_ylabel("GPUs")
    bottom.set_xlabel("hours")
    bottom.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@app.command("replay")
def replay_command(
    files: Files = None,
    pool: PoolName = None,
    trace: Annotated[
        str, typer.Option("--trace", help="servegen:<group>[,<group>...] or azure:code[,conv].")
    ] = "servegen:m-large,m-mid,m-small",
    days: Annotated[float, typer.Option("--days", help="Length of the replay in days.")] = 1.0,
    interval: Annotated[float | None, typer.Option("--interval", help="Re-planning interval (s).")] = None,
    solver: Annotated[str, typer.Option("--solver", help="Solver of every re-plan.")] = "agh",
    forecast: Annotated[str, typer.Option("--forecast", help="last (window just seen) or oracle.")] = "last",
    switching_cost: Annotated[
        float | None, typer.Option("--switching-cost", help="USD per replica started or stopped.")
    ] = None,
    plot: Annotated[pathlib.Path | None, typer.Option("--plot", help="Write a PNG of GPUs and load.")] = None,
    output: Output = "table",
    data_dir: DataDir = None,
) -> None:
    """Rolling re-planning over a real rate trace versus a static 24 h plan."""
    _check_choice(output, OUTPUTS, "--output")
    _check_choice(solver, SOLVERS, "--solver")
    _check_choice(forecast, ("last", "oracle"), "--forecast")
    if days <= 0:
        fail(f"--days={days} must be > 0")
    try:
        name, instance, manifests = _load(files, pool)
        spec = manifests.pools[name].planner
        step = interval or float(spec.interval_seconds)
        window, rates = class_rates(instance.rates, trace, data_dir or data_dir_default(), window_s=step)
        window, rates = _resample(rates, window, step)
        rates = rates[: max(1, round(days * 86400 / window))]
        settings = HorizonSettings(
            interval_s=window,
            switching_cost=switching_cost if switching_cost is not None else spec.hysteresis.switching_cost,
            min_saving_fraction=spec.hysteresis.min_saving_fraction,
            max_changes_per_hour=spec.hysteresis.max_changes_per_hour,
            solver=solver,
            time_limit=spec.time_limit_seconds,
            seed=spec.seed,
            forecast=forecast,
        )
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=err, transient=True) as progress:
            task = progress.add_task("rolling re-planning", total=len(rates))
            rolling = replay(instance, rates, settings, lambda w: progress.update(task, completed=w + 1))
            task2 = progress.add_task("static 24 h plans", total=len(rates))
            fixed = static(instance, rates, settings, lambda w: progress.update(task2, completed=w + 1))
    except (ManifestError, PlannerError) as exc:
        fail(getattr(exc, "message", str(exc)), getattr(exc, "explanations", ()))
    saving = 1.0 - rolling.total_cost / fixed.total_cost if fixed.total_cost else 0.0
    if plot is not None:
        _plot(plot, rolling, fixed, rates)
    if output != "table":
        _emit(
            {
                "trace": trace,
                "rolling": rolling.summary(),
                "static": fixed.summary(),
                "saving": round(saving, 4),
            },
            output,
        )
        return
    table = Table(
        title=f"Replay of {trace} on InferencePool {name} ({rolling.hours:g} h, {window:g} s windows)"
    )
    for col in ("plan", "total $", "$/h", "SLO violations", "changes/h", "changes/replica/h"):
        table.add_column(col, justify="left" if col == "plan" else "right")
    for result in (rolling, fixed):
        s = result.summary()
        table.add_row(
            str(s["name"]), f"{result.total_cost:.2f}", f"{s['costPerHour']}",
            f"{100 * result.violation_share:.3f}%", f"{result.changes_per_hour:.2f}",
            f"{result.changes_per_replica_hour:.3f}",
        )  # fmt: skip
    out.print(table)
    out.print(f"rolling re-planning saves {100 * saving:.1f}% versus the static 24 h plan")
