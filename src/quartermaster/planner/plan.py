"""The planner's frozen output: deployments with vLLM arguments, routing shares and predictions.

Every solver produces a :class:`Solution` (replicas per option, shares per (class, option), unserved share per
class); :func:`build_plan` turns it into a :class:`Plan` with everything the operator and the CLI show:
deployments (model, precision, node pool, TP/PP, replicas, vLLM args, node selector, tolerations), per-class
routing shares, predicted TTFT/TPOT/error, $/hour, unserved demand, solver, time, bound and gap, and the
rejected options with the constraint that rejected each. :meth:`Plan.to_dict` is JSON-safe and camelCase for
the InferencePool status.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from quartermaster.planner.instance import Instance, Option, Rejected

SHARE_TOL = 1e-7
"""Shares below this are treated as zero."""


@dataclass(frozen=True)
class Solution:
    """A solver's raw answer: replicas per option index, shares per (class, option) index, unserved shares."""

    replicas: Mapping[int, int]
    shares: Mapping[tuple[int, int], float]
    unserved: tuple[float, ...]


@dataclass(frozen=True)
class Deployment:
    """``replicas`` vLLM replicas of one option."""

    name: str
    """Option name ``model/precision/pool/tpXppY``; :attr:`slug` is the Kubernetes-safe form."""
    model: str
    model_id: str
    precision: str
    node_pool: str
    gpu_type: str
    tensor_parallel: int
    pipeline_parallel: int
    replicas: int
    gpus_per_replica: int
    cost_per_hour: float
    max_num_seqs: int
    vllm_args: tuple[str, ...]
    image: str | None = None
    node_selector: tuple[tuple[str, str], ...] = ()
    tolerations: tuple[tuple[tuple[str, str], ...], ...] = ()
    utilization: float = 0.0
    """Planned load / replicas (<= the utilisation cap)."""

    @property
    def slug(self) -> str:
        """RFC 1123 name fragment, e.g. ``llama-3-1-8b-fp8-h100-tp1pp1``."""
        return self.name.replace("/", "-").lower()

    @property
    def gpus(self) -> int:
        return self.replicas * self.gpus_per_replica


@dataclass(frozen=True)
class ClassResult:
    """How one query class is served."""

    name: str
    rate: float
    shares: tuple[tuple[str, float], ...]
    """(deployment name, share of the class's requests)."""
    unserved_share: float
    predicted_ttft: float
    predicted_tpot: float
    predicted_error: float
    ttft_slo: float
    tpot_slo: float
    max_error: float


