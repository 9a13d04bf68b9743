"""Typed errors of the clustering package.

Every message names the field (column, row count, parameter), the offending value and the fix, so the CLI can
print it as is and the operator can copy it into a condition message.
"""

from __future__ import annotations

__all__ = ["ClusteringError", "ClusteringInputError", "MergeError", "VerificationError"]


class ClusteringError(Exception):
    """Base class of every error raised by :mod:`quartermaster.clustering`."""


class ClusteringInputError(ClusteringError, ValueError):
    """The input (embeddings, attributes, parameters, paths) cannot be clustered as given."""


class MergeError(ClusteringError, ValueError):
    """Shard outputs do not fit together (different parameters, missing or repeated shards)."""


class VerificationError(ClusteringError):
    """An output directory cannot be checked against its input (missing files, mismatched rows)."""
