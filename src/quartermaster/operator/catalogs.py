"""ModelCatalog reconciliation: validate and summarise (pure)."""

from __future__ import annotations

import datetime
from typing import Any

from pydantic import ValidationError

from quartermaster.api.catalog import ModelCatalogSpec
from quartermaster.api.poolstatus import CatalogModelSummary
from quartermaster.operator import reasons
from quartermaster.operator.conditions import Conditions, now_rfc3339
from quartermaster.operator.outcome import Outcome, validation_message


def reconcile_catalog(
    raw_spec: dict[str, Any], raw_status: dict[str, Any], generation: int, now: datetime.datetime
) -> Outcome:
    conditions = Conditions(list((raw_status or {}).get("conditions") or []), generation, now_rfc3339(now))
    try:
        spec = ModelCatalogSpec.model_validate(raw_spec)
    except ValidationError as exc:
        message = validation_message(exc, "spec")
        status = {
            "phase": "Invalid",
            "message": message,
            "observedGeneration": generation,
            "conditions": conditions.set(reasons.READY, False, reasons.CATALOG_INVALID, message),
        }
        return Outcome(status, [("Warning", reasons.CATALOG_INVALID, message)], permanent_error=message)
    models = [
        CatalogModelSummary(
            name=m.name,
            params_b=m.params_b,
            precisions=list(m.precisions),
            profiles=len(m.profiles),
            classes_with_errors=len(m.class_errors),
        ).model_dump(by_alias=True, exclude_none=True)
        for m in spec.models
    ]
    message = f"{len(models)} models"
    status = {
        "phase": "Ready",
        "modelCount": len(models),
        "models": models,
        "message": None,
        "observedGeneration": generation,
        "conditions": conditions.set(reasons.READY, True, reasons.VALID, message),
    }
    return Outcome(status)
