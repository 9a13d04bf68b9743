"""Reasoning utility curves (CLEAR's shifted surge) and their fit from accuracy measured at several budgets.

Form (arXiv 2606.03092; this is the concrete form Quartermaster uses): with ``s = b - tau`` output tokens past
the emergence threshold ``tau``, the marginal utility is ``a * beta^2 * s * exp(-beta*s)`` and the cumulative
utility (success probability)

    U(b) = a * (1 - (1 + beta*s) * exp(-beta*s))   for s > 0,   U(b) = 0 otherwise.

``a`` in [0, 1] is the accuracy ceiling, ``1/beta`` the token scale of the rise. The marginal rises until
``s = 1/beta`` (peak ``a*beta/e``) then decays, so for a price ``lambda`` below the peak the optimum lies on
the decreasing branch: ``x*exp(-x) = lambda/(a*beta)`` with ``x = beta*s``, i.e.
``x = -W_{-1}(-lambda/(a*beta))`` (Lambert W, lower branch).

:func:`fit_utility` fits ``(a, beta, tau)`` by bounded least squares from several starts. A flat curve
(accuracy within ``flat_tolerance`` at every budget) carries no information about ``beta`` and ``tau``: it is
replaced, with a warning, by a curve that saturates at the smallest measured budget (reasoning beyond it buys
nothing).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.optimize import least_squares

from quartermaster.routing.errors import UtilityFitError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UtilityCurve:
    """A shifted-surge utility ``U(b)``; ``rmse`` is the fit residual (0 for given curves)."""

    a: float
    beta: float
    tau: float
    rmse: float = 0.0
    flat: bool = False

    def __post_init__(self) -> None:
        if not (0.0 <= self.a <= 1.0 and self.beta > 0.0 and self.tau >= 0.0):
            raise UtilityFitError(
                f"utility curve a={self.a}, beta={self.beta}, tau={self.tau}: need 0<=a<=1, beta>0, tau>=0"
            )

    def value(self, tokens: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """``U(b)`` (success probability) at ``tokens``."""
        s = np.maximum(np.asarray(tokens, dtype=np.float64) - self.tau, 0.0)
        return self.a * (1.0 - (1.0 + self.beta * s) * np.exp(-self.beta * s))

    def marginal(self, tokens: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """``dU/db`` at ``tokens``."""
        s = np.maximum(np.asarray(tokens, dtype=np.float64) - self.tau, 0.0)
        return self.a * self.beta**2 * s * np.exp(-self.beta * s)

    @property
    def peak_marginal(self) -> float:
        """The largest marginal utility, ``a*beta/e`` at ``b = tau + 1/beta``."""
        return self.a * self.beta / math.e


def _model(p: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    a, log_beta, tau = p
    beta = math.exp(log_beta)
    s = np.maximum(b - tau, 0.0)
    out: npt.NDArray[np.float64] = a * (1.0 - (1.0 + beta * s) * np.exp(-beta * s))
    return out


def fit_utility(
    budgets: npt.ArrayLike,
    accuracy: npt.ArrayLike,
    *,
    name: str = "curve",
    flat_tolerance: float = 0.02,
) -> UtilityCurve:
    """Fit ``(a, beta, tau)`` to accuracy measured at several token budgets (or sample counts).

    ``name`` (e.g. ``"cluster 3 / model x"``) is used in warnings and errors.
    """
    b = np.asarray(budgets, dtype=np.float64)
    y = np.asarray(accuracy, dtype=np.float64)
    if b.shape != y.shape or b.ndim != 1:
        raise UtilityFitError(f"{name}: budgets and accuracy must be 1-D and of equal length")
    if not (np.all(np.isfinite(b)) and np.all(np.isfinite(y))):
        raise UtilityFitError(f"{name}: budgets and accuracy must be finite numbers")
    if (b < 0).any() or (y < 0).any() or (y > 1).any():
        raise UtilityFitError(f"{name}: budgets must be >= 0 and accuracy within [0, 1]")
    if len(np.unique(b)) < 3:
        raise UtilityFitError(f"{name}: measure accuracy at >= 3 distinct budgets to fit a, beta, tau")
    lo_b, hi_b = float(b.min()), float(b.max())
    if float(y.max() - y.min()) <= flat_tolerance:
        level = float(y.mean())
        scale = max(lo_b, 1.0)
        log.warning(
            "%s: accuracy is flat (%.3f..%.3f over budgets %g..%g); reasoning tokens do not help, so the "
            "curve saturates at the smallest budget (a=%.3f, tau=0)",
            name,
            float(y.min()),
            float(y.max()),
            lo_b,
            hi_b,
            level,
        )
        return UtilityCurve(a=level, beta=10.0 / scale, tau=0.0, rmse=float(np.std(y)), flat=True)
    best: tuple[float, npt.NDArray[np.float64]] | None = None
    span = max(hi_b - lo_b, 1.0)
    a0 = float(np.clip(y.max(), 0.01, 1.0))
    for tau0 in (0.0, lo_b * 0.5, lo_b + 0.25 * span):
        for scale0 in (0.05 * span, 0.2 * span, 0.6 * span):
            x0 = np.array([a0, math.log(1.0 / max(scale0, 1e-6)), min(tau0, hi_b)])
            res = least_squares(
                lambda p: _model(p, b) - y,
                x0,
                bounds=([0.0, math.log(1e-3 / span), 0.0], [1.0, math.log(1e3 / max(lo_b, 1e-3) + 10), hi_b]),
                method="trf",
            )
            cost = float(np.mean(res.fun**2))
            if best is None or cost < best[0]:
                best = (cost, res.x)
    assert best is not None
    a, log_beta, tau = (float(v) for v in best[1])
    return UtilityCurve(
        a=float(np.clip(a, 0.0, 1.0)), beta=math.exp(log_beta), tau=max(tau, 0.0), rmse=math.sqrt(best[0])
    )
