"""Pure helpers for Kubernetes-style conditions."""

from __future__ import annotations

import datetime
from typing import Any


def now_rfc3339(now: datetime.datetime | None = None) -> str:
    now = now or datetime.datetime.now(datetime.UTC)
    return now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: list[dict[str, Any]],
    type_: str,
    status: bool | str,
    reason: str,
    message: str,
    generation: int,
    now: str,
) -> list[dict[str, Any]]:
    """A copy of ``conditions`` with ``type_`` set; lastTransitionTime changes only with the status."""
    value = status if isinstance(status, str) else ("True" if status else "False")
    result: list[dict[str, Any]] = []
    previous = None
    for cond in conditions:
        if cond.get("type") == type_:
            previous = cond
        else:
            result.append(dict(cond))
    transition = previous["lastTransitionTime"] if previous and previous.get("status") == value else now
    result.append(
        {
            "type": type_,
            "status": value,
            "reason": reason,
            "message": message,
            "lastTransitionTime": transition,
            "observedGeneration": generation,
        }
    )
    return sorted(result, key=lambda c: str(c["type"]))


class Conditions:
    """Accumulates the condition changes of one reconcile (same generation and timestamp)."""

    def __init__(self, conditions: list[dict[str, Any]], generation: int, now: str) -> None:
        self.items = list(conditions)
        self.generation = generation
        self.now = now

    def set(self, type_: str, status: bool | str, reason: str, message: str = "") -> list[dict[str, Any]]:
        self.items = set_condition(self.items, type_, status, reason, message, self.generation, self.now)
        return self.items