@dataclass(frozen=True)
class Plan:
    """A complete serving plan."""

    deployments: tuple[Deployment, ...]
    classes: tuple[ClassResult, ...]
    gpu_cost_per_hour: float
    penalty_per_hour: float
    switching_per_hour: float
    objective: float
    solver: str
    status: str
    """``optimal`` (proved by the MILP) or ``feasible``."""
    solve_seconds: float
    bound: float | None = None
    gap: float | None = None
    seed: int = 0
    rejected: tuple[Rejected, ...] = field(default=(), repr=False)
    notes: tuple[str, ...] = ()

    @property
    def cost_per_hour(self) -> float:
        """GPU spend in USD per hour."""
        return self.gpu_cost_per_hour

    @property
    def gpus(self) -> int:
        return sum(d.gpus for d in self.deployments)

    @property
    def unserved_rate(self) -> float:
        """Requests per second left unserved."""
        return sum(c.rate * c.unserved_share for c in self.classes)

    def replicas(self) -> dict[str, int]:
        """Replicas per deployment name."""
        return {d.name: d.replicas for d in self.deployments}

    def to_dict(self, *, max_rejected: int = 50) -> dict[str, Any]:
        """JSON-safe, camelCase dict (the InferencePool status ``plan``); plain Python types only."""
        plain: dict[str, Any] = _plain(self._dict(max_rejected))
        return plain

    def _dict(self, max_rejected: int) -> dict[str, Any]:
        return {
            "solver": self.solver,
            "status": self.status,
            "solveSeconds": round(self.solve_seconds, 6),
            "seed": self.seed,
            "costPerHour": round(self.gpu_cost_per_hour, 6),
            "penaltyPerHour": round(self.penalty_per_hour, 6),
            "switchingPerHour": round(self.switching_per_hour, 6),
            "objective": round(self.objective, 6),
            "bound": None if self.bound is None else round(self.bound, 6),
            "gap": None if self.gap is None else round(self.gap, 6),
            "gpus": self.gpus,
            "unservedRate": round(self.unserved_rate, 6),
            "deployments": [
                {
                    "name": d.name,
                    "slug": d.slug,
                    "model": d.model,
                    "modelId": d.model_id,
                    "precision": d.precision,
                    "nodePool": d.node_pool,
                    "gpuType": d.gpu_type,
                    "tensorParallel": d.tensor_parallel,
                    "pipelineParallel": d.pipeline_parallel,
                    "replicas": d.replicas,
                    "gpusPerReplica": d.gpus_per_replica,
                    "costPerHour": round(d.cost_per_hour, 6),
                    "maxNumSeqs": d.max_num_seqs,
                    "utilization": round(d.utilization, 6),
                    "vllmArgs": list(d.vllm_args),
                    "image": d.image,
                    "nodeSelector": dict(d.node_selector),
                    "tolerations": [dict(t) for t in d.tolerations],
                }
                for d in self.deployments
            ],
            "classes": [
                {
                    "name": c.name,
                    "rate": c.rate,
                    "shares": [{"deployment": n, "share": round(s, 9)} for n, s in c.shares],
                    "unservedShare": round(c.unserved_share, 9),
                    "predictedTtftSeconds": round(c.predicted_ttft, 6),
                    "predictedTpotSeconds": round(c.predicted_tpot, 6),
                    "predictedError": round(c.predicted_error, 6),
                    "ttftSloSeconds": c.ttft_slo,
                    "tpotSloSeconds": c.tpot_slo,
                    "maxError": c.max_error,
                }
                for c in self.classes
            ],
            "rejectedCount": len(self.rejected),
            "rejected": [
                {"option": r.option, "constraint": r.constraint, "detail": r.detail}
                for r in self.rejected[:max_rejected]
            ],
            "notes": list(self.notes),
        }


