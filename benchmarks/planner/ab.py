"""AGH before/after: two source trees timed back to back in one run, on the instances with known optima.

Run from the repository root, pinned to one core (the other core belongs to other jobs)::

    git worktree add --detach /tmp/pl-a <old commit>
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 taskset -c 1 \\
        .venv/bin/python -m benchmarks.planner.ab --baseline /tmp/pl-a/src [--repeats 3] [--quick]

Each repeat runs the baseline and then this tree, each in a fresh interpreter that imports ``quartermaster``
from its tree and solves every instance once with ``solve_agh`` (seed = instance seed); times are the median
over the repeats, per instance and per phase. Gaps are against the MILP optima of ``results.json`` (the
grid section; only instances where the MILP proved optimality). Writes ``ab.json`` and ``AB.md`` next to
this file (``quick/`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.machine import SHARED, describe

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DATA = REPO.parent / "shared" / "data"
FULL = [((20, 20, 20), 9), ((15, 15, 15), 5), ((10, 10, 10), 5)]
QUICK = [((10, 10, 10), 3)]

WORKER = """
import json, sys, time
src, data, cases = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
sys.path.insert(0, src)
from pathlib import Path
import quartermaster.planner.agh as agh
assert agh.__file__.startswith(src), agh.__file__
from quartermaster.planner.instance import Instance
from quartermaster.planner.state import Context
from quartermaster.planner.synthetic import generate_specs
rows = []
for size, seed in cases:
    catalog, pool = generate_specs(*size, seed=seed, data_dir=Path(data), family="default")
    ctx = Context(Instance.from_specs(catalog, pool))
    t0 = time.perf_counter()
    alloc, stats = agh.solve_agh(ctx, seed=seed, time_limit=120)
    seconds = time.perf_counter() - t0
    rows.append({"size": size, "seed": seed, "cost": alloc.objective(), "feasible": alloc.is_feasible(),
                 "seconds": seconds, "phases": dict(stats.phase_seconds)})
print(json.dumps(rows))
"""


def _run(src: Path, cases: list[tuple[tuple[int, int, int], int]]) -> list[dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-c", WORKER, str(src), str(DATA), json.dumps(cases)],
        check=True,
        capture_output=True,
        text=True,
    )
    rows: list[dict[str, Any]] = json.loads(out.stdout.strip().splitlines()[-1])
    return rows


def _commit(src: Path) -> str:
    """Short commit of the tree holding ``src`` (``-dirty`` when it has uncommitted planner changes)."""
    git = ["git", "-C", str(src)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], check=False, capture_output=True, text=True)
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--", "quartermaster/planner"],
        check=False,
        capture_output=True,
        text=True,
    )
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def _optima() -> dict[tuple[tuple[int, ...], int], float]:
    grid = json.loads((HERE / "results.json").read_text()).get("grid", [])
    return {
        (tuple(r["size"]), r["seed"]): r["milp"]["cost"] for r in grid if r["milp"].get("status") == "optimal"
    }


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def summarise(runs: dict[str, list[list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """Per instance and variant: median seconds and phase seconds over the repeats, cost, feasibility."""
    optima = _optima()
    rows: list[dict[str, Any]] = []
    for k, first in enumerate(runs["after"][0]):
        key = (tuple(first["size"]), first["seed"])
        row: dict[str, Any] = {"size": first["size"], "seed": first["seed"], "optimum": optima.get(key)}
        for variant, repeats in runs.items():
            mine = [rep[k] for rep in repeats]
            phases = {name: _median([m["phases"].get(name, 0.0) for m in mine]) for name in mine[0]["phases"]}
            row[variant] = {
                "seconds": _median([m["seconds"] for m in mine]),
                "all_seconds": [m["seconds"] for m in mine],
                "phases": phases,
                "cost": mine[0]["cost"],
                "deterministic": all(abs(m["cost"] - mine[0]["cost"]) <= 1e-9 for m in mine),
                "feasible": all(m["feasible"] for m in mine),
            }
        rows.append(row)
    return rows


def _gap(cost: float, optimum: float | None) -> str:
    return "-" if optimum is None else f"{100 * (cost / optimum - 1):.1f}%"


def markdown(rows: list[dict[str, Any]], repeats: int, before: str, after: str) -> str:
    names = list(rows[0]["after"]["phases"])
    lines = [
        "# AGH before/after (one run, pinned to one core)",
        "",
        f"Machine: {describe(SHARED)}. Before: commit `{before}`; after: commit `{after}`. "
        f"{repeats} repeats, alternating before and after, each a fresh interpreter solving every instance "
        "once, all pinned to core 1 (`taskset -c 1`, OMP/OpenBLAS 1 thread); medians over the repeats. "
        "Gap = cost / proven MILP optimum - 1.",
        "",
        "| (I,J,K) | seed | before s | after s | speed-up | before gap | after gap | same cost each repeat, "
        "feasible |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        b, a = r["before"], r["after"]
        ok = "yes" if a["deterministic"] and a["feasible"] and b["deterministic"] and b["feasible"] else "NO"
        lines.append(
            f"| ({','.join(map(str, r['size']))}) | {r['seed']} | {b['seconds']:.3f} | {a['seconds']:.3f} | "
            f"{b['seconds'] / a['seconds']:.2f}x | {_gap(b['cost'], r['optimum'])} | "
            f"{_gap(a['cost'], r['optimum'])} | {ok} |"
        )
    lines += ["", "Per size: median seconds and the median of each phase (before -> after).", ""]
    lines += ["| (I,J,K) | total | " + " | ".join(names) + " |", "| --- | ---: |" + " ---: |" * len(names)]
    for size in dict.fromkeys(tuple(r["size"]) for r in rows):
        mine = [r for r in rows if tuple(r["size"]) == size]
        before_s = _median([r["before"]["seconds"] for r in mine])
        cells = [f"{before_s:.3f} -> {_median([r['after']['seconds'] for r in mine]):.3f}"]
        for n in names:
            before = _median([r["before"]["phases"].get(n, 0.0) for r in mine])
            after = _median([r["after"]["phases"].get(n, 0.0) for r in mine])
            cells.append(f"{before:.3f} -> {after:.3f}")
        lines.append(f"| ({','.join(map(str, size))}) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", required=True, type=Path, help="src/ directory of the old tree")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="three (10,10,10) instances, one repeat")
    args = parser.parse_args()
    if not (args.baseline / "quartermaster" / "planner" / "agh.py").is_file():
        parser.error(f"--baseline {args.baseline}: no quartermaster/planner/agh.py there; pass a tree's src/")
    assert DATA.is_dir(), f"shared data directory {DATA} is missing; the benchmark needs it"
    grid = QUICK if args.quick else FULL
    repeats = 1 if args.quick else args.repeats
    cases = [(size, seed) for size, seeds in grid for seed in range(seeds)]
    runs: dict[str, list[list[dict[str, Any]]]] = {"before": [], "after": []}
    started = time.perf_counter()
    for _ in range(repeats):
        runs["before"].append(_run(args.baseline.resolve(), cases))
        runs["after"].append(_run(REPO / "src", cases))
    rows = summarise(runs)
    out = HERE / "quick" if args.quick else HERE
    out.mkdir(exist_ok=True)
    before, after = _commit(args.baseline), _commit(REPO / "src")
    (out / "ab.json").write_text(json.dumps({"before": before, "after": after, "rows": rows}, indent=1))
    (out / "AB.md").write_text(markdown(rows, repeats, before, after))
    print(f"done in {time.perf_counter() - started:.0f} s; wrote {out / 'AB.md'}")


if __name__ == "__main__":
    main()
