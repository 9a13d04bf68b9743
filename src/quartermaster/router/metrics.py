"""Prometheus metrics and per-cluster request rates of the router.

Prometheus (``GET /metrics``, text exposition format), all labelled by cluster and model where it
makes sense:

- ``quartermaster_router_requests_total{cluster,model,outcome}`` — answered requests; ``outcome`` is
  ``ok``, ``escalated``, ``upstream_error`` or ``client_error``.
- ``quartermaster_router_escalations_total{cluster,from_model,to_model}`` — re-sends up the ladder.
- ``quartermaster_router_quality_rejects_total{cluster,model}`` — answers the quality estimator rejected
  (each may or may not have been escalated: the last model of the ladder has nowhere to go).
- ``quartermaster_router_tokens_total{cluster,model,kind}`` — ``kind`` = ``prompt`` / ``completion``,
  from the upstream's ``usage``.
- ``quartermaster_router_request_duration_seconds{cluster,model}`` — end-to-end latency histogram.
- ``quartermaster_router_upstream_duration_seconds{model}`` — one upstream call (incl. retries).
- ``quartermaster_router_upstream_retries_total{model}`` — attempts moved to another endpoint.
- ``quartermaster_router_routing_decision_seconds`` — routing overhead (index + policy, no embedding).
- ``quartermaster_router_max_tokens_clamped_total{cluster}`` — requests whose max_tokens was lowered.
- ``quartermaster_router_rejected_requests_total{reason}`` — 4xx before routing (bad JSON, too large, ...).
- ``quartermaster_router_embedding_failures_total`` — embedder errors (those requests used the default
  cluster).
- ``quartermaster_router_config_last_reload_success`` (0/1), ``..._config_stale`` (1 while serving the
  last good config after a broken update), ``..._config_reloads_total{result}``,
  ``..._config_info{version,digest}``.

Per-cluster request rates (``GET /v1/quartermaster/rates``) — the channel the operator's rolling
horizon reads. JSON, camelCase, format version 1::

    {
      "formatVersion": 1,
      "configVersion": "2024-05-01T12:00:00Z",   # the router config's version/digest, null if none
      "generatedAt": 1714564800.0,               # unix seconds, router clock
      "windowSeconds": 60.0,                     # the sliding window the rates are averaged over
      "coveredSeconds": 60.0,                    # <= windowSeconds right after start-up
      "totalRequestsPerSecond": 12.5,
      "clusters": {
        "billing": {
          "requestsPerSecond": 10.0,             # arrivals routed to this cluster
          "completionTokensPerSecond": 820.0,    # from upstream usage (0 for streams without usage)
          "escalationRate": 0.1,                 # escalations / requests in the window
          "models": {"small": 9.0, "large": 1.0} # requests/s per model that finally answered
        }
      }
    }

Rates count requests that reached routing (4xx rejected before routing are not counted). A cluster
appears once it has had a request in the window. Several router replicas each report their own rates;
the reader sums them (:func:`sum_rates`).
"""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

RATES_FORMAT_VERSION = 1

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_DECISION_BUCKETS = (1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2.5e-2)


