"""quartermaster.planner: the joint serving planner.

Choose models, precisions, GPU node pools, tensor/pipeline parallel degrees, replica counts and the share of
each query class per deployment under TTFT/TPOT SLOs, per-class error bounds, GPU availability and a $/hour
budget. Typical use (what the operator does, off the event loop)::

    instance = Instance.from_specs(catalog_spec, pool_spec, classes)
    plan = solve(instance, solver="auto", time_limit=30, seed=0, previous=last_plan)
    status["plan"] = plan.to_dict()
"""

from quartermaster.planner.errors import (
    BudgetInfeasibleError,
    InfeasibleError,
    InvalidSpecError,
    PlannerError,
    SolverError,
    UnknownGpuTypeError,
    UnknownModelError,
    VerificationError,
)
from quartermaster.planner.instance import Instance, Option, QueryClass, Tier
from quartermaster.planner.plan import ClassResult, Deployment, Plan
from quartermaster.planner.solve import SOLVERS, solve
from quartermaster.planner.verify import Violation, check, verify

__all__ = [
    "SOLVERS",
    "BudgetInfeasibleError",
    "ClassResult",
    "Deployment",
    "InfeasibleError",
    "Instance",
    "InvalidSpecError",
    "Option",
    "Plan",
    "PlannerError",
    "QueryClass",
    "SolverError",
    "Tier",
    "UnknownGpuTypeError",
    "UnknownModelError",
    "VerificationError",
    "Violation",
    "check",
    "solve",
    "verify",
]
