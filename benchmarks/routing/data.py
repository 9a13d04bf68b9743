"""Loaders for the public routing/reasoning data in ``REPO/../shared/data`` (never copied into the repo)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow.csv as pacsv

from quartermaster.routing.evaluation import EvalTable

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("QUARTERMASTER_DATA", REPO.parent / "shared" / "data"))

# USD per token. GPT-4-1106 = gpt-4-turbo in FrugalGPT's serviceinfo.json (../shared/data/gpus); Mixtral-8x7B
# is not in that file: Together AI's public price of $0.60 per million tokens is assumed.
PRICE = {"gpt-4-1106": (1e-5, 3e-5), "mixtral-8x7b": (6e-7, 6e-7)}


def require(path: Path) -> Path:
    if not path.exists():
        raise SystemExit(f"benchmark data {path} is missing: the shared data directory must be at {DATA}")
    return path


def _csv(rel: str) -> dict[str, list[object]]:
    t = pacsv.read_csv(require(DATA / rel), parse_options=pacsv.ParseOptions(newlines_in_values=True))
    return {c: t.column(c).to_pylist() for c in t.column_names}


def tokens_of(texts: list[str]) -> npt.NDArray[np.float64]:
    """Token estimate: characters / 4."""
    return np.array([max(len(t) / 4.0, 1.0) for t in texts])


@dataclass(frozen=True)
class TextEval:
    """An evaluation table with the query texts (and, when present, the weak model's answers)."""

    table: EvalTable
    texts: list[str]
    groups: list[str]
    answers: dict[str, list[str]]
    split: npt.NDArray[np.str_] | None = None


def mmlu() -> TextEval:
    """RouteLLM MMLU: Mixtral-8x7B vs GPT-4-1106 correctness, 14,042 questions; cost from prompt length."""
    d = _csv("routing/routellm/mmlu_mixtral_vs_gpt4.csv.gz")
    texts = [str(p) for p in d["prompt"]]
    ptok = tokens_of(texts)
    models = ("mixtral-8x7b", "gpt-4-1106")
    cost = np.stack([ptok * PRICE[m][0] + 1.0 * PRICE[m][1] for m in models], axis=1)  # 1 output token
    correct = np.stack(
        [np.array(d["mixtral_8x7b_correct"], float), np.array(d["gpt4_1106_correct"], float)], 1
    )
    subjects = [str(s) for s in d["subject"]]
    ids = tuple(sorted(set(subjects)))
    idx = {s: i for i, s in enumerate(ids)}
    table = EvalTable(
        query_ids=tuple(str(i) for i in range(len(texts))),
        models=models,
        correct=correct,
        cost=cost,
        cost_kind="usd",
        cluster=np.array([idx[s] for s in subjects], dtype=np.int64),
        cluster_ids=ids,
    )
    return TextEval(table, texts, subjects, {})


def gsm8k() -> TextEval:
    """RouteLLM GSM8K with both models' responses (1,319); cost from prompt and response lengths."""
    d = _csv("routing/routellm/gsm8k_mixtral_vs_gpt4_with_responses.csv.gz")
    texts = [str(p) for p in d["prompt"]]
    weak = [str(r or "") for r in d["mistralai/Mixtral-8x7B-Instruct-v0.1_response"]]
    strong = [str(r or "") for r in d["gpt-4-1106-preview_response"]]
    models = ("mixtral-8x7b", "gpt-4-1106")
    ptok = tokens_of(texts)
    cost = np.stack(
        [
            ptok * PRICE[m][0] + tokens_of(r) * PRICE[m][1]
            for m, r in zip(models, (weak, strong), strict=True)
        ],
        1,
    )
    correct = np.stack(
        [
            np.array(d["mistralai/Mixtral-8x7B-Instruct-v0.1"], float),
            np.array(d["gpt-4-1106-preview"], float),
        ],
        1,
    )
    table = EvalTable(
        query_ids=tuple(str(i) for i in range(len(texts))),
        models=models,
        correct=correct,
        cost=cost,
        cost_kind="usd",
        cluster=np.zeros(len(texts), dtype=np.int64),
        cluster_ids=("gsm8k",),
    )
    return TextEval(table, texts, ["gsm8k"] * len(texts), {"mixtral-8x7b": weak, "gpt-4-1106": strong})


def routerbench() -> TextEval:
    """RouterBench subset (ARC-C, Winogrande, MBPP) x 11 models, per-query USD cost; gaps dropped."""
    d = _csv("routing/routerbench/routerbench_subset_arc_mbpp_winogrande_11models_noresponses.csv.gz")
    models = tuple(
        sorted(
            c
            for c in d
            if "|" not in c
            and c not in ("split", "sample_id", "prompt", "eval_name", "oracle_model_to_route_to")
        )
    )
    correct = np.stack([np.array(d[m], dtype=float) for m in models], 1)
    cost = np.stack([np.array(d[f"{m}|total_cost"], dtype=float) for m in models], 1)
    keep = ~(np.isnan(correct).any(1) | np.isnan(cost).any(1))
    texts = [str(p) for p, k in zip(d["prompt"], keep, strict=True) if k]
    groups = [str(g) for g, k in zip(d["eval_name"], keep, strict=True) if k]
    split = np.array([str(s) for s, k in zip(d["split"], keep, strict=True) if k])
    short = tuple(m.split("/")[-1] for m in models)
    table = EvalTable(
        query_ids=tuple(str(i) for i in range(len(texts))),
        models=short,
        correct=correct[keep],
        cost=cost[keep],
        cost_kind="usd",
        cluster=np.zeros(len(texts), dtype=np.int64),
        cluster_ids=("all",),
    )
    return TextEval(table, texts, groups, {}, split)


@dataclass(frozen=True)
class PassRates:
    """Per problem x model: successes out of n samples (GSM8K train/test)."""

    dataset: npt.NDArray[np.str_]
    questions: list[str]
    models: tuple[str, ...]
    successes: npt.NDArray[np.int64]  # (problems, models)
    n_samples: int


def pass_rates() -> PassRates:
    d = _csv("reasoning/pass_rates_10samples_7models_gsm8k_humaneval.csv.gz")
    keys = list(dict.fromkeys(zip(d["dataset"], d["idx"], strict=True)))
    kidx = {k: i for i, k in enumerate(keys)}
    models = tuple(sorted(set(map(str, d["model"]))))
    midx = {m: j for j, m in enumerate(models)}
    succ = np.zeros((len(keys), len(models)), dtype=np.int64)
    questions = [""] * len(keys)
    for ds, i, q, m, s in zip(d["dataset"], d["idx"], d["question"], d["model"], d["successes"], strict=True):
        r = kidx[(ds, i)]
        succ[r, midx[str(m)]] = int(s)
        questions[r] = str(q)
    n = int(d["n_samples"][0])
    return PassRates(np.array([str(k[0]) for k in keys]), questions, models, succ, n)


def text_embeddings(
    texts: list[str], fit_rows: npt.ArrayLike, dim: int = 64, seed: int = 0
) -> npt.NDArray[np.float32]:
    """TF-IDF + truncated SVD (LSA) embeddings, fitted on ``fit_rows`` only, L2-normalised."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    rows = np.asarray(fit_rows)
    vec = TfidfVectorizer(max_features=50_000, sublinear_tf=True, stop_words="english", min_df=2)
    x_fit = vec.fit_transform([texts[i] for i in rows])
    svd = TruncatedSVD(n_components=dim, random_state=seed).fit(x_fit)
    x = svd.transform(vec.transform(texts)).astype(np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x[norms[:, 0] == 0, 0] = 1.0
    return np.ascontiguousarray(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12))
