"""Routing benchmarks: Stage 1 / cascade (RouteLLM, RouterBench), CLEAR (synthetic streams, pass rates).

Run from the repository root::

    .venv/bin/python -m benchmarks.routing.run            # full: writes RESULTS.md and PNGs here
    .venv/bin/python -m benchmarks.routing.run --quick    # smaller sizes; prints, writes into a temp dir

Data come from ``REPO/../shared/data`` (see its READMEs for sources and licences); nothing is copied.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from benchmarks.machine import SHARED, describe
from benchmarks.routing import clear_bench, data, stage_bench

HERE = Path(__file__).resolve().parent


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def stage_section(o: stage_bench.Outcome, out: Path, plot_name: str) -> list[str]:
    lines = [
        f"### {o.name} (test split: {o.n_test} queries; strongest = {o.strongest}, accuracy "
        f"{o.strong_acc:.4f}, ${o.strong_cost:.3g} per query)",
        "",
        *[f"- {n}" for n in o.notes],
        "",
        "| method | accuracy | % of strongest accuracy | cost / query (USD) | % of strongest cost "
        "| escalated |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in o.rows:
        esc = "" if r.escalation is None else pct(r.escalation)
        lines.append(
            f"| {r.method} | {r.accuracy:.4f} | {pct(r.accuracy / o.strong_acc)} | {r.cost:.3g} | "
            f"{pct(r.cost / o.strong_cost)} | {esc} |"
        )
    # Frontier: cheapest test cost reaching 98 % along each swept curve.
    lines += [
        "",
        "Cheapest point reaching 98% of the strongest accuracy along each swept curve (test split; "
        "an optimistic envelope, the rows above are the honest val-picked numbers):",
        "",
    ]
    for name, pts in o.curves.items():
        ok = [c for c, a in pts if a >= 0.98 * o.strong_acc]
        lines.append(
            f"- {name}: " + (f"{pct(min(ok) / o.strong_cost)} of the strongest cost" if ok else "not reached")
        )
    fig, ax = plt.subplots(figsize=(7, 5))
    for name, raw in o.curves.items():
        pts = sorted(raw)
        ax.plot(
            [c / o.strong_cost for c, _ in pts], [a / o.strong_acc for _, a in pts], marker=".", label=name
        )
    for r in o.rows:
        if r.method.startswith("always") or r.method.startswith("oracle"):
            ax.scatter(r.cost / o.strong_cost, r.accuracy / o.strong_acc, s=18, color="gray")
            ax.annotate(
                r.method.replace("always ", ""),
                (r.cost / o.strong_cost, r.accuracy / o.strong_acc),
                fontsize=6,
            )
        elif "picked on val" in r.method:
            ax.scatter(
                r.cost / o.strong_cost, r.accuracy / o.strong_acc, marker="*", s=120, zorder=5, label=r.method
            )
    ax.axhline(0.98, ls="--", lw=0.8, color="k")
    ax.axvline(0.60, ls=":", lw=0.8, color="k")
    ax.set_xlabel("cost / strongest model's cost (test)")
    ax.set_ylabel("accuracy / strongest model's accuracy (test)")
    ax.set_title(o.name)
    ax.set_xscale("log")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(out / plot_name, dpi=120)
    plt.close(fig)
    lines += ["", f"![{o.name}]({plot_name})", ""]
    return lines


def cascade_section(g: stage_bench.CascadeOutcome, out: Path) -> list[str]:
    lines = [
        "### RouteLLM GSM8K, answer-aware cascade Mixtral-8x7B -> GPT-4-1106 "
        f"({g.repeats} random 60/20/20 splits)",
        "",
        f"Always Mixtral: accuracy {g.weak_acc:.4f} at {pct(g.weak_cost / g.strong_cost)} of GPT-4's cost; "
        f"always GPT-4: {g.strong_acc:.4f}. The estimator judges Mixtral's answer; the threshold is "
        "calibrated on the validation split for 98% of GPT-4's accuracy; reported on the test split "
        "(mean over splits).",
        "",
        "| estimator | accuracy (sd) | % of GPT-4 accuracy | % of GPT-4 cost | escalated "
        "| target met on val |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, acc, sd, cost, esc, met in g.rows:
        lines.append(
            f"| {name} | {acc:.4f} ({sd:.4f}) | {pct(acc / g.strong_acc)} | {pct(cost / g.strong_cost)} | "
            f"{pct(esc)} | {pct(met)} |"
        )
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, raw in g.curves.items():
        pts = sorted(raw)
        ax.plot([c / g.strong_cost for c, _ in pts], [a / g.strong_acc for _, a in pts], label=name)
    ax.plot(
        [g.weak_cost / g.strong_cost, 1.0],
        [g.weak_acc / g.strong_acc, 1.0],
        ls="--",
        color="gray",
        label="random mix",
    )
    ax.axhline(0.98, ls="--", lw=0.8, color="k")
    ax.set_xlabel("cost / GPT-4 cost (test, split 0)")
    ax.set_ylabel("accuracy / GPT-4 accuracy")
    ax.set_title("GSM8K cascade: threshold sweep")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "cascade_gsm8k.png", dpi=120)
    plt.close(fig)
    return [*lines, "", "![GSM8K cascade](cascade_gsm8k.png)", ""]


def clear_section(rows: list[clear_bench.ClearRow], n: int, out: Path) -> list[str]:
    methods = list(dict.fromkeys(r.method for r in rows))
    lines = [
        f"### CLEAR on synthetic streams ({n} queries per stream; expected accuracy = mean true utility)",
        "",
        "| stream | tokens/query | " + " | ".join(methods) + " | CLEAR/Uniform | abandoned (CLEAR) |",
        "|---|---:|" + "---:|" * len(methods) + "---:|---:|",
    ]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True)
    for ax, stream in zip(axes.flat, clear_bench.STREAMS, strict=True):
        sr = [r for r in rows if r.stream == stream]
        budgets = sorted({r.tokens for r in sr})
        for t in budgets:
            by = {r.method: r for r in sr if r.tokens == t}
            uni = by["Uniform"].accuracy
            clear = by["CLEAR (per query, estimated)"]
            ratio = f"{clear.accuracy / uni:.1f}x" if uni > 0 else "inf"
            lines.append(
                f"| {stream} | {t:.0f} | "
                + " | ".join(f"{by[m].accuracy:.4f}" for m in methods)
                + f" | {ratio} | {pct(clear.abandoned)} |"
            )
        for m in methods:
            ax.plot(
                budgets,
                [next(r.accuracy for r in sr if r.tokens == t and r.method == m) for t in budgets],
                marker=".",
                label=m,
            )
        ax.set_title(stream)
        ax.set_xlabel("mean tokens per query")
        ax.set_ylabel("expected accuracy")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "clear_streams.png", dpi=120)
    plt.close(fig)
    return [*lines, "", "![CLEAR streams](clear_streams.png)", ""]


def samples_section(rows: list[clear_bench.SampleRow], out: Path) -> list[str]:
    methods = list(dict.fromkeys(r.method for r in rows))
    lines = [
        "### Sample allocation on GSM8K pass rates (gsm8k-test problems; success of n draws from the 10 "
        "graded "
        "samples, exact)",
        "",
        "| model | samples/problem | "
        + " | ".join(methods)
        + " | per problem / uniform | problems given 0 |",
        "|---|---:|" + "---:|" * len(methods) + "---:|---:|",
    ]
    models = list(dict.fromkeys(r.model for r in rows))
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for model in models:
        mr = [r for r in rows if r.model == model]
        budgets = sorted({r.samples for r in mr})
        for s in budgets:
            by = {r.method: r for r in mr if r.samples == s}
            per = by["Per problem (oracle pass rate)"]
            lines.append(
                f"| {model} | {s:g} | "
                + " | ".join(f"{by[m].accuracy:.4f}" for m in methods)
                + f" | {per.accuracy / by['Uniform'].accuracy:.2f}x | {pct(per.zero_share)} |"
            )
        for m in methods:
            ax.plot(
                budgets,
                [next(r.accuracy for r in mr if r.samples == s and r.method == m) for s in budgets],
                marker=".",
                label=f"{model.split('/')[-1]}: {m}",
            )
    ax.set_xlabel("samples per problem (mean)")
    ax.set_ylabel("success rate")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "samples_gsm8k.png", dpi=120)
    plt.close(fig)
    return [*lines, "", "![samples](samples_gsm8k.png)", ""]


def summary(
    outcomes: list[stage_bench.Outcome],
    g: stage_bench.CascadeOutcome,
    clear_rows: list[clear_bench.ClearRow],
    sample_rows: list[clear_bench.SampleRow],
) -> list[str]:
    """Goals met or missed, computed from this run's numbers."""
    lines = ["## Summary (computed from this run)", ""]
    for o in outcomes:
        honest = [r for r in o.rows if not r.method.startswith(("always", "oracle", "random"))]
        ok = [r for r in honest if r.accuracy >= 0.98 * o.strong_acc and r.cost <= 0.6 * o.strong_cost]
        best = max(honest, key=lambda r: (r.accuracy / o.strong_acc) - max(r.cost / o.strong_cost - 0.6, 0))
        if ok:
            r = min(ok, key=lambda r: r.cost)
            lines.append(
                f"- {o.name}: goal MET by '{r.method}': {pct(r.accuracy / o.strong_acc)} of "
                f"{o.strongest}'s accuracy at {pct(r.cost / o.strong_cost)} of its cost."
            )
        else:
            lines.append(
                f"- {o.name}: goal MISSED. Closest: '{best.method}' {pct(best.accuracy / o.strong_acc)} "
                f"accuracy at {pct(best.cost / o.strong_cost)} cost."
            )
    best_g = min(g.rows, key=lambda r: r[3])
    met_g = best_g[1] >= 0.98 * g.strong_acc and best_g[3] <= 0.6 * g.strong_cost
    lines.append(
        f"- GSM8K answer-aware cascade: cheapest estimator '{best_g[0]}' reaches "
        f"{pct(best_g[1] / g.strong_acc)} of GPT-4's accuracy at {pct(best_g[3] / g.strong_cost)} of its "
        f"cost, escalating {pct(best_g[4])}: goal "
        + ("MET." if met_g else "MISSED (surface features separate right from wrong math answers poorly).")
    )
    scarce = [r for r in clear_rows if r.tokens <= 300]
    for stream in clear_bench.STREAMS:
        by = {(r.tokens, r.method): r.accuracy for r in scarce if r.stream == stream}
        budgets = sorted({t for t, _ in by})
        ratios = [by[(t, "CLEAR (per query, estimated)")] / max(by[(t, "Uniform")], 1e-12) for t in budgets]
        shown = [
            f"{x:.1f}x at {t:g}"
            if by[(t, "Uniform")] >= 1e-3
            else f"{by[(t, 'CLEAR (per query, estimated)')]:.3f} vs ~0 at {t:g}"
            for x, t in zip(ratios, budgets, strict=True)
        ]
        lines.append(
            f"- CLEAR {stream}, <= 300 tokens/query: CLEAR/Uniform "
            + ", ".join(shown)
            + (" (goal >= 3x met)" if min(ratios) >= 3 else " (goal >= 3x not met at every scarce budget)")
        )
    for model in dict.fromkeys(r.model for r in sample_rows):
        mr = [r for r in sample_rows if r.model == model]
        gains = [
            next(x.accuracy for x in mr if x.samples == r.samples and x.method.startswith("Per problem"))
            / r.accuracy
            for r in mr
            if r.method == "Uniform"
        ]
        clus = [
            next(x.accuracy for x in mr if x.samples == r.samples and x.method.startswith("Per cluster"))
            / r.accuracy
            for r in mr
            if r.method == "Uniform"
        ]
        lines.append(
            f"- Samples, {model}: per-problem allocation {min(gains):.2f}-{max(gains):.2f}x uniform "
            f"(oracle pass rates); per text cluster {min(clus):.2f}-{max(clus):.2f}x (TF-IDF clusters "
            "do not predict GSM8K difficulty)."
        )
    return [*lines, ""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes; write into a temp dir")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    out = Path(tempfile.mkdtemp(prefix="qm-routing-bench-")) if args.quick else HERE
    started = time.time()
    budgets = 10 if args.quick else 25
    lines = [
        "# Routing benchmarks",
        "",
        f"Machine: {describe(SHARED)}.",
        "",
        "Reproduce: `.venv/bin/python -m benchmarks.routing.run` (full) or `--quick`. Data: "
        "`../shared/data/routing` (RouteLLM, Apache-2.0; RouterBench subset via RouterDC, research use) and "
        "`../shared/data/reasoning` (RouterDC pass rates, research use). Costs are USD per query: "
        "RouterBench's own per-query costs; RouteLLM from prompt/response length (chars/4) x API prices "
        "(GPT-4-1106 = gpt-4-turbo $10/$30 per M tokens from FrugalGPT's serviceinfo.json; "
        "Mixtral-8x7B $0.60 per M, "
        "Together AI, an assumption). Goal: >= 98% of the strongest model's accuracy at <= 60% of its cost.",
        "",
        "## Stage 1 and Stage 1 + cascade",
        "",
        stage_bench.__doc__.strip().replace("\n", " ") if stage_bench.__doc__ else "",
        "",
    ]
    timings: list[str] = []
    outcomes: list[stage_bench.Outcome] = []
    for name, loader, k, plot in (
        ("RouteLLM MMLU, subject clusters", data.mmlu, None, "pareto_mmlu_subjects.png"),
        ("RouteLLM MMLU, k-means clusters", data.mmlu, 40, "pareto_mmlu_kmeans.png"),
        ("RouterBench subset, k-means clusters", data.routerbench, 12, "pareto_routerbench.png"),
    ):
        if args.quick and "k-means clusters" in name and "MMLU" in name:
            continue
        t0 = time.time()
        o = stage_bench.run_dataset(loader(), name, seed=args.seed, k=k, budgets=budgets, quick=args.quick)
        lines += stage_section(o, out, plot)
        outcomes.append(o)
        timings.append(f"{name}: {time.time() - t0:.0f} s")
        print(f"done {name} in {time.time() - t0:.0f} s", flush=True)
    t0 = time.time()
    g = stage_bench.gsm8k_cascade(data.gsm8k(), repeats=2 if args.quick else 5, seed=args.seed)
    lines += cascade_section(g, out)
    timings.append(f"GSM8K cascade: {time.time() - t0:.0f} s")
    lines += ["## CLEAR token budgets", "", (clear_bench.__doc__ or "").strip(), ""]
    t0 = time.time()
    n = 400 if args.quick else 2000
    tok = [100, 300, 1000] if args.quick else [100, 200, 300, 500, 750, 1000, 1500]
    clear_rows = clear_bench.run_streams(n, tok, args.seed)
    lines += clear_section(clear_rows, n, out)
    timings.append(f"CLEAR streams: {time.time() - t0:.0f} s")
    t0 = time.time()
    pr = data.pass_rates()
    models = ["meta-math/MetaMath-Mistral-7B", "mistralai/Mistral-7B-v0.1"]
    sample_rows = clear_bench.run_samples(
        pr, [1, 2, 3] if args.quick else [1, 1.5, 2, 3, 5], models, 20, args.seed
    )
    lines += samples_section(sample_rows, out)
    timings.append(f"sample allocation: {time.time() - t0:.0f} s")
    lines += ["## Run time", "", *[f"- {t}" for t in timings], f"- total: {time.time() - started:.0f} s", ""]
    head = lines.index("## Stage 1 and Stage 1 + cascade")
    lines[head:head] = summary(outcomes, g, clear_rows, sample_rows)
    (out / "RESULTS.md").write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {out / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
