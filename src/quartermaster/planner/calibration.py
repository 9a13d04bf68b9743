"""Calibrate the roofline's efficiency factors against vidur's public GPU kernel profiles.

Data: ``shared/data/traces/vidur_profiling`` (microsoft/vidur, MIT): per-operator kernel times of one
transformer layer's linear layers (QKV, output, gated MLP up, MLP down) plus the small ops (layer norms,
activation, residual add, rotary) versus the number of tokens in the batch and the tensor-parallel degree, for
Llama-2-7B and -70B on A100, H100 and A40; and all-reduce times versus message size on 8-GPU DGX nodes.

Fit for one profile file (one GPU, one model, all TP degrees):

- Decode (<= 8 tokens, memory-bound): ``layer_time = weight_bytes / (W * eta_bandwidth) + layer_overhead``,
  least squares over rows; ``weight_bytes`` is 2 bytes per linear-layer parameter of the TP shard.
- Prefill (>= 1024 tokens, compute-bound): ``eta_compute = median(flops / (F * (layer_time - overhead)))``.
- Quality: mean and 90th-percentile absolute percentage error of
  ``max(bytes/(W eta_bw), flops/(F eta_fl)) + overhead`` over all rows.

All-reduce: per number of workers within one node, the latency is the median time of messages <= 64 KiB and
the bandwidth the least-squares slope over messages >= 1 MB.

:mod:`quartermaster.planner.gpus` embeds the results; a unit test re-runs the fit and compares.
"""

from __future__ import annotations

import csv
import gzip
import logging
import pathlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

PROFILED_GPUS: dict[str, tuple[float, float]] = {
    # (HBM bandwidth in bytes/s, dense FP16 FLOP/s) of the GPUs vidur profiled (datasheets).
    "a100": (2039e9, 312e12),
    "h100": (3350e9, 989e12),
    "a40": (696e9, 149.7e12),
}
_LINEAR_OPS = ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")
_SMALL_OPS = ("input_layernorm", "post_attention_layernorm", "mlp_act", "add", "attn_rope")

FloatArray = npt.NDArray[np.float64]


class CalibrationDataError(FileNotFoundError):
    """The vidur profiling data is missing or malformed."""


@dataclass(frozen=True)
class ComputeFit:
    """Efficiency of one GPU on one model's linear layers."""

    gpu: str
    model: str
    eta_bandwidth: float
    eta_compute: float
    layer_overhead_s: float
    mape: float
    p90_ape: float
    rows: int


@dataclass(frozen=True)
class AllReduceFit:
    """All-reduce cost among ``workers`` GPUs of one node."""

    system: str
    workers: int
    latency_s: float
    bandwidth_bytes_s: float


