"""The ``quartermaster`` command. Each area registers its sub-commands from its own module."""

from __future__ import annotations

import typer

from quartermaster import __version__
from quartermaster.cli import budget as budget_cli
from quartermaster.cli import cluster as cluster_cli
from quartermaster.cli import devcluster
from quartermaster.cli import operator as operator_cli
from quartermaster.cli import plan as plan_cli
from quartermaster.cli import route as route_cli
from quartermaster.cli import router as router_cli

app = typer.Typer(
    name="quartermaster",
    help="Cheap LLM serving on Kubernetes GPU node pools, with guarantees.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


app.add_typer(cluster_cli.app, name="cluster")
app.add_typer(devcluster.app, name="dev-cluster")
app.add_typer(operator_cli.app, name="operator")
app.add_typer(router_cli.app, name="router")
app.add_typer(route_cli.app, name="route")
app.add_typer(budget_cli.app, name="budget")
app.add_typer(plan_cli.app, name="plan")


@app.callback()
def _root() -> None:
    """Cheap LLM serving on Kubernetes GPU node pools, with guarantees."""


@app.command()
def version() -> None:
    """Print the Quartermaster version."""
    typer.echo(__version__)


def main() -> None:
    app()
