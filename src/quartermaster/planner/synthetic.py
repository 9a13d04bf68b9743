"""Synthetic planning instances calibrated on real data (``quartermaster plan generate``, benchmarks).

- Query classes: token sizes from the Azure LLM inference traces 2023 (code and conversation; CC-BY-4.0,
  ``shared/data/traces``): each class is a band of the prompt-length distribution of one trace, its mean
  prompt and output tokens those of the requests in the band. Rates are log-normal; SLOs and error bounds
  are drawn so that some classes need large or fast deployments.
- Models: real architectures (public ``config.json`` values) of Llama 3.x, Qwen 2.5, Mistral/Mixtral,
  Gemma 2, Phi-3 and Yi; beyond the table, fine-tuned variants with perturbed quality. Error rates are
  synthetic: ``1 - quality_j + difficulty_i + noise``.
- GPU tiers: node pools over the built-in GPU table (specs and list prices of ``shared/data/gpus``); tiers
  beyond the eight GPU types are the same types at other prices (regions, spot: 0.55-1.3x list).

Families (``family``): ``default`` as above; ``long-context`` keeps every random draw of ``default`` but maps
them onto a long-prompt, interactive, large-model workload: prompt bands from the top 40 % of the prompt
distribution, TTFT SLOs of 0.5, 1 or 2 s whatever the prompt length, and the largest architectures first. It
is the setting in which prefill time and weight memory, not cost per token, decide the parallel degree
(where the seed's M3 TP upgrade should matter).

Everything is drawn from ``numpy.random.default_rng(seed)``: the same arguments give the same manifests.
"""

from __future__ import annotations

import csv
import functools
import pathlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from quartermaster.api.catalog import ModelCatalogSpec, ModelSpec, Precision
from quartermaster.api.classes import API_GROUP_VERSION, QueryClassSpec
from quartermaster.api.pool import InferencePoolSpec, NodePoolSpec, PlannerSettings, Toleration
from quartermaster.planner.errors import InvalidSpecError
from quartermaster.planner.gpus import GPU_TYPES

FAMILIES = ("default", "long-context")
"""Instance families of :func:`generate_specs`."""

AZURE_TRACES = {
    "code": "traces/AzureLLMInferenceTrace_code_2023.csv",
    "conv": "traces/AzureLLMInferenceTrace_conv_2023.csv",
}


@dataclass(frozen=True)
class Architecture:
    """Public architecture numbers of one model (Hugging Face config.json) and a rough quality score."""

    name: str
    hf_id: str
    params_b: float
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    context: int
    quality: float
    """Approximate MMLU-style accuracy (model cards); only used to make synthetic errors plausible."""
    active_b: float | None = None


# name, Hugging Face id, params (B), layers, hidden, heads, KV heads, head dim, context, quality, active (B)
_TABLE = """
qwen2-5-0-5b,Qwen/Qwen2.5-0.5B-Instruct,0.49,24,896,14,2,64,32768,0.47,
llama-3-2-1b,meta-llama/Llama-3.2-1B-Instruct,1.24,16,2048,32,8,64,131072,0.49,
qwen2-5-1-5b,Qwen/Qwen2.5-1.5B-Instruct,1.54,28,1536,12,2,128,32768,0.60,
qwen2-5-3b,Qwen/Qwen2.5-3B-Instruct,3.09,36,2048,16,2,128,32768,0.65,
llama-3-2-3b,meta-llama/Llama-3.2-3B-Instruct,3.21,28,3072,24,8,128,131072,0.63,
phi-3-mini,microsoft/Phi-3-mini-4k-instruct,3.82,32,3072,32,32,96,4096,0.69,
mistral-7b,mistralai/Mistral-7B-Instruct-v0.3,7.25,32,4096,32,8,128,32768,0.62,
qwen2-5-7b,Qwen/Qwen2.5-7B-Instruct,7.62,28,3584,28,4,128,32768,0.74,
llama-3-1-8b,meta-llama/Llama-3.1-8B-Instruct,8.03,32,4096,32,8,128,131072,0.69,
gemma-2-9b,google/gemma-2-9b-it,9.24,42,3584,16,8,256,8192,0.72,
mistral-nemo-12b,mistralai/Mistral-Nemo-Instruct-2407,12.2,40,5120,32,8,128,131072,0.68,
phi-3-medium,microsoft/Phi-3-medium-4k-instruct,14.0,40,5120,40,10,128,4096,0.78,
qwen2-5-14b,Qwen/Qwen2.5-14B-Instruct,14.7,48,5120,40,8,128,32768,0.80,
gemma-2-27b,google/gemma-2-27b-it,27.2,46,4608,32,16,128,8192,0.75,
qwen2-5-32b,Qwen/Qwen2.5-32B-Instruct,32.8,64,5120,40,8,128,32768,0.83,
yi-1-5-34b,01-ai/Yi-1.5-34B-Chat,34.4,60,7168,56,8,128,4096,0.76,
mixtral-8x7b,mistralai/Mixtral-8x7B-Instruct-v0.1,46.7,32,4096,32,8,128,32768,0.71,12.9
llama-3-1-70b,meta-llama/Llama-3.1-70B-Instruct,70.6,80,8192,64,8,128,131072,0.84,
qwen2-5-72b,Qwen/Qwen2.5-72B-Instruct,72.7,80,8192,64,8,128,32768,0.86,
"""