def _read_columns(path: pathlib.Path, skip: tuple[str, ...] = ()) -> dict[str, FloatArray]:
    if not path.is_file():
        raise CalibrationDataError(f"{path}: profiling file missing; expected the shared data directory")
    with gzip.open(path, "rt", newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise CalibrationDataError(f"{path}: no rows")
    columns: dict[str, FloatArray] = {}
    for key in rows[0]:
        if key in skip or not key:
            continue
        columns[key] = np.array(
            [1.0 if r[key] == "True" else 0.0 if r[key] == "False" else float(r[key]) for r in rows]
        )
    return columns


def fit_compute_profile(path: pathlib.Path) -> ComputeFit:
    """Fit eta_bandwidth, eta_compute and the per-layer overhead to one vidur MLP profile file."""
    parts = path.name.split("__")
    gpu, model = parts[2], parts[4]
    if gpu not in PROFILED_GPUS:
        raise CalibrationDataError(f"{path}: unknown profiled GPU {gpu!r}")
    bandwidth, flops_peak = PROFILED_GPUS[gpu]
    d = _read_columns(path)
    tp = d["num_tensor_parallel_workers"]
    head_dim = d["n_embd"] / d["n_head"]
    params = (
        d["n_embd"] * (d["n_head"] + 2 * d["n_kv_head"]) * head_dim
        + d["n_embd"] ** 2
        + d["n_embd"] * 2 * d["n_expanded_embd"]
        + d["n_expanded_embd"] * d["n_embd"]
    ) / tp
    total: FloatArray = (
        np.sum([d[f"time_stats.{op}.median"] for op in (*_LINEAR_OPS, *_SMALL_OPS)], axis=0) * 1e-3
    )
    tokens = d["num_tokens"]
    small = tokens <= 8
    design = np.c_[2.0 * params[small], np.ones(int(small.sum()))]
    coef = np.linalg.lstsq(design, total[small], rcond=None)[0]
    slope, overhead = float(coef[0]), float(coef[1])
    eta_bw = float(1.0 / (slope * bandwidth))
    big = tokens >= 1024
    eta_fl = float(np.median(2.0 * tokens[big] * params[big] / ((total[big] - overhead) * flops_peak)))
    predicted = np.maximum(2.0 * params / (bandwidth * eta_bw), 2.0 * tokens * params / (flops_peak * eta_fl))
    ape = np.abs(predicted + overhead - total) / total
    fit = ComputeFit(
        gpu,
        model,
        eta_bw,
        eta_fl,
        float(overhead),
        float(ape.mean()),
        float(np.quantile(ape, 0.9)),
        len(tokens),
    )
    logger.debug("calibrated %s", fit)
    return fit


def fit_allreduce(path: pathlib.Path) -> list[AllReduceFit]:
    """Latency and bandwidth of all-reduce per number of workers within one node."""
    system = path.name.split("__")[2]
    d = _read_columns(path, skip=("collective",))
    fits = []
    for workers in sorted(set(d["num_workers"].tolist())):
        mask = (d["num_workers"] == workers) & (d["devices_per_node"] == workers)
        if workers > 8 or not mask.any():
            continue
        size = d["size"][mask]
        seconds = d["time_stats.all_reduce.median"][mask] * 1e-3
        latency = float(np.median(seconds[size <= 65536]))
        large = size >= 1e6
        design = np.c_[np.ones(int(large.sum())), size[large]]
        per_byte = float(np.linalg.lstsq(design, seconds[large], rcond=None)[0][1])
        fits.append(AllReduceFit(system, int(workers), latency, float(1.0 / per_byte)))
    return fits


@dataclass(frozen=True)
class CalibrationReport:
    """All fits, plus the per-GPU averages that :mod:`quartermaster.planner.gpus` embeds."""

    compute: tuple[ComputeFit, ...]
    allreduce: tuple[AllReduceFit, ...]

    def gpu_average(self, gpu: str) -> tuple[float, float, float]:
        """``(eta_bandwidth, eta_compute, layer_overhead_s)`` averaged over the models profiled on ``gpu``."""
        fits = [f for f in self.compute if f.gpu == gpu]
        if not fits:
            raise CalibrationDataError(f"no compute profile for GPU {gpu!r}")
        return (
            float(np.mean([f.eta_bandwidth for f in fits])),
            float(np.mean([f.eta_compute for f in fits])),
            float(np.mean([f.layer_overhead_s for f in fits])),
        )

    def allreduce_average(self, workers: int) -> tuple[float, float]:
        """``(latency_s, bandwidth_bytes_s)`` among ``workers`` GPUs averaged over the profiled systems."""
        fits = [f for f in self.allreduce if f.workers == workers]
        if not fits:
            raise CalibrationDataError(f"no all-reduce profile for {workers} workers")
        return float(np.mean([f.latency_s for f in fits])), float(
            np.mean([f.bandwidth_bytes_s for f in fits])
        )


def fit_all(data_dir: pathlib.Path) -> CalibrationReport:
    """Run every fit on ``data_dir`` (the shared data root or its ``traces/vidur_profiling`` folder)."""
    folder = data_dir / "traces" / "vidur_profiling" if (data_dir / "traces").is_dir() else data_dir
    compute_files = sorted(folder.glob("profiling__compute__*__mlp.csv.gz"))
    network_files = sorted(folder.glob("profiling__network__*__all_reduce.csv.gz"))
    if not compute_files or not network_files:
        raise CalibrationDataError(
            f"{folder}: no vidur profiling files found; point to the shared data directory (../shared/data)"
        )
    return CalibrationReport(
        tuple(fit_compute_profile(p) for p in compute_files),
        tuple(f for p in network_files for f in fit_allreduce(p)),
    )
