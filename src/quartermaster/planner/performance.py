r"""Analytic roofline performance model of one deployment option serving one query class.

Vectorised over options ``o`` (model ``j``, precision ``q``, GPU tier ``k``, tensor parallel ``t``, pipeline
parallel ``p``; ``g = t p`` GPUs per replica) and classes ``i`` (mean prompt ``h``, output ``f`` tokens).

Memory (bytes): weights ``w = P_j 1e9 bytes(q)``; KV bytes per token ``kappa = 2 L kv_heads head_dim 2``;
KV space of a replica ``KV = g (u M_k - r) - w`` (``u`` = vLLM ``gpu_memory_utilization``, ``r`` per-GPU
reserve for activations/CUDA graphs); concurrent sequences by memory ``B_mem = floor(KV / (kappa (h+f)))``.

Decode step at batch ``B`` (seconds), with ``W = W_k eta_bw``, ``F = F_kq eta_fl``. vLLM's chunked prefill
folds every sequence's prefill into the decode steps, so over a sequence's life of ``f`` steps each step also
carries ``h / f`` prefill tokens per sequence (FLOPs and all-reduce bytes amortised)::

    tau(B) = max((w + B (h + f/2) kappa) / (t W),  B (2 A_j 1e9 (f + h) + 2 L h^2 d) / (f t F))
             + L ovh + 2 L (ar_lat(t) + B (1 + h/f) H 2 / ar_bw(t)) [t > 1] + (p - 1) hop

(``A_j`` active parameters, ``L`` layers, ``H`` hidden size, ``d`` query heads x head dim, ``ovh`` per-layer
kernel overhead; two all-reduces of the activations per layer under TP). ``TPOT(B) = tau(B) tpot_scale`` is
the inter-token time a client sees on a fully loaded replica.

Prefill of one request alone: ``pre = max((2 A_j 1e9 h + 2 L h^2 d) / (t F), w / (t W)) + L ovh
+ 2 L (ar_lat + h H 2 / ar_bw) [t > 1] + (p - 1) hop``; ``TTFT = pre (1 + queue_factor) ttft_scale``
(``queue_factor`` = mean wait for prefills ahead; default 1, i.e. one prefill).

Largest SLO batch ``B* = floor(min(B_mem, max B with TPOT(B) <= tpot_i, max_batch))``; replica throughput
``mu = B* / (f TPOT(B*))`` requests/s (prefill included through ``tau``). An option is M1-feasible for a
class when the weights fit, ``B_mem >= 1``, ``h + f`` fits the context, ``TTFT <= ttft_i`` and
``TPOT(1) <= tpot_i``.

Measured profiles replace ``tau`` by the measured decode TPOT (piecewise-linear in ``B``) plus the serialised
prefill ``B pre / f``, and the prefill time by the measured one (linear in ``h``) for their configuration.
Efficiency factors come from :mod:`quartermaster.planner.gpus`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

BYTES_PER_PARAM = {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5625}
"""Weight bytes per parameter (int4 includes group scales: 4.5 bits)."""
PRECISION_ERROR_FACTOR = {"bf16": 1.0, "fp16": 1.0, "fp8": 1.01, "int8": 1.02, "int4": 1.05}
"""Default multiplier on a model's error per weight precision."""


class Reason(IntEnum):
    """Why an option cannot serve a class (M1); ``OK`` when it can."""

    OK = 0
    WEIGHTS = 1
    CONTEXT = 2
    TTFT = 3
    TPOT = 4


REASON_TEXT = {
    Reason.OK: "feasible",
    Reason.WEIGHTS: "memory: weights do not fit",
    Reason.CONTEXT: "memory: KV cache cannot hold one sequence",
    Reason.TTFT: "TTFT SLO",
    Reason.TPOT: "TPOT SLO",
}


@dataclass(frozen=True)
class PerfParams:
    """Documented defaults of the performance model (all overridable)."""

    memory_utilization: float = 0.9
    """vLLM ``--gpu-memory-utilization``."""
    reserve_gb_per_gpu: float = 1.0
    """Activations, CUDA graphs and non-torch memory per GPU inside the utilisation budget."""
    max_batch: int = 256
    """vLLM ``--max-num-seqs`` upper bound."""
    queue_factor: float = 1.0
    """TTFT waiting time in units of one prefill."""
    pipeline_hop_s: float = 1e-4
    """Activation hand-off between pipeline stages per step."""
    kv_bytes: float = 2.0
    """Bytes per KV-cache element (16-bit cache)."""


