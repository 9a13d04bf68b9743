"""Price search behind :func:`quartermaster.routing.budget.allocate` (vectorised over items x options).

``choice[i] = -1`` means item ``i`` is abandoned to its fallback; ``>= 0`` is the option index. Tokens are per
query; consumption is ``sum_i w_i * c_i * tokens_i`` (fallback: ``w_i * fb_t_i``).

Search: bisection on ``log lambda`` for the smallest price whose consumption fits the budget, then repair the
duality gap that abandonment's jumps leave: re-admit items the last jump removed, drop the least profitable
admitted items, water-fill the leftover over the admitted set, and let one item sit in the convex (rising
marginal) part of its curve with the leftover (KKT allows at most one such item). Small instances are solved
by enumerating the admission choices with the same two candidate forms (:func:`exact_small`).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import lambertw

FloatArray = npt.NDArray[np.float64]
Choice = npt.NDArray[np.int64]
INV_E = 1.0 / math.e


@dataclass(frozen=True)
class PricedArrays:
    """Dense item x option parameters (invalid options padded, ``valid`` False)."""

    w: FloatArray
    a: FloatArray
    beta: FloatArray
    tau: FloatArray
    c: FloatArray
    valid: npt.NDArray[np.bool_]
    cap: FloatArray
    fb_u: FloatArray
    fb_t: FloatArray

    def rows(self, rows: npt.NDArray[np.int64], cols: npt.NDArray[np.int64]) -> PricedArrays:
        """One chosen option per selected item (K = 1)."""
        return PricedArrays(
            w=self.w[rows],
            a=self.a[rows, cols][:, None],
            beta=self.beta[rows, cols][:, None],
            tau=self.tau[rows, cols][:, None],
            c=self.c[rows, cols][:, None],
            valid=self.valid[rows, cols][:, None],
            cap=self.cap[rows],
            fb_u=self.fb_u[rows],
            fb_t=self.fb_t[rows],
        )


def utility(ar: PricedArrays, b: FloatArray) -> FloatArray:
    s = np.maximum(b - ar.tau, 0.0)
    out: FloatArray = ar.a * (1.0 - (1.0 + ar.beta * s) * np.exp(-ar.beta * s))
    return out


def best_tokens(ar: PricedArrays, lam: float, *, clamp: bool) -> FloatArray:
    """Per-option optimal tokens at price ``lam`` on the decreasing-marginal branch (Lambert W_{-1}).

    Where the price exceeds the option's peak marginal there is no interior optimum: NaN, or with ``clamp``
    the inflection point ``tau + 1/beta``.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        z = lam * ar.c / (ar.a * ar.beta)
    ok = ar.valid & (ar.a > 0) & (z < INV_E)
    x = np.full(z.shape, np.nan)
    x[ok] = -lambertw(-z[ok], -1).real
    if clamp:
        x = np.where(ar.valid & ~ok, 1.0, x)
    b = ar.tau + x / ar.beta
    out: FloatArray = np.minimum(b, ar.cap[:, None])
    return out


def at_price(ar: PricedArrays, lam: float) -> tuple[Choice, FloatArray]:
    """The Lagrangian choice at price ``lam``: best-surplus option, abandoned unless it beats the fallback."""
    b = best_tokens(ar, lam, clamp=False)
    bb = np.nan_to_num(b)
    surplus = np.where(np.isnan(b), -np.inf, utility(ar, bb) - lam * ar.c * bb)
    j = np.argmax(surplus, axis=1)
    rows = np.arange(len(j))
    keep = surplus[rows, j] > ar.fb_u - lam * ar.fb_t
    return np.where(keep, j, -1).astype(np.int64), np.where(keep, b[rows, j], 0.0)


def consumption(ar: PricedArrays, choice: Choice, tokens: FloatArray) -> float:
    rows = np.arange(len(choice))
    spend = np.where(choice >= 0, ar.c[rows, np.maximum(choice, 0)] * tokens, ar.fb_t)
    return float(np.dot(ar.w, spend))


