"""Planner benchmarks: size grid (GH/AGH vs MILP), ablation, stress, rolling horizon, example timings.

Run from the repository root::

    .venv/bin/python -m benchmarks.planner.run --quick   # minutes: small grid, MILP limit 60 s, 1-day replay
    .venv/bin/python -m benchmarks.planner.run           # about an hour: full grid, MILP limit 600 s, 14 days

Results go to ``benchmarks/planner/`` (``RESULTS.md``, ``results.json``, PNGs; quick mode: ``quick/``).
``results.json`` is rewritten after every experiment, so a partial run still leaves its numbers behind.
Data come from ``REPO/../shared/data`` (Azure LLM inference traces 2023, CC-BY-4.0; ServeGen, Apache-2.0;
vidur profiles, MIT; GPU prices from the SkyPilot catalog, Apache-2.0); nothing is copied.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from benchmarks.machine import SHARED, describe
from benchmarks.planner import experiments as ex

from quartermaster.planner.horizon import HorizonSettings

HERE = Path(__file__).resolve().parent
DATA = ex.REPO.parent / "shared" / "data"

FULL = {
    "milp_limit": 600.0,
    # Fewer seeds at the largest sizes so that the whole run fits in about an hour on 2 cores; (15,15,15)
    # seeds 3-4 and (20,20,20) seeds 6-8 were added as an out-of-sample check of AGH's LP-priced bucket.
    "grid": [((5, 5, 5), 5), ((10, 10, 10), 5), ((15, 15, 15), 5), ((20, 20, 20), 9), ((100, 30, 10), 1)],
    "unpruned": [((20, 20, 20), 9)],
    "phases": [((20, 20, 20), 6)],
    "ablation": [
        ("default", (10, 10, 10), 5),
        ("default", (20, 20, 20), 3),
        ("long-context", (10, 10, 10), 5),
        ("long-context", (20, 20, 20), 3),
    ],
    "stress": [
        ("default", (10, 10, 10), 3),
        ("default", (20, 20, 20), 1),
        ("long-context", (10, 10, 10), 3),
        ("long-context", (20, 20, 20), 1),
    ],
    # The 14-day replay runs with the realistic forecast only (the oracle bound on the first day).
    "rolling": [
        (ex.RollingCase("ServeGen 14 days", "servegen:m-large,m-mid,m-small", 14.0), ("last",)),
        (ex.RollingCase("ServeGen day 1", "servegen:m-large,m-mid,m-small", 1.0), ("oracle",)),
        (ex.RollingCase("Azure 2023 (1 h)", "azure:code,conv", 1.0, 300.0), ("last", "oracle")),
    ],
}
QUICK = {
    "milp_limit": 60.0,
    "grid": [((5, 5, 5), 2), ((10, 10, 10), 2), ((20, 20, 20), 1)],
    "unpruned": [((10, 10, 10), 1)],
    "phases": [((10, 10, 10), 2)],
    "ablation": [("default", (10, 10, 10), 2), ("long-context", (10, 10, 10), 2)],
    "stress": [("default", (10, 10, 10), 1), ("long-context", (10, 10, 10), 1)],
    "rolling": [
        (ex.RollingCase("ServeGen 1 day", "servegen:m-large,m-mid,m-small", 1.0), ("last", "oracle")),
        (ex.RollingCase("Azure 2023 (1 h)", "azure:code,conv", 1.0, 300.0), ("last", "oracle")),
    ],
}
ROLLING_SCALE = 3.0


def _save(out: Path, results: dict[str, Any]) -> None:
    (out / "results.json").write_text(json.dumps(results, indent=1, default=float))


def run(config: dict[str, Any], out: Path, only: set[str] | None, refresh: bool = False) -> dict[str, Any]:
    results: dict[str, Any] = {"machine": describe(SHARED), "config": {k: str(v) for k, v in config.items()}}
    path = out / "results.json"
    if path.exists():
        results.update(
            {k: v for k, v in json.loads(path.read_text()).items() if k not in ("machine", "config")}
        )
    limit = config["milp_limit"]

    def wanted(name: str) -> bool:
        return only is None or name in only

    if wanted("examples"):
        results["examples"] = ex.example_rows()
        _save(out, results)
    if wanted("grid"):
        earlier = {(tuple(r["size"]), r["seed"]): r for r in results.get("grid", [])} if refresh else {}
        results["grid"] = []
        for size, seeds in config["grid"]:
            for seed in range(seeds):
                results["grid"].append(ex.grid_row(size, seed, DATA, limit, earlier.get((size, seed))))
                _save(out, results)
    if wanted("unpruned"):
        results["unpruned"] = []
        for size, seeds in config["unpruned"]:
            for seed in range(seeds):
                results["unpruned"].append(ex.unpruned_row(size, seed, DATA, limit))
                _save(out, results)
    if wanted("phases"):
        results["phases"] = []
        for size, seeds in config["phases"]:
            for seed in range(seeds):
                results["phases"].append(ex.agh_phase_row(size, seed, DATA))
                _save(out, results)
    if wanted("ablation"):
        results["ablation"] = []
        for family, size, seeds in config["ablation"]:
            for seed in range(seeds):
                results["ablation"].extend(ex.ablation_rows(size, seed, DATA, family))
                _save(out, results)
    if wanted("stress"):
        results["stress"] = []
        for family, size, seeds in config["stress"]:
            for seed in range(seeds):
                results["stress"].extend(ex.stress_rows(size, seed, DATA, limit, family))
                _save(out, results)
    if wanted("rolling"):
        results["rolling"] = []
        for case, forecasts in config["rolling"]:
            for forecast in forecasts:
                settings = HorizonSettings(solver="agh", time_limit=10.0, forecast=forecast)
                row, series = ex.rolling_row(case, ROLLING_SCALE, DATA, settings)
                results["rolling"].append(row)
                if forecast == forecasts[0]:
                    _plot_rolling(out / _rolling_png(case.name), case.name, series)
                _save(out, results)
    return results


# -- report -----------------------------------------------------------------------------------------------
def _fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _size(s: list[int]) -> str:
    return f"({s[0]},{s[1]},{s[2]})"


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def table(header: list[str], rows: list[list[str]], left: int = 1) -> list[str]:
    """A markdown table; the first ``left`` columns are left-aligned, the rest right-aligned."""
    align = ["---"] * left + ["---:"] * (len(header) - left)
    return ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"] + [
        "| " + " | ".join(r) + " |" for r in rows
    ]


def _speed(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.1f}x" if x < 10 else f"{x:.0f}x"


def _gap(cost: float | None, base: float | None) -> float | None:
    return None if cost is None or not base else cost / base - 1


def grid_section(rows: list[dict[str, Any]], out: Path, limit: float) -> list[str]:
    lines = [
        "## Size grid: GH and AGH versus the exact MILP",
        "",
        "Synthetic instances from `quartermaster plan generate` (I classes, J models, K GPU pools). MILP = "
        "HiGHS through PuLP over the options left after dominance pruning (the unpruned MILP has its own "
        f"section below), 1 thread, time limit {limit:g} s (time = model build + solve). Gap = cost / "
        "MILP cost - 1; speed-up = MILP time / AGH time on the same instance (see the notes at the end).",
        "",
    ]
    body = []
    for r in rows:
        milp = r["milp"]
        base = milp.get("cost")
        bound_gap = None
        if base and milp.get("bound") is not None:
            bound_gap = max(0.0, (base - milp["bound"]) / base)
        speed = milp["seconds"] / r["agh"]["seconds"] if r["agh"].get("seconds") else None
        body.append([
            _size(r["size"]), str(r["seed"]), str(r["options"]), str(r["pairs"]),
            _fmt(r["gh"].get("seconds")), _pct(_gap(r["gh"].get("cost"), base)),
            _fmt(r["agh"].get("seconds")), _pct(_gap(r["agh"].get("cost"), base)),
            _fmt(milp["seconds"], 1), str(milp.get("status")), _pct(bound_gap),
            _speed(speed),
        ])  # fmt: skip
    header = [
        "(I,J,K)",
        "seed",
        "options",
        "pairs",
        "GH s",
        "GH gap",
        "AGH s",
        "AGH gap",
        "MILP s",
        "MILP status",
    ]
    lines += table([*header, "MILP gap to bound", "AGH speed-up"], body, left=2)
    sizes: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        sizes.setdefault(_size(r["size"]), []).append(r)
    summary = []
    for size, group in sizes.items():
        speeds = [g["milp"]["seconds"] / g["agh"]["seconds"] for g in group if g["agh"].get("seconds")]
        opt = [g for g in group if g["milp"].get("status") == "optimal" and g["milp"].get("cost")]
        agh = [g["agh"]["cost"] / g["milp"]["cost"] - 1 for g in opt if g["agh"].get("cost") is not None]
        gh = [g["gh"]["cost"] / g["milp"]["cost"] - 1 for g in opt if g["gh"].get("cost") is not None]
        summary.append([
            size, str(len(group)), str(len(opt)), _speed(_median(speeds)),
            f"{_pct(_median(agh))} / {_pct(max(agh) if agh else None)}",
            f"{_pct(_median(gh))} / {_pct(max(gh) if gh else None)}",
        ])  # fmt: skip
    lines += ["", "Per size (gaps only where the MILP proved optimality):", ""]
    header = ["(I,J,K)", "instances", "MILP optimal", "median AGH speed-up", "AGH gap median / max"]
    lines += table([*header, "GH gap median / max"], summary)
    _plot_grid(out, rows)
    return [*lines, "", "![solve times](grid_time.png) ![cost gaps](grid_gap.png)", ""]


def unpruned_section(rows: list[dict[str, Any]], limit: float) -> list[str]:
    """The seed's comparison, in one run: AGH, the pruned MILP and the MILP of the spec over every option."""
    lines = [
        "## AGH versus the MILP, timed back to back",
        "",
        "The seed's speed-ups are against the MILP of the spec over every option. Ours drops options "
        "dominated by another option of the same model, precision and pool (exact: the optimum is kept; "
        "`docs/planner.md`). Per instance, in this order and in one process: AGH 3 times on the pruned "
        "instance (median), the pruned MILP, and the MILP with `prune=False` (every dominated option kept; "
        f"options no class can use are still left out), same solver settings and {limit:g} s limit. Times "
        "are solve times after the instance is built (the `build s` columns: generating the specs and "
        "building the instance, with or without pruning). Speed-up = MILP time / AGH time; `> X` when "
        "the MILP hit its time limit (a lower bound, never extrapolated). AGH gap = AGH cost / the "
        "optimum the pruned MILP proves - 1 (pruning keeps the optimum). `none` = no feasible plan "
        "within the limit. The `no kernel` columns time AGH without its kernel search (the seed's AGH: "
        "greedy starts, local search and LP consolidation of the best 1 or 2 starts; `solve_agh` alone, "
        "3 runs, median) right after AGH.",
        "",
    ]
    body = []
    pruned_speed: list[float] = []
    unpruned_speed: list[float] = []
    plain_speed: dict[int, list[float]] = {1: [], 2: []}
    plain_gaps: dict[int, list[float]] = {1: [], 2: []}
    censored = False
    for r in rows:
        agh_s = r["agh"]["seconds"]
        m, u = r["pruned_milp"], r["milp"]
        timed_out = u.get("status") != "optimal"
        censored |= timed_out
        pruned_speed.append(m["seconds"] / agh_s)
        unpruned_speed.append(u["seconds"] / agh_s)
        gap = _gap(r["agh"]["cost"], m.get("cost")) if m.get("status") == "optimal" else None
        more = "> " if timed_out else ""
        body.append([
            _size(r["size"]), str(r["seed"]), str(r["pruned_options"]), str(r["options"]),
            _fmt(r["pruned_instance_s"], 2), _fmt(r["instance_s"], 2), _fmt(agh_s), _pct(gap),
            _fmt(m["seconds"], 1), str(m.get("status")), _fmt(u["seconds"], 1), str(u.get("status")),
            _speed(m["seconds"] / agh_s), more + _speed(u["seconds"] / agh_s),
        ])  # fmt: skip
        for starts in (1, 2):
            v = r.get(f"agh_no_kernel_{starts}")
            if v is None:
                body[-1] += ["-", "-", "-"]
                continue
            plain_speed[starts].append(u["seconds"] / v["seconds"])
            plain_gap = _gap(v["cost"], m.get("cost")) if m.get("status") == "optimal" else None
            if plain_gap is not None:
                plain_gaps[starts].append(plain_gap)
            body[-1] += [_fmt(v["seconds"]), _pct(plain_gap), more + _speed(u["seconds"] / v["seconds"])]
    header = ["(I,J,K)", "seed", "options", "options unpruned", "build s", "build s unpruned", "AGH s"]
    header += ["AGH gap", "MILP s", "MILP status", "unpruned MILP s", "unpruned status"]
    header += ["AGH speed-up", "vs unpruned"]
    header += [
        f"no kernel, {k} start{'s' if k > 1 else ''}: {c}"
        for k in (1, 2)
        for c in ("s", "gap", "vs unpruned")
    ]
    lines += table(header, body, left=2)
    if pruned_speed:
        lines += [
            "",
            f"Median AGH speed-up: {_speed(_median(pruned_speed))} against the pruned MILP, "
            f"{'> ' if censored else ''}{_speed(_median(unpruned_speed))} against the unpruned MILP "
            f"(range {_speed(min(unpruned_speed))}-{_speed(max(unpruned_speed))}).",
        ]
        for k, speeds in plain_speed.items():
            if speeds and plain_gaps[k]:
                lines += [
                    "",
                    f"Without the kernel search, local search on the best {k} start{'s' if k > 1 else ''}: "
                    f"median {'> ' if censored else ''}{_speed(_median(speeds))} against the unpruned MILP, "
                    f"gap {_pct(_median(plain_gaps[k]))} median / {_pct(max(plain_gaps[k]))} worst.",
                ]
    return [*lines, ""]