def _parse_table(text: str) -> tuple[Architecture, ...]:
    rows = []
    for line in text.strip().splitlines():
        name, hf, params, layers, hidden, heads, kv, hd, ctx, quality, active = line.split(",")
        rows.append(
            Architecture(
                name,
                hf,
                float(params),
                int(layers),
                int(hidden),
                int(heads),
                int(kv),
                int(hd),
                int(ctx),
                float(quality),
                float(active) if active else None,
            )
        )
    return tuple(rows)


ARCHITECTURES = _parse_table(_TABLE)

GPUS_PER_NODE = {
    "H100-80GB": 8,
    "H100-PCIe": 8,
    "A100-80GB": 8,
    "A100-40GB": 8,
    "L40S": 4,
    "A10G": 1,
    "A10": 1,
    "A6000": 4,
}


def data_dir_default() -> pathlib.Path:
    """``../shared/data`` relative to the repository (or the ``QUARTERMASTER_DATA`` environment variable)."""
    import os

    env = os.environ.get("QUARTERMASTER_DATA")
    if env:
        return pathlib.Path(env)
    return pathlib.Path(__file__).resolve().parents[3].parent / "shared" / "data"


@functools.lru_cache(maxsize=4)
def load_token_trace(path: pathlib.Path) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """``(prompt tokens, output tokens)`` of an Azure 2023 trace CSV."""
    if not path.is_file():
        raise InvalidSpecError(
            f"{path}: Azure LLM inference trace not found; pass --data-dir pointing to the shared data "
            "directory (../shared/data)",
            field="dataDir",
        )
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    prompt = np.array([float(r["ContextTokens"]) for r in rows])
    output = np.array([float(r["GeneratedTokens"]) for r in rows])
    return prompt, output


def _classes(n: int, rng: np.random.Generator, data_dir: pathlib.Path, family: str) -> list[dict[str, Any]]:
    traces = {kind: load_token_trace(data_dir / rel) for kind, rel in AZURE_TRACES.items()}
    long_context = family == "long-context"
    out = []
    for i in range(n):
        kind = "code" if i % 2 == 0 else "conv"
        prompt, output = traces[kind]
        lo = rng.uniform(0.0, 0.85)
        if long_context:
            lo = 0.6 + lo * (0.35 / 0.85)  # same draw, mapped onto the top 40 % of the prompts
        hi = min(1.0, lo + rng.uniform(0.1, 0.3))
        qlo, qhi = np.quantile(prompt, [lo, hi])
        band = (prompt >= qlo) & (prompt <= qhi)
        h = float(np.clip(prompt[band].mean(), 16, 7000))
        f = float(np.clip(output[band].mean(), 4, 1500))
        rate = round(float(rng.lognormal(mean=np.log(3.0), sigma=0.8)), 3)
        ttft_draw = float(rng.choice([1.0, 2.0, 4.0]))
        ttft = ttft_draw / 2 if long_context else ttft_draw * (1 + h / 4000)
        out.append(
            {
                "name": f"{kind}-{i}",
                "rate": rate,
                "prompt_tokens": round(h, 1),
                "output_tokens": round(f, 1),
                "ttft_seconds": round(ttft, 3),
                "tpot_seconds": float(rng.choice([0.04, 0.06, 0.1])),
                "difficulty": float(rng.uniform(-0.08, 0.15)),
            }
        )
    return out


def _models(n: int, rng: np.random.Generator, family: str) -> list[tuple[Architecture, str, float]]:
    """``(architecture, name, quality)``: the table first (largest first in ``long-context``), then
    fine-tuned variants."""
    picked = []
    base = list(ARCHITECTURES)
    if family == "long-context":
        base.reverse()
    for j in range(n):
        arch = base[j % len(base)]
        if j < len(base):
            picked.append((arch, arch.name, arch.quality))
        else:
            variant = j // len(base) + 1
            picked.append((arch, f"{arch.name}-ft{variant}", float(arch.quality + rng.normal(0, 0.03))))
    return picked