def value(ar: PricedArrays, choice: Choice, tokens: FloatArray) -> float:
    rows = np.arange(len(choice))
    cols = np.maximum(choice, 0)
    u = utility(ar.rows(rows, cols), tokens[:, None])[:, 0]
    return float(np.dot(ar.w, np.where(choice >= 0, u, ar.fb_u)))


def _admitted(
    ar: PricedArrays, choice: Choice, budget: float
) -> tuple[npt.NDArray[np.int64], PricedArrays, float]:
    rows = np.flatnonzero(choice >= 0)
    sub = ar.rows(rows, choice[rows])
    avail = budget - float(np.dot(ar.w[choice < 0], ar.fb_t[choice < 0]))
    return rows, sub, avail


def waterfill(ar: PricedArrays, choice: Choice, budget: float) -> FloatArray | None:
    """Tokens for a fixed choice with every admitted item on its concave branch at one common price."""
    rows, sub, avail = _admitted(ar, choice, budget)
    out = np.zeros(len(choice))
    if len(rows) == 0:
        return out if avail >= -1e-9 else None

    def used(lam: float) -> tuple[float, FloatArray]:
        t = best_tokens(sub, lam, clamp=True)[:, 0]
        return float(np.dot(sub.w * sub.c[:, 0], t)), t

    hi = float(np.max(sub.a * sub.beta / sub.c)) * INV_E
    spend, tokens = used(hi)
    if hi <= 0 or spend > avail * (1 + 1e-12) + 1e-12:
        return None
    lo = hi * 1e-12
    spend_lo, tokens_lo = used(lo)
    if spend_lo <= avail:
        tokens = tokens_lo
    else:
        for _ in range(200):
            mid = math.sqrt(lo * hi)
            spend, t = used(mid)
            if spend <= avail:
                hi, tokens = mid, t
            else:
                lo = mid
            if hi / lo < 1 + 1e-12:
                break
    out[rows] = tokens
    return out


def one_convex(ar: PricedArrays, choice: Choice, k: int, budget: float, grid: int = 48) -> FloatArray | None:
    """Tokens where admitted item ``k`` takes the leftover (possibly in its convex part), the others sit on
    their concave branch at a common price chosen by a scan over ``log lambda`` with a golden refinement."""
    rows, sub, avail = _admitted(ar, choice, budget)
    pos = int(np.flatnonzero(rows == k)[0])
    others = np.delete(np.arange(len(rows)), pos)
    wk_ck = float(sub.w[pos] * sub.c[pos, 0])
    out = np.zeros(len(choice))
    if len(others) == 0:
        if avail < 0 or wk_ck <= 0:
            return None
        out[k] = min(avail / wk_ck, float(sub.cap[pos]))
        return out
    osub = sub.rows(others, np.zeros(len(others), dtype=np.int64))
    kk = sub.rows(np.array([pos]), np.zeros(1, dtype=np.int64))

    def evaluate(lam: float) -> tuple[float, FloatArray, float]:
        t = best_tokens(osub, lam, clamp=True)[:, 0]
        rest = (avail - float(np.dot(osub.w * osub.c[:, 0], t))) / wk_ck
        if rest < 0:
            return -math.inf, t, rest
        rest = min(rest, float(kk.cap[0]))
        v = float(np.dot(osub.w, utility(osub, t[:, None])[:, 0])) + float(
            kk.w[0] * utility(kk, np.array([[rest]]))[0, 0]
        )
        return v, t, rest

    hi = float(np.max(osub.a * osub.beta / osub.c)) * INV_E
    if hi <= 0:
        return None
    lams = np.geomspace(hi * 1e-9, hi, grid)
    vals = [evaluate(float(lam))[0] for lam in lams]
    i = int(np.argmax(vals))
    if not math.isfinite(vals[i]):
        return None
    a, b = math.log(lams[max(i - 1, 0)]), math.log(lams[min(i + 1, grid - 1)])
    g = (math.sqrt(5) - 1) / 2
    for _ in range(40):
        c1, c2 = b - g * (b - a), a + g * (b - a)
        if evaluate(math.exp(c1))[0] >= evaluate(math.exp(c2))[0]:
            b = c2
        else:
            a = c1
    best_lam = max((float(lams[i]), math.exp((a + b) / 2)), key=lambda x: evaluate(x)[0])
    _, t, rest = evaluate(best_lam)
    out[rows[others]] = t
    out[k] = rest
    return out


