"""The ``quartermaster cluster`` CLI: default command dispatch, outputs, verify, merge, bad input."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from quartermaster.cli import app

Blobs = Callable[..., npt.NDArray[np.float32]]
runner = CliRunner()


def _write(path: Path, X: npt.NDArray[np.floating], **columns: list[object]) -> Path:
    emb = pa.array([row.tolist() if row is not None else None for row in X], pa.list_(pa.float32()))
    pq.write_table(pa.table({"embedding": emb, **{k: pa.array(v) for k, v in columns.items()}}), path)
    return path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory, blobs: Blobs) -> Path:
    rng = np.random.default_rng(0)
    n = 1500
    X = blobs(n, 16, k=10, spread=0.6, seed=11)
    tmp = tmp_path_factory.mktemp("clidata")
    return _write(
        tmp / "queries.parquet",
        X,
        tenant=[f"t{v}" for v in rng.integers(0, 4, n)],
        lang=[["en", "de"][v] for v in rng.integers(0, 2, n)],
        prompt_tokens=rng.integers(10, 500, n).tolist(),
        output_tokens=rng.integers(5, 200, n).tolist(),
        text=[f"query {i}" for i in range(n)],
    )


def _invoke(*args: str) -> tuple[int, str]:
    """Exit code and combined stdout+stderr (stdout alone when --json asks for a machine-readable result)."""
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout if "--json" in args and result.exit_code != 2 else result.output


def test_default_command_writes_documented_outputs(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, output = _invoke(
        "cluster", str(dataset), "--alpha", "0.7", "--attributes", "tenant", "--out", str(out), "-q"
    )
    assert code == 0, output
    assert "clusters kept (LLM calls)" in output
    assign = pq.read_table(out / "assignments.parquet")
    reps = pq.read_table(out / "representatives.parquet")
    summary = json.loads((out / "summary.json").read_text())
    assert assign.column_names == ["row", "cluster", "representative", "similarity", "trimmed"]
    assert assign.column("row").to_pylist() == list(range(1500))
    expected_columns = ["cluster", "representative", "size", "share", "trimmed", "tenant", "text"]
    expected_columns += ["prompt_tokens_mean", "prompt_tokens_p90", "output_tokens_mean", "first_timestamp"]
    for col in expected_columns:
        assert col in reps.column_names
    assert sum(reps.column("size").to_pylist()) == 1500
    assert sum(reps.column("share").to_pylist()) == pytest.approx(1.0)
    assert summary["n"] == 1500
    assert summary["rows_below_alpha"] == 0
    assert summary["min_similarity"] >= 0.7
    assert summary["clusters"] == reps.num_rows
    assert summary["reduction_factor"] == pytest.approx(1500 / summary["clusters_kept"])
    # the representative's text is carried, mean tokens are the members' mean
    tbl = pq.read_table(dataset)
    first = reps.slice(0, 1).to_pylist()[0]
    members = [
        r
        for r, c in zip(assign.column("row").to_pylist(), assign.column("cluster").to_pylist(), strict=True)
        if c == 0
    ]
    assert first["text"] == tbl.column("text")[first["representative"]].as_py()
    expected = np.mean([tbl.column("prompt_tokens")[m].as_py() for m in members])
    assert first["prompt_tokens_mean"] == pytest.approx(expected)

    code, output = _invoke("cluster", "verify", str(dataset), str(out))
    assert code == 0, output
    assert "guarantee: OK" in output


def test_explicit_run_subcommand_and_help(dataset: Path, tmp_path: Path) -> None:
    code, output = _invoke(
        "cluster", "run", str(dataset), "--alpha", "0.8", "--out", str(tmp_path / "o"), "-q"
    )
    assert code == 0, output
    code, output = _invoke("cluster", "--help")
    assert code == 0
    assert "verify" in output
    assert "merge" in output


def test_verify_detects_a_tampered_output(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert (
        _invoke(
            "cluster", str(dataset), "--alpha", "0.75", "--attributes", "tenant", "--out", str(out), "-q"
        )[0]
        == 0
    )
    assign = pq.read_table(out / "assignments.parquet")
    reps = assign.column("representative").to_numpy().copy()
    tenants = pq.read_table(dataset).column("tenant").to_pylist()
    # move one non-representative row to a representative of another tenant
    row = next(i for i in range(1500) if reps[i] != i)
    other = next(r for r in np.unique(reps) if tenants[r] != tenants[row])
    reps[row] = other
    pq.write_table(assign.set_column(2, "representative", pa.array(reps)), out / "assignments.parquet")
    code, output = _invoke("cluster", "verify", str(dataset), str(out), "--json")
    assert code == 1
    report = json.loads(output)
    assert report["ok"] is False
    assert report["attribute_mismatches"] >= 1
    assert any(v["row"] == row for v in report["violations"])
    # a stricter alpha than the run's is reported as rows below alpha
    fresh = tmp_path / "fresh"
    assert _invoke("cluster", str(dataset), "--alpha", "0.6", "--out", str(fresh), "-q")[0] == 0
    code, output = _invoke("cluster", "verify", str(dataset), str(fresh), "--alpha", "0.95", "--json")
    assert code == 1
    assert json.loads(output)["rows_below_alpha"] > 0


def test_partition_shards_merge_to_the_unsharded_result(dataset: Path, tmp_path: Path) -> None:
    common = ["--alpha", "0.7", "--attributes", "tenant,lang", "--trim-coverage", "0.8", "-q"]
    assert _invoke("cluster", str(dataset), "--out", str(tmp_path / "full"), *common)[0] == 0
    shards = []
    for i in range(3):
        d = tmp_path / f"shard-{i}"
        code, output = _invoke("cluster", str(dataset), "--shard", f"{i}/3", "--out", str(d), *common)
        assert code == 0, output
        shards.append(str(d))
    code, output = _invoke("cluster", "merge", *shards, "--out", str(tmp_path / "merged"))
    assert code == 0, output
    for name in ("assignments.parquet", "representatives.parquet"):
        full = pq.read_table(tmp_path / "full" / name)
        merged = pq.read_table(tmp_path / "merged" / name)
        assert merged.equals(full), name
    full_s = json.loads((tmp_path / "full" / "summary.json").read_text())
    merged_s = json.loads((tmp_path / "merged" / "summary.json").read_text())
    for key in (
        "n",
        "clusters",
        "clusters_kept",
        "coverage",
        "min_similarity",
        "size_histogram",
        "partitions",
    ):
        assert merged_s[key] == full_s[key], key
    assert _invoke("cluster", "verify", str(dataset), str(tmp_path / "merged"))[0] == 0
    # each shard verifies on its own too
    assert _invoke("cluster", "verify", str(dataset), shards[1])[0] == 0


def test_row_shards_merge_keeps_the_guarantee(dataset: Path, tmp_path: Path) -> None:
    shards = []
    for i in range(2):
        d = tmp_path / f"s{i}"
        assert (
            _invoke("cluster", str(dataset), "--alpha", "0.7", "--shard", f"{i}/2", "--out", str(d), "-q")[0]
            == 0
        )
        shards.append(str(d))
    code, output = _invoke("cluster", "merge", *shards, "--out", str(tmp_path / "m"), "--json")
    assert code == 0, output
    assert json.loads(output)["n"] == 1500
    assert _invoke("cluster", "verify", str(dataset), str(tmp_path / "m"))[0] == 0


def test_merge_rejects_incomplete_or_mixed_shards(dataset: Path, tmp_path: Path) -> None:
    for i, alpha in ((0, "0.7"), (1, "0.8")):
        _invoke(
            "cluster",
            str(dataset),
            "--alpha",
            alpha,
            "--shard",
            f"{i}/3",
            "--out",
            str(tmp_path / f"s{i}"),
            "-q",
        )
    code, output = _invoke(
        "cluster", "merge", str(tmp_path / "s0"), str(tmp_path / "s1"), "--out", str(tmp_path / "m")
    )
    assert code == 2
    assert "alpha" in output
    assert not (tmp_path / "m").exists()
    code, output = _invoke("cluster", "merge", str(tmp_path / "s0"), "--out", str(tmp_path / "m"))
    assert code == 2
    assert "missing [1, 2]" in output


def test_npy_input(tmp_path: Path, blobs: Blobs) -> None:
    X = blobs(300, 8, seed=3).astype(np.float64)
    np.save(tmp_path / "x.npy", X)
    code, output = _invoke(
        "cluster", str(tmp_path / "x.npy"), "--alpha", "0.8", "--out", str(tmp_path / "o"), "--json"
    )
    assert code == 0, output
    assert json.loads(output)["n"] == 300
    assert _invoke("cluster", "verify", str(tmp_path / "x.npy"), str(tmp_path / "o"))[0] == 0


def _bad_inputs(tmp: Path) -> dict[str, tuple[Path, list[str], str]]:
    good = np.ones((4, 3), dtype=np.float32) + np.eye(4, 3, dtype=np.float32)
    nan = good.copy()
    nan[1, 0] = np.nan
    zero = good.copy()
    zero[2] = 0
    mixed = pa.table(
        {"embedding": pa.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0, 1.0]], pa.list_(pa.float32()))}
    )
    pq.write_table(mixed, tmp / "mixed.parquet")
    pq.write_table(pa.table({"embedding": pa.array([], pa.list_(pa.float32()))}), tmp / "empty.parquet")
    return {
        "nan": (_write(tmp / "nan.parquet", nan), [], "1 of 4 rows cannot be clustered (1 non-finite"),
        "zero": (_write(tmp / "zero.parquet", zero), [], "1 zero-norm"),
        "mixed": (
            tmp / "mixed.parquet",
            [],
            "mixes dimensions (2 rows of dimension 2, 1 rows of dimension 3)",
        ),
        "empty": (tmp / "empty.parquet", [], "0 rows"),
        "attr": (
            _write(tmp / "g.parquet", good),
            ["--attributes", "tenant"],
            "column(s) ['tenant'] not found",
        ),
        "emb": (
            _write(tmp / "g2.parquet", good),
            ["--embedding-column", "vec"],
            "column(s) ['vec'] not found",
        ),
        "alpha": (_write(tmp / "g3.parquet", good), ["--alpha", "1.5"], "alpha=1.5 is outside (0, 1]"),
        "alpha0": (_write(tmp / "g4.parquet", good), ["--alpha", "0"], "alpha=0.0 is outside (0, 1]"),
        "shard": (_write(tmp / "g5.parquet", good), ["--shard", "3/3"], "0 <= I < N"),
        "jobs": (_write(tmp / "g6.parquet", good), ["--jobs", "0"], "n_jobs=0 (--jobs) must be -1"),
        "missing": (tmp / "nope.parquet", [], "does not exist"),
    }


@pytest.mark.parametrize(
    "case", ["nan", "zero", "mixed", "empty", "attr", "emb", "alpha", "alpha0", "shard", "jobs", "missing"]
)
def test_bad_input_is_one_clear_message_and_writes_nothing(case: str, tmp_path: Path) -> None:
    path, extra, message = _bad_inputs(tmp_path)[case]
    args = ["cluster", str(path), "--out", str(tmp_path / "out"), "-q"]
    if "--alpha" not in extra:
        args += ["--alpha", "0.5"]
    result = runner.invoke(app, [*args, *extra])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.tmp-*"))


@pytest.mark.parametrize("case", ["nan", "zero", "mixed"])
def test_drop_invalid_proceeds_and_reports(case: str, tmp_path: Path) -> None:
    path, _, _ = _bad_inputs(tmp_path)[case]
    out = tmp_path / "out"
    code, output = _invoke(
        "cluster", str(path), "--alpha", "0.5", "--out", str(out), "--drop-invalid", "--json"
    )
    assert code == 0, output
    summary = json.loads(output)
    assert summary["n_dropped"] == 1
    key = {"nan": "non_finite", "zero": "zero_norm", "mixed": "wrong_dimension"}[case]
    assert summary["dropped"][key] == 1
    assert summary["n"] == summary["n_input"] - 1
    code, output = _invoke("cluster", "verify", str(path), str(out), "--json")
    assert code == 0, output
    assert json.loads(output)["n_invalid_absent"] == 1


def test_existing_output_needs_overwrite(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _invoke("cluster", str(dataset), "--alpha", "0.9", "--out", str(out), "-q")[0] == 0
    before = (out / "summary.json").read_text()
    code, output = _invoke("cluster", str(dataset), "--alpha", "0.5", "--out", str(out), "-q")
    assert code == 2
    assert "--overwrite" in output
    assert (out / "summary.json").read_text() == before
    assert _invoke("cluster", str(dataset), "--alpha", "0.5", "--out", str(out), "-q", "--overwrite")[0] == 0
    assert json.loads((out / "summary.json").read_text())["alpha"] == 0.5


def test_trim_options_are_alternatives(dataset: Path, tmp_path: Path) -> None:
    code, output = _invoke(
        "cluster", str(dataset), "--alpha", "0.5", "--out", str(tmp_path / "o"),
        "--trim-coverage", "0.9", "--min-cluster-size", "2",
    )  # fmt: skip
    assert code == 2
    assert "alternatives" in output


def test_empty_partition_shards_still_merge(dataset: Path, tmp_path: Path) -> None:
    common = ["--alpha", "0.75", "--attributes", "lang", "-q"]
    assert _invoke("cluster", str(dataset), "--out", str(tmp_path / "full"), *common)[0] == 0
    shards = []
    for i in range(5):  # two partitions over five shards: at least three shards hold no rows
        d = tmp_path / f"shard-{i}"
        code, output = _invoke("cluster", str(dataset), "--shard", f"{i}/5", "--out", str(d), *common)
        assert code == 0, output
        shards.append(str(d))
    empty = [s for s in shards if json.loads((Path(s) / "summary.json").read_text())["n"] == 0]
    assert len(empty) >= 3
    code, output = _invoke("cluster", "merge", *shards, "--out", str(tmp_path / "merged"))
    assert code == 0, output
    for name in ("assignments.parquet", "representatives.parquet"):
        assert pq.read_table(tmp_path / "merged" / name).equals(pq.read_table(tmp_path / "full" / name))
