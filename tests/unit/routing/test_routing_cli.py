"""The route/budget CLIs end to end on small files, and the router-config builder."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from quartermaster.api.routerconfig import (
    ClusteringParams,
    PlanRef,
    dump_router_config,
    join_configmap_chunks,
    load_router_config,
)
from quartermaster.cli import app
from quartermaster.routing.config import DeploymentTarget, build_router_config
from quartermaster.routing.errors import RoutingError
from quartermaster.routing.stage1 import RoutingTable, Stage1Instance, solve
from quartermaster.routing.utility import UtilityCurve

runner = CliRunner()
CENTERS = np.eye(3, 8)


def _eval_file(tmp_path: Path, bad_label: bool = False) -> Path:
    rng = np.random.default_rng(0)
    errors = {0: (0.13, 0.06), 1: (0.08, 0.03), 2: (0.18, 0.08)}
    rows: dict[str, list[object]] = {k: [] for k in ("query_id", "model", "correct", "tpot", "embedding")}
    for q in range(300):
        c = q % 3
        emb = (CENTERS[c] + 0.05 * rng.normal(size=8)).tolist()
        for j, model in enumerate(("small", "large")):
            rows["query_id"].append(q)
            rows["model"].append(model)
            rows["correct"].append(int(rng.random() >= errors[c][j]))
            rows["tpot"].append((0.0092, 0.0247)[j])
            rows["embedding"].append(emb)
    if bad_label:
        rows["correct"][5] = 2
    path = tmp_path / "eval.parquet"
    pq.write_table(pa.table(rows), path)
    return path


def test_route_fit_with_representatives_then_budget_then_config(tmp_path: Path) -> None:
    reps = tmp_path / "reps.parquet"
    pq.write_table(pa.table({"cluster": [0, 1, 2], "embedding": CENTERS.tolist()}), reps)
    out = tmp_path / "routing.json"
    res = runner.invoke(
        app,
        [
            "route",
            "fit",
            str(_eval_file(tmp_path)),
            "--budget",
            "0.02",
            "-o",
            str(out),
            "--representatives",
            str(reps),
        ],
    )
    assert res.exit_code == 0, res.output
    routing = RoutingTable.from_json(out.read_text())
    assert routing.cost <= 0.02
    assert {c.cluster for c in routing.clusters} == {"0", "1", "2"}
    assert sum(c.size for c in routing.clusters) == 300

    rows: dict[str, list[object]] = {k: [] for k in ("cluster", "model", "budget", "accuracy", "weight")}
    for cid, curve in (
        ("0", UtilityCurve(0.9, 1 / 100, 50)),
        ("1", UtilityCurve(0.9, 1 / 100, 3000)),
        ("2", None),
    ):
        for b in (100, 200, 400, 800, 1600, 3200):
            rows["cluster"].append(cid)
            rows["model"].append("small")
            rows["budget"].append(b)
            rows["accuracy"].append(0.5 if curve is None else float(curve.value(b)))
            rows["weight"].append(100)
    meas = tmp_path / "curves.csv"
    pacsv.write_csv(pa.table(rows), meas)
    util = tmp_path / "utilities.json"
    res = runner.invoke(app, ["budget", "fit", str(meas), "-o", str(util)])
    assert res.exit_code == 0, res.output
    alloc = tmp_path / "allocation.json"
    res = runner.invoke(app, ["budget", "allocate", str(util), "--tokens-per-query", "300", "-o", str(alloc)])
    assert res.exit_code == 0, res.output
    allocation = json.loads(alloc.read_text())
    by_name = {i["name"]: i for i in allocation["items"]}
    assert by_name["1"]["abandoned"]  # emergence at 3000 tokens: not worth it at 300 per query
    assert not by_name["0"]["abandoned"]
    assert allocation["tokens_used"] <= 300 * 300 + 1e-6

    targets = tmp_path / "targets.yaml"
    targets.write_text(
        yaml.safe_dump(
            [
                {"model": "small", "deployment": "small-a", "service": "small", "replicas": 3},
                {"model": "large", "deployment": "large-a", "service": "large", "replicas": 1},
            ]
        )
    )
    cfg_path = tmp_path / "router-config.json"
    res = runner.invoke(
        app,
        [
            "route",
            "config",
            str(out),
            "--targets",
            str(targets),
            "-o",
            str(cfg_path),
            "--plan-name",
            "pool",
            "--embedding-model",
            "all-MiniLM-L6-v2",
            "--alpha",
            "0.7",
            "--allocation",
            str(alloc),
            "--representatives",
            str(reps),
        ],
    )
    assert res.exit_code == 0, res.output
    cfg = load_router_config(cfg_path.read_text())
    c0 = cfg.cluster("0")
    assert c0.max_tokens == math.ceil(by_name["0"]["tokens"])
    assert cfg.cluster("1").abandonment.abandoned
    assert cfg.clustering.dimension == 8
    assert cfg.representatives is not None
    np.testing.assert_allclose(cfg.representatives.decode()[c0.representatives.offset], CENTERS[0], atol=1e-3)


def test_cli_bad_input_exits_2_with_one_message(tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        [
            "route",
            "fit",
            str(_eval_file(tmp_path, bad_label=True)),
            "--budget",
            "1",
            "-o",
            str(tmp_path / "r.json"),
            "--k",
            "3",
        ],
    )
    assert res.exit_code == 2
    assert "not 0/1" in res.output
    assert "Traceback" not in res.output
    res = runner.invoke(app, ["route", "fit", str(tmp_path / "none.csv"), "--budget", "1", "-o", "x.json"])
    assert res.exit_code == 2
    assert "does not exist" in res.output
    res = runner.invoke(
        app, ["route", "fit", str(_eval_file(tmp_path)), "--budget", "1", "-o", "x.json", "--cost", "euro"]
    )
    assert res.exit_code == 2
    assert "--cost" in res.output
    res = runner.invoke(
        app,
        [
            "budget",
            "allocate",
            str(tmp_path / "u.json"),
            "--tokens-per-query",
            "10",
            "-o",
            "a.json",
            "--policy",
            "shrug",
        ],
    )
    assert res.exit_code == 2
    assert "--policy" in res.output


def _routing() -> RoutingTable:
    inst = Stage1Instance(
        ("a", "b"),
        ("small", "mid", "large"),
        np.array([[0.3, 0.2, 0.1], [0.05, 0.04, 0.03]]),
        np.tile([1.0, 2.0, 5.0], (2, 1)),
        np.array([10.0, 30.0]),
    )
    return solve(inst, 1.5)


def test_builder_weights_fallbacks_and_chunked_representatives(caplog: pytest.LogCaptureFixture) -> None:
    routing = _routing()
    targets = [
        DeploymentTarget("small", "small-1", "small", replicas=1),
        DeploymentTarget("small", "small-2", "small2", replicas=3),
        DeploymentTarget("large", "large-1", "large", replicas=2),
    ]
    reps = np.random.default_rng(0).normal(size=(400, 64))
    rep_cluster = ["a" if i % 2 else "b" for i in range(400)]
    with caplog.at_level(logging.WARNING):
        built = build_router_config(
            routing,
            targets,
            plan=PlanRef(name="p", generation=2),
            clustering=ClusteringParams(alpha=0.5, embedding_model="e", dimension=64),
            representatives=reps,
            rep_cluster=rep_cluster,
            inline_limit=10_000,
        )
    cfg = load_router_config(dump_router_config(built.config))
    for c in cfg.clusters:
        assert "mid" not in c.escalation.ladder  # not deployed
        small = {r.deployment: r.weight for r in c.routes if r.model == "small"}
        if small:
            assert small["small-2"] == pytest.approx(3 * small["small-1"])
    assert cfg.representatives is not None
    assert cfg.representatives.storage == "configMaps"
    names = cfg.representatives.config_maps or []
    assert len(names) == len(built.configmaps) > 1
    raw = join_configmap_chunks([built.configmaps[n][cfg.representatives.data_key] for n in names])
    matrix = cfg.representatives.decode(raw)
    ra = cfg.cluster("a").representatives
    assert ra is not None
    expected = reps[1] / np.linalg.norm(reps[1])
    np.testing.assert_allclose(matrix[ra.offset], expected, atol=2e-3)
    assert cfg.targets_for("large")
    with pytest.raises(RoutingError, match="no deployment"):
        build_router_config(
            routing,
            [DeploymentTarget("other", "o", "o")],
            plan=PlanRef(name="p", generation=0),
            clustering=ClusteringParams(alpha=0.5, embedding_model="e", dimension=4),
        )


def test_route_calibrate_trains_and_saves_a_loadable_estimator(tmp_path: Path) -> None:
    from quartermaster.routing.quality import load_estimator

    rng = np.random.default_rng(5)
    n = 300
    ok = rng.random(n) < 0.6
    table = pa.table(
        {
            "question": [f"question {i % 9}" for i in range(n)],
            "answer": ["The answer is 3." if o else "I think maybe 4?" for o in ok],
            "tokens": rng.integers(5, 50, n),
            "correct": ok.astype(int),
            "strong_correct": (rng.random(n) < 0.9).astype(int),
        }
    )
    data = tmp_path / "answers.csv"
    pacsv.write_csv(table, data)
    out = tmp_path / "qe.pkl"
    res = runner.invoke(app, ["route", "calibrate", str(data), "-o", str(out), "--target-relative", "0.95"])
    assert res.exit_code == 0, res.output
    est = load_estimator(out)
    assert est.score("question 1", "The answer is 3.", 10) > est.score("question 1", "I think maybe 4?", 10)
    res = runner.invoke(app, ["route", "calibrate", str(data), "-o", str(out), "--validation-fraction", "2"])
    assert res.exit_code == 2
    assert "--validation-fraction" in res.output
