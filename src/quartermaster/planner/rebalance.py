"""LP share routing for fixed replicas, and the consolidation moves of AGH built on it.

For a fixed set of deployments with integer replicas ``n_o`` the best routing of the classes is a small LP
(no integers): variables ``x_io`` for the open options only, ``u_i`` in ``[0, zeta_i]``::

    min  sum_i 3600 phi_i lam_i u_i
    s.t. sum_o x_io + u_i = 1;   sum_i lam_i / mu_oi x_io <= rho n_o;   sum_o (e_io - eps_i) x_io <= 0

(C1-C3; C4/C5 only involve ``n``). It has at most ``I x D`` variables (``D`` options in play), so HiGHS
(through highspy, re-solving from the previous basis) solves it in well under a millisecond. AGH uses it
for exact versions of the seed's "move shares between options" and "drop replicas while feasible":
:func:`consolidate` repeatedly tries to drop one replica, or to swap one replica for one or two of a cheaper
option, keeping the move when the LP still routes everything (deviation from the seed, documented in the
benchmark report with an ablation). Most of those trials have no routing; the Farkas certificate of one
infeasible routing LP rejects later trials with less capacity where it matters without solving an LP.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import numpy.typing as npt

from quartermaster.planner.state import Allocation, Context

logger = logging.getLogger(__name__)

IMPROVE = 1e-9
CERTIFICATE_TOL = 1e-6
"""Relative margin by which a Farkas certificate must prove a routing infeasible before the LP is skipped."""


class Router:
    """The routing LP over a universe of options, solved repeatedly with different replica counts.

    Built once with highspy (column-wise sparse matrix); each :meth:`route` only changes the capacity rows'
    upper bounds ``rho n_o`` and re-solves from the previous basis, which takes well under a millisecond.
    Options of the universe with ``n_o = 0`` still admit zero-rate classes (they add no load), as in the MILP.
    Most trials of :func:`consolidate` have no routing (97-99 % at (20,20,20)): each infeasible LP leaves a
    Farkas certificate (:meth:`_learn`) that rejects later replica vectors in O(options) without an LP
    (exact: the certificate is re-derived from the multipliers; ``skipped`` counts the LPs saved).
    """

    def __init__(self, ctx: Context, universe: list[int]):
        import highspy

        self.ctx = ctx
        self.universe = sorted(universe)
        n_classes = len(ctx.rates)
        # One column per feasible (class, option) pair, option by option: its class, the position of its
        # option in the universe, its load per share and its error over the bound.
        pos, cls = np.nonzero(ctx.feasible[self.universe])
        opt = np.asarray(self.universe, dtype=np.int64)[pos]
        rates = ctx.rates[cls]
        self.pairs = list(zip(cls.tolist(), opt.tolist(), strict=True))
        self._pair_class, self._pair_pos = cls.astype(np.int64), pos.astype(np.int64)
        self._pair_load = np.where(rates > 0, rates / np.where(rates > 0, ctx.mu[opt, cls], 1.0), 0.0)
        self._pair_err = ctx.error[opt, cls] - ctx.eps[cls]
        n_x = len(self.pairs)
        self.cap_row = {o: n_classes + r for r, o in enumerate(self.universe)}
        err_base = n_classes + len(self.universe)
        starts, index, value = [0], [], []
        for p, (i, o) in enumerate(self.pairs):
            rows = [i, err_base + i]
            vals = [1.0, float(self._pair_err[p])]
            if ctx.rates[i] > 0:
                rows.insert(1, self.cap_row[o])
                vals.insert(1, float(self._pair_load[p]))
            index.extend(rows)
            value.extend(vals)
            starts.append(len(index))
        for i in range(n_classes):
            index.append(i)
            value.append(1.0)
            starts.append(len(index))
        lp = highspy.HighsLp()
        lp.num_col_ = n_x + n_classes
        lp.num_row_ = err_base + n_classes
        lp.col_cost_ = np.concatenate([np.zeros(n_x), ctx.penalty])
        lp.col_lower_ = np.zeros(lp.num_col_)
        lp.col_upper_ = np.concatenate([np.ones(n_x), ctx.zeta])
        inf = highspy.kHighsInf
        lp.row_lower_ = np.concatenate(
            [np.ones(n_classes), np.full(len(self.universe), -inf), np.full(n_classes, -inf)]
        )
        lp.row_upper_ = np.concatenate(
            [np.ones(n_classes), np.zeros(len(self.universe)), np.zeros(n_classes)]
        )
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = np.array(starts, dtype=np.int32)
        lp.a_matrix_.index_ = np.array(index, dtype=np.int32)
        lp.a_matrix_.value_ = np.array(value, dtype=np.float64)
        self.highs: Any = getattr(highspy, "Highs")()  # noqa: B009 (untyped in the stubs)
        self.highs.setOptionValue("output_flag", False)
        self.highs.setOptionValue("threads", 1)
        self.highs.setOptionValue("presolve", "off")  # keep the basis between solves (hot start)
        self.highs.setOptionValue("solver", "simplex")
        self.highs.passModel(lp)
        self._optimal = highspy.HighsModelStatus.kOptimal
        self._inf = inf
        self.n_x = n_x
        self._certificates: list[tuple[float, npt.NDArray[np.float64]]] = []
        self.skipped = 0

    def covers(self, replicas: dict[int, int]) -> bool:
        return all(o in self.cap_row for o, n in replicas.items() if n > 0)

    def route(self, replicas: dict[int, int]) -> tuple[float, dict[tuple[int, int], float]] | None:
        """Best routing for ``replicas``: ``(penalty $/h, shares)`` or ``None`` when C1-C3 cannot all hold."""
        n = np.array([replicas.get(o, 0) for o in self.universe], dtype=np.float64)
        capacity = self.ctx.rho * n
        if any(_proves_infeasible(constant, mu, capacity) for constant, mu in self._certificates):
            self.skipped += 1
            return None
        rows = np.array([self.cap_row[o] for o in self.universe], dtype=np.int32)
        self.highs.changeRowsBounds(len(rows), rows, np.full(len(rows), -self._inf), capacity)
        self.highs.run()
        if self.highs.getModelStatus() != self._optimal:
            self._learn(capacity)
            return None
        x = np.asarray(self.highs.getSolution().col_value)
        shares = {p: float(v) for p, v in zip(self.pairs, x[: self.n_x], strict=True) if v > 1e-9}
        return float(self.highs.getInfo().objective_function_value), shares

    def _learn(self, capacity: npt.NDArray[np.float64]) -> None:
        """Keep a Farkas certificate of the infeasible routing just solved, if HiGHS offers a dual ray.

        Multipliers ``lam_i`` (C1, free), ``mu_o >= 0`` (capacity), ``nu_i >= 0`` (C3) aggregate C1-C3 into
        ``sum_io r_io x_io + sum_i lam_i u_i >= sum_i lam_i - sum_o mu_o rho n_o`` with
        ``r_io = lam_i - mu_o lam_i/mu_oi - nu_i (e_io - eps_i)``; its left side is at most
        ``sum_io max(0, r_io) + sum_i max(0, lam_i) zeta_i`` within the variables' bounds, so every replica
        vector with ``K - sum_o mu_o rho n_o > 0`` (``K = sum_i lam_i`` minus that maximum) has no routing.
        ``K`` and ``mu`` do not depend on ``n``: one certificate rejects later trials in O(options), and it
        is recomputed here from the multipliers (only its sign pattern comes from HiGHS), so it is exact.
        """
        _, has_ray, ray = self.highs.getDualRay()
        if not has_ray:
            return
        ray = np.asarray(ray, dtype=np.float64)
        n_classes, n_options = len(self.ctx.rates), len(self.universe)
        for sign in (1.0, -1.0):
            lam = sign * ray[:n_classes]
            mu = np.maximum(-sign * ray[n_classes : n_classes + n_options], 0.0)
            nu = np.maximum(-sign * ray[n_classes + n_options :], 0.0)
            reduced = lam[self._pair_class] - mu[self._pair_pos] * self._pair_load
            reduced -= nu[self._pair_class] * self._pair_err
            constant = float(
                lam.sum() - np.maximum(reduced, 0.0).sum() - (np.maximum(lam, 0.0) * self.ctx.zeta).sum()
            )
            if _proves_infeasible(constant, mu, capacity):
                self._certificates.append((constant, mu))
                return


def _proves_infeasible(
    constant: float, mu: npt.NDArray[np.float64], capacity: npt.NDArray[np.float64]
) -> bool:
    """Whether the certificate ``(K, mu)`` of :meth:`Router._learn` rules out ``capacity`` (``rho n``)."""
    return constant - float(mu @ capacity) > CERTIFICATE_TOL * (1.0 + constant + float(mu.sum()))


def _allocation(ctx: Context, replicas: dict[int, int], shares: dict[tuple[int, int], float]) -> Allocation:
    st = Allocation(ctx)
    for (i, o), s in sorted(shares.items()):
        st.add(i, o, s)
    # Keep at least the LP's replicas where the routing needs them (rounding noise can shave one).
    for o, n in replicas.items():
        if o in st.on and st.n[o] < n and st.load[o] > ctx.rho * st.n[o] * (1 + 1e-9):
            st._set_replicas(o, n)
    return st


def _swap_candidates(ctx: Context, st: Allocation, o: int, limit: int) -> list[int]:
    """Cheaper options that could take over from ``o``, best first within each kind: the most *mixable*
    capacity per $ for ``o``'s classes (capacity weighted by the share of each class the option may carry
    under its error bound when mixed with the most accurate open deployment; ``2 limit``), the same model
    and precision on other pools or TP/PP degrees, the most capacity per $ within the error bounds, and the
    most capacity per $ regardless of error (``limit`` each)."""
    classes = np.array(sorted(st.on[o]), dtype=np.int64)
    weight = np.array([st.on[o][c] * ctx.rates[c] for c in classes]) + 1e-12
    cheaper = ctx.costs < ctx.costs[o]
    usable = ctx.feasible[:, classes] & cheaper[:, None]
    open_options = np.array([p for p in st.on if st.n[p] > 0], dtype=np.int64)
    best_err = ctx.error[np.ix_(open_options, classes)].min(axis=0) if len(open_options) else ctx.eps[classes]
    err = ctx.error[:, classes]
    eps = ctx.eps[classes][None, :]
    over = err - best_err[None, :]
    mixable = np.where(
        err <= eps + 1e-12,
        1.0,
        np.clip((eps - best_err[None, :]) / np.where(over > 1e-12, over, 1.0), 0.0, 1.0),
    )
    picked: list[int] = []
    src = ctx.instance.options[o]
    siblings = [
        p.index
        for p in ctx.instance.options
        if (p.model, p.precision) == (src.model, src.precision) and cheaper[p.index] and usable[p.index].any()
    ]
    accurate = usable & (err <= eps + 1e-12)
    ones = np.ones_like(mixable)
    kinds: list[tuple[np.ndarray, np.ndarray, list[int] | None, int]] = [
        (usable, mixable, None, 2 * limit),
        (usable, ones, siblings, limit),
        (accurate, ones, None, limit),
        (usable, ones, None, limit),
    ]
    for mask, value_of, pool, count in kinds:
        value = np.where(mask, ctx.mu[:, classes] * value_of, 0.0) @ weight / ctx.costs
        cand = np.flatnonzero(value > 0) if pool is None else np.array(pool, dtype=np.int64)
        if len(cand) == 0:
            continue
        for t in cand[np.argsort(-value[cand], kind="stable")][:count]:
            if int(t) not in picked:
                picked.append(int(t))
    return picked


def _within_limits(ctx: Context, replicas: dict[int, int]) -> bool:
    used = np.zeros(len(ctx.tier_cap), dtype=np.int64)
    cost = 0.0
    for o, n in replicas.items():
        used[ctx.tier_of[o]] += n * ctx.gpus[o]
        cost += n * ctx.costs[o]
    return bool(np.all(used <= ctx.tier_cap)) and cost <= ctx.budget * (1 + 1e-9)


def _universe(
    ctx: Context, st: Allocation, replicas: dict[int, int], swap_candidates: int
) -> dict[int, list[int]]:
    """Swap candidates per open option (the router's universe is the open options plus all of these)."""
    return {o: _swap_candidates(ctx, st, o, swap_candidates) for o in replicas if o in st.on}


def consolidate(st: Allocation, deadline: float, swap_candidates: int = 4) -> tuple[Allocation, int]:
    """Drop one replica, or swap one replica for one or two of a cheaper option, while the routing LP still
    serves every class (see module docstring); first improvement, until none or the deadline."""
    ctx = st.ctx
    best = st
    replicas = {int(o): int(n) for o, n in enumerate(st.n) if n > 0}
    moves = 0
    improved = True
    while improved and time.perf_counter() < deadline:
        improved = False
        swaps = _universe(ctx, best, replicas, swap_candidates)
        router = Router(ctx, sorted(set(replicas) | {t for ts in swaps.values() for t in ts}))
        trials: list[dict[int, int]] = []
        order = sorted(replicas, key=lambda o: (-ctx.costs[o], o))
        for o in order:
            trials.append({**replicas, o: replicas[o] - 1})
        for o in order:
            for t in swaps.get(o, []):
                trials.append({**replicas, o: replicas[o] - 1, t: replicas.get(t, 0) + 1})
                if 2 * ctx.costs[t] < ctx.costs[o]:
                    trials.append({**replicas, o: replicas[o] - 1, t: replicas.get(t, 0) + 2})
        current = best.objective()
        for raw in trials:
            if time.perf_counter() > deadline:
                break
            trial = {o: n for o, n in raw.items() if n > 0}
            gpu_cost = sum(n * ctx.costs[o] for o, n in trial.items())
            if gpu_cost >= current - IMPROVE and not ctx.switching:
                continue
            if not _within_limits(ctx, trial):
                continue
            result = router.route(trial)
            if result is None:
                continue
            candidate = _allocation(ctx, trial, result[1])
            if candidate.is_feasible() and candidate.objective() < current - IMPROVE:
                best, replicas = candidate, {int(o): int(n) for o, n in enumerate(candidate.n) if n > 0}
                moves += 1
                improved = True
                break
    return best, moves
