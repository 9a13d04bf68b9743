"""ModelCatalog spec: the models the planner may deploy, their architecture, quality and measured speed.

Architecture numbers (parameters, layers, hidden size, KV heads, head dim) drive the analytic performance
model (weights and KV-cache bytes, FLOPs). Errors are measured error rates (0-1) from evaluation data, per
query class where known. Measured profiles and calibrations override the analytic model for one
(model, GPU) pair.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from quartermaster.api.classes import DNS_LABEL_PATTERN, SpecModel

Precision = Literal["bf16", "fp16", "fp8", "int8", "int4"]
"""Weight precision of a deployment (``int4`` = AWQ/GPTQ 4-bit weights with 16-bit activations)."""
PRECISIONS: tuple[Precision, ...] = ("bf16", "fp16", "fp8", "int8", "int4")
_DEFAULT_PRECISIONS: tuple[Precision, ...] = ("bf16",)


class ProfilePoint(SpecModel):
    """One measurement of a model on a GPU configuration at a given batch size."""

    batch_size: int = Field(ge=1, description="Concurrent sequences in the decode batch.")
    tpot_seconds: float = Field(gt=0.0, description="Measured time per output token (s) at this batch.")
    ttft_seconds: float | None = Field(
        default=None,
        gt=0.0,
        description="Measured prefill time (s) of one request of promptTokens tokens, without queueing.",
    )


class MeasuredProfile(SpecModel):
    """Measured latencies of a model on one GPU type and parallel configuration.

    When present they replace the analytic roofline for that configuration: TPOT is interpolated linearly
    in the batch size, TTFT scales linearly with the prompt length.
    """

    gpu_type: str = Field(description="GPU type of the measurement, e.g. H100-80GB (see the GPU table).")
    precision: Precision = Field(default="bf16", description="Weight precision of the measurement.")
    tensor_parallel: Literal[1, 2, 4, 8] = Field(default=1, description="Tensor-parallel degree.")
    pipeline_parallel: Literal[1, 2, 4] = Field(default=1, description="Pipeline-parallel degree.")
    prompt_tokens: float = Field(
        default=1024.0, gt=0.0, description="Prompt length (tokens) at which ttftSeconds was measured."
    )
    points: list[ProfilePoint] = Field(
        min_length=1, description="Measurements at increasing batch sizes (at least one)."
    )

    @model_validator(mode="after")
    def _sorted(self) -> MeasuredProfile:
        sizes = [p.batch_size for p in self.points]
        if sizes != sorted(set(sizes)):
            raise ValueError(f"profile points must have strictly increasing batchSize, got {sizes}")
        return self


class Calibration(SpecModel):
    """Overrides of the analytic model's efficiency factors for one (model, GPU type) pair."""

    gpu_type: str = Field(description="GPU type this calibration applies to, e.g. A100-80GB.")
    eta_bandwidth: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        description="Achieved fraction of HBM bandwidth in decode (default: calibrated per GPU).",
    )
    eta_compute: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        description="Achieved fraction of dense tensor FLOP/s in prefill (default: calibrated per GPU).",
    )
    tpot_scale: float = Field(
        default=1.0, gt=0.0, description="Multiplier on the predicted TPOT (fit to your own measurements)."
    )
    ttft_scale: float = Field(
        default=1.0, gt=0.0, description="Multiplier on the predicted TTFT (fit to your own measurements)."
    )


