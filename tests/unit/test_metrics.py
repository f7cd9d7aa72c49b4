"""Metrics: outcomes mapped to bounded labels, histogram buckets, the /metrics endpoint,
the AGI server's per-route series, the API's middleware, the push bridge's counted
providers and the reconciler's bridged calls."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from agi.channel import AgiChannel
from agi.protocol import AgiEnvironment, AgiHangup
from agi.server import AgiServer
from api.metrics import instrument
from ivr import prompts as p
from ivr.settlement import Bridged, Ended
from metrics.endpoint import MetricsEndpoint
from metrics.series import (
    OWN_BUCKETS,
    ROUTE_BUCKETS,
    AgiMetrics,
    PushMetrics,
    dial_status,
    refusal_reason,
)
from pushbridge.main import CountedProvider, counted
from pushbridge.providers import Device, Kind, Outcome, Platform, PushResult, Wake
from reconciler.main import BridgedCalls
from tests.component.test_agi_server import FakeAsterisk

REPO = Path(__file__).resolve().parents[2]
STEP = 2.0


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    got = registry.get_sample_value(name, labels)
    return 0.0 if got is None else got


# -- labels -------------------------------------------------------------------

def test_every_refusal_the_domain_raises_has_its_own_label() -> None:
    """A new refusal prompt in ivr/inmate_call.py must get a label here, not 'other'."""
    source = (REPO / "ivr" / "inmate_call.py").read_text() + (REPO / "agi" / "routes" / "inmate_call.py").read_text()
    prompts = set(re.findall(r"Refused\(p\.([A-Z_]+)", source))
    assert {"APOLOGY", "CARD_LOCKED", "OUTSIDE_SCHEDULE", "NO_FUNDS", "GOODBYE"} <= prompts
    labels = {name: refusal_reason(getattr(p, name), "") for name in prompts}
    assert "other" not in labels.values(), labels
    # Distinct refusals stay distinct (APOLOGY covers several internal errors on purpose).
    assert len(set(labels.values())) == len(labels)


def test_refusal_labels_never_carry_the_free_text_reason() -> None:
    assert refusal_reason(p.TERMINAL_WAIT, "terminal term-7 throttled for 300 s") == "terminal_throttled"
    assert refusal_reason(p.APOLOGY, "card 1234567890: PIN hash unusable") == "internal_error"
    assert refusal_reason(p.GOODBYE, "no valid number entered") == "no_valid_number"
    assert refusal_reason(p.GOODBYE, "no more attempts") == "attempts_exhausted"
    assert refusal_reason("some-new-prompt", "+79161234567") == "other"


@pytest.mark.parametrize(("status", "label"), [
    ("ANSWER", "answer"), ("BUSY", "busy"), ("NOANSWER", "noanswer"), ("CHANUNAVAIL", "chanunavail"),
    ("CANCEL", "cancel"), ("CONGESTION", "congestion"), ("", "none"), ("PJSIP/+7916", "other"),
])
def test_dial_status_labels(status: str, label: str) -> None:
    assert dial_status(status) == label


def test_agi_series_exist_at_zero_before_any_call() -> None:
    metrics = AgiMetrics()
    metrics.know_routes(["inmate_call"])
    r = metrics.registry
    assert r.get_sample_value("kinline_calls_total", {"outcome": "dialed"}) == 0
    assert r.get_sample_value("kinline_call_refusals_total", {"reason": "outside_schedule"}) == 0
    assert r.get_sample_value("kinline_settlements_total", {"status": "answer"}) == 0
    assert r.get_sample_value("kinline_agi_route_duration_seconds_count", {"route": "inmate_call"}) == 0
    assert r.get_sample_value("kinline_agi_route_runs_total", {"route": "inmate_call", "result": "hangup"}) == 0
    assert r.get_sample_value("kinline_calls_in_ivr") == 0


def test_route_histograms_use_their_buckets() -> None:
    metrics = AgiMetrics()
    metrics.route_started("inmate_call")
    assert value(metrics.registry, "kinline_calls_in_ivr") == 1
    metrics.route_done("inmate_call", "ok", wall_s=12.0, own_s=0.003)
    metrics.route_started("hangup")  # not an IVR route
    metrics.route_done("hangup", "ok", wall_s=0.004, own_s=0.0004)
    r = metrics.registry
    assert value(r, "kinline_calls_in_ivr") == 0
    wall = {le: value(r, "kinline_agi_route_duration_seconds_bucket", route="inmate_call", le=le)
            for le in ("10.0", "20.0", "+Inf")}
    assert wall == {"10.0": 0, "20.0": 1, "+Inf": 1}
    assert value(r, "kinline_agi_route_own_seconds_bucket", route="inmate_call", le="0.0025") == 0
    assert value(r, "kinline_agi_route_own_seconds_bucket", route="inmate_call", le="0.005") == 1
    assert value(r, "kinline_agi_route_duration_seconds_bucket", route="hangup", le="0.005") == 1
    # The IVR's tens of seconds and a hangup route's milliseconds both fall inside the buckets.
    assert ROUTE_BUCKETS[0] <= 0.005 and ROUTE_BUCKETS[-1] >= 60
    assert OWN_BUCKETS[0] <= 0.001 and list(OWN_BUCKETS) == sorted(OWN_BUCKETS)


def test_refused_and_dialed_calls() -> None:
    metrics = AgiMetrics()
    metrics.refused(p.OUTSIDE_SCHEDULE, "outside the facility's schedule")
    metrics.refused(p.GOODBYE, "no more attempts")
    metrics.dialed()
    metrics.settled("ANSWER")
    metrics.settlement_retry()
    r = metrics.registry
    assert value(r, "kinline_calls_total", outcome="refused") == 2
    assert value(r, "kinline_calls_total", outcome="dialed") == 1
    assert value(r, "kinline_call_refusals_total", reason="outside_schedule") == 1
    assert value(r, "kinline_call_refusals_total", reason="attempts_exhausted") == 1
    assert value(r, "kinline_settlements_total", status="answer") == 1
    assert value(r, "kinline_settlement_retries_total") == 1


# -- the endpoint -------------------------------------------------------------

async def _get(port: int, path: str) -> tuple[int, str]:
    async with httpx.AsyncClient(timeout=STEP) as client:
        response = await client.get(f"http://127.0.0.1:{port}{path}")
    return response.status_code, response.text


async def test_endpoint_serves_the_registry_after_refreshing() -> None:
    metrics = AgiMetrics()
    holds = iter([3, 5])

    async def refresh() -> None:
        metrics.open_holds.set(next(holds))

    endpoint = MetricsEndpoint(metrics.registry, "127.0.0.1", 0, refresh)
    await endpoint.start()
    try:
        status, text = await _get(endpoint.port, "/metrics")
        assert status == 200 and "kinline_open_holds 3.0" in text
        status, text = await _get(endpoint.port, "/metrics?x=1")
        assert status == 200 and "kinline_open_holds 5.0" in text
        assert (await _get(endpoint.port, "/"))[0] == 404
    finally:
        await endpoint.stop()


async def test_endpoint_serves_only_the_series_named() -> None:
    metrics = AgiMetrics()
    metrics.open_holds.set(4)
    endpoint = MetricsEndpoint(metrics.registry, "127.0.0.1", 0)
    await endpoint.start()
    try:
        status, text = await _get(endpoint.port, "/metrics?name[]=kinline_open_holds&name[]=kinline_calls_in_ivr")
        series = {line.split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
        assert status == 200 and series == {"kinline_open_holds", "kinline_calls_in_ivr"}
        assert "kinline_open_holds 4.0" in text
        _, whole = await _get(endpoint.port, "/metrics")
        assert len(whole) > 5 * len(text)  # everything else is there without the filter
    finally:
        await endpoint.stop()


async def test_endpoint_refreshes_only_for_the_series_it_sets() -> None:
    metrics = AgiMetrics()
    refreshed = []

    async def refresh() -> None:
        refreshed.append(1)
        metrics.open_holds.set(len(refreshed))

    endpoint = MetricsEndpoint(metrics.registry, "127.0.0.1", 0, refresh, ("kinline_open_holds",))
    await endpoint.start()
    try:
        status, _ = await _get(endpoint.port, "/metrics?name[]=kinline_calls_in_ivr")
        assert status == 200 and refreshed == []  # a watcher of other series reads nothing
        _, text = await _get(endpoint.port, "/metrics?name[]=kinline_calls_in_ivr&name[]=kinline_open_holds")
        assert refreshed == [1] and "kinline_open_holds 1.0" in text
        _, text = await _get(endpoint.port, "/metrics")
        assert refreshed == [1, 1] and "kinline_open_holds 2.0" in text
    finally:
        await endpoint.stop()


async def test_endpoint_serves_last_values_when_refresh_fails() -> None:
    metrics = AgiMetrics()
    metrics.open_holds.set(7)

    async def refresh() -> None:
        raise ConnectionError("redis down")

    endpoint = MetricsEndpoint(metrics.registry, "127.0.0.1", 0, refresh)
    await endpoint.start()
    try:
        status, text = await _get(endpoint.port, "/metrics")
        assert status == 200 and "kinline_open_holds 7.0" in text
    finally:
        await endpoint.stop()


async def test_endpoint_fails_open_when_its_port_is_taken() -> None:
    taken = MetricsEndpoint(CollectorRegistry(), "127.0.0.1", 0)
    assert await taken.start()
    try:
        second = MetricsEndpoint(CollectorRegistry(), "127.0.0.1", taken.port)
        assert not await second.start()
        await second.stop()
    finally:
        await taken.stop()


# -- the AGI server -----------------------------------------------------------

async def test_agi_server_observes_each_route_by_result() -> None:
    async def fine(channel: AgiChannel, env: AgiEnvironment) -> None:
        await channel.verbose("hello", 1)

    async def hung_up(channel: AgiChannel, env: AgiEnvironment) -> None:
        raise AgiHangup("gone")

    async def broken(channel: AgiChannel, env: AgiEnvironment) -> None:
        raise RuntimeError("bug")

    metrics = AgiMetrics()
    server = AgiServer({"inmate_call": fine, "hangup": hung_up, "after_dial": broken}, port=0, metrics=metrics)
    await server.start()
    try:
        fake = await FakeAsterisk.call(server.port, "inmate_call")
        assert (await fake.command()).startswith("VERBOSE")
        await fake.reply("200 result=1")
        for script in ("hangup", "after_dial"):
            other = await FakeAsterisk.call(server.port, script)
            if script == "after_dial":  # the failure is told to Asterisk's log
                assert (await other.command()).startswith("VERBOSE")
                await other.reply("200 result=1")
            assert await asyncio.wait_for(other.reader.read(), STEP) == b""
        assert await asyncio.wait_for(fake.reader.read(), STEP) == b""
    finally:
        await server.stop()
    r = metrics.registry
    assert value(r, "kinline_agi_route_runs_total", route="inmate_call", result="ok") == 1
    assert value(r, "kinline_agi_route_runs_total", route="hangup", result="hangup") == 1
    assert value(r, "kinline_agi_route_runs_total", route="after_dial", result="error") == 1
    for route in ("inmate_call", "hangup", "after_dial"):
        assert value(r, "kinline_agi_route_duration_seconds_count", route=route) == 1
        assert value(r, "kinline_agi_route_own_seconds_count", route=route) == 1
    assert value(r, "kinline_calls_in_ivr") == 0


# -- the API ------------------------------------------------------------------

async def test_api_counts_requests_by_route_template() -> None:
    app = FastAPI()
    metrics = instrument(app)

    @app.get("/v1/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @app.post("/v1/broken")
    async def broken() -> None:
        raise RuntimeError("bug")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        assert (await client.get("/v1/items/12345")).status_code == 200
        assert (await client.get("/v1/items/67890")).status_code == 200
        assert (await client.get("/v1/nothing/+79161234567")).status_code == 404
        assert (await client.post("/v1/broken")).status_code == 500
        text = (await client.get("/metrics")).text
    r = metrics.registry
    assert value(r, "kinline_api_requests_total", method="POST", route="/v1/broken", status="500") == 1
    assert value(r, "kinline_api_requests_total", method="GET", route="/v1/items/{item_id}", status="200") == 2
    assert value(r, "kinline_api_requests_total", method="GET", route="unmatched", status="404") == 1
    assert value(r, "kinline_api_request_duration_seconds_count", route="/v1/items/{item_id}") == 2
    assert "12345" not in text and "79161234567" not in text
    assert "/metrics" not in app.openapi()["paths"]


# -- the push bridge ----------------------------------------------------------

class FakeProvider:
    def __init__(self, outcome: Outcome | None) -> None:
        self.outcome = outcome
        self.closed = False

    @property
    def platform(self) -> Platform:
        return "fcm"

    async def send(self, device: Device, wake: Wake) -> PushResult:
        if self.outcome is None:
            raise RuntimeError("provider bug")
        return PushResult(device, self.outcome, 1, elapsed=0.2)

    async def aclose(self) -> None:
        self.closed = True


async def test_pushes_counted_by_platform_kind_and_result() -> None:
    metrics = PushMetrics()
    device = Device("fcm", "token", "app", "dev-1")
    wake = Wake("call-1", "Colony", 1_000_000.0, 30.0)
    providers = counted({"fcm": FakeProvider(Outcome.DELIVERED)}, metrics)
    await providers["fcm"].send(device, wake)
    await providers["fcm"].send(device, wake.cancel(1_000_001.0, 5.0))
    with pytest.raises(RuntimeError):
        await CountedProvider(FakeProvider(None), metrics).send(device, wake)
    inner = FakeProvider(Outcome.INVALID_TOKEN)
    await CountedProvider(inner, metrics).send(device, wake)
    await CountedProvider(inner, metrics).aclose()
    r = metrics.registry
    assert value(r, "kinline_pushes_total", platform="fcm", kind="wake", outcome="delivered") == 1
    assert value(r, "kinline_pushes_total", platform="fcm", kind="cancel", outcome="delivered") == 1
    assert value(r, "kinline_pushes_total", platform="fcm", kind="wake", outcome="error") == 1
    assert value(r, "kinline_pushes_total", platform="fcm", kind="wake", outcome="invalid_token") == 1
    assert value(r, "kinline_push_duration_seconds_count", platform="fcm") == 4
    assert inner.closed
    assert str(Kind.WAKE) == "wake"


# -- the reconciler -----------------------------------------------------------

def test_bridged_calls_follow_the_event_log() -> None:
    bridged = BridgedCalls(keep_ms=10_000)
    bridged.see(Bridged("c1", 1_000))
    bridged.see(Bridged("c2", 2_000))
    bridged.see(Bridged("c3", 3_000))
    assert bridged.count(4_000) == 3
    bridged.see(Ended("c1", 5_000, "ANSWER", "16"))
    bridged.see(Ended("c9", 5_000, "ANSWER", "16"))  # bridged before the reconciler started: ignored
    bridged.forget(["c2"])  # settled by the reconciler: its end was never logged
    assert bridged.count(6_000) == 1
    assert bridged.count(13_001) == 0  # longer than any call may last
