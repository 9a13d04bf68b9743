"""The three Quartermaster kinds and ``make manifests`` (writes their CRDs as YAML).

Short names avoid the Gateway API Inference Extension, which also defines a kind called InferencePool
(group inference.networking.k8s.io): ours are ``qmpool``/``qmpools``; ``kubectl get quartermaster`` lists
all three kinds through the category.
"""

from __future__ import annotations

import pathlib
import sys
from typing import Any

import yaml

from quartermaster.api.catalog import ModelCatalogSpec
from quartermaster.api.clusterjob import QueryClusterJobSpec, QueryClusterJobStatus
from quartermaster.api.crdgen import GROUP, VERSION, Kind, PrinterColumn, crd
from quartermaster.api.pool import InferencePoolSpec
from quartermaster.api.poolstatus import InferencePoolStatus, ModelCatalogStatus

API_VERSION = f"{GROUP}/{VERSION}"

QUERY_CLUSTER_JOB = Kind(
    kind="QueryClusterJob",
    plural="queryclusterjobs",
    short_names=("qcj",),
    spec=QueryClusterJobSpec,
    status=QueryClusterJobStatus,
    description="Clusters logged queries into query classes: every member is within cosine alpha of its "
    "representative and shares its attributes exactly.",
    columns=(
        PrinterColumn("Phase", ".status.phase"),
        PrinterColumn("Alpha", ".spec.alpha", "number"),
        PrinterColumn("Clusters", ".status.clustersKept", "integer"),
        PrinterColumn("Reduction", ".status.reductionFactor", "number"),
        PrinterColumn("MinSim", ".status.minSimilarity", "number", priority=1),
    ),
)
MODEL_CATALOG = Kind(
    kind="ModelCatalog",
    plural="modelcatalogs",
    short_names=("qmcat",),
    spec=ModelCatalogSpec,
    status=ModelCatalogStatus,
    description="Candidate models with their sizes, precisions, measured errors per query class and "
    "optional measured profiles.",
    columns=(
        PrinterColumn("Phase", ".status.phase"),
        PrinterColumn("Models", ".status.modelCount", "integer"),
    ),
)
INFERENCE_POOL = Kind(
    kind="InferencePool",
    plural="inferencepools",
    short_names=("qmpool", "qmpools"),
    spec=InferencePoolSpec,
    status=InferencePoolStatus,
    description="GPU node pools, SLOs and budgets; Quartermaster plans which models run where with how "
    "many replicas, and applies the vLLM Deployments and the router ConfigMap.",
    columns=(
        PrinterColumn("Phase", ".status.phase"),
        PrinterColumn("$/hour", ".status.costPerHour", "number"),
        PrinterColumn("Replicas", ".status.replicas", "integer"),
        PrinterColumn("Solver", ".status.solver"),
        PrinterColumn("Gap", ".status.gap", "number", priority=1),
    ),
)
KINDS = (QUERY_CLUSTER_JOB, MODEL_CATALOG, INFERENCE_POOL)


def render() -> dict[str, str]:
    """File name -> YAML text of every CRD."""
    files: dict[str, str] = {}
    for kind in KINDS:
        doc: dict[str, Any] = crd(kind)
        header = "# Generated from quartermaster.api by `make manifests`; do not edit.\n"
        files[f"{kind.crd_name}.yaml"] = header + yaml.safe_dump(doc, sort_keys=False, width=100)
    return files


def write(directories: list[pathlib.Path]) -> None:
    files = render()
    for directory in directories:
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob(f"*.{GROUP}.yaml"):
            if stale.name not in files:
                stale.unlink()
        for name, text in files.items():
            (directory / name).write_text(text)


def main() -> None:
    write([pathlib.Path(arg) for arg in sys.argv[1:]] or [pathlib.Path("crds")])


if __name__ == "__main__":
    main()
