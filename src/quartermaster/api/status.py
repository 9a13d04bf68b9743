"""Status building blocks shared by every kind: conditions with observedGeneration."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from quartermaster.api.classes import SpecModel


class Condition(SpecModel):
    """A Kubernetes-style condition (metav1.Condition)."""

    type: str = Field(description="Condition type, e.g. Planned, Applied, Infeasible.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase machine-readable reason (see operator/reasons.py).")
    message: str = Field(default="", description="Human-readable explanation with the fix, if any.")
    last_transition_time: str = Field(description="RFC 3339 time the status last changed.")
    observed_generation: int = Field(
        default=0, ge=0, description="metadata.generation the condition was computed for."
    )
