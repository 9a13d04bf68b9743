"""Rolling re-planning over a rate trace, with switching cost and hysteresis, versus a static plan.

Every ``interval`` the planner sees a forecast of the next window's rates (``last``: the window just
observed, times ``headroom``; ``oracle``: the true rates) and may re-plan:

1. Two candidates: :func:`~quartermaster.planner.solve.solve` with ``previous`` = the current plan and a
   switching cost of ``switching_cost`` USD per replica started or stopped, amortised over
   ``payback_hours`` (a change must pay for itself within that time), and a fresh plan (no previous; it
   stops incremental plans from drifting). The one with the lower ``$/h + switching / payback_hours`` wins.
2. If the current plan no longer meets every constraint at the forecast (SLOs, or capacity with the load above
   ``trigger_utilization`` of its replicas: scale-up hysteresis), the candidate is
   adopted at once (changes needed for the SLOs are never held back).
3. Otherwise it is adopted only if it is at least ``min_saving_fraction`` cheaper per hour than the current
   plan *and* its replica changes fit the ``max_changes_per_hour`` budget over the last hour (hysteresis).

Each window is then charged the adopted plan's GPU cost for the window plus the switching cost of its
changes, and evaluated against the *true* rates: the share of requests on overloaded deployments
(utilisation > 100 %, SLOs cannot hold) counts as SLO violations; the share above the planned utilisation
cap is reported as "hot". The static baseline plans once per ``static_hours`` (24 h) for the peak rate of
each class in that period (perfect knowledge of the peak) and never changes in between.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from quartermaster.planner.errors import PlannerError
from quartermaster.planner.instance import Instance
from quartermaster.planner.plan import Plan
from quartermaster.planner.solve import solve
from quartermaster.planner.verify import verify

logger = logging.getLogger(__name__)
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class HorizonSettings:
    """Rolling re-planning parameters (see module docstring)."""

    interval_s: float = 600.0
    switching_cost: float = 0.5
    payback_hours: float = 4.0
    min_saving_fraction: float = 0.05
    trigger_utilization: float = 0.9
    max_changes_per_hour: float = 4.0
    solver: str = "agh"
    time_limit: float = 10.0
    seed: int = 0
    forecast: str = "last"
    headroom: float = 1.0
    static_hours: float = 24.0


@dataclass(frozen=True)
class WindowResult:
    """One window of a replay."""

    index: int
    cost: float
    """USD spent in the window (GPUs + switching)."""
    gpus: int
    replicas: int
    changes: int
    violation_share: float
    hot_share: float
    replanned: bool
    solve_seconds: float


@dataclass(frozen=True)
class HorizonResult:
    """A whole replay."""

    name: str
    windows: tuple[WindowResult, ...]
    interval_s: float

    @property
    def hours(self) -> float:
        return len(self.windows) * self.interval_s / 3600.0

    @property
    def total_cost(self) -> float:
        return float(sum(w.cost for w in self.windows))

    @property
    def violation_share(self) -> float:
        """Mean share of requests on overloaded deployments."""
        return float(np.mean([w.violation_share for w in self.windows])) if self.windows else 0.0

    @property
    def changes_per_hour(self) -> float:
        return float(sum(w.changes for w in self.windows)) / self.hours if self.windows else 0.0

    @property
    def changes_per_replica_hour(self) -> float:
        """Replica changes per hour divided by the mean number of replicas."""
        mean_replicas = float(np.mean([w.replicas for w in self.windows])) if self.windows else 0.0
        return self.changes_per_hour / mean_replicas if mean_replicas else 0.0

    def summary(self) -> dict[str, float | str]:
        return {
            "name": self.name,
            "hours": round(self.hours, 3),
            "totalCost": round(self.total_cost, 2),
            "costPerHour": round(self.total_cost / self.hours, 3) if self.hours else 0.0,
            "violationShare": round(self.violation_share, 5),
            "changesPerHour": round(self.changes_per_hour, 3),
            "changesPerReplicaHour": round(self.changes_per_replica_hour, 4),
            "meanSolveSeconds": round(float(np.mean([w.solve_seconds for w in self.windows])), 4),
        }


def changes(a: Plan | None, b: Plan) -> int:
    """Replicas started plus stopped going from plan ``a`` to plan ``b``."""
    ra = a.replicas() if a is not None else {}
    rb = b.replicas()
    return sum(abs(rb.get(k, 0) - ra.get(k, 0)) for k in set(ra) | set(rb))


def load_shares(instance: Instance, plan: Plan, rates: FloatArray) -> tuple[float, float]:
    """``(violation share, hot share)`` of requests when ``plan`` meets the true ``rates``."""
    names = {c.name: i for i, c in enumerate(instance.classes)}
    load: dict[str, float] = {}
    reqs: dict[str, float] = {}
    for c in plan.classes:
        i = names[c.name]
        for name, share in c.shares:
            opt = instance.option_by_name(name)
            if opt is None or instance.mu[opt.index, i] <= 0:
                continue
            load[name] = load.get(name, 0.0) + rates[i] * share / instance.mu[opt.index, i]
            reqs[name] = reqs.get(name, 0.0) + rates[i] * share
    total = float(rates.sum())
    if total <= 0:
        return 0.0, 0.0
    replicas = plan.replicas()
    over = hot = 0.0
    for name, value in load.items():
        n = replicas.get(name, 0)
        if value <= 0:
            continue
        if value > n:
            over += reqs[name] * (value - n) / value
        cap = instance.utilization * n
        if value > cap:
            hot += reqs[name] * (value - cap) / value
    return over / total, hot / total


def _cheaper(current: Plan, a: Plan, b: Plan, switching_per_hour: float) -> Plan:
    """The plan with the lower $/h plus amortised switching from ``current`` (``a`` on ties)."""
    cost_a = a.gpu_cost_per_hour + switching_per_hour * changes(current, a)
    cost_b = b.gpu_cost_per_hour + switching_per_hour * changes(current, b)
    return b if cost_b < cost_a - 1e-9 else a


def _forecast(rates: FloatArray, w: int, settings: HorizonSettings) -> FloatArray:
    base = rates[w] if settings.forecast == "oracle" or w == 0 else rates[w - 1]
    return np.asarray(base * settings.headroom, dtype=np.float64)


def replay(
    instance: Instance,
    rates: FloatArray,
    settings: HorizonSettings,
    progress: Callable[[int], None] | None = None,
) -> HorizonResult:
    """Rolling re-planning over ``rates[T, I]`` (see module docstring)."""
    interval_h = settings.interval_s / 3600.0
    switching_per_hour = settings.switching_cost / settings.payback_hours
    current: Plan | None = None
    recent: deque[tuple[int, int]] = deque()
    per_hour_windows = max(1, round(1.0 / interval_h))
    out = []
    for w in range(len(rates)):
        forecast_inst = instance.with_rates(_forecast(rates, w, settings))
        started = time.perf_counter()
        replanned = False
        adopted_changes = 0
        while recent and recent[0][0] <= w - per_hour_windows:
            recent.popleft()
        candidate = solve(
            forecast_inst, solver=settings.solver, time_limit=settings.time_limit, seed=settings.seed,
            previous=current, switching_cost=switching_per_hour if current is not None else 0.0,
        )  # fmt: skip
        if current is not None:
            fresh = solve(
                forecast_inst, solver=settings.solver, time_limit=settings.time_limit, seed=settings.seed
            )

            candidate = _cheaper(current, candidate, fresh, switching_per_hour)
        if current is None:
            current, replanned, adopted_changes = candidate, True, changes(None, candidate)
        else:
            # Scale-up hysteresis: the current plan stands while the forecast load stays within
            # ``trigger_utilization`` of its replicas (new plans are still made at the planning cap).
            check_inst = dataclasses.replace(
                forecast_inst, utilization=max(settings.trigger_utilization, instance.utilization)
            )
            broken = [v for v in verify(check_inst, current) if v.constraint != "cost"]
            n_changes = changes(current, candidate)
            saving = current.gpu_cost_per_hour - candidate.gpu_cost_per_hour
            budget_left = settings.max_changes_per_hour - sum(c for _, c in recent)
            worth = saving >= settings.min_saving_fraction * current.gpu_cost_per_hour and saving > 0
            if broken or (worth and n_changes <= budget_left):
                current, replanned, adopted_changes = candidate, n_changes > 0, n_changes
        if adopted_changes:
            recent.append((w, adopted_changes))
        over, hot = load_shares(instance, current, rates[w])
        out.append(
            WindowResult(
                index=w,
                cost=current.gpu_cost_per_hour * interval_h + settings.switching_cost * adopted_changes,
                gpus=current.gpus,
                replicas=sum(current.replicas().values()),
                changes=adopted_changes,
                violation_share=over,
                hot_share=hot,
                replanned=replanned,
                solve_seconds=time.perf_counter() - started,
            )
        )
        if progress is not None:
            progress(w)
    return HorizonResult("rolling", tuple(out), settings.interval_s)


def static(
    instance: Instance,
    rates: FloatArray,
    settings: HorizonSettings,
    progress: Callable[[int], None] | None = None,
) -> HorizonResult:
    """One plan per ``static_hours`` for the peak rate of each class in that period."""
    interval_h = settings.interval_s / 3600.0
    block = max(1, round(settings.static_hours / interval_h))
    out = []
    previous: Plan | None = None
    for start in range(0, len(rates), block):
        peak = rates[start : start + block].max(axis=0)
        try:
            plan = solve(
                instance.with_rates(peak),
                solver=settings.solver,
                time_limit=settings.time_limit,
                seed=settings.seed,
            )
        except PlannerError as exc:
            raise PlannerError(f"static plan for hours {start * interval_h:g}+ failed: {exc}") from exc
        n_changes = changes(previous, plan)
        previous = plan
        for w in range(start, min(start + block, len(rates))):
            over, hot = load_shares(instance, plan, rates[w])
            first = w == start
            out.append(
                WindowResult(
                    index=w,
                    cost=plan.gpu_cost_per_hour * interval_h
                    + (settings.switching_cost * n_changes if first else 0.0),
                    gpus=plan.gpus,
                    replicas=sum(plan.replicas().values()),
                    changes=n_changes if first else 0,
                    violation_share=over,
                    hot_share=hot,
                    replanned=first,
                    solve_seconds=plan.solve_seconds if first else 0.0,
                )
            )
            if progress is not None:
                progress(w)
    return HorizonResult("static", tuple(out), settings.interval_s)