def generate_specs(
    classes: int,
    models: int,
    tiers: int,
    *,
    seed: int = 0,
    data_dir: pathlib.Path | None = None,
    family: str = "default",
) -> tuple[ModelCatalogSpec, InferencePoolSpec]:
    """A synthetic ModelCatalog and InferencePool: ``classes`` classes, ``models`` models, ``tiers`` pools
    (``family``: see the module docstring)."""
    for field, value in (("--classes", classes), ("--models", models), ("--tiers", tiers)):
        if value < 1:
            raise InvalidSpecError(f"{field}={value} must be >= 1", field=field)
    if family not in FAMILIES:
        raise InvalidSpecError(
            f"--family={family!r} is unknown; use one of {', '.join(FAMILIES)}", field="--family"
        )
    rng = np.random.default_rng(seed)
    data_dir = data_dir or data_dir_default()
    cls = _classes(classes, rng, data_dir, family)
    picked = _models(models, rng, family)
    errors = np.empty((len(picked), len(cls)))
    for j, (_, _, quality) in enumerate(picked):
        for i, c in enumerate(cls):
            errors[j, i] = np.clip(1 - quality + c["difficulty"] + rng.normal(0, 0.03), 0.01, 0.95)
    model_specs = []
    for j, (arch, name, _) in enumerate(picked):
        precisions: list[Precision] = ["bf16", "fp8"]
        if arch.params_b >= 14:
            precisions.append("int4")
        quantized = {"int4": f"{arch.hf_id}-AWQ"} if "int4" in precisions else {}
        model_specs.append(
            ModelSpec(
                name=name,
                hf_id=arch.hf_id,
                quantized_ids=quantized,
                params_b=arch.params_b,
                active_params_b=arch.active_b,
                layers=arch.layers,
                hidden_size=arch.hidden,
                attention_heads=arch.heads,
                kv_heads=arch.kv_heads,
                head_dim=arch.head_dim,
                max_context_tokens=arch.context,
                precisions=precisions,
                default_error=round(float(errors[j].mean()), 4),
                class_errors={c["name"]: round(float(errors[j, i]), 4) for i, c in enumerate(cls)},
            )
        )
    class_specs = []
    for i, c in enumerate(cls):
        # Error bound between the 15th and 60th percentile of the models' errors on this class.
        bound = float(np.quantile(errors[:, i], rng.uniform(0.15, 0.6)))
        unserved = float(rng.choice([0.0, 0.0, 0.05]))
        class_specs.append(
            QueryClassSpec(
                name=c["name"],
                rate=c["rate"],
                prompt_tokens=c["prompt_tokens"],
                output_tokens=c["output_tokens"],
                ttft_seconds=c["ttft_seconds"],
                tpot_seconds=c["tpot_seconds"],
                max_error=round(bound + 1e-4, 4),
                max_unserved_share=unserved,
                penalty=0.01 if unserved else 0.0,
            )
        )
    pools = []
    for k in range(tiers):
        gpu = GPU_TYPES[k % len(GPU_TYPES)]
        per_node = GPUS_PER_NODE[gpu.name]
        nodes = int(rng.integers(1, 5)) if per_node > 1 else int(rng.integers(4, 17))
        price = (
            gpu.price_per_hour if k < len(GPU_TYPES) else gpu.price_per_hour * float(rng.uniform(0.55, 1.3))
        )
        name = f"{gpu.name.lower()}-{k}"
        pools.append(
            NodePoolSpec(
                name=name,
                gpu_type=gpu.name,
                gpus=nodes * per_node,
                gpus_per_node=per_node,
                price_per_gpu_hour=round(price, 4),
                node_selector={"quartermaster.dev/pool": name},
                tolerations=[Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")],
            )
        )
    catalog = ModelCatalogSpec(models=model_specs)
    pool = InferencePoolSpec(
        catalog_ref="synthetic", classes=class_specs, node_pools=pools, planner=PlannerSettings(seed=seed)
    )
    return catalog, pool


def to_manifests(
    catalog: ModelCatalogSpec, pool: InferencePoolSpec, name: str = "synthetic"
) -> list[dict[str, Any]]:
    """The two manifests (``ModelCatalog`` named ``pool.catalogRef``, ``InferencePool`` ``name``)."""
    return [
        {
            "apiVersion": API_GROUP_VERSION,
            "kind": "ModelCatalog",
            "metadata": {"name": pool.catalog_ref},
            "spec": catalog.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True),
        },
        {
            "apiVersion": API_GROUP_VERSION,
            "kind": "InferencePool",
            "metadata": {"name": name},
            "spec": pool.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True),
        },
    ]