def phases_section(rows: list[dict[str, Any]]) -> list[str]:
    names = list(dict.fromkeys(name for r in rows for name in r["phases"]))
    body = [
        [_size(r["size"]), str(r["seed"]), *(_fmt(r["phases"].get(n)) for n in names), _fmt(r["seconds"])]
        for r in rows
    ]
    return [
        "## Where AGH's time goes",
        "",
        "One AGH run per instance (separate from the grid run), wall-clock seconds per phase: the 16 greedy "
        "starts, the local search + LP consolidation of the best start, the kernel MILP, the LP relaxation "
        "(column generation) + the MILP over the LP-priced bucket, and the final LP consolidation.",
        "",
        *table(["(I,J,K)", "seed", *names, "total"], body, left=2),
        "",
    ]


def _plot_grid(out: Path, rows: list[dict[str, Any]]) -> None:
    labels = list(dict.fromkeys(_size(r["size"]) for r in rows))
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, color in (("gh", "tab:green"), ("agh", "tab:blue"), ("milp", "tab:red")):
        points = [(labels.index(_size(r["size"])), r[key]["seconds"]) for r in rows if r[key].get("seconds")]
        if points:
            ax.scatter(*zip(*points, strict=True), label=key.upper(), color=color, alpha=0.7)
    ax.set_yscale("log")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel("seconds (log)")
    ax.set_xlabel("(classes, models, GPU pools)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "grid_time.png", dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, color, shift in (("gh", "tab:green", -0.1), ("agh", "tab:blue", 0.1)):
        points = [
            (labels.index(_size(r["size"])) + shift, 100 * (r[key]["cost"] / r["milp"]["cost"] - 1))
            for r in rows
            if r["milp"].get("cost") and r[key].get("cost") is not None
        ]
        if points:
            ax.scatter(*zip(*points, strict=True), label=key.upper(), color=color)
    ax.axhline(2, color="gray", linestyle="--", linewidth=0.8)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel("cost above MILP (%)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "grid_gap.png", dpi=110)
    plt.close(fig)


def ablation_section(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "## Ablation of M1-M3 (and of the LP consolidation added to AGH)",
        "",
        "Cost relative to the full algorithm on the same instance (where both are feasible); infeasible = "
        "the plan breaks a constraint of the real instance (verify) or leaves required demand unserved. "
        "Two instance families of `quartermaster plan generate` (`--family`): `default` (the grid's) and "
        "`long-context` (prompts from the top 40 % of the Azure 2023 prompt lengths, TTFT SLOs of 0.5-2 s "
        "whatever the prompt, the largest architectures first), where prefill time and weight memory decide "
        "the parallel degree. Max GPUs/replica = the largest TP x PP in the full algorithm's plans.",
        "",
    ]
    for r in rows:
        r.setdefault("family", "default")
    full = {(r["family"], tuple(r["size"]), r["seed"], r["algo"]): r for r in rows if r["variant"] == "full"}
    body = []
    for family, variant, algo in dict.fromkeys((r["family"], r["variant"], r["algo"]) for r in rows):
        group = [r for r in rows if (r["family"], r["variant"], r["algo"]) == (family, variant, algo)]
        rel = []
        for r in group:
            base = full.get((family, tuple(r["size"]), r["seed"], algo))
            if base and base["feasible"] and r["feasible"] and base["cost"] > 0:
                rel.append(r["cost"] / base["cost"] - 1)
        bad = sum(1 for r in group if not r["feasible"])
        widest = max((r.get("parallel_gpus", 0) for r in group), default=0)
        body.append([
            family, variant, algo.upper(), str(len(group)), f"{bad}/{len(group)}", _pct(_median(rel)),
            _pct(max(rel) if rel else None), f"{statistics.median(r['seconds'] for r in group):.3f}",
            str(widest) if variant == "full" and widest else "",
        ])  # fmt: skip
    header = ["family", "variant", "algo", "runs", "infeasible", "median cost vs full", "max cost vs full"]
    return [*lines, *table([*header, "median s", "max GPUs/replica"], body, left=3), ""]


def stress_section(rows: list[dict[str, Any]], out: Path) -> list[str]:
    lines = [
        "## Stress: delays and errors inflated after planning",
        "",
        "Plans made on the nominal instance, evaluated with TTFT/TPOT (and so throughput) and error rates "
        "all multiplied by the factor. SLO violations = share of requests on a deployment that no longer "
        "meets the class's TTFT/TPOT/memory, or that is overloaded; error breaks = classes whose average "
        "error exceeds the bound (mean per instance).",
        "",
    ]
    for r in rows:
        r.setdefault("family", "default")
    factors = sorted({r["factor"] for r in rows})
    body = []
    series: dict[tuple[str, str], list[float]] = {}
    for family in dict.fromkeys(r["family"] for r in rows):
        for f in factors:
            cells: dict[str, tuple[float, float, float] | None] = {}
            for algo in ("agh", "milp"):
                group = [r for r in rows if (r["family"], r["factor"], r["algo"]) == (family, f, algo)]
                cells[algo] = (
                    statistics.mean(r["slo_violation_share"] for r in group),
                    statistics.mean(r["error_violation_classes"] for r in group),
                    statistics.mean(r["cost"] for r in group),
                ) if group else None  # fmt: skip
                if group:
                    series.setdefault((family, algo), []).append(100 * cells[algo][0])  # type: ignore[index]
            a, m = cells["agh"], cells["milp"]
            body.append([
                family, f"{f:g}", _pct(a[0] if a else None), _pct(m[0] if m else None),
                _fmt(a[1] if a else None, 2), _fmt(m[1] if m else None, 2), _fmt(a[2] if a else None, 2),
                _fmt(m[2] if m else None, 2),
            ])  # fmt: skip
    header = ["family", "factor", "AGH SLO violations", "MILP SLO violations", "AGH error breaks"]
    lines += table([*header, "MILP error breaks", "AGH $/h", "MILP $/h"], body, left=2)
    fig, ax = plt.subplots(figsize=(6, 4))
    colors = {"agh": "tab:blue", "milp": "tab:red"}
    for (family, algo), values in series.items():
        style = "-" if family == "default" else "--"
        ax.plot(
            factors[: len(values)],
            values,
            style,
            marker="o",
            label=f"{algo.upper()} ({family})",
            color=colors[algo],
        )
    ax.set_xlabel("inflation factor (delay and error)")
    ax.set_ylabel("requests with SLO violations (%)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "stress.png", dpi=110)
    plt.close(fig)
    return [*lines, "", "![stress](stress.png)", ""]


def _rolling_png(name: str) -> str:
    slug = "".join(ch if ch.isalnum() else "-" for ch in name.lower()).strip("-")
    return f"rolling_{slug}.png"


def _plot_rolling(path: Path, title: str, series: dict[str, Any]) -> None:
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 5), sharex=True)
    top.plot(series["hours"], series["rate"], color="tab:gray", linewidth=0.8)
    top.set_ylabel("total req/s")
    top.set_title(title)
    for key, label, color in (
        ("rolling_gpus", "rolling", "tab:blue"),
        ("static_gpus", "static 24 h", "tab:orange"),
    ):
        bottom.step(series["hours"], series[key], where="post", label=label, color=color, linewidth=0.8)
    bottom.set_ylabel("GPUs")
    bottom.set_xlabel("hours")
    bottom.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def rolling_section(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "## Rolling re-planning versus a static 24 h plan",
        "",
        f"The example InferencePool (examples/pool.yaml) with its class rates x{ROLLING_SCALE:g}, each class "
        "following one real rate curve scaled to its mean (ServeGen m-large/m-mid/m-small per 10-minute "
        "window, or Azure 2023 code/conv per 5 minutes). Rolling: AGH every window, switching cost 0.5 USD "
        "per replica change amortised over 4 h, hysteresis 5 % saving / 4 changes per hour; forecast `last` "
        "= the window just seen (realistic), `oracle` = the true next rates (upper bound). Static: one plan "
        "per 24 h for that day's peak of every class (perfect knowledge of the peak).",
        "",
    ]
    body = []
    for r in rows:
        ro, st = r["rolling"], r["static"]
        body.append([
            r["case"], r["forecast"], f"{r['hours']:.1f}", f"{ro['totalCost']:.1f}", f"{st['totalCost']:.1f}",
            _pct(r["saving"]), _pct(ro["violationShare"]), _pct(st["violationShare"]),
            f"{ro['changesPerHour']:.2f}", f"{ro['changesPerReplicaHour']:.3f}",
        ])  # fmt: skip
    header = [
        "trace",
        "forecast",
        "hours",
        "rolling $",
        "static $",
        "saving",
        "rolling SLO viol.",
        "static SLO viol.",
    ]
    lines += table([*header, "changes/h", "changes/replica/h"], body, left=2)
    images = " ".join(f"![{name}]({_rolling_png(name)})" for name in dict.fromkeys(r["case"] for r in rows))
    return [*lines, "", images, ""]


def examples_section(rows: list[dict[str, Any]]) -> list[str]:
    body = [[r["solver"], f"{r['median_s']:.3f}", _fmt(r["cost"]), r["status"]] for r in rows]
    return ["## The example manifests", "", *table(["solver", "median s", "$/h", "status"], body), ""]


def report(results: dict[str, Any], out: Path, title: str, limit: float) -> None:
    lines = [
        f"# {title}",
        "",
        f"Machine: {results['machine']}.",
        "",
        "Reproduce: `.venv/bin/python -m benchmarks.planner.run` (`--quick` for the small version).",
        "",
    ]
    if "examples" in results:
        lines += examples_section(results["examples"])
    if "grid" in results:
        lines += grid_section(results["grid"], out, limit)
    if results.get("unpruned"):
        lines += unpruned_section(results["unpruned"], limit)
    if results.get("phases"):
        lines += phases_section(results["phases"])
    if "ablation" in results:
        lines += ablation_section(results["ablation"])
    if "stress" in results:
        lines += stress_section(results["stress"], out)
    if "rolling" in results:
        lines += rolling_section(results["rolling"])
    notes = out / "NOTES.md"
    if notes.exists():
        lines += [notes.read_text()]
    (out / "RESULTS.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes and limits (minutes)")
    parser.add_argument(
        "--only", default=None, help="comma-separated: examples,grid,unpruned,phases,ablation,stress,rolling"
    )
    parser.add_argument("--report-only", action="store_true", help="rewrite RESULTS.md from results.json")
    parser.add_argument(
        "--refresh-heuristics",
        action="store_true",
        help="grid: re-run GH/AGH only and keep the MILP results of results.json (same instances)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("quartermaster").setLevel(logging.WARNING)
    config = QUICK if args.quick else FULL
    out = HERE / "quick" if args.quick else HERE
    out.mkdir(exist_ok=True)
    started = time.perf_counter()
    if args.report_only:
        results = json.loads((out / "results.json").read_text())
    else:
        only = set(args.only.split(",")) if args.only else None
        results = run(config, out, only, refresh=args.refresh_heuristics)
    title = "Planner benchmarks" + (" (quick mode)" if args.quick else "")
    report(results, out, title, config["milp_limit"])
    logging.info("done in %.0f s; wrote %s", time.perf_counter() - started, out / "RESULTS.md")


if __name__ == "__main__":
    main()
