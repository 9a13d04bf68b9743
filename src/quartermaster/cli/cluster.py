"""``quartermaster cluster``: guardrailed query clustering, its independent check, and shard merging.

    quartermaster cluster INPUT --alpha A --out DIR [--attributes a,b] [--shard I/N] ...
    quartermaster cluster verify INPUT DIR [--alpha A]
    quartermaster cluster merge DIR... --out DIR

``cluster INPUT`` is the group's default command (``run``): a small click group subclass inserts ``run`` when
the first argument is not a sub-command name, so ``verify``/``merge`` stay sub-commands (an input file named
like a sub-command can be passed as ``./verify`` or with ``cluster run``). Bad input exits with code 2 and one
message naming the field, the value and the fix; ``verify`` exits 1 when the output breaks the guarantee.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from typer.core import TyperGroup

from quartermaster.clustering.errors import ClusteringError
from quartermaster.clustering.estimator import DEFAULT_CELL_SIZE
from quartermaster.clustering.io import write_outputs
from quartermaster.clustering.pipeline import ClusterConfig, run
from quartermaster.clustering.shards import ShardBy, merge_outputs, parse_shard
from quartermaster.clustering.verify import VerifyReport, verify_outputs

__all__ = ["DefaultCommandGroup", "app"]

logger = logging.getLogger(__name__)


class DefaultCommandGroup(TyperGroup):
    """A group that runs ``default_command`` when the first argument is not one of its sub-commands."""

    default_command = "run"

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # typer vendors click.Context
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=DefaultCommandGroup,
    no_args_is_help=True,
    help="Cluster logged queries so every member is within cosine alpha of its representative "
    "(`cluster INPUT --alpha A --out DIR`), check an output (`verify`), merge shards (`merge`).",
)
err = Console(stderr=True)
out = Console()

_STAGES = {
    "read": "reading input",
    "embed": "embedding text",
    "cover": "covering cells",
    "similarity": "checking similarities",
    "write": "writing outputs",
}


def _fail(message: str) -> NoReturn:
    err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@contextmanager
def _progress(enabled: bool) -> Iterator[Any]:
    if not enabled:
        yield None
        return
    with Progress(
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    ) as bar:
        tasks: dict[str, Any] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(_STAGES.get(stage, stage), total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update


def _split(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items()) or "-"
    return "-" if value is None else str(value)


def _summary_table(summary: dict[str, Any], title: str) -> Table:
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    mem = summary.get("peak_memory_bytes")
    rows = [
        ("rows clustered", summary.get("n")),
        ("rows dropped (invalid)", summary.get("n_dropped")),
        ("dimension", summary.get("d")),
        ("alpha", summary.get("alpha")),
        ("attributes", ", ".join(summary.get("attributes") or []) or "-"),
        ("clusters", summary.get("clusters")),
        ("clusters before cross-cell pass", summary.get("clusters_before_cross_cell")),
        ("clusters kept (LLM calls)", summary.get("clusters_kept")),
        ("coverage of kept clusters", summary.get("coverage")),
        ("reduction factor (n / LLM calls)", summary.get("reduction_factor")),
        ("min similarity", summary.get("min_similarity")),
        ("rows below alpha", summary.get("rows_below_alpha")),
        ("largest cluster", summary.get("largest_cluster")),
        ("singleton clusters", summary.get("singleton_clusters")),
        ("runtime (s)", summary.get("runtime_seconds")),
        ("peak memory (MiB)", None if mem is None else mem / 2**20),
    ]
    for name, value in rows:
        table.add_row(name, _fmt(value))
    return table


def _report(summary: dict[str, Any], *, as_json: bool, title: str, out_dir: Path | None) -> None:
    if as_json:
        out.print_json(json.dumps(summary, default=str))
        return
    out.print(_summary_table(summary, title))
    if out_dir is not None:
        out.print(
            f"wrote {out_dir}/assignments.parquet, representatives.parquet, summary.json", highlight=False
        )


@app.command("run")
def run_command(
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="Parquet file or .npy matrix.")],
    alpha: Annotated[float, typer.Option(help="Cosine threshold in (0, 1] every member meets.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Output directory (written atomically).")],
    attributes: Annotated[str, typer.Option(help="Comma-separated columns matched exactly.")] = "",
    embedding_column: Annotated[str, typer.Option(help="List-of-floats column.")] = "embedding",
    text_column: Annotated[
        str | None,
        typer.Option(
            help="Text column carried into representatives; embedded if there is no embedding column."
        ),
    ] = None,
    trim_coverage: Annotated[
        float | None, typer.Option(help="Keep the largest clusters covering this fraction of rows.")
    ] = None,
    min_cluster_size: Annotated[
        int | None, typer.Option(help="Keep clusters with at least this many rows.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed (k-means sampling).")] = 0,
    shard: Annotated[str | None, typer.Option(help="Cluster shard I of N (I/N, 0-based).")] = None,
    shard_by: Annotated[
        str, typer.Option(help="auto (partition with attributes, else rows), rows or partition.")
    ] = "auto",
    cell_size: Annotated[
        int,
        typer.Option(help="Target rows per coarse cell (at most twice this); memory grows with its square."),
    ] = DEFAULT_CELL_SIZE,
    cross_cell: Annotated[bool, typer.Option(help="Remove representatives redundant across cells.")] = True,
    reassign: Annotated[bool, typer.Option(help="Move rows to their most similar representative.")] = True,
    jobs: Annotated[
        int, typer.Option(help="Workers (-1: every CPU); the result is the same for any value.")
    ] = 1,
    drop_invalid: Annotated[
        bool, typer.Option(help="Drop NaN/inf, zero, null, wrong-dimension rows.")
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty --out directory.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print summary.json instead of a table.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Cluster INPUT: every member within cosine ALPHA of its representative, attributes identical."""
    if trim_coverage is not None and min_cluster_size is not None:
        _fail("--trim-coverage and --min-cluster-size are alternatives; pass one of them")
    if shard_by not in ("auto", "rows", "partition"):
        _fail(f"--shard-by {shard_by!r} is not one of auto, rows, partition")
    by: ShardBy = shard_by  # type: ignore[assignment]
    try:
        config = ClusterConfig(
            alpha=alpha,
            attributes=_split(attributes),
            embedding_column=embedding_column,
            text_column=text_column,
            trim_coverage=trim_coverage,
            min_cluster_size=min_cluster_size,
            seed=seed,
            drop_invalid=drop_invalid,
            cell_size=cell_size,
            cross_cell=cross_cell,
            reassign=reassign,
            n_jobs=jobs,
        )
        parsed_shard = parse_shard(shard) if shard is not None else None
        with _progress(not quiet and not as_json) as progress:
            result = run(
                input_path,
                config,
                out_dir=out_dir,
                shard=parsed_shard,
                shard_by=by,
                overwrite=overwrite,
                progress=progress,
            )
    except ClusteringError as exc:
        _fail(str(exc))
    summary = result.summary
    if summary.get("n_dropped"):
        err.print(f"dropped {summary['n_dropped']} invalid rows: {_fmt(summary['dropped'])}", highlight=False)
    title = f"clustering of {input_path}" + (f" (shard {shard})" if shard else "")
    _report(summary, as_json=as_json, title=title, out_dir=out_dir)


