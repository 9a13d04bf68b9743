"""Human-readable explanations of why an instance (or a class) cannot be served.

Per class, in the order a user can act on: no option fits in memory; no option meets the TTFT SLO (the best
TTFT and where); no option meets the TPOT SLO; no feasible option is accurate enough for the error bound (an
average can never beat the best model); the pools' GPUs cannot carry the class's demand even alone. Then
joint limits: the classes together need more GPUs than a pool has. Example line::

    class 'chat': no option meets TTFT 0.2 s; best is llama-3-1-70b fp8 on h100 (H100-80GB) TP8 at 0.31 s
"""

from __future__ import annotations

import math

import numpy as np

from quartermaster.planner.instance import Instance, Option
from quartermaster.planner.performance import Reason


def _where(instance: Instance, opt: Option) -> str:
    tier = instance.tiers[opt.tier]
    par = f"TP{opt.tp}" + (f" PP{opt.pp}" if opt.pp > 1 else "")
    return f"{instance.models[opt.model].name} {opt.precision} on {tier.name} ({tier.gpu.name}) {par}"


def explain_class(instance: Instance, i: int) -> list[str]:
    """Why class ``i`` cannot be served (empty when it can be, on its own)."""
    cls = instance.classes[i]
    name = f"class {cls.name!r}"
    if not instance.options or not instance.feasible[:, i].any():
        return _explain_unservable(instance, i, name)
    feasible = instance.perf.reason[:, i] == Reason.OK
    return _explain_limits(instance, i, name, feasible)


def _explain_unservable(instance: Instance, i: int, name: str) -> list[str]:
    """No option at all meets memory/TTFT/TPOT for the class: report the best over every candidate."""
    cls = instance.classes[i]
    perf = instance.candidate_perf if instance.candidate_perf is not None else instance.perf
    options = instance.candidates or instance.options
    if not options:
        return [f"{name}: no deployment option exists in the node pools (see the rejected options)"]
    reason = perf.reason[:, i]
    memory_ok = (reason != Reason.WEIGHTS) & (reason != Reason.CONTEXT)
    if not memory_ok.any():
        return [
            f"{name}: no model fits a sequence of {cls.prompt_tokens + cls.output_tokens:.0f} tokens "
            "in GPU memory on any pool; add larger GPUs, allow more TP/PP or lower-precision weights"
        ]
    ttft = np.where(memory_ok, perf.ttft[:, i], math.inf)
    if not (ttft <= cls.ttft * (1 + 1e-9)).any():
        o = int(np.argmin(ttft))
        return [
            f"{name}: no option meets TTFT {cls.ttft:g} s; best is "
            f"{_where(instance, options[o])} at {ttft[o]:.3g} s"
        ]
    tpot = np.where(memory_ok & (reason != Reason.TTFT), perf.tpot1[:, i], math.inf)
    o = int(np.argmin(tpot))
    return [
        f"{name}: no option meets TPOT {cls.tpot:g} s/token; best is "
        f"{_where(instance, options[o])} at {tpot[o]:.3g} s/token"
    ]


def _explain_limits(instance: Instance, i: int, name: str, feasible: np.ndarray) -> list[str]:
    """The class has feasible options: is its error bound or the pools' capacity the problem?"""
    cls = instance.classes[i]
    lines = []
    err = np.where(feasible, instance.error[:, i], math.inf)
    o = int(np.argmin(err))
    if err[o] > cls.max_error + 1e-12 and cls.rate > 0 and cls.max_unserved < 1:
        lines.append(
            f"{name}: no option meeting its SLOs has error <= {cls.max_error:g}; best is "
            f"{_where(instance, instance.options[o])} at {err[o]:.3g}"
        )
        return lines
    # Demand the pools could carry for this class alone (accurate-enough options only, per pool).
    usable = feasible & (instance.error[:, i] <= cls.max_error + 1e-12)
    if cls.rate > 0 and usable.any():
        capacity = 0.0
        best_opt = None
        for k, tier in enumerate(instance.tiers):
            rows = [opt for opt in instance.options if opt.tier == k and usable[opt.index]]
            if not rows:
                continue
            per_gpu = [instance.mu[opt.index, i] / opt.gpus for opt in rows]
            top = rows[int(np.argmax(per_gpu))]
            capacity += instance.utilization * max(per_gpu) * (tier.gpus // top.gpus) * top.gpus
            best_opt = best_opt or top
        needed = cls.rate * (1 - cls.max_unserved)
        if capacity < needed and best_opt is not None:
            lines.append(
                f"{name}: needs {needed:.3g} req/s but the pools carry at most {capacity:.3g} req/s of it "
                f"at its SLOs and error bound (best per GPU e.g. {_where(instance, best_opt)}); add GPUs or "
                "relax SLOs"
            )
    return lines


def explain_infeasibility(instance: Instance) -> list[str]:
    """Every reason found (per class first, then joint GPU limits)."""
    lines: list[str] = []
    for i in range(len(instance.classes)):
        lines.extend(explain_class(instance, i))
    if lines:
        return lines
    # Joint GPU shortage: lower bound of GPUs per pool if every class used its most GPU-efficient option.
    need = 0.0
    for i, cls in enumerate(instance.classes):
        usable = (instance.perf.reason[:, i] == Reason.OK) & (instance.error[:, i] <= cls.max_error + 1e-12)
        if cls.rate == 0 or not usable.any():
            continue
        per_gpu = np.where(usable, instance.mu[:, i] / instance.option_gpus, 0.0)
        need += cls.rate * (1 - cls.max_unserved) / (instance.utilization * per_gpu.max())
    total = sum(t.gpus for t in instance.tiers)
    if need > total:
        lines.append(
            f"the classes together need at least {need:.0f} GPUs at their SLOs but the pools have {total}; "
            "add GPUs"
        )
    else:
        lines.append(
            "every class can be served on its own, but not all together within the pools' GPUs, the error "
            "bounds and the budget; add GPUs, raise spec.budgetPerHour or relax maxError"
        )
    return lines


def explain_rejections(instance: Instance, class_name: str) -> list[str]:
    """For one class: every option and the constraint that rejects it (or ``feasible``)."""
    i = instance.class_index(class_name)
    cls = instance.classes[i]
    lines = []
    for opt in instance.options:
        reason = Reason(int(instance.perf.reason[opt.index, i]))
        ttft, tpot = instance.perf.ttft[opt.index, i], instance.perf.tpot1[opt.index, i]
        mu, err = instance.mu[opt.index, i], instance.error[opt.index, i]
        text = {
            Reason.OK: f"feasible (mu {mu:.3g} req/s, error {err:.3g})",
            Reason.WEIGHTS: "weights do not fit in GPU memory",
            Reason.CONTEXT: "KV cache cannot hold one sequence",
            Reason.TTFT: f"TTFT {ttft:.3g} s > {cls.ttft:g} s",
            Reason.TPOT: f"TPOT {tpot:.3g} s > {cls.tpot:g} s",
        }[reason]
        lines.append(f"{opt.name}: {text}")
    lines.extend(f"{r.option}: {r.constraint} ({r.detail})" for r in instance.rejected)
    return lines
