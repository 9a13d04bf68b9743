"""The analytic performance model: hand-checked memory arithmetic, monotonicity, profiles, calibration."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from quartermaster.api.catalog import MeasuredProfile, ProfilePoint
from quartermaster.planner.calibration import fit_all
from quartermaster.planner.gpus import GPU_TYPES, NVLINK_ALLREDUCE, gpu_type
from quartermaster.planner.instance import Instance
from quartermaster.planner.performance import PerfParams, Reason

from .conftest import build, model, pool, qclass


def _row(instance: Instance, name: str) -> int:
    opt = instance.option_by_name(name)
    assert opt is not None, f"{name} not among {[o.name for o in instance.options]}"
    return opt.index


def test_memory_limited_batch_matches_hand_computation() -> None:
    # Llama-3.1-8B bf16 on one A10G (24 GB): weights 8.03e9 * 2 B; KV per token 2*32*8*128*2 B = 131072 B.
    inst = build(
        [model("m")], [pool("a", "A10G", gpus=1, per_node=1)], [qclass("c", 1.0, 1000, 200)], tpot=10.0
    )
    usable = 24e9 * 0.9 - 1e9
    kv = usable - 8.03e9 * 2
    expected = math.floor(kv / (131072 * 1200))
    assert inst.perf.b_mem[_row(inst, "m/bf16/a/tp1pp1"), 0] == expected


def test_weights_that_do_not_fit_are_rejected_with_the_reason() -> None:
    # 8B in bf16 (16 GB) cannot fit on a 24 GB card with 1200-token sequences and 60k-token prompts.
    inst = build(
        [model("m")],
        [pool("a", "A10G", gpus=2, per_node=1)],
        [qclass("small", 1.0, 1000, 200), qclass("huge", 1.0, 100_000, 200)],
        prune=False,
    )
    row = _row(inst, "m/bf16/a/tp1pp1")
    assert inst.perf.reason[row, 0] == Reason.OK
    assert inst.perf.reason[row, 1] == Reason.CONTEXT


def test_decode_is_bandwidth_bound_at_batch_one() -> None:
    inst = build([model("m")], [pool("h", "H100-80GB", gpus=8, per_node=8)], [qclass("c", 1.0, 100, 100)])
    gpu = gpu_type("H100-80GB")
    assert gpu is not None
    row = _row(inst, "m/bf16/h/tp1pp1")
    weights_time = 8.03e9 * 2 / (gpu.bandwidth_gbs * 1e9 * gpu.eta_bandwidth)
    overhead = 32 * gpu.layer_overhead_s
    assert inst.perf.tpot1[row, 0] >= weights_time + overhead
    assert inst.perf.tpot1[row, 0] <= (weights_time + overhead) * 1.05


@settings(max_examples=25, deadline=None)
@given(
    prompt=st.floats(16, 8000),
    output=st.floats(4, 2000),
    tpot=st.floats(0.01, 0.3),
    ttft=st.floats(0.05, 10),
)
def test_feasibility_and_throughput_are_monotone_in_the_slos(
    prompt: float, output: float, tpot: float, ttft: float
) -> None:
    classes = [
        qclass("tight", 1.0, prompt, output, tpot_seconds=tpot, ttft_seconds=ttft),
        qclass("loose", 1.0, prompt, output, tpot_seconds=tpot * 1.5, ttft_seconds=ttft * 1.5),
    ]
    inst = build(
        [model("m"), model("q", "qwen-7b")],
        [pool("l", "L40S"), pool("h", "H100-80GB", gpus=8, per_node=8)],
        classes,
        prune=False,
    )
    feasible = inst.feasible
    assert np.all(feasible[:, 1] | ~feasible[:, 0]), "a looser SLO lost a feasible option"
    assert np.all(inst.mu[:, 1] >= inst.mu[:, 0] - 1e-9)
    assert np.all((inst.mu > 0) == feasible)
    ok = feasible[:, 0]
    assert np.all(inst.perf.tpot[ok, 0] <= tpot * (1 + 1e-9))
    assert np.all(inst.perf.ttft[ok, 0] <= ttft * (1 + 1e-9))
    assert np.all(inst.perf.batch[ok, 0] >= 1)
    assert np.all(inst.perf.batch[ok, 0] <= inst.perf.b_mem[ok, 0])


def test_more_tensor_parallelism_and_lower_precision_help() -> None:
    inst = build(
        [model("m", precisions=["bf16", "fp8"])],
        [pool("h", "H100-80GB", gpus=8, per_node=8)],
        [qclass("c", 1.0, 1000, 200)],
        prune=False,
    )
    tp1, tp2 = _row(inst, "m/bf16/h/tp1pp1"), _row(inst, "m/bf16/h/tp2pp1")
    fp8 = _row(inst, "m/fp8/h/tp1pp1")
    assert inst.perf.b_mem[tp2, 0] > 2 * inst.perf.b_mem[tp1, 0]  # weights paid once
    assert inst.perf.tpot1[tp2, 0] < inst.perf.tpot1[tp1, 0]
    assert inst.perf.ttft[tp2, 0] < inst.perf.ttft[tp1, 0]
    assert inst.perf.b_mem[fp8, 0] > inst.perf.b_mem[tp1, 0]
    assert inst.perf.tpot1[fp8, 0] < inst.perf.tpot1[tp1, 0]
    assert inst.error[fp8, 0] > inst.error[tp1, 0]  # precision costs accuracy


def test_measured_profile_overrides_the_roofline() -> None:
    profile = MeasuredProfile(
        gpu_type="L40S",
        precision="bf16",
        tensor_parallel=1,
        prompt_tokens=1000,
        points=[
            ProfilePoint(batch_size=1, tpot_seconds=0.030, ttft_seconds=0.2),
            ProfilePoint(batch_size=16, tpot_seconds=0.045),
        ],
    )
    classes = [qclass("c", 1.0, 500, 100, tpot_seconds=0.06, ttft_seconds=5.0)]
    plain = build([model("m")], [pool("l")], classes, prune=False)
    measured = build([model("m", profiles=[profile])], [pool("l")], classes, prune=False)
    row = _row(measured, "m/bf16/l/tp1pp1")
    prefill = 0.2 * 500 / 1000
    # TPOT(1) = measured 30 ms + the serialised prefill of one sequence (prefill / output tokens).
    assert math.isclose(measured.perf.tpot1[row, 0], 0.030 + prefill / 100, rel_tol=1e-9)
    assert math.isclose(measured.perf.ttft[row, 0], 2 * prefill, rel_tol=1e-9)
    assert measured.perf.tpot[row, 0] <= 0.06
    assert measured.perf.tpot1[row, 0] != plain.perf.tpot1[_row(plain, "m/bf16/l/tp1pp1"), 0]


def test_calibration_reproduces_the_embedded_constants(data_dir: Path) -> None:
    report = fit_all(data_dir)
    families = {"h100": "H100-80GB", "a100": "A100-80GB", "a40": "L40S"}
    for profiled, name in families.items():
        gpu = gpu_type(name)
        assert gpu is not None
        eta_bw, eta_fl, overhead = report.gpu_average(profiled)
        assert math.isclose(gpu.eta_bandwidth, eta_bw, rel_tol=0.01)
        assert math.isclose(gpu.eta_compute, eta_fl, rel_tol=0.01)
        assert math.isclose(gpu.layer_overhead_s, overhead, rel_tol=0.02)
    for fit in report.compute:
        assert fit.mape < 0.2, f"{fit.gpu} {fit.model}: roofline MAPE {fit.mape:.1%}"
    for workers in (2, 4, 8):
        latency, bandwidth = report.allreduce_average(workers)
        assert math.isclose(NVLINK_ALLREDUCE.latency_s[workers], latency, rel_tol=0.02)
        assert math.isclose(NVLINK_ALLREDUCE.bandwidth_bytes_s[workers], bandwidth, rel_tol=0.02)


def test_gpu_table_matches_the_shared_csv(data_dir: Path) -> None:
    rows = (data_dir / "gpus" / "gpu_planner_table.csv").read_text().splitlines()[1:]
    table = {r.split(",")[0]: r.split(",") for r in rows}
    for gpu in GPU_TYPES:
        key = next(n for n in (gpu.name, *gpu.aliases) if n in table)
        row = table[key]
        assert (gpu.memory_gb, gpu.bandwidth_gbs, gpu.fp16_tflops, gpu.price_per_hour) == (
            float(row[1]), float(row[2]), float(row[3]), float(row[4]),
        )  # fmt: skip


def test_perf_params_are_honoured() -> None:
    classes = [qclass("c", 1.0, 1000, 200)]
    base = build([model("m")], [pool("a", "A10G", gpus=1, per_node=1)], classes)
    row = _row(base, "m/bf16/a/tp1pp1")
    assert base.params == PerfParams()
    assert base.perf.batch[row, 0] <= PerfParams().max_batch


def test_long_context_family_has_longer_prompts_tighter_ttft_and_larger_models(data_dir: Path) -> None:
    import pytest

    from quartermaster.planner.errors import InvalidSpecError
    from quartermaster.planner.synthetic import generate_specs

    default_catalog, default_pool = generate_specs(8, 6, 4, seed=7, data_dir=data_dir)
    catalog, pool = generate_specs(8, 6, 4, seed=7, data_dir=data_dir, family="long-context")
    assert generate_specs(8, 6, 4, seed=7, data_dir=data_dir, family="default") == (
        default_catalog,
        default_pool,
    )
    for short, long in zip(default_pool.classes, pool.classes, strict=True):
        assert long.prompt_tokens >= short.prompt_tokens
        assert long.ttft_seconds <= 2.0
        assert long.rate == short.rate  # same random draws, mapped differently
    assert [m.params_b for m in catalog.models] == sorted((m.params_b for m in catalog.models), reverse=True)
    assert catalog.models[0].params_b > max(m.params_b for m in default_catalog.models)
    with pytest.raises(InvalidSpecError) as info:
        generate_specs(2, 2, 2, seed=0, data_dir=data_dir, family="huge")
    assert info.value.field == "--family"
