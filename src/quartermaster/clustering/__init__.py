"""Guardrailed query clustering (arXiv 2607.19704) with a checkable guarantee.

Every member of a cluster is within cosine ``alpha`` of its representative and shares its attribute values
exactly, so an LLM can be called once per representative. Entry points:

* :class:`GuardrailedClustering` — the scikit-learn style estimator on an ``(n, d)`` matrix;
* :func:`cluster_table` — cluster an in-memory Arrow table (the operator's inline path for small inputs);
* :func:`run` — cluster a Parquet/.npy file (optionally one shard) and write the outputs atomically;
* :func:`merge_outputs` — merge shard outputs; :func:`verify_outputs` — independent float64 check.

Output columns are documented in :mod:`quartermaster.clustering.summary`.
"""

from quartermaster.clustering.errors import (
    ClusteringError,
    ClusteringInputError,
    MergeError,
    VerificationError,
)
from quartermaster.clustering.estimator import GuardrailedClustering
from quartermaster.clustering.pipeline import ClusterConfig, ClusteringResult, cluster_table, run
from quartermaster.clustering.shards import Shard, merge_outputs, parse_shard
from quartermaster.clustering.verify import VerifyReport, verify_outputs

__all__ = [
    "ClusterConfig",
    "ClusteringError",
    "ClusteringInputError",
    "ClusteringResult",
    "GuardrailedClustering",
    "MergeError",
    "Shard",
    "VerificationError",
    "VerifyReport",
    "cluster_table",
    "merge_outputs",
    "parse_shard",
    "run",
    "verify_outputs",
]
