"""Typed errors of the routing package.

Every message names the field, cluster or model, the value and the fix.
"""

from __future__ import annotations


class RoutingError(ValueError):
    """Base class: input the routing algorithms cannot use."""


class EvalTableError(RoutingError):
    """An evaluation table that is missing columns, models or clusters, or holds bad labels."""


class BudgetError(RoutingError):
    """A budget that no routing or allocation can meet."""


class UtilityFitError(RoutingError):
    """Accuracy-vs-budget measurements that cannot be fitted."""


class EstimatorError(RoutingError):
    """A quality estimator that cannot be trained, loaded or calibrated."""