@dataclass(frozen=True)
class OptionArrays:
    """Per-option inputs of :func:`evaluate` (all arrays of shape ``(O,)``)."""

    params_b: FloatArray
    active_params_b: FloatArray
    bytes_per_param: FloatArray
    layers: FloatArray
    hidden: FloatArray
    attn_dim: FloatArray
    """Query heads x head dim."""
    kv_per_token: FloatArray
    """KV elements per token (2 x layers x kv_heads x head_dim)."""
    max_context: FloatArray
    tp: FloatArray
    pp: FloatArray
    memory_gb: FloatArray
    bandwidth_gbs: FloatArray
    tflops: FloatArray
    eta_bandwidth: FloatArray
    eta_compute: FloatArray
    layer_overhead_s: FloatArray
    ar_latency_s: FloatArray
    ar_bandwidth: FloatArray
    tpot_scale: FloatArray
    ttft_scale: FloatArray


@dataclass(frozen=True)
class ClassArrays:
    """Per-class inputs of :func:`evaluate` (arrays of shape ``(I,)``)."""

    prompt: FloatArray
    output: FloatArray
    ttft_slo: FloatArray
    tpot_slo: FloatArray


@dataclass(frozen=True)
class ProfileCurve:
    """A measured profile as arrays: TPOT at batch sizes; prefill seconds per prompt token (or NaN)."""

    batch: FloatArray
    tpot: FloatArray
    prefill_per_token: float


@dataclass
class PerfTable:
    """Results of :func:`evaluate`, arrays of shape ``(O, I)``."""

    reason: npt.NDArray[np.int8]
    batch: IntArray
    b_mem: IntArray
    ttft: FloatArray
    tpot: FloatArray
    tpot1: FloatArray
    prefill: FloatArray
    mu: FloatArray
    mu_nominal: FloatArray
    """Throughput at the memory-limited batch ignoring the SLOs (only for the M1 ablation)."""

    def freeze(self) -> PerfTable:
        """Make every array read-only and return self."""
        arrays = (
            self.reason,
            self.batch,
            self.b_mem,
            self.ttft,
            self.tpot,
            self.tpot1,
            self.prefill,
            self.mu,
        )
        for arr in (*arrays, self.mu_nominal):
            arr.setflags(write=False)
        return self


def col(a: FloatArray) -> FloatArray:
    """Column view ``(O, 1)`` of a per-option array."""
    return a[:, None]


