"""Shared builders for the planner tests: small specs built in code and the shared data directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from quartermaster.api.catalog import ModelCatalogSpec, ModelSpec
from quartermaster.api.classes import QueryClassSpec
from quartermaster.api.pool import InferencePoolSpec, NodePoolSpec, PlannerSettings
from quartermaster.planner.instance import Instance

REPO = Path(__file__).resolve().parents[3]
DATA_DIR = REPO.parent / "shared" / "data"
EXAMPLES = REPO / "examples"

# Real architectures (config.json): Llama-3.1-8B and Qwen2.5-0.5B / 7B.
ARCH: dict[str, dict[str, Any]] = {
    "llama-8b": {"params_b": 8.03, "layers": 32, "hidden_size": 4096, "kv_heads": 8, "head_dim": 128},
    "qwen-0-5b": {
        "params_b": 0.49, "layers": 24, "hidden_size": 896, "attention_heads": 14, "kv_heads": 2,
        "head_dim": 64,
    },
    "qwen-7b": {
        "params_b": 7.62, "layers": 28, "hidden_size": 3584, "attention_heads": 28, "kv_heads": 4,
        "head_dim": 128,
    },
}  # fmt: skip


def model(name: str, arch: str = "llama-8b", error: float = 0.2, **extra: Any) -> ModelSpec:
    """A catalog model with a real architecture and a uniform error."""
    return ModelSpec(name=name, hf_id=f"org/{name}", default_error=error, **ARCH[arch], **extra)


def pool(
    name: str, gpu: str = "L40S", gpus: int = 4, per_node: int = 4, price: float | None = None, **extra: Any
) -> NodePoolSpec:
    return NodePoolSpec(
        name=name, gpu_type=gpu, gpus=gpus, gpus_per_node=per_node, price_per_gpu_hour=price, **extra
    )


def qclass(name: str, rate: float, prompt: float = 512, output: float = 128, **extra: Any) -> QueryClassSpec:
    return QueryClassSpec(name=name, rate=rate, prompt_tokens=prompt, output_tokens=output, **extra)


def build(
    models: list[ModelSpec],
    pools: list[NodePoolSpec],
    classes: list[QueryClassSpec],
    *,
    budget: float | None = None,
    utilization: float = 0.8,
    prune: bool = True,
    **slo: float,
) -> Instance:
    """An instance from specs built in code."""
    catalog = ModelCatalogSpec(models=models)
    spec = InferencePoolSpec(
        catalog_ref="c",
        classes=classes,
        node_pools=pools,
        budget_per_hour=budget,
        planner=PlannerSettings(utilization=utilization),
        slo={
            "ttft_seconds": slo.get("ttft", 5.0),
            "tpot_seconds": slo.get("tpot", 0.2),
            "max_error": slo.get("eps", 0.5),
        },
    )
    return Instance.from_specs(catalog, spec, prune=prune)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared data directory; a missing one is an error (CI always has it), never a skip."""
    assert DATA_DIR.is_dir(), f"shared data directory {DATA_DIR} is missing; the planner tests need it"
    return DATA_DIR


@pytest.fixture
def builder() -> Callable[..., Instance]:
    return build
