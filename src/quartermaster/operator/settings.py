"""Operator settings, read from the environment (``QM_*``), with documented defaults."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorSettings(BaseSettings):
    """Every setting can be given as ``QM_<NAME>`` (upper case), e.g. ``QM_VLLM_IMAGE``."""

    model_config = SettingsConfigDict(env_prefix="QM_", extra="ignore")

    namespace: str | None = Field(
        default=None, description="Namespace to watch; empty watches all namespaces (cluster-wide)."
    )
    vllm_image: str = Field(
        default="vllm/vllm-openai:v0.11.0", description="Default vLLM image (a model may override it)."
    )
    operator_image: str = Field(
        default="ghcr.io/quartermaster-dev/quartermaster:0.1.0",
        description="Image of the clustering Jobs (the operator's own image).",
    )
    metrics_port: int = Field(default=8080, description="Port of the Prometheus /metrics endpoint.")
    health_port: int = Field(default=8081, description="Port of the /healthz liveness endpoint.")
    log_format: Literal["json", "text"] = Field(default="json", description="Structured JSON or plain text.")
    peering: str | None = Field(
        default=None, description="kopf peering name; set it when running several operator replicas."
    )
    allow_file_urls: bool = Field(
        default=False,
        description="Let inline QueryClusterJobs read file:// URLs from the operator's filesystem "
        "(local development only).",
    )
    plan_time_limit_cap: float = Field(
        default=60.0, gt=0, description="Upper bound on any InferencePool's planner time limit (s)."
    )
    inline_max_rows: int = Field(
        default=200_000, ge=1, description="Largest input the inline clustering executor accepts."
    )
    router_image: str | None = Field(
        default=None, description="Image of the router service; defaults to operatorImage."
    )
