"""Request-time routing policy: cluster -> model, token budget, escalation ladder.

For one request, :meth:`RoutingPolicy.decide` picks

1. the **cluster**: the ``X-Quartermaster-Cluster`` header if it names a known cluster, else the nearest
   representative of the query embedding when its cosine similarity is >= the clustering's ``alpha``,
   else the config's default cluster (also when there is no embedding);
2. the **model**: a weighted random choice among the cluster's routes (weights normalised), unless the
   client pinned a served model by name (``model`` field) — then that model; abandoned clusters
   (CLEAR rational abandonment) follow their policy (cheapest model, short answer, or a refusal);
3. the **token budget**: ``max_tokens`` (or ``max_completion_tokens`` when the client used that) is set
   to ``min(requested, budget)`` where budget is the cluster's ``maxTokens`` (or the abandonment cap);
   an absent value becomes the budget;
4. the **escalation ladder**: the models after the chosen one on the cluster's ladder, at most
   ``maxEscalations`` of them. Only a model that is on the ladder escalates; abandoned and pinned
   requests never do.

:meth:`RoutingPolicy.accept` applies the threshold rule (accept iff p >= qualityThreshold).
Randomness comes from ``random_state`` (an int seed or ``random.Random``) so tests are deterministic.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from quartermaster.router.errors import invalid_request, model_not_found
from quartermaster.router.table import CompiledCluster, RoutingTable, Target

AUTO_MODELS = frozenset({"", "auto", "quartermaster", "quartermaster/auto"})
"""``model`` values that ask the router to choose."""

ClusterSource = Literal["header", "embedding", "out-of-distribution", "no-embedding"]


@dataclass(frozen=True)
class Decision:
    """Where one request goes and under which budget."""

    cluster: str
    cluster_source: ClusterSource
    similarity: float | None
    target: Target
    max_tokens: int
    max_tokens_field: str
    """``max_tokens`` or ``max_completion_tokens`` (the field the client used; default ``max_tokens``)."""
    clamped: bool
    escalation: tuple[Target, ...]
    quality_threshold: float
    refusal: str | None = None
    """Set when the cluster is abandoned with policy ``refuse``: answer with this text, call no model."""


def requested_max_tokens(body: dict[str, Any]) -> tuple[str, int | None]:
    """The client's output-token limit and the field it used; 400 on a non-positive or non-integer value."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise invalid_request(f"'{name}'={value!r} must be a positive integer.", param=name)
        return name, value
    return "max_tokens", None


class RoutingPolicy:
    """Stateless apart from its random generator; safe to share across requests of one event loop."""

    def __init__(self, random_state: int | random.Random | None = None) -> None:
        self.random_state = random_state
        self._rng = random_state if isinstance(random_state, random.Random) else random.Random(random_state)

    def assign_cluster(
        self,
        table: RoutingTable,
        *,
        cluster_hint: str | None,
        embedding: NDArray[np.float32] | None,
    ) -> tuple[str, ClusterSource, float | None]:
        """The request's cluster, how it was found, and the best similarity (when an embedding was used)."""
        if cluster_hint is not None:
            if cluster_hint not in table.clusters:
                known = ", ".join(sorted(table.clusters)[:20])
                raise invalid_request(
                    f"Header X-Quartermaster-Cluster={cluster_hint!r} names no cluster of the current "
                    f"configuration; use one of: {known}, or drop the header.",
                    param="X-Quartermaster-Cluster",
                    code="unknown_cluster",
                )
            return cluster_hint, "header", None
        if embedding is None or len(table.index) == 0:
            return table.default_cluster, "no-embedding", None
        if embedding.shape[-1] != table.dimension:
            raise invalid_request(
                f"The query embedding has {embedding.shape[-1]} dimensions but this router's clusters use "
                f"{table.dimension} ({table.embedding_model}); embed with that model.",
                param="X-Quartermaster-Embedding",
                code="embedding_dimension_mismatch",
            )
        a = table.index.assign(embedding)
        return a.cluster, ("embedding" if a.in_distribution else "out-of-distribution"), a.similarity

    def choose_target(self, cluster: CompiledCluster) -> Target:
        """Weighted choice among the cluster's first-hop targets."""
        if len(cluster.targets) == 1:
            return cluster.targets[0]
        i = bisect.bisect_right(cluster.cumulative_weights, self._rng.random())
        return cluster.targets[min(i, len(cluster.targets) - 1)]

    def decide(
        self,
        table: RoutingTable,
        body: dict[str, Any],
        *,
        cluster_hint: str | None = None,
        embedding: NDArray[np.float32] | None = None,
    ) -> Decision:
        """Route one request (``body`` is the parsed OpenAI request; it is not modified)."""
        requested_model = body.get("model")
        if requested_model is not None and not isinstance(requested_model, str):
            raise invalid_request(f"'model'={requested_model!r} must be a string.", param="model")
        pinned = None
        if requested_model is not None and requested_model not in AUTO_MODELS:
            if requested_model not in table.served_models:
                raise model_not_found(requested_model, [*table.served_models, "auto"])
            pinned = requested_model
        field_name, requested = requested_max_tokens(body)
        cluster_id, source, similarity = self.assign_cluster(
            table, cluster_hint=cluster_hint, embedding=embedding
        )
        cluster = table.cluster(cluster_id)

        budget = cluster.max_tokens
        escalation: tuple[Target, ...] = ()
        refusal: str | None = None
        ab = cluster.abandonment
        if pinned is not None:
            target = Target(pinned, table.url_for(pinned))
        elif ab.abandoned and ab.policy == "cheapest-model":
            assert ab.model is not None
            target = Target(ab.model, table.url_for(ab.model))
            budget = ab.max_tokens or budget
        else:
            target = self.choose_target(cluster)
            if ab.abandoned and ab.policy == "short-answer":
                assert ab.max_tokens is not None
                budget = min(budget, ab.max_tokens)
            elif ab.abandoned and ab.policy == "refuse":
                refusal = ab.message or "This request cannot be answered within the current budget."
            else:
                escalation = self.ladder_after(table, cluster, target.model)

        max_tokens = budget if requested is None else min(requested, budget)
        return Decision(
            cluster=cluster_id,
            cluster_source=source,
            similarity=similarity,
            target=target,
            max_tokens=max_tokens,
            max_tokens_field=field_name,
            clamped=requested is not None and requested > budget,
            escalation=escalation,
            quality_threshold=cluster.quality_threshold,
            refusal=refusal,
        )

    @staticmethod
    def ladder_after(table: RoutingTable, cluster: CompiledCluster, model: str) -> tuple[Target, ...]:
        """The escalation targets after ``model`` on the cluster's ladder (at most ``maxEscalations``)."""
        if model not in cluster.ladder or cluster.max_escalations == 0:
            return ()
        k = cluster.ladder.index(model)
        nxt = cluster.ladder[k + 1 : k + 1 + cluster.max_escalations]
        return tuple(Target(m, table.url_for(m)) for m in nxt)

    @staticmethod
    def accept(probability: float, threshold: float) -> bool:
        """The cascade rule: keep the answer iff its accept probability reaches the threshold."""
        return probability >= threshold
