"""Prometheus metrics of the operator (served on QM_METRICS_PORT at /metrics)."""

from __future__ import annotations

import prometheus_client

PLANS = prometheus_client.Counter(
    "quartermaster_plans_total",
    "Plans computed, by outcome (feasible, infeasible, over_budget).",
    ["outcome"],
)
SOLVE_SECONDS = prometheus_client.Histogram(
    "quartermaster_solve_seconds",
    "Wall time of one planner solve.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
COST_PER_HOUR = prometheus_client.Gauge(
    "quartermaster_cost_per_hour_usd",
    "GPU cost of the current plan per InferencePool.",
    ["namespace", "pool"],
)
REPLICAS = prometheus_client.Gauge(
    "quartermaster_planned_replicas", "Replicas of the current plan per InferencePool.", ["namespace", "pool"]
)
APPLIED_CHANGES = prometheus_client.Counter(
    "quartermaster_applied_changes_total", "Plans applied (a change of Deployments).", ["namespace", "pool"]
)
RECONCILE_ERRORS = prometheus_client.Counter(
    "quartermaster_reconcile_errors_total", "Reconciles that ended in an error, by kind.", ["kind"]
)

_started: set[int] = set()


def serve(port: int) -> None:
    """Start the /metrics HTTP server once per port (0 disables it)."""
    if port and port not in _started:
        prometheus_client.start_http_server(port)
        _started.add(port)
