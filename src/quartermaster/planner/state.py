"""Mutable working state shared by the heuristics (GH, AGH): replicas, loads and shares.

:class:`Context` precomputes the arrays the heuristics read (with the M1-M3 ablations applied);
:class:`Allocation` is one partial or complete allocation. Replicas of an option are always the fewest that
carry its load at the utilisation cap: ``n_o = ceil(load_o / rho)`` with
``load_o = sum_i lam_i x_io / mu_oi`` (constraint C2 of the MILP).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from quartermaster.planner.instance import Instance
from quartermaster.planner.plan import SHARE_TOL, Solution

EPS = 1e-9
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Mechanisms:
    """The seed's constraint-aware mechanisms; switch one off for the ablation study.

    ``m1`` feasibility filter, ``m2`` cost-per-effective-coverage ranking, ``m3`` TP upgrade. Without M1 the
    heuristics may pick options that violate memory/TTFT/TPOT (throughput at the memory-limited batch);
    without M2 they pick the cheapest replica; without M3 each (model, precision, pool) is used only at its
    smallest parallel degree and never upgraded.
    """

    m1: bool = True
    m2: bool = True
    m3: bool = True


class Context:
    """Read-only arrays of one heuristic solve."""

    def __init__(
        self,
        instance: Instance,
        mechanisms: Mechanisms = Mechanisms(),
        previous: Mapping[str, int] | None = None,
        switching: float = 0.0,
    ):
        self.instance = instance
        self.mech = mechanisms
        self.rho = instance.utilization
        self.rates = instance.rates
        self.costs = instance.costs
        self.gpus = instance.option_gpus
        self.tier_of = instance.option_tiers
        self.tier_cap = np.array([t.gpus for t in instance.tiers], dtype=np.int64)
        self.budget = instance.budget if instance.budget is not None else math.inf
        self.eps = np.array([c.max_error for c in instance.classes])
        self.zeta = np.array([c.max_unserved for c in instance.classes])
        self.penalty = np.array([3600.0 * c.penalty * c.rate for c in instance.classes])
        """$/h of leaving the whole class unserved."""
        self.error = instance.error
        if mechanisms.m1:
            self.mu = instance.mu
            feasible = instance.feasible & (instance.mu > 0)
        else:
            self.mu = instance.perf.mu_nominal
            feasible = self.mu > 0
        allowed = np.ones(len(instance.options), dtype=bool)
        if not mechanisms.m3:
            smallest: dict[tuple[int, str, int], int] = {}
            for opt in instance.options:
                key = (opt.model, opt.precision, opt.tier)
                if key not in smallest or opt.gpus < instance.options[smallest[key]].gpus:
                    smallest[key] = opt.index
            allowed[:] = False
            allowed[list(smallest.values())] = True
        self.feasible = feasible & allowed[:, None]
        self.candidates = [np.flatnonzero(self.feasible[:, i]) for i in range(len(instance.classes))]
        # TP-upgrade families: options of one (model, precision, tier, pp) ordered by TP.
        self.family: dict[int, list[int]] = {}
        groups: dict[tuple[int, str, int, int], list[int]] = {}
        for opt in instance.options:
            if allowed[opt.index]:
                groups.setdefault((opt.model, opt.precision, opt.tier, opt.pp), []).append(opt.index)
        for members in groups.values():
            members.sort(key=lambda o: instance.options[o].tp)
            for o in members:
                self.family[o] = [m for m in members if instance.options[m].tp > instance.options[o].tp]
        self.switching = switching
        self.prev = np.zeros(len(instance.options), dtype=np.int64)
        self.prev_removed = 0
        for name, n in (previous or {}).items():
            known = instance.option_by_name(name)
            if known is None:
                self.prev_removed += int(n)
            else:
                self.prev[known.index] = int(n)

    def replicas_for(self, load: float) -> int:
        """Fewest replicas carrying ``load`` (in replica-units) at the utilisation cap."""
        return max(0, math.ceil(load / self.rho - EPS))


class Allocation:
    """Replicas, loads and shares of a (partial) allocation."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        n_options = len(ctx.instance.options)
        n_classes = len(ctx.instance.classes)
        self.n = np.zeros(n_options, dtype=np.int64)
        self.load = np.zeros(n_options)
        self.x: list[dict[int, float]] = [{} for _ in range(n_classes)]
        self.on: dict[int, dict[int, float]] = {}
        self.served = np.zeros(n_classes)
        self.err_sum = np.zeros(n_classes)
        self.tier_used = np.zeros(len(ctx.tier_cap), dtype=np.int64)
        self.gpu_cost = 0.0

    def copy(self) -> Allocation:
        new = Allocation.__new__(Allocation)
        new.ctx = self.ctx
        new.n = self.n.copy()
        new.load = self.load.copy()
        new.x = [dict(d) for d in self.x]
        new.on = {o: dict(d) for o, d in self.on.items()}
        new.served = self.served.copy()
        new.err_sum = self.err_sum.copy()
        new.tier_used = self.tier_used.copy()
        new.gpu_cost = self.gpu_cost
        return new

    # -- updates ----------------------------------------------------------------------------------------
    def _set_replicas(self, o: int, n: int) -> None:
        delta = n - int(self.n[o])
        if delta:
            self.n[o] = n
            self.tier_used[self.ctx.tier_of[o]] += delta * int(self.ctx.gpus[o])
            self.gpu_cost += delta * float(self.ctx.costs[o])

    def add(self, i: int, o: int, share: float) -> None:
        """Route ``share`` more of class ``i`` to option ``o``, opening replicas as needed."""
        if share <= 0:
            return
        ctx = self.ctx
        self.x[i][o] = self.x[i].get(o, 0.0) + share
        self.on.setdefault(o, {})[i] = self.x[i][o]
        self.served[i] += share
        self.err_sum[i] += ctx.error[o, i] * share
        if ctx.rates[i] > 0:
            self.load[o] += ctx.rates[i] * share / ctx.mu[o, i]
        self._set_replicas(o, max(int(self.n[o]), ctx.replicas_for(self.load[o])))

    def remove(self, i: int, o: int, share: float | None = None) -> float:
        """Take ``share`` (default: all) of class ``i`` off option ``o``; replicas shrink to the load."""
        ctx = self.ctx
        current = self.x[i].get(o, 0.0)
        share = current if share is None else min(share, current)
        left = current - share
        if left <= SHARE_TOL:
            share = current
            self.x[i].pop(o, None)
            self.on[o].pop(i, None)
            if not self.on[o]:
                del self.on[o]
        else:
            self.x[i][o] = left
            self.on[o][i] = left
        self.served[i] -= share
        self.err_sum[i] -= ctx.error[o, i] * share
        if ctx.rates[i] > 0:
            self.load[o] = max(0.0, self.load[o] - ctx.rates[i] * share / ctx.mu[o, i])
        if o not in self.on:
            self.load[o] = 0.0
        self._set_replicas(o, ctx.replicas_for(self.load[o]))
        return share

    # -- evaluation -------------------------------------------------------------------------------------
    def switching_changes(self) -> int:
        return int(np.abs(self.n - self.ctx.prev).sum()) + self.ctx.prev_removed

    def objective(self) -> float:
        """GPU $/h + penalty $/h of unserved demand + switching $/h."""
        ctx = self.ctx
        unserved = np.clip(1.0 - self.served, 0.0, 1.0)
        value = self.gpu_cost + float(ctx.penalty @ unserved)
        if ctx.switching:
            value += ctx.switching * self.switching_changes()
        return value

    def error_ok(self, i: int) -> bool:
        return bool(self.err_sum[i] <= self.ctx.eps[i] * self.served[i] + 1e-9)

    def is_feasible(self) -> bool:
        """C1 (within zeta), C3, C4, C5 hold (C2/C6 hold by construction)."""
        ctx = self.ctx
        if np.any(self.served < 1.0 - ctx.zeta - 1e-7):
            return False
        if np.any(self.err_sum > ctx.eps * self.served + 1e-9):
            return False
        if np.any(self.tier_used > ctx.tier_cap):
            return False
        return self.gpu_cost <= ctx.budget * (1 + 1e-9)

    def to_solution(self) -> Solution:
        shares = {(i, o): s for i, d in enumerate(self.x) for o, s in d.items() if s > SHARE_TOL}
        unserved = tuple(float(max(0.0, 1.0 - s)) for s in self.served)
        replicas = {int(o): int(n) for o, n in enumerate(self.n) if n > 0}
        return Solution(replicas, shares, unserved)
