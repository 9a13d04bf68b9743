"""Files of the routing CLI: representatives, utility curves, deployment targets, allocations.

- Representatives: Parquet with ``cluster`` (or ``cluster_id``) and ``embedding`` (list) columns; or a
  clustering output's ``representatives.parquet`` (``cluster``, ``representative`` = row position) together
  with the clustering input that holds the ``embedding`` column.
- Accuracy-vs-budget measurements (CSV/Parquet): ``cluster``, ``model``, ``budget`` (tokens or samples),
  ``accuracy``, optional ``weight`` (queries of the cluster) and ``token_cost`` (relative price per token).
- Utilities JSON (``quartermaster.utilities/v1``): fitted curves per (cluster, model).
- Deployment targets YAML: a list of ``{model, deployment, service, port, namespace, replicas, url}``.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import yaml

from quartermaster.routing.budget import BudgetItem, Option
from quartermaster.routing.config import DeploymentTarget
from quartermaster.routing.errors import RoutingError, UtilityFitError
from quartermaster.routing.utility import UtilityCurve, fit_utility

log = logging.getLogger(__name__)
UTILITIES_KIND = "quartermaster.utilities/v1"


def read_table(path: str | Path) -> pa.Table:
    p = Path(path)
    if not p.exists():
        raise RoutingError(f"file {p} does not exist")
    if p.suffix == ".parquet":
        return pq.read_table(p)
    if p.name.endswith((".csv", ".csv.gz")):
        return pacsv.read_csv(p, parse_options=pacsv.ParseOptions(newlines_in_values=True))
    raise RoutingError(f"{p}: use a .parquet, .csv or .csv.gz file")


def _need(table: pa.Table, names: list[str], path: str | Path) -> None:
    missing = [n for n in names if n not in table.column_names]
    if missing:
        raise RoutingError(f"{path} lacks column(s) {missing}; it has {table.column_names}")


def load_representatives(
    path: str | Path, source: str | Path | None = None
) -> tuple[npt.NDArray[np.float32], list[str]]:
    """(matrix, cluster id per row) from a representatives file (see the module docstring)."""
    table = read_table(path)
    col = "cluster" if "cluster" in table.column_names else "cluster_id"
    _need(table, [col], path)
    clusters = [str(c) for c in table.column(col).to_pylist()]
    if "embedding" in table.column_names:
        emb = table.column("embedding").to_pylist()
    else:
        _need(table, ["representative"], path)
        if source is None:
            raise RoutingError(
                f"{path} has no embedding column; pass the clustering input with --embeddings-source"
            )
        src = read_table(source)
        _need(src, ["embedding"], source)
        pos = [int(v) for v in table.column("representative").to_pylist()]
        emb = src.column("embedding").take(pa.array(pos)).to_pylist()
    try:
        matrix = np.asarray(emb, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise RoutingError(f"{path}: embeddings must be equal-length numeric lists ({exc})") from exc
    if matrix.ndim != 2:
        raise RoutingError(f"{path}: embeddings must be equal-length numeric lists")
    return matrix, clusters


@dataclass(frozen=True)
class FittedCurve:
    """A fitted (cluster, model) utility with the cluster weight and the model's relative token price."""

    cluster: str
    model: str
    curve: UtilityCurve
    weight: float = 1.0
    token_cost: float = 1.0


def fit_curves(path: str | Path, *, flat_tolerance: float = 0.02) -> list[FittedCurve]:
    """Fit one curve per (cluster, model) of a measurements table."""
    table = read_table(path)
    _need(table, ["cluster", "model", "budget", "accuracy"], path)
    rows = table.to_pylist()
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(str(r["cluster"]), str(r["model"]))].append(r)
    out = []
    for (cluster, model), rs in groups.items():
        name = f"cluster {cluster} / model {model}"
        try:
            b = np.array([float(r["budget"]) for r in rs])
            acc = np.array([float(r["accuracy"]) for r in rs])
        except (TypeError, ValueError) as exc:
            raise UtilityFitError(f"{name}: budget and accuracy must be numbers ({exc})") from exc
        curve = fit_utility(b, acc, name=name, flat_tolerance=flat_tolerance)
        weight = float(rs[0].get("weight") or 1.0)
        cost = float(rs[0].get("token_cost") or 1.0)
        out.append(FittedCurve(cluster, model, curve, weight, cost))
    return out


def save_curves(curves: list[FittedCurve], path: str | Path) -> None:
    payload = {
        "kind": UTILITIES_KIND,
        "curves": [
            {
                **asdict(c.curve),
                "cluster": c.cluster,
                "model": c.model,
                "weight": c.weight,
                "token_cost": c.token_cost,
            }
            for c in curves
        ],
    }
    Path(path).write_text(json.dumps(payload, indent=2, allow_nan=False))


def load_curves(path: str | Path) -> list[FittedCurve]:
    """Fitted curves from a utilities JSON, or fit them from a measurements CSV/Parquet."""
    p = Path(path)
    if p.suffix != ".json":
        return fit_curves(p)
    if not p.exists():
        raise RoutingError(f"file {p} does not exist")
    raw = json.loads(p.read_text())
    if raw.get("kind") != UTILITIES_KIND:
        raise RoutingError(f"{p} is not a utilities file ({UTILITIES_KIND}); run `quartermaster budget fit`")
    out = []
    for c in raw["curves"]:
        curve = UtilityCurve(c["a"], c["beta"], c["tau"], c.get("rmse", 0.0), c.get("flat", False))
        out.append(
            FittedCurve(
                str(c["cluster"]), str(c["model"]), curve, c.get("weight", 1.0), c.get("token_cost", 1.0)
            )
        )
    return out


def budget_items(curves: list[FittedCurve], max_tokens: float | None = None) -> list[BudgetItem]:
    """One item per cluster with one option per model (weights from the first curve of the cluster)."""
    by_cluster: dict[str, list[FittedCurve]] = defaultdict(list)
    for c in curves:
        by_cluster[c.cluster].append(c)
    return [
        BudgetItem(
            cluster, cs[0].weight, tuple(Option(c.model, c.curve, c.token_cost) for c in cs), max_tokens
        )
        for cluster, cs in by_cluster.items()
    ]


def load_targets(path: str | Path) -> list[DeploymentTarget]:
    """Deployment targets from YAML (a list, or ``{targets: [...]}``)."""
    p = Path(path)
    if not p.exists():
        raise RoutingError(f"targets file {p} does not exist")
    raw = yaml.safe_load(p.read_text())
    items = raw.get("targets") if isinstance(raw, dict) else raw
    if not isinstance(items, list) or not items:
        raise RoutingError(f"{p}: give a list of targets {{model, deployment, service, port, replicas}}")
    out = []
    for i, t in enumerate(items):
        try:
            out.append(DeploymentTarget(**t))
        except TypeError as exc:
            raise RoutingError(f"{p}: target {i} ({t}) is invalid: {exc}") from exc
    return out
