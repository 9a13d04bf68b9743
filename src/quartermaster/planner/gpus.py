"""Built-in GPU table: memory, bandwidth, FLOP/s, list prices and calibrated efficiency factors.

Sources (numbers typed from them, the files themselves are not copied):

- Specs and prices: ``shared/data/gpus/gpu_planner_table.csv`` (datasheet memory, HBM bandwidth and dense
  FP16/BF16 TFLOPS; $/GPU-hour from the Lambda on-demand catalog via SkyPilot catalog v8, Apache-2.0, and the
  AWS us-east-1 g6e.xlarge/g5.xlarge list prices for L40S/A10G). Names follow the local cluster's node pools:
  ``H100-80GB`` is the table's ``H100-SXM`` and ``A100-80GB`` its ``A100-80GB-SXM`` (both kept as aliases).
- FP8 dense TFLOPS (2x FP16 on Hopper and Ada) and INT8 (2x FP16 on Ampere and later): NVIDIA datasheets.
- Efficiency factors (``eta_bandwidth``, ``eta_compute``, ``layer_overhead_s``) are least-squares fits of the
  roofline to microsoft/vidur's measured linear-layer kernel times (MIT;
  ``shared/data/traces/vidur_profiling``), averaged over Llama-2-7B and -70B, TP 1-8; see
  :mod:`quartermaster.planner.calibration`, which recomputes them (a unit test checks these constants).
  H100 and A100 use their own profiles; the PCIe/GDDR cards use the A40 profile (same Ampere/Ada class of
  GDDR6 card).
- All-reduce latency/bandwidth: vidur's ``a100_dgx``/``h100_dgx`` all-reduce profiles (NVLink, 2-8 GPUs);
  PCIe values are an assumption (the 16-GPU cross-node a100_dgx fit, ~11.5 GB/s, ~80 us).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Interconnect = Literal["nvlink", "pcie"]


@dataclass(frozen=True)
class AllReduceModel:
    """``time(bytes) = latency_s + bytes / bandwidth`` for one all-reduce among ``t`` GPUs."""

    latency_s: dict[int, float]
    bandwidth_bytes_s: dict[int, float]

    def time(self, tp: int, nbytes: float) -> float:
        """Seconds for one all-reduce of ``nbytes`` among ``tp`` GPUs (0 for ``tp == 1``)."""
        if tp <= 1:
            return 0.0
        key = min(self.latency_s, key=lambda k: (abs(k - tp), k))
        return self.latency_s[key] + nbytes / self.bandwidth_bytes_s[key]


NVLINK_ALLREDUCE = AllReduceModel(
    # vidur h100_dgx / a100_dgx fits (median latency of <= 64 KiB messages; bus bandwidth of >= 1 MB ones),
    # H100 and A100 averaged.
    latency_s={2: 33.5e-6, 4: 29.2e-6, 8: 31.8e-6},
    bandwidth_bytes_s={2: 235e9, 4: 177e9, 8: 158e9},
)
PCIE_ALLREDUCE = AllReduceModel(
    latency_s={2: 80e-6, 4: 80e-6, 8: 80e-6}, bandwidth_bytes_s={2: 11.5e9, 4: 11.5e9, 8: 11.5e9}
)


@dataclass(frozen=True)
class Efficiency:
    """Calibrated roofline factors of a GPU family."""

    eta_bandwidth: float
    eta_compute: float
    layer_overhead_s: float


@dataclass(frozen=True)
class GpuType:
    """One GPU model: datasheet numbers, list price and calibrated efficiency."""

    name: str
    memory_gb: float
    bandwidth_gbs: float
    fp16_tflops: float
    price_per_hour: float
    price_source: str
    product_label: str
    """``nvidia.com/gpu.product`` as written by GPU feature discovery."""
    interconnect: Interconnect
    fp8_compute: bool
    efficiency: Efficiency
    aliases: tuple[str, ...] = ()

    @property
    def eta_bandwidth(self) -> float:
        return self.efficiency.eta_bandwidth

    @property
    def eta_compute(self) -> float:
        return self.efficiency.eta_compute

    @property
    def layer_overhead_s(self) -> float:
        return self.efficiency.layer_overhead_s

    def tflops(self, precision: str) -> float:
        """Dense tensor TFLOP/s for weights in ``precision`` (W8A8 fp8/int8 run at 2x where supported)."""
        if precision == "fp8" and self.fp8_compute:
            return 2.0 * self.fp16_tflops
        if precision == "int8":
            return 2.0 * self.fp16_tflops
        return self.fp16_tflops


# Calibrated efficiency factors (see module docstring; values from calibration.fit_all on vidur data).
_H100 = Efficiency(eta_bandwidth=0.855, eta_compute=0.586, layer_overhead_s=30.0e-6)
_A100 = Efficiency(eta_bandwidth=0.788, eta_compute=0.654, layer_overhead_s=36.9e-6)
_A40 = Efficiency(eta_bandwidth=0.806, eta_compute=0.642, layer_overhead_s=27.4e-6)

_LAMBDA = "Lambda on-demand via SkyPilot catalog v8"
GPU_TYPES: tuple[GpuType, ...] = (
    GpuType("H100-80GB", 80, 3350, 989, 4.29, _LAMBDA, "NVIDIA-H100-80GB-HBM3", "nvlink", True, _H100,
            aliases=("H100-SXM", "H100")),
    GpuType("H100-PCIe", 80, 2000, 756, 3.29, _LAMBDA, "NVIDIA-H100-PCIe", "pcie", True, _H100),
    GpuType("A100-80GB", 80, 2039, 312, 2.79, _LAMBDA, "NVIDIA-A100-SXM4-80GB", "nvlink", False, _A100,
            aliases=("A100-80GB-SXM", "A100")),
    GpuType("A100-40GB", 40, 1555, 312, 1.99, _LAMBDA, "NVIDIA-A100-SXM4-40GB", "nvlink", False, _A100),
    GpuType("L40S", 48, 864, 362, 1.861, "AWS g6e.xlarge us-east-1 list price", "NVIDIA-L40S", "pcie", True,
            _A40),
    GpuType("A10G", 24, 600, 125, 1.006, "AWS g5.xlarge us-east-1 list price", "NVIDIA-A10G", "pcie", False,
            _A40),
    GpuType("A10", 24, 600, 125, 1.29, _LAMBDA, "NVIDIA-A10", "pcie", False, _A40),
    GpuType("A6000", 48, 768, 155, 1.09, _LAMBDA, "NVIDIA-RTX-A6000", "pcie", False, _A40),
)  # fmt: skip

_BY_NAME = {name.lower(): gpu for gpu in GPU_TYPES for name in (gpu.name, *gpu.aliases)}


def gpu_type(name: str) -> GpuType | None:
    """The GPU type called ``name`` (case-insensitive, aliases accepted) or ``None``."""
    return _BY_NAME.get(name.lower())


def gpu_type_names() -> list[str]:
    """Canonical names of the built-in GPU types."""
    return [gpu.name for gpu in GPU_TYPES]


def allreduce_model(interconnect: Interconnect) -> AllReduceModel:
    """The all-reduce model of an interconnect."""
    return NVLINK_ALLREDUCE if interconnect == "nvlink" else PCIE_ALLREDUCE
