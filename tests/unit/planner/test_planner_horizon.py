"""Rolling re-planning: switching cost, hysteresis, forced changes for SLOs, static baseline, traces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from quartermaster.planner.errors import InvalidSpecError
from quartermaster.planner.horizon import HorizonSettings, changes, load_shares, replay, static
from quartermaster.planner.instance import Instance
from quartermaster.planner.solve import solve
from quartermaster.planner.traces import class_rates

from .conftest import build, model, pool, qclass


def _instance() -> Instance:
    return build(
        [model("m"), model("q", "qwen-7b", error=0.1)],
        [pool("l", "L40S", gpus=16, per_node=4), pool("a", "A10G", gpus=8, per_node=1)],
        [qclass("chat", 10.0, 1000, 200), qclass("code", 5.0, 2000, 30)],
        tpot=0.1,
    )


def test_constant_load_never_changes_the_plan() -> None:
    inst = _instance()
    rates = np.tile(inst.rates, (12, 1))
    settings = HorizonSettings(solver="agh", interval_s=600)
    result = replay(inst, rates, settings)
    assert result.windows[0].changes > 0
    assert all(w.changes == 0 for w in result.windows[1:])
    assert result.violation_share == 0.0
    fixed = static(inst, rates, settings)
    assert result.total_cost == pytest.approx(fixed.total_cost)


def test_rising_load_forces_a_change_and_oracle_forecasts_avoid_overload() -> None:
    inst = _instance()
    rates = np.vstack([np.tile(inst.rates, (3, 1)), np.tile(inst.rates * 3, (3, 1))])
    settings = HorizonSettings(
        solver="agh", forecast="oracle", min_saving_fraction=1.0, max_changes_per_hour=0
    )
    result = replay(inst, rates, settings)
    assert result.windows[3].changes > 0  # SLOs force the change despite the hysteresis
    assert result.windows[3].gpus > result.windows[2].gpus
    assert result.violation_share == 0.0
    lagging = replay(inst, rates, HorizonSettings(solver="agh", forecast="last"))
    assert lagging.windows[3].violation_share > 0.0  # the naive forecast sees the jump one window late


def test_hysteresis_blocks_small_savings_and_switching_cost_damps_changes() -> None:
    inst = _instance()
    wave = 1.0 + 0.5 * np.sin(np.linspace(0, 6 * np.pi, 36))
    rates = inst.rates[None, :] * wave[:, None]
    eager = replay(
        inst,
        rates,
        HorizonSettings(
            solver="agh",
            forecast="oracle",
            switching_cost=0.0,
            min_saving_fraction=0.0,
            max_changes_per_hour=1e9,
        ),
    )
    frozen = replay(inst, rates, HorizonSettings(solver="agh", forecast="oracle", min_saving_fraction=1.0))
    assert eager.changes_per_hour > frozen.changes_per_hour
    assert eager.total_cost <= frozen.total_cost + 1e-9
    assert frozen.violation_share == 0.0
    fixed = static(inst, rates, HorizonSettings(solver="agh"))
    assert eager.total_cost < fixed.total_cost


def test_changes_and_load_shares() -> None:
    inst = _instance()
    plan = solve(inst, solver="agh")
    assert changes(None, plan) == sum(plan.replicas().values())
    assert changes(plan, plan) == 0
    assert load_shares(inst, plan, inst.rates) == (0.0, 0.0)
    over, hot = load_shares(inst, plan, inst.rates * 10)
    assert 0.0 < over <= hot <= 1.0


def test_real_traces_scale_to_the_class_rates(data_dir: Path) -> None:
    base = np.array([10.0, 2.0, 1.0])
    window, rates = class_rates(base, "servegen:m-large,m-mid", data_dir)
    assert window == 600.0
    assert rates.shape == (2016, 3)  # 14 days of 10-minute windows
    assert np.allclose(rates.mean(axis=0), base)
    assert np.allclose(rates[:, 0] / base[0], rates[:, 2] / base[2])  # classes 0 and 2 share m-large
    window, azure = class_rates(base, "azure:code,conv", data_dir, window_s=300)
    assert window == 300.0
    assert 10 <= len(azure) <= 13  # ~1 hour
    with pytest.raises(InvalidSpecError, match="no such model group"):
        class_rates(base, "servegen:m-huge", data_dir)
    with pytest.raises(InvalidSpecError, match="use servegen"):
        class_rates(base, "poisson:5", data_dir)
