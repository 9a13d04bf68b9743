"""Rolling horizon: re-planning from the rates the routers measure, with hysteresis."""

from __future__ import annotations

import datetime
import http.server
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from quartermaster.api.crdgen import GROUP, VERSION
from quartermaster.localcluster.launcher import free_port

Wait = Callable[..., Any]


class FakeRouter:
    """Serves GET /v1/quartermaster/rates like a router replica, with rates the test sets."""

    def __init__(self) -> None:
        self.rates: dict[str, float] = {}
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps(
                    {
                        "formatVersion": 1,
                        "configVersion": None,
                        "generatedAt": 0.0,
                        "windowSeconds": 60.0,
                        "coveredSeconds": 60.0,
                        "totalRequestsPerSecond": sum(owner.rates.values()),
                        "clusters": {k: {"requestsPerSecond": v} for k, v in owner.rates.items()},
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/quartermaster/rates"


@pytest.fixture
def router() -> Iterator[FakeRouter]:
    fake = FakeRouter()
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def age_the_plan(api_client: client.ApiClient, namespace: str, name: str, hours: float) -> None:
    """Moves the plan's timestamp into the past, as if the re-planning interval had elapsed."""
    custom = client.CustomObjectsApi(api_client)
    body = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "inferencepools", name)
    stamp = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=hours)
    body["status"]["plan"]["plannedAt"] = stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "inferencepools", name, {"status": {"plan": body["status"]["plan"]}}
    )


def test_measured_rates_drive_rolling_replans_damped_by_hysteresis(
    operator: Any,
    resources: Any,
    example: Callable[[str], dict[str, Any]],
    api_client: client.ApiClient,
    namespace: str,
    router: FakeRouter,
    wait_for: Wait,
) -> None:
    pool = example("pool.yaml")
    declared = {c["name"]: c["rate"] for c in pool["spec"]["classes"]}
    router.rates = dict(declared)
    resources.create("modelcatalogs", example("catalog.yaml"))
    pool["spec"] |= {"autoApply": True, "ratesFrom": [router.url], "budgetPerHour": 500}
    pool["spec"]["planner"] = {**pool["spec"].get("planner", {}), "hysteresis": {"minSavingFraction": 0.9}}
    name = resources.create("inferencepools", pool)["metadata"]["name"]

    def plan_with(rate: float) -> Callable[[], dict[str, Any] | None]:
        def probe() -> dict[str, Any] | None:
            status: dict[str, Any] = resources.status("inferencepools", name)
            chat = next(
                (c for c in (status.get("plan") or {}).get("classes", []) if c["name"] == "chat"), None
            )
            ok = status.get("phase") == "Applied" and chat is not None and chat["rate"] == pytest.approx(rate)
            return status if ok else None

        return probe

    first = wait_for(plan_with(declared["chat"]), timeout=90, what="first plan from the measured rates")

    # Demand quadruples: the applied plan no longer covers it, so the next rolling re-plan adopts at once.
    router.rates["chat"] = declared["chat"] * 4
    age_the_plan(api_client, namespace, name, hours=1)
    busier = wait_for(plan_with(declared["chat"] * 4), timeout=90, what="re-plan for the higher demand")
    assert busier["replicas"] > first["replicas"]
    assert len(busier["changesApplied"]) == 2

    # Demand falls back: a cheaper plan exists but saves less than the 90% threshold, so hysteresis keeps
    # the applied plan and nothing running changes.
    router.rates["chat"] = declared["chat"]
    age_the_plan(api_client, namespace, name, hours=1)

    def kept() -> dict[str, Any] | None:
        status: dict[str, Any] = resources.status("inferencepools", name)
        planned = next(c for c in status["conditions"] if c["type"] == "Planned")
        return status if planned["reason"] == "KeptByHysteresis" else None

    held = wait_for(kept, timeout=60, what="the applied plan kept by hysteresis")
    assert held["plan"]["hash"] == busier["plan"]["hash"]
    assert held["appliedPlanHash"] == busier["appliedPlanHash"]
