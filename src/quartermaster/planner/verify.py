"""Check a plan against every constraint of an instance, independently of the solvers.

:func:`verify` re-derives each deployment's option from its name, re-evaluates the performance model for it
from the instance's models, pools and classes (not the solvers' cached arrays or pruned option list), and
checks C1-C6, integrality, GPU availability, the budget and the plan's own cost arithmetic. It returns the
violations (empty = valid); :func:`check` raises :class:`~quartermaster.planner.errors.VerificationError`.
"""

from __future__ import annotations

from dataclasses import dataclass

from quartermaster.planner.errors import VerificationError
from quartermaster.planner.instance import TENSOR_PARALLEL, Instance, Option, _evaluate_options
from quartermaster.planner.performance import REASON_TEXT, Reason
from quartermaster.planner.plan import Plan

TOL = 1e-6


@dataclass(frozen=True)
class Violation:
    """One broken constraint."""

    constraint: str
    """C1-C6, integrality, option, cost."""
    subject: str
    message: str


def _option(instance: Instance, name: str, index: int, out: list[Violation]) -> Option | None:
    """Re-derive an option from its name, checking that it can exist in the instance's pools."""
    try:
        model, precision, pool, par = name.split("/")
        tp_text, pp_text = par.removeprefix("tp").split("pp")
        tp, pp = int(tp_text), int(pp_text)
    except ValueError:
        out.append(Violation("option", name, "malformed option name (model/precision/pool/tpXppY)"))
        return None
    j = next((j for j, m in enumerate(instance.models) if m.name == model), None)
    k = next((k for k, t in enumerate(instance.tiers) if t.name == pool), None)
    if j is None or k is None:
        out.append(Violation("option", name, f"unknown model {model!r} or node pool {pool!r}"))
        return None
    tier, spec = instance.tiers[k], instance.models[j].spec
    problems = []
    if precision not in spec.precisions:
        problems.append(f"precision {precision} not offered by model {model}")
    if tp not in TENSOR_PARALLEL or tp > tier.max_tp:
        problems.append(f"TP {tp} exceeds {tier.max_tp} GPUs per node of pool {pool}")
    elif spec.heads % tp:
        problems.append(f"TP {tp} does not divide {spec.heads} attention heads")
    if tp * pp > tier.gpus:
        problems.append(f"{tp * pp} GPUs per replica > {tier.gpus} in pool {pool}")
    if problems:
        out.append(Violation("option", name, "; ".join(problems)))
        return None
    return Option(index, j, precision, k, tp, pp, tp * pp, tier.price * tp * pp, name)


def verify(instance: Instance, plan: Plan, *, tol: float = TOL) -> list[Violation]:
    """All violations of ``plan`` on ``instance`` (empty when the plan is valid)."""
    out: list[Violation] = []
    classes = {c.name: i for i, c in enumerate(instance.classes)}
    replicas: dict[str, int] = {}
    for d in plan.deployments:
        if d.replicas < 1 or int(d.replicas) != d.replicas:
            out.append(Violation("integrality", d.name, f"replicas={d.replicas} must be a positive integer"))
        if d.name in replicas:
            out.append(Violation("option", d.name, "deployment listed twice"))
        replicas[d.name] = d.replicas
    names = list(dict.fromkeys([*replicas, *(n for c in plan.classes for n, _ in c.shares)]))
    options: dict[str, Option] = {}
    for name in names:
        opt = _option(instance, name, len(options), out)
        if opt is not None:
            options[name] = opt
    for d in plan.deployments:
        opt = options.get(d.name)
        if opt is None:
            continue
        if (d.tensor_parallel, d.pipeline_parallel, d.gpus_per_replica) != (opt.tp, opt.pp, opt.gpus):
            out.append(Violation("option", d.name, "TP/PP/GPUs per replica do not match the option name"))
        if abs(d.cost_per_hour - opt.cost * d.replicas) > tol * max(1.0, opt.cost * d.replicas):
            out.append(
                Violation(
                    "cost", d.name, f"cost {d.cost_per_hour:.4f} != price x GPUs {opt.cost * d.replicas:.4f}"
                )
            )
    opts = list(options.values())
    row = {o.name: r for r, o in enumerate(opts)}
    load = dict.fromkeys(row, 0.0)
    if opts:
        perf, error = _evaluate_options(
            instance.classes, instance.models, instance.tiers, opts, instance.params,
            instance.delay_factor, instance.error_factor,
        )  # fmt: skip
    seen: set[str] = set()
    for c in plan.classes:
        if c.name not in classes:
            out.append(Violation("C1", c.name, "class is not part of the instance"))
            continue
        seen.add(c.name)
        i = classes[c.name]
        cls = instance.classes[i]
        total = sum(s for _, s in c.shares)
        if any(s < -tol for _, s in c.shares) or not -tol <= c.unserved_share <= cls.max_unserved + tol:
            out.append(
                Violation(
                    "C1", c.name, f"unserved share {c.unserved_share:.6f} outside [0, {cls.max_unserved}]"
                )
            )
        if abs(total + c.unserved_share - 1.0) > 1e-5:
            out.append(Violation("C1", c.name, f"shares {total:.6f} + unserved {c.unserved_share:.6f} != 1"))
        err_sum = 0.0
        for name, share in c.shares:
            if name not in row:
                continue
            r = row[name]
            reason = Reason(int(perf.reason[r, i]))
            if reason != Reason.OK:
                out.append(Violation("C6", c.name, f"{name}: {REASON_TEXT[reason]} (M1) for this class"))
                continue
            err_sum += share * float(error[r, i])
            if cls.rate > 0:
                load[name] += cls.rate * share / float(perf.mu[r, i])
        if total > tol and err_sum > cls.max_error * total + 1e-7:
            out.append(
                Violation("C3", c.name, f"average error {err_sum / total:.4f} > bound {cls.max_error:.4f}")
            )
    for cls in instance.classes:
        if cls.name not in seen:
            out.append(Violation("C1", cls.name, "class missing from the plan"))
    rho = instance.utilization
    for name, value in load.items():
        n = replicas.get(name, 0)
        if value > rho * n * (1 + tol) + tol:
            out.append(Violation("C2", name, f"load {value:.4f} replica-units > {rho} x {n} replicas"))
    used = dict.fromkeys((t.name for t in instance.tiers), 0)
    for d in plan.deployments:
        if d.name in options:
            used[d.node_pool] += d.replicas * options[d.name].gpus
    for tier in instance.tiers:
        if used[tier.name] > tier.gpus:
            out.append(Violation("C4", tier.name, f"{used[tier.name]} GPUs used > {tier.gpus} available"))
    cost = sum(d.cost_per_hour for d in plan.deployments)
    if abs(cost - plan.gpu_cost_per_hour) > tol * max(1.0, cost):
        out.append(Violation("cost", "plan", f"costPerHour {plan.gpu_cost_per_hour:.4f} != sum {cost:.4f}"))
    if instance.budget is not None and cost > instance.budget * (1 + 1e-9):
        out.append(Violation("C5", "plan", f"cost {cost:.4f} $/h > budget {instance.budget:.4f} $/h"))
    return out


def check(instance: Instance, plan: Plan) -> None:
    """Raise :class:`VerificationError` listing every violation (a solver bug)."""
    violations = verify(instance, plan)
    if violations:
        raise VerificationError(
            f"plan from {plan.solver} violates {len(violations)} constraint(s); this is a planner bug, "
            "please report it with the manifests",
            explanations=tuple(f"{v.constraint} {v.subject}: {v.message}" for v in violations),
        )