class RouterMetrics:
    """The router's Prometheus collectors, registered in their own registry (one per app instance)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        p = "quartermaster_router_"
        self.requests = Counter(
            p + "requests", "Answered requests.", ["cluster", "model", "outcome"], registry=r
        )
        self.escalations = Counter(
            p + "escalations",
            "Re-sends to the next model of the ladder.",
            ["cluster", "from_model", "to_model"],
            registry=r,
        )
        self.quality_rejects = Counter(
            p + "quality_rejects",
            "Answers rejected by the quality estimator.",
            ["cluster", "model"],
            registry=r,
        )
        self.tokens = Counter(
            p + "tokens", "Tokens reported by the upstream.", ["cluster", "model", "kind"], registry=r
        )
        self.request_duration = Histogram(
            p + "request_duration_seconds",
            "End-to-end request latency.",
            ["cluster", "model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_duration = Histogram(
            p + "upstream_duration_seconds",
            "One upstream call incl. retries.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_retries = Counter(
            p + "upstream_retries", "Attempts moved to another endpoint.", ["model"], registry=r
        )
        self.decision_duration = Histogram(
            p + "routing_decision_seconds",
            "Routing overhead without embedding.",
            buckets=_DECISION_BUCKETS,
            registry=r,
        )
        self.max_tokens_clamped = Counter(
            p + "max_tokens_clamped",
            "Requests whose max_tokens was lowered to the budget.",
            ["cluster"],
            registry=r,
        )
        self.rejected = Counter(
            p + "rejected_requests", "Requests rejected before routing.", ["reason"], registry=r
        )
        self.embedding_failures = Counter(
            p + "embedding_failures", "Embedder errors (request sent to the default cluster).", registry=r
        )
        self.config_last_reload_success = Gauge(
            p + "config_last_reload_success", "1 if the last config (re)load succeeded.", registry=r
        )
        self.config_stale = Gauge(
            p + "config_stale", "1 while serving the last good config after a broken update.", registry=r
        )
        self.config_reloads = Counter(p + "config_reloads", "Config load attempts.", ["result"], registry=r)
        self.config_info = Gauge(
            p + "config_info", "The config being served.", ["version", "digest"], registry=r
        )

    def set_config_info(self, version: str, digest: str) -> None:
        """Expose exactly one ``config_info`` series: the config being served."""
        self.config_info.clear()
        self.config_info.labels(version=version, digest=digest).set(1)


@dataclass
class _Bucket:
    second: int
    requests: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    tokens: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    escalations: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    models: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))


class RateTracker:
    """Sliding-window per-cluster request rates, in one-second buckets.

    ``clock`` returns unix seconds (injectable for tests). Thread-safe: the app records from the event
    loop and the rates endpoint may be read from anywhere.
    """

    def __init__(self, window_seconds: float = 60.0, clock: Callable[[], float] = time.time) -> None:
        if window_seconds < 1:
            raise ValueError(f"window_seconds={window_seconds}: use at least 1 second.")
        self.window_seconds = float(window_seconds)
        self._clock = clock
        self._started = clock()
        self._buckets: deque[_Bucket] = deque()
        self._lock = threading.Lock()

    def record(self, cluster: str, model: str, *, completion_tokens: int = 0, escalations: int = 0) -> None:
        """Count one routed request (after it was answered or failed)."""
        now = self._clock()
        second = math.floor(now)
        with self._lock:
            if not self._buckets or self._buckets[-1].second != second:
                self._buckets.append(_Bucket(second))
            b = self._buckets[-1]
            b.requests[cluster] += 1
            b.tokens[cluster] += completion_tokens
            b.escalations[cluster] += escalations
            b.models[(cluster, model)] += 1
            self._expire(now)

    def _expire(self, now: float) -> None:
        horizon = now - self.window_seconds
        while self._buckets and self._buckets[0].second + 1 <= horizon:
            self._buckets.popleft()

    def snapshot(self, config_version: str | None = None) -> dict[str, Any]:
        """The rates document described in the module docstring."""
        now = self._clock()
        with self._lock:
            self._expire(now)
            covered = max(min(self.window_seconds, now - self._started), 1e-9)
            reqs: dict[str, int] = defaultdict(int)
            toks: dict[str, int] = defaultdict(int)
            escs: dict[str, int] = defaultdict(int)
            per_model: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
            for b in self._buckets:
                for c, n in b.requests.items():
                    reqs[c] += n
                for c, n in b.tokens.items():
                    toks[c] += n
                for c, n in b.escalations.items():
                    escs[c] += n
                for (c, m), n in b.models.items():
                    per_model[c][m] += n
        clusters = {
            c: {
                "requestsPerSecond": n / covered,
                "completionTokensPerSecond": toks[c] / covered,
                "escalationRate": escs[c] / n if n else 0.0,
                "models": {m: k / covered for m, k in sorted(per_model[c].items())},
            }
            for c, n in sorted(reqs.items())
        }
        return {
            "formatVersion": RATES_FORMAT_VERSION,
            "configVersion": config_version,
            "generatedAt": now,
            "windowSeconds": self.window_seconds,
            "coveredSeconds": covered,
            "totalRequestsPerSecond": sum(reqs.values()) / covered,
            "clusters": clusters,
        }


class RatesFormatError(ValueError):
    """A rates document this code cannot read (wrong format version or shape)."""


def sum_rates(documents: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Per-cluster requests/s summed over router replicas (one rates document per replica).

    The reader for the operator's rolling horizon: fetch ``GET /v1/quartermaster/rates`` from every
    router pod (not through the Service, which would reach one random replica) and pass the documents
    here. Raises :class:`RatesFormatError` on a document of another ``formatVersion``.
    """
    total: dict[str, float] = defaultdict(float)
    for doc in documents:
        version = doc.get("formatVersion")
        if version != RATES_FORMAT_VERSION:
            raise RatesFormatError(
                f"rates formatVersion={version!r}, this code reads {RATES_FORMAT_VERSION}; "
                "upgrade the reader or the router so they agree"
            )
        clusters = doc.get("clusters")
        if not isinstance(clusters, Mapping):
            raise RatesFormatError("rates document has no 'clusters' object")
        for cluster, entry in clusters.items():
            total[str(cluster)] += float(entry["requestsPerSecond"])
    return dict(sorted(total.items()))
