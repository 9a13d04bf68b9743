"""Rolling-horizon decisions (pure, apart from fetching the routers' measured rates).

A re-plan triggered by the timer (same generation, same catalog and classes) adopts the new plan only when
the applied plan no longer covers the demand (an SLO is at risk), or when the new one saves at least
``hysteresis.minSavingFraction`` of the applied plan's $/hour while fewer than
``hysteresis.maxChangesPerHour`` changes were applied in the last hour. Spec and input changes are adopted
at once.
"""

from __future__ import annotations

import datetime
from typing import Any

import httpx

from quartermaster.api.pool import InferencePoolSpec
from quartermaster.api.poolstatus import PlanSummary
from quartermaster.router.metrics import RatesFormatError, sum_rates

RATES_TIMEOUT_SECONDS = 2.0


def parse_time(stamp: str) -> datetime.datetime:
    return datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)


def recent_changes(status: dict[str, Any], now: datetime.datetime) -> list[str]:
    """Times of the changes applied in the hour before ``now``."""
    cutoff = now - datetime.timedelta(hours=1)
    return [stamp for stamp in status.get("changesApplied") or [] if parse_time(stamp) >= cutoff]


def under_provisioned(current: PlanSummary, new: PlanSummary) -> bool:
    """True when demand grew past what the applied plan was made for, or it leaves more unserved."""
    old = {c.name: c for c in current.classes}
    for c in new.classes:
        previous = old.get(c.name)
        if (
            previous is None
            or previous.rate < c.rate * 0.999
            or previous.unserved_share > c.unserved_share + 1e-6
        ):
            return True
    return False


def adopt(
    spec: InferencePoolSpec,
    current: PlanSummary | None,
    new: PlanSummary,
    status: dict[str, Any],
    generation: int,
    *,
    timer: bool,
    now: datetime.datetime,
) -> tuple[bool, str]:
    """Whether to adopt ``new`` over the applied ``current``, and why (the Planned condition's message)."""
    if current is None:
        return True, "first plan"
    if current.generation != generation:
        return True, f"spec changed (generation {current.generation} -> {generation})"
    if current.hash == new.hash:
        return True, "plan unchanged"
    if not timer:
        return True, "inputs changed"
    if under_provisioned(current, new):
        return True, "the applied plan no longer covers the demand (SLO at risk)"
    hysteresis = spec.planner.hysteresis
    saving = current.cost_per_hour - new.cost_per_hour
    if saving < hysteresis.min_saving_fraction * current.cost_per_hour:
        return False, (
            f"kept the applied plan: the new one saves ${saving:.2f}/h, below "
            f"{hysteresis.min_saving_fraction:.0%} of ${current.cost_per_hour:.2f}/h"
        )
    if len(recent_changes(status, now)) >= hysteresis.max_changes_per_hour:
        return False, f"kept the applied plan: {hysteresis.max_changes_per_hour:g} changes/hour cap reached"
    return True, f"saves ${saving:.2f}/h"


def measured_rates(urls: list[str]) -> tuple[dict[str, float] | None, str | None]:
    """Per-class request rates summed over the routers' rates documents; (None, why) when unavailable."""
    if not urls:
        return None, None
    documents = []
    for url in urls:
        try:
            response = httpx.get(url, timeout=RATES_TIMEOUT_SECONDS)
            response.raise_for_status()
            documents.append(response.json())
        except (httpx.HTTPError, ValueError) as exc:
            return None, f"spec.ratesFrom {url}: {exc}; planning with the declared rates"
    try:
        return sum_rates(documents), None
    except RatesFormatError as exc:
        return None, f"spec.ratesFrom: {exc}; planning with the declared rates"
