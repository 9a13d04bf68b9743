"""``quartermaster plan`` (default command), ``plan generate`` and ``plan replay`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from quartermaster.cli import app

from .conftest import EXAMPLES

runner = CliRunner()
CATALOG = str(EXAMPLES / "catalog.yaml")
POOL = str(EXAMPLES / "pool.yaml")


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.stdout


def _bad(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return result.output


def test_plan_table_json_and_yaml() -> None:
    table = _ok(["plan", "-f", CATALOG, "-f", POOL, "--solver", "agh"])
    assert "Deployments" in table
    assert "Query classes" in table
    data = json.loads(_ok(["plan", "-f", CATALOG, "-f", POOL, "--solver", "milp", "-o", "json"]))
    assert data["solver"] == "milp"
    assert data["status"] == "optimal"
    assert data["deployments"]
    assert {c["name"] for c in data["classes"]} == {"chat", "code-completion", "math", "summarization"}
    doc = yaml.safe_load(
        _ok(["plan", "-f", CATALOG, "-f", POOL, "--solver", "gh", "--seed", "2", "-o", "yaml"])
    )
    assert doc["solver"] == "gh"
    assert doc["seed"] == 2


def test_plan_explain_lists_verdicts() -> None:
    out = _ok(["plan", "-f", CATALOG, "-f", POOL, "--explain", "math"])
    assert "feasible (mu" in out
    assert "dominated" in out


def test_generate_then_plan(tmp_path: Path) -> None:
    target = tmp_path / "synthetic.yaml"
    runner.invoke(
        app,
        [
            "plan",
            "generate",
            "--classes",
            "4",
            "--models",
            "3",
            "--tiers",
            "3",
            "--seed",
            "5",
            "-o",
            str(target),
        ],
    )
    docs = list(yaml.safe_load_all(target.read_text()))
    assert [d["kind"] for d in docs] == ["ModelCatalog", "InferencePool"]
    assert len(docs[0]["spec"]["models"]) == 3
    assert len(docs[1]["spec"]["nodePools"]) == 3
    assert len(docs[1]["spec"]["classes"]) == 4
    data = json.loads(_ok(["plan", "-f", str(target), "--solver", "agh", "-o", "json"]))
    assert data["costPerHour"] > 0
    again = runner.invoke(
        app, ["plan", "generate", "--classes", "4", "--models", "3", "--tiers", "3", "--seed", "5"]
    )
    assert yaml.safe_load_all(again.stdout) is not None
    assert list(yaml.safe_load_all(again.stdout)) == docs


def test_replay_quick(tmp_path: Path) -> None:
    png = tmp_path / "replay.png"
    out = _ok(
        [
            "plan",
            "replay",
            "-f",
            CATALOG,
            "-f",
            POOL,
            "--trace",
            "servegen:m-mid",
            "--days",
            "0.1",
            "--plot",
            str(png),
            "-o",
            "json",
        ]
    )
    data = json.loads(out)
    assert data["rolling"]["hours"] == pytest.approx(2.5, abs=0.2)
    assert data["static"]["totalCost"] > 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    table = _ok(
        [
            "plan",
            "replay",
            "-f",
            CATALOG,
            "-f",
            POOL,
            "--trace",
            "azure:code,conv",
            "--days",
            "0.02",
            "--interval",
            "300",
        ]
    )
    assert "rolling re-planning saves" in table


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["plan"], "no manifests given"),
        (["plan", "-f", "missing.yaml"], "no such file"),
        (["plan", "-f", CATALOG, "-f", POOL, "--solver", "cplex"], "--solver='cplex' is not valid"),
        (["plan", "-f", CATALOG, "-f", POOL, "-o", "xml"], "--output='xml' is not valid"),
        (["plan", "-f", CATALOG, "-f", POOL, "--time-limit", "0"], "--time-limit=0.0 must be > 0"),
        (["plan", "-f", POOL], "catalogRef='default'"),
        (["plan", "-f", CATALOG, "-f", POOL, "--explain", "nope"], "not a class"),
        (["plan", "generate", "--classes", "0", "--models", "1", "--tiers", "1"], "--classes=0 must be >= 1"),
        (["plan", "replay", "-f", CATALOG, "-f", POOL, "--trace", "servegen:m-huge"], "no such model group"),
        (["plan", "replay", "-f", CATALOG, "-f", POOL, "--days", "-1"], "--days=-1.0 must be > 0"),
    ],
)
def test_bad_input_is_one_message_and_exit_code_2(args: list[str], message: str) -> None:
    assert message in _bad(args)


def test_bad_manifest_values_and_infeasible_plans(tmp_path: Path) -> None:
    doc = yaml.safe_load(Path(POOL).read_text())
    doc["spec"]["nodePools"][0]["gpuType"] = "TPU-v5"
    bad = tmp_path / "pool.yaml"
    bad.write_text(yaml.safe_dump(doc))
    assert "spec.nodePools[0].gpuType='TPU-v5' is not a known GPU type" in _bad(
        ["plan", "-f", CATALOG, "-f", str(bad)]
    )
    doc = yaml.safe_load(Path(POOL).read_text())
    doc["spec"]["budgetPerHour"] = 0.5
    bad.write_text(yaml.safe_dump(doc))
    assert "budgetPerHour=0.5 $/h is below the cheapest feasible plan" in _bad(
        ["plan", "-f", CATALOG, "-f", str(bad)]
    )
    doc = yaml.safe_load(Path(POOL).read_text())
    doc["spec"]["classes"][0]["ttftSeconds"] = 0.001
    bad.write_text(yaml.safe_dump(doc))
    assert "class 'chat': no option meets TTFT 0.001 s; best is" in _bad(
        ["plan", "-f", CATALOG, "-f", str(bad)]
    )
    doc["spec"]["classes"][0]["rate"] = -3
    bad.write_text(yaml.safe_dump(doc))
    assert "spec.classes[0].rate" in _bad(["plan", "-f", CATALOG, "-f", str(bad)])


def test_generate_long_context_family_and_bad_family() -> None:
    args = ["plan", "generate", "--classes", "3", "--models", "3", "--tiers", "2", "--seed", "1"]
    docs = list(yaml.safe_load_all(_ok([*args, "--family", "long-context"])))
    assert docs[0]["spec"]["models"][0]["name"] == "qwen2-5-72b"  # largest architecture first
    assert all(c["ttftSeconds"] <= 2.0 for c in docs[1]["spec"]["classes"])
    out = _bad([*args, "--family", "huge"])
    assert "--family" in out
