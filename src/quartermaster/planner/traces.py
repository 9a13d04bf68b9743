"""Real arrival-rate traces for rolling re-planning (``quartermaster plan replay``, benchmarks).

- ServeGen (alibaba/ServeGen, Apache-2.0): ``traces/servegen/servegen_aggregate_rate_per_model.csv``, the
  total request rate of each model group (``m-large``, ``m-mid``, ``m-small``: 14 days; ``mm-image``,
  ``deepseek-r1``: 1 day) per 600-second window.
- Azure LLM inference traces 2023 (CC-BY-4.0): ``traces/AzureLLMInferenceTrace_{code,conv}_2023.csv``,
  ~1 hour of request timestamps; rates are counted per window.

A trace spec is ``servegen:m-large,m-mid`` or ``azure:code,conv``; classes take the curves round-robin and
each class's curve is scaled so that its mean equals the class's declared rate (the trace gives the shape).
"""

from __future__ import annotations

import csv
import datetime as dt
import pathlib

import numpy as np
import numpy.typing as npt

from quartermaster.planner.errors import InvalidSpecError

FloatArray = npt.NDArray[np.float64]
SERVEGEN = "traces/servegen/servegen_aggregate_rate_per_model.csv"
AZURE = {
    "code": "traces/AzureLLMInferenceTrace_code_2023.csv",
    "conv": "traces/AzureLLMInferenceTrace_conv_2023.csv",
}


def _need(path: pathlib.Path) -> pathlib.Path:
    if not path.is_file():
        raise InvalidSpecError(
            f"{path}: trace file not found; pass --data-dir pointing to the shared data directory "
            "(../shared/data)",
            field="dataDir",
        )
    return path


def servegen_curve(data_dir: pathlib.Path, group: str) -> tuple[float, FloatArray]:
    """``(window seconds, total rate per window)`` of one ServeGen model group."""
    path = _need(data_dir / SERVEGEN)
    starts, rates = [], []
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row["model_group"] == group:
                starts.append(float(row["window_start_s"]))
                rates.append(float(row["total_rate_rps"]))
    if not rates:
        raise InvalidSpecError(
            f"trace servegen:{group}: no such model group; use m-large, m-mid, m-small, mm-image or "
            "deepseek-r1",
            field="trace",
        )
    order = np.argsort(starts)
    window = float(np.median(np.diff(np.asarray(starts)[order]))) if len(starts) > 1 else 600.0
    return window, np.asarray(rates, dtype=np.float64)[order]


def azure_curve(data_dir: pathlib.Path, kind: str, window_s: float) -> tuple[float, FloatArray]:
    """``(window seconds, requests per second per window)`` of one Azure 2023 trace."""
    if kind not in AZURE:
        raise InvalidSpecError(f"trace azure:{kind}: unknown; use azure:code or azure:conv", field="trace")
    path = _need(data_dir / AZURE[kind])
    with path.open(newline="") as fh:
        stamps = [dt.datetime.fromisoformat(row["TIMESTAMP"][:26]).timestamp() for row in csv.DictReader(fh)]
    t = np.asarray(stamps) - min(stamps)
    bins = np.arange(0.0, t.max() + window_s, window_s)
    counts, _ = np.histogram(t, bins=bins)
    full = counts[: max(1, int(t.max() // window_s))]
    return window_s, full.astype(np.float64) / window_s


def class_rates(
    base_rates: FloatArray, spec: str, data_dir: pathlib.Path, *, window_s: float | None = None
) -> tuple[float, FloatArray]:
    """``(window seconds, rates[T, I])``: class ``i`` follows curve ``i mod len``, scaled to its mean rate."""
    source, _, names = spec.partition(":")
    groups = [g for g in names.split(",") if g]
    if source not in ("servegen", "azure") or not groups:
        raise InvalidSpecError(
            f"trace {spec!r}: use servegen:<group>[,<group>...] or azure:code[,conv]", field="trace"
        )
    curves = []
    window = 600.0
    for group in groups:
        if source == "servegen":
            window, curve = servegen_curve(data_dir, group)
        else:
            window, curve = azure_curve(data_dir, group, window_s or 300.0)
        curves.append(curve)
    length = min(len(c) for c in curves)
    rates = np.empty((length, len(base_rates)))
    for i, base in enumerate(base_rates):
        curve = curves[i % len(curves)][:length]
        mean = float(curve.mean())
        rates[:, i] = base * curve / mean if mean > 0 else 0.0
    return window, rates