class ModelSpec(SpecModel):
    """One deployable model."""

    name: str = Field(
        pattern=DNS_LABEL_PATTERN,
        description="Short model name used in plans and object names (RFC 1123 label), e.g. llama-3-1-8b.",
    )
    hf_id: str = Field(
        min_length=1, description="Hugging Face model id served by vLLM, e.g. meta-llama/Llama-3.1-8B."
    )
    quantized_ids: dict[str, str] = Field(
        default_factory=dict,
        description="Per precision (fp8, int8, int4) the Hugging Face id of a pre-quantized checkpoint; "
        "without one fp8 is quantized on load and int8/int4 are not offered.",
    )
    image: str | None = Field(default=None, description="vLLM container image; defaults to the operator's.")
    args: list[str] = Field(
        default_factory=list, description="Extra vLLM command-line arguments for this model."
    )
    params_b: float = Field(gt=0.0, description="Total parameters in billions (sets weight memory).")
    active_params_b: float | None = Field(
        default=None,
        gt=0.0,
        description="Parameters active per token in billions (mixture-of-experts); defaults to paramsB.",
    )
    layers: int = Field(ge=1, description="Number of transformer layers.")
    hidden_size: int = Field(ge=1, description="Hidden (model) dimension.")
    attention_heads: int | None = Field(
        default=None, ge=1, description="Query heads; defaults to hiddenSize / headDim."
    )
    kv_heads: int = Field(ge=1, description="Key/value heads (grouped-query attention).")
    head_dim: int = Field(ge=1, description="Dimension of one attention head.")
    max_context_tokens: int = Field(
        default=131072, ge=256, description="Longest context (prompt + output tokens) the model supports."
    )
    precisions: list[Precision] = Field(
        default_factory=lambda: list(_DEFAULT_PRECISIONS),
        min_length=1,
        description="Weight precisions the planner may choose for this model.",
    )
    default_error: float = Field(
        ge=0.0, le=1.0, description="Error rate (0-1) for classes without a measured entry in classErrors."
    )
    class_errors: dict[str, float] = Field(
        default_factory=dict,
        description="Measured error rate (0-1) per query class name, from evaluation data.",
    )
    precision_error_factors: dict[str, float] = Field(
        default_factory=dict,
        description="Multiplier on the error per precision (default bf16/fp16 1.0, fp8 1.01, int8 1.02, "
        "int4 1.05).",
    )
    profiles: list[MeasuredProfile] = Field(
        default_factory=list, description="Measured latencies that override the analytic model."
    )
    calibrations: list[Calibration] = Field(
        default_factory=list, description="Per-GPU-type overrides of the analytic model's efficiency."
    )

    @model_validator(mode="after")
    def _check(self) -> ModelSpec:
        for cls, err in self.class_errors.items():
            if not 0.0 <= err <= 1.0:
                raise ValueError(f"model {self.name!r}: classErrors[{cls!r}]={err} must be in [0, 1]")
        for precision, factor in self.precision_error_factors.items():
            if precision not in PRECISIONS:
                raise ValueError(
                    f"model {self.name!r}: precisionErrorFactors key {precision!r} is not one of {PRECISIONS}"
                )
            if factor <= 0:
                raise ValueError(f"model {self.name!r}: precisionErrorFactors[{precision!r}] must be > 0")
        for precision in self.quantized_ids:
            if precision not in ("fp8", "int8", "int4"):
                raise ValueError(
                    f"model {self.name!r}: quantizedIds key {precision!r} must be fp8, int8 or int4"
                )
        for precision in self.precisions:
            if precision in ("int8", "int4") and precision not in self.quantized_ids:
                raise ValueError(
                    f"model {self.name!r}: precision {precision} needs quantizedIds.{precision} "
                    "(the Hugging Face id of a pre-quantized checkpoint)"
                )
        if len(set(self.precisions)) != len(self.precisions):
            raise ValueError(f"model {self.name!r}: precisions {self.precisions} contain duplicates")
        heads = self.attention_heads or self.hidden_size // self.head_dim
        if heads % self.kv_heads:
            raise ValueError(
                f"model {self.name!r}: attention heads ({heads}) must be a multiple of kvHeads "
                f"({self.kv_heads})"
            )
        if self.active_params_b is not None and self.active_params_b > self.params_b:
            raise ValueError(
                f"model {self.name!r}: activeParamsB={self.active_params_b} exceeds paramsB={self.params_b}"
            )
        seen: set[str] = set()
        for cal in self.calibrations:
            if cal.gpu_type in seen:
                raise ValueError(f"model {self.name!r}: two calibrations for gpuType {cal.gpu_type}")
            seen.add(cal.gpu_type)
        return self

    @property
    def heads(self) -> int:
        """Query attention heads."""
        return self.attention_heads or self.hidden_size // self.head_dim

    def error_for(self, class_name: str) -> float:
        """Measured error of this model on ``class_name`` (``defaultError`` when not measured)."""
        return self.class_errors.get(class_name, self.default_error)


class ModelCatalogSpec(SpecModel):
    """spec of a ModelCatalog: the models an InferencePool may deploy."""

    models: list[ModelSpec] = Field(min_length=1, description="The deployable models.")

    @model_validator(mode="after")
    def _unique(self) -> ModelCatalogSpec:
        seen: set[str] = set()
        for index, model in enumerate(self.models):
            if model.name in seen:
                raise ValueError(f"models[{index}].name={model.name!r} is used twice; names must be unique")
            seen.add(model.name)
        return self

    def model(self, name: str) -> ModelSpec | None:
        """The model called ``name`` or ``None``."""
        return next((m for m in self.models if m.name == name), None)