def evaluate(
    o: OptionArrays,
    c: ClassArrays,
    params: PerfParams,
    profiles: dict[int, ProfileCurve] | None = None,
) -> PerfTable:
    """Evaluate every option on every class (see the module docstring for the formulas)."""
    h, f = c.prompt[None, :], c.output[None, :]
    t, p = col(o.tp), col(o.pp)
    gpus = t * p
    weights = col(o.params_b * 1e9 * o.bytes_per_param)
    kappa = col(o.kv_per_token) * params.kv_bytes
    usable = gpus * (col(o.memory_gb) * 1e9 * params.memory_utilization - params.reserve_gb_per_gpu * 1e9)
    kv_space = usable - weights
    b_mem = np.floor(np.maximum(kv_space, 0.0) / (kappa * (h + f)))

    bw = col(o.bandwidth_gbs) * 1e9 * col(o.eta_bandwidth)
    fl = col(o.tflops) * 1e12 * col(o.eta_compute)
    tp_on = (t > 1).astype(np.float64)
    layers = col(o.layers)
    ar_lat, ar_bw = col(o.ar_latency_s), col(o.ar_bandwidth)
    overhead = layers * col(o.layer_overhead_s) + (p - 1) * params.pipeline_hop_s
    c0 = overhead + tp_on * 2 * layers * ar_lat
    c1 = tp_on * 2 * layers * col(o.hidden) * 2.0 * (1.0 + h / f) / ar_bw
    a_bw = weights / (t * bw)
    b_bw = (h + f / 2.0) * kappa / (t * bw)
    attn = 2.0 * layers * h * h * col(o.attn_dim)
    prefill_flops = 2.0 * col(o.active_params_b) * 1e9 * h + attn
    b_fl = (2.0 * col(o.active_params_b) * 1e9 * f + prefill_flops) / (f * t * fl)
    scale = col(o.tpot_scale)

    def tau(batch: FloatArray) -> FloatArray:
        return np.asarray(np.maximum(a_bw + b_bw * batch, b_fl * batch) + c0 + c1 * batch, dtype=np.float64)

    target = c.tpot_slo[None, :] / scale
    with np.errstate(divide="ignore", invalid="ignore"):
        b_slo = np.minimum((target - c0 - a_bw) / (b_bw + c1), (target - c0) / (b_fl + c1))
    batch = np.floor(np.minimum(np.minimum(b_mem, b_slo), params.max_batch))
    batch = np.where(np.isfinite(batch), batch, 0.0)

    prefill = (
        np.maximum(prefill_flops / (t * fl), a_bw)
        + overhead
        + tp_on * 2 * layers * (ar_lat + h * col(o.hidden) * 2.0 / ar_bw)
    )
    tpot1 = tau(np.ones_like(batch)) * scale
    tpot = tau(np.maximum(batch, 1.0)) * scale
    if profiles:
        for row, curve in profiles.items():
            tpot1[row], tpot[row], batch[row], prefill[row] = _apply_profile(
                curve, c, b_mem[row], prefill[row], params.max_batch, scale[row, 0]
            )
    prefill = prefill * col(o.ttft_scale)
    ttft = prefill * (1.0 + params.queue_factor)

    reason = np.zeros(batch.shape, dtype=np.int8)
    reason[tpot1 > c.tpot_slo[None, :] * (1 + 1e-9)] = Reason.TPOT
    reason[ttft > c.ttft_slo[None, :] * (1 + 1e-9)] = Reason.TTFT
    context_bad = (b_mem < 1) | ((h + f) > col(o.max_context))
    reason[context_bad] = Reason.CONTEXT
    reason[np.broadcast_to(kv_space <= 0, batch.shape)] = Reason.WEIGHTS
    ok = reason == Reason.OK
    batch = np.where(ok, np.maximum(batch, 1.0), 0.0)
    nominal = np.minimum(b_mem, params.max_batch)
    with np.errstate(divide="ignore", invalid="ignore"):
        mu = np.where(ok, batch / (f * tpot), 0.0)
        mu_nominal = np.where(nominal >= 1, nominal / (f * tau(np.maximum(nominal, 1.0)) * scale), 0.0)
    return PerfTable(
        reason=reason,
        batch=batch.astype(np.int64),
        b_mem=b_mem.astype(np.int64),
        ttft=ttft,
        tpot=np.where(ok, tpot, tpot1),
        tpot1=tpot1,
        prefill=prefill,
        mu=mu,
        mu_nominal=mu_nominal,
    )


def _apply_profile(
    curve: ProfileCurve,
    c: ClassArrays,
    b_mem: FloatArray,
    prefill: FloatArray,
    max_batch: int,
    tpot_scale: float,
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """TPOT(1), TPOT(B*), B* and prefill of one option row from a measured profile."""
    sizes = np.arange(1, max_batch + 1, dtype=np.float64)
    if len(curve.batch) == 1:
        slope = 0.0
        values = np.full_like(sizes, curve.tpot[0])
    else:
        values = np.interp(sizes, curve.batch, curve.tpot)
        slope = (curve.tpot[-1] - curve.tpot[-2]) / (curve.batch[-1] - curve.batch[-2])
        beyond = sizes > curve.batch[-1]
        values[beyond] = curve.tpot[-1] + slope * (sizes[beyond] - curve.batch[-1])
    if np.isfinite(curve.prefill_per_token):
        prefill = curve.prefill_per_token * c.prompt
    # (I, B): measured decode TPOT plus the serialised prefill of the batch's new sequences.
    values = (values[None, :] + sizes[None, :] * (prefill / c.output)[:, None]) * tpot_scale
    ok = values <= c.tpot_slo[:, None]
    b_slo = np.where(ok.any(axis=1), ok.shape[1] - np.argmax(ok[:, ::-1], axis=1), 0).astype(np.float64)
    batch = np.minimum(b_slo, b_mem)
    index = np.clip(np.maximum(batch, 1.0).astype(np.int64) - 1, 0, len(sizes) - 1)
    tpot = values[np.arange(len(index)), index]
    return values[:, 0].copy(), tpot, batch, prefill