@app.command("verify")
def verify_command(
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="The clustered input.")],
    out_dir: Annotated[Path, typer.Argument(metavar="DIR", help="Output directory of `cluster`.")],
    alpha: Annotated[float | None, typer.Option(help="Threshold to check (default: the run's).")] = None,
    attributes: Annotated[
        str | None, typer.Option(help="Comma-separated attribute columns (default: the run's).")
    ] = None,
    embedding_column: Annotated[str | None, typer.Option(help="Default: the run's.")] = None,
    tolerance: Annotated[float, typer.Option(help="float64 rounding allowance.")] = 1e-12,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Independently re-check in float64 that every row of INPUT meets the guarantee in DIR."""
    try:
        report: VerifyReport = verify_outputs(
            input_path,
            out_dir,
            alpha=alpha,
            attributes=None if attributes is None else list(_split(attributes)),
            embedding_column=embedding_column,
            tolerance=tolerance,
        )
    except (ClusteringError, OSError) as exc:
        _fail(str(exc))
    if as_json:
        out.print_json(json.dumps(report.as_dict()))
    else:
        table = Table(title=f"verification of {out_dir} against {input_path}")
        table.add_column("check")
        table.add_column("value", justify="right")
        for name, value in report.as_dict().items():
            if name != "violations":
                table.add_row(name, _fmt(value))
        out.print(table)
        for v in report.violations:
            out.print(f"  row {v.row}: {v.reason} (representative {v.representative})", highlight=False)
        verdict = "[green]OK[/green]" if report.ok else f"[red]{report.n_violations} violations[/red]"
        out.print(f"guarantee: {verdict}")
    if not report.ok:
        raise typer.Exit(1)


@app.command("merge")
def merge_command(
    dirs: Annotated[list[Path], typer.Argument(metavar="DIR...", help="Shard output directories.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Merged output directory.")],
    trim_coverage: Annotated[
        float | None, typer.Option(help="Re-trim globally with this coverage (default: the shards').")
    ] = None,
    min_cluster_size: Annotated[
        int | None, typer.Option(help="Re-trim globally with this minimum size (default: the shards').")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty --out directory.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print summary.json instead of a table.")] = False,
) -> None:
    """Merge shard outputs (`cluster --shard I/N`) into one result with global cluster ids."""
    if trim_coverage is not None and min_cluster_size is not None:
        _fail("--trim-coverage and --min-cluster-size are alternatives; pass one of them")
    override = trim_coverage is not None or min_cluster_size is not None
    try:
        assignments, representatives, summary = merge_outputs(
            dirs,
            trim_coverage=trim_coverage,
            min_cluster_size=min_cluster_size,
            keep_shard_trim=not override,
        )
        write_outputs(out_dir, assignments, representatives, summary, overwrite=overwrite)
    except ClusteringError as exc:
        _fail(str(exc))
    _report(summary, as_json=as_json, title=f"merge of {len(dirs)} shards", out_dir=out_dir)
