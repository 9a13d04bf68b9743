"""Typed planner errors. Every message names the field or class, the value and the fix."""

from __future__ import annotations


class PlannerError(Exception):
    """Base of every planner error.

    ``field`` is the spec path the problem is about (e.g. ``spec.nodePools[1].gpuType``) when there is one;
    ``explanations`` holds one human-readable line per reason (infeasibility explanations).
    """

    def __init__(self, message: str, *, field: str | None = None, explanations: tuple[str, ...] = ()):
        super().__init__(message)
        self.message = message
        self.field = field
        self.explanations = explanations

    def __str__(self) -> str:
        if not self.explanations:
            return self.message
        return self.message + "\n" + "\n".join(f"  - {line}" for line in self.explanations)


class InvalidSpecError(PlannerError):
    """The specs are inconsistent (unknown GPU type or model, missing classes, bad parallel degree...)."""


class UnknownGpuTypeError(InvalidSpecError):
    """A node pool names a GPU type that is not in the GPU table."""


class UnknownModelError(InvalidSpecError):
    """A pool or profile names a model that is not in the catalog."""


class InfeasibleError(PlannerError):
    """No plan meets every constraint; ``explanations`` says which constraint binds for which class."""


class BudgetInfeasibleError(InfeasibleError):
    """Plans exist but the cheapest costs more than the budget; ``cheapest_cost`` is that cost ($/h)."""

    def __init__(
        self, message: str, *, cheapest_cost: float, budget: float, explanations: tuple[str, ...] = ()
    ):
        super().__init__(message, field="spec.budgetPerHour", explanations=explanations)
        self.cheapest_cost = cheapest_cost
        self.budget = budget


class SolverError(PlannerError):
    """A solver failed without a usable plan (time limit without incumbent, numerical trouble)."""


class VerificationError(PlannerError):
    """A plan violates a constraint of its instance (a solver bug); ``explanations`` lists the violations."""