def _consider(
    ar: PricedArrays, best: tuple[float, Choice, FloatArray], cfg: Choice, t: FloatArray | None, budget: float
) -> tuple[float, Choice, FloatArray]:
    if t is None or consumption(ar, cfg, t) > budget * (1 + 1e-9) + 1e-9:
        return best
    adm = np.flatnonzero(cfg >= 0)
    if len(adm) and np.any(utility(ar.rows(adm, cfg[adm]), t[adm][:, None])[:, 0] <= ar.fb_u[adm]):
        return best  # an admitted item must beat its fallback, else it is abandoned
    v = value(ar, cfg, t)
    return (v, cfg, t) if v > best[0] + 1e-15 else best


def repair(
    ar: PricedArrays,
    choice: Choice,
    tokens: FloatArray,
    lam_lo: float,
    lam_hi: float,
    budget: float,
    max_candidates: int = 16,
) -> tuple[Choice, FloatArray]:
    """Improve the bisected allocation (see the module docstring); never returns a worse one."""
    best = (value(ar, choice, tokens), choice, tokens)
    lo_choice, _ = at_price(ar, lam_lo)
    configs = [choice]
    changed = np.flatnonzero(lo_choice != choice)
    for i in changed[np.argsort(-ar.w[changed])][:max_candidates]:
        alt = choice.copy()
        alt[i] = lo_choice[i]
        configs.append(alt)
    admitted = np.flatnonzero(choice >= 0)
    rows = np.arange(len(choice))
    margin = ar.w[admitted] * (
        utility(ar.rows(admitted, choice[admitted]), tokens[admitted][:, None])[:, 0] - ar.fb_u[admitted]
    )
    for i in admitted[np.argsort(margin)][:max_candidates]:
        alt = choice.copy()
        alt[i] = -1
        configs.append(alt)
    for cfg in configs:
        best = _consider(ar, best, cfg, waterfill(ar, cfg, budget), budget)
    # One item in its convex part: an abandoned item (its best option) or a marginal admitted one.
    base = best[1]
    b_opt = best_tokens(ar, lam_lo, clamp=True)
    best_opt = np.argmax(np.where(ar.valid, utility(ar, np.nan_to_num(b_opt)), -np.inf), axis=1)
    abandoned = np.flatnonzero(base < 0)
    gain = ar.w[abandoned] * (ar.a[rows[abandoned], best_opt[abandoned]] - ar.fb_u[abandoned])
    for k in abandoned[np.argsort(-gain)][:max_candidates]:
        cfg = base.copy()
        cfg[k] = best_opt[k]
        best = _consider(ar, best, cfg, one_convex(ar, cfg, int(k), budget), budget)
    return best[1], best[2]


def exact_small(ar: PricedArrays, budget: float) -> tuple[Choice, FloatArray] | None:
    """Enumerate admission/option choices (small instances); None when none is feasible."""
    n = len(ar.w)
    per_item = [[-1, *np.flatnonzero(ar.valid[i]).tolist()] for i in range(n)]
    best: tuple[float, Choice, FloatArray] = (-math.inf, np.full(n, -1), np.zeros(n))
    for combo in itertools.product(*per_item):
        cfg = np.array(combo, dtype=np.int64)
        best = _consider(ar, best, cfg, waterfill(ar, cfg, budget), budget)
        for k in np.flatnonzero(cfg >= 0):
            best = _consider(ar, best, cfg, one_convex(ar, cfg, int(k), budget), budget)
    return None if not math.isfinite(best[0]) else (best[1], best[2])
