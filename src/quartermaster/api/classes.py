"""Query classes: the demand the planner serves.

A query class is one cluster of a QueryClusterJob (or a class declared inline in an InferencePool): an
arrival rate, mean prompt/output tokens, optional SLO overrides and what leaving it unserved costs. The
planner's SLO and error constraints apply per class; see ``/work/shared/specs/planner.md``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

API_GROUP = "quartermaster.dev"
API_VERSION = "v1alpha1"
API_GROUP_VERSION = f"{API_GROUP}/{API_VERSION}"
"""``apiVersion`` of every Quartermaster manifest."""

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
"""Names that end up in Kubernetes object names (models, node pools): RFC 1123 labels."""
CLASS_NAME_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,126}[A-Za-z0-9])?$"
"""Query class names (cluster ids such as ``cluster-7`` or ``chat.short``)."""


class SpecModel(BaseModel):
    """Base of the spec models: camelCase aliases, unknown fields rejected."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=to_camel)


class QueryClassSpec(SpecModel):
    """One class of queries with its demand, token sizes and (optionally) its own SLOs."""

    name: str = Field(
        pattern=CLASS_NAME_PATTERN,
        description="Class name, unique within the pool (a cluster id of a QueryClusterJob or your own).",
    )
    rate: float = Field(ge=0.0, description="Mean arrival rate of this class in requests per second.")
    prompt_tokens: float = Field(gt=0.0, description="Mean prompt (input) tokens per request.")
    output_tokens: float = Field(
        gt=0.0, description="Mean generated tokens per request (capped by the class's token budget)."
    )
    ttft_seconds: float | None = Field(
        default=None, gt=0.0, description="Time-to-first-token SLO in seconds; defaults to the pool's SLO."
    )
    tpot_seconds: float | None = Field(
        default=None,
        gt=0.0,
        description="Time-per-output-token SLO in seconds per token; defaults to the pool's SLO.",
    )
    max_error: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Largest allowed average error rate (0-1) over the served requests; defaults to the "
        "pool's SLO.",
    )
    penalty: float = Field(
        default=0.0,
        ge=0.0,
        description="Cost in USD per request left unserved; only used when maxUnservedShare > 0.",
    )
    max_unserved_share: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="Largest share (0-1) of this class's requests the plan may leave unserved; 0 = all "
        "served.",
    )

    @model_validator(mode="after")
    def _check_penalty(self) -> QueryClassSpec:
        if self.max_unserved_share > 0 and self.penalty == 0:
            raise ValueError(
                f"class {self.name!r}: maxUnservedShare={self.max_unserved_share} needs a penalty > 0 "
                "(USD per unserved request), otherwise the plan would drop the class for free"
            )
        return self


class QueryClassList(SpecModel):
    """A list of query classes, e.g. a classes file for ``quartermaster plan -f``."""

    classes: list[QueryClassSpec] = Field(min_length=1, description="The query classes.")

    @model_validator(mode="after")
    def _unique(self) -> QueryClassList:
        check_unique_class_names(self.classes, "classes")
        return self


def check_unique_class_names(classes: list[QueryClassSpec], field: str) -> None:
    """Raise ``ValueError`` naming the first duplicated class name in ``field``."""
    seen: set[str] = set()
    for index, cls in enumerate(classes):
        if cls.name in seen:
            raise ValueError(f"{field}[{index}].name={cls.name!r} is used twice; class names must be unique")
        seen.add(cls.name)
