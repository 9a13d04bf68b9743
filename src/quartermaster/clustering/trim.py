"""Tail trimming: keep the largest clusters, report what the tail would have cost.

Cluster sizes are heavily skewed (the paper: the top 4% of clusters cover 90% of rows), so most of the LLM
calls saved by clustering are lost on a long tail of tiny clusters. Trimming keeps

* ``coverage=F``: the fewest largest clusters (size descending, then cluster id) whose rows reach ``F * n``;
* ``min_size=N``: the clusters with at least ``N`` rows;

and with both, the clusters satisfying both. Rows of the other clusters are *trimmed*: they still satisfy the
guarantee with their representative, but are not served from a representative's output.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from quartermaster.clustering.errors import ClusteringInputError

__all__ = ["check_trim", "kept_clusters", "trimming_curve"]


def check_trim(coverage: float | None, min_size: int | None) -> None:
    """Validate trimming parameters."""
    if coverage is not None and not (0.0 < float(coverage) <= 1.0 and math.isfinite(float(coverage))):
        raise ClusteringInputError(
            f"trim_coverage={coverage!r} is outside (0, 1]; pass the fraction of rows the kept clusters must "
            "cover, e.g. --trim-coverage 0.9"
        )
    if min_size is not None and int(min_size) < 1:
        raise ClusteringInputError(
            f"min_cluster_size={min_size!r} is below 1; pass the smallest cluster size to keep, e.g. 2"
        )


def kept_clusters(
    sizes: npt.NDArray[np.int64], *, coverage: float | None = None, min_size: int | None = None
) -> npt.NDArray[np.bool_]:
    """Which clusters (by id) are kept."""
    check_trim(coverage, min_size)
    keep = np.ones(sizes.size, dtype=np.bool_)
    if min_size is not None:
        keep &= sizes >= int(min_size)
    if coverage is not None and sizes.size:
        order = np.lexsort((np.arange(sizes.size), -sizes))
        cumulative = np.cumsum(sizes[order])
        target = float(coverage) * float(cumulative[-1])
        # Smallest prefix reaching the target (tiny slack so 1.0 keeps all despite float rounding).
        n_keep = int(np.searchsorted(cumulative, target * (1 - 1e-12), side="left")) + 1
        prefix = np.zeros(sizes.size, dtype=np.bool_)
        prefix[order[: min(n_keep, sizes.size)]] = True
        keep &= prefix
    return keep


def trimming_curve(sizes: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Coverage reached by keeping the ``k`` largest clusters, for ``k = 1..K`` (for plots)."""
    ordered = np.sort(sizes)[::-1]
    total = max(1, int(ordered.sum()))
    return np.cumsum(ordered) / total, np.arange(1, ordered.size + 1, dtype=np.int64)