def _plain(value: Any) -> Any:
    """Recursively convert numpy scalars (and tuples) to plain Python types for JSON/YAML."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def vllm_args(instance: Instance, option: Option, max_num_seqs: int, max_model_len: int) -> tuple[str, ...]:
    """vLLM server arguments of a deployment."""
    spec = instance.models[option.model].spec
    model_id = spec.quantized_ids.get(option.precision, spec.hf_id)
    args = [
        "--model", model_id,
        "--served-model-name", spec.name,
        "--tensor-parallel-size", str(option.tp),
        "--pipeline-parallel-size", str(option.pp),
        "--max-num-seqs", str(max_num_seqs),
        "--max-model-len", str(max_model_len),
        "--gpu-memory-utilization", str(instance.params.memory_utilization),
        "--enable-chunked-prefill",
    ]  # fmt: skip
    if option.precision == "fp8" and option.precision not in spec.quantized_ids:
        args += ["--quantization", "fp8"]
    if option.precision in ("bf16", "fp16"):
        args += ["--dtype", "bfloat16" if option.precision == "bf16" else "float16"]
    return (*args, *spec.args)


def _max_model_len(instance: Instance, option: Option, classes: list[int]) -> int:
    spec = instance.models[option.model].spec
    longest = max(
        (instance.classes[i].prompt_tokens + instance.classes[i].output_tokens for i in classes), default=0
    )
    # Room for requests well above the class mean: 4x the longest mean, as a power of two, at least 4096.
    wanted = max(4096, 2 ** math.ceil(math.log2(max(1.0, 4 * longest))))
    return int(min(spec.max_context_tokens, wanted))


def build_plan(
    instance: Instance,
    solution: Solution,
    *,
    solver: str,
    status: str,
    solve_seconds: float,
    bound: float | None = None,
    seed: int = 0,
    switching_per_hour: float = 0.0,
    notes: tuple[str, ...] = (),
) -> Plan:
    """Turn a raw :class:`Solution` into a :class:`Plan` (predictions from the instance's tables)."""
    perf = instance.perf
    by_option: dict[int, list[int]] = {}
    for (i, o), s in solution.shares.items():
        if s > SHARE_TOL:
            by_option.setdefault(o, []).append(i)
    deployments = []
    for o in sorted(k for k, n in solution.replicas.items() if n > 0):
        opt = instance.options[o]
        spec = instance.models[opt.model].spec
        tier = instance.tiers[opt.tier]
        served = sorted(by_option.get(o, []))
        seqs = max((int(perf.batch[o, i]) for i in served), default=int(instance.params.max_batch))
        load = sum(
            instance.classes[i].rate * solution.shares[(i, o)] / perf.mu[o, i]
            for i in served
            if perf.mu[o, i] > 0
        )
        n = int(solution.replicas[o])
        deployments.append(
            Deployment(
                name=opt.name,
                model=spec.name,
                model_id=spec.quantized_ids.get(opt.precision, spec.hf_id),
                precision=opt.precision,
                node_pool=tier.name,
                gpu_type=tier.gpu.name,
                tensor_parallel=opt.tp,
                pipeline_parallel=opt.pp,
                replicas=n,
                gpus_per_replica=opt.gpus,
                cost_per_hour=opt.cost * n,
                max_num_seqs=max(1, seqs),
                vllm_args=vllm_args(instance, opt, max(1, seqs), _max_model_len(instance, opt, served)),
                image=spec.image,
                node_selector=tier.node_selector,
                tolerations=tier.tolerations,
                utilization=float(load / n) if n else 0.0,
            )
        )
    classes = []
    penalty = 0.0
    for i, cls in enumerate(instance.classes):
        used = sorted(
            ((o, s) for (ci, o), s in solution.shares.items() if ci == i and s > SHARE_TOL),
            key=lambda item: (-item[1], item[0]),
        )
        total = sum(s for _, s in used)
        err = sum(instance.error[o, i] * s for o, s in used) / total if total > 0 else 0.0
        unserved = float(solution.unserved[i])
        penalty += 3600.0 * cls.penalty * cls.rate * unserved
        classes.append(
            ClassResult(
                name=cls.name,
                rate=float(cls.rate),
                shares=tuple((instance.options[o].name, float(s)) for o, s in used),
                unserved_share=unserved,
                predicted_ttft=max((float(perf.ttft[o, i]) for o, _ in used), default=0.0),
                predicted_tpot=max((float(perf.tpot[o, i]) for o, _ in used), default=0.0),
                predicted_error=float(err),
                ttft_slo=cls.ttft,
                tpot_slo=cls.tpot,
                max_error=cls.max_error,
            )
        )
    gpu_cost = float(sum(d.cost_per_hour for d in deployments))
    objective = gpu_cost + penalty + switching_per_hour
    gap = None
    if bound is not None and objective > 0:
        gap = max(0.0, (objective - bound) / objective)
    elif bound is not None:
        gap = 0.0
    return Plan(
        deployments=tuple(deployments),
        classes=tuple(classes),
        gpu_cost_per_hour=gpu_cost,
        penalty_per_hour=float(penalty),
        switching_per_hour=float(switching_per_hour),
        objective=float(objective),
        solver=solver,
        status=status,
        solve_seconds=float(solve_seconds),
        bound=bound,
        gap=gap,
        seed=seed,
        rejected=instance.rejected,
        notes=notes,
    )


def solution_from_plan(instance: Instance, plan: Plan) -> Solution | None:
    """Map a plan (possibly of another instance with the same options) back to a :class:`Solution`.

    Returns ``None`` when a deployment's option is not part of ``instance``.
    """
    replicas: dict[int, int] = {}
    for d in plan.deployments:
        opt = instance.option_by_name(d.name)
        if opt is None:
            return None
        replicas[opt.index] = d.replicas
    names = {c.name: i for i, c in enumerate(instance.classes)}
    shares: dict[tuple[int, int], float] = {}
    unserved = np.ones(len(instance.classes))
    for c in plan.classes:
        if c.name not in names:
            continue
        i = names[c.name]
        unserved[i] = c.unserved_share
        for name, s in c.shares:
            opt = instance.option_by_name(name)
            if opt is None:
                return None
            shares[(i, opt.index)] = s
    return Solution(replicas, shares, tuple(float(u) for u in unserved))
