"""Prometheus metrics on the real stack: the AGI server's, the reconciler's, the API's
and the push bridge's /metrics expose their series, and real calls move them by exactly
what happened (one billed call, one refused call; one wake and its cancel)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pushbridge.providers import Kind
from store.app_wake import WAKE_STREAM, wake_fields
from store.devices import DeviceStore
from store.redis_store import RedisStore, connect
from tests.e2e.conftest import E2E
from tests.e2e.harness import AmiWatch, SipAgent
from tests.e2e.test_inmate_calls import MOBILE, Terminal, call_in, new_card, relative  # noqa: F401 (fixtures)
from tests.e2e.test_pushbridge import bridge_with_fakes  # noqa: F401 (fixture)
from tests.fakes.push_providers import FakePushServices

pytestmark = pytest.mark.e2e

STEP = 15.0
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

AGI_SERIES = ("kinline_calls_total", "kinline_call_refusals_total", "kinline_settlements_total",
              "kinline_settlement_retries_total", "kinline_agi_route_duration_seconds_count",
              "kinline_agi_route_own_seconds_count", "kinline_agi_route_runs_total", "kinline_calls_in_ivr",
              "kinline_open_holds", "kinline_cards_in_call", "kinline_agi_command_latency_seconds")
RECONCILER_SERIES = ("kinline_calls_bridged", "kinline_reconciler_settled_total",
                     "kinline_reconciler_locks_released_total", "kinline_reconciler_cycles_total")


async def scrape(port: int) -> Samples:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(f"http://127.0.0.1:{port}/metrics")
    assert response.status_code == 200
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


async def first_scrape(port: int, within: float = STEP) -> Samples:
    """The first scrape of a service just started (the stack does not wait for its endpoint)."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await scrape(port)
        except httpx.TransportError:
            assert time.monotonic() < deadline, f"/metrics on port {port} never answered"
            await asyncio.sleep(0.2)


async def quiet(port: int, within: float = STEP) -> Samples:
    """The AGI server's series once no route runs: an earlier test's hangup route may
    still be finishing (the session's stack is shared), and would be counted as ours."""
    deadline = time.monotonic() + within
    last = await first_scrape(port)
    while True:
        await asyncio.sleep(1.0)
        now = await scrape(port)
        runs = {k: v for k, v in now.items() if k[0] == "kinline_agi_route_runs_total"}
        if get(now, "kinline_calls_in_ivr") == 0 and runs == {k: v for k, v in last.items() if k in runs}:
            return now
        assert time.monotonic() < deadline, "the AGI server never went quiet"
        last = now


def get(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


async def scrape_until(port: int, done: Callable[[Samples], bool], what: str, within: float = STEP) -> Samples:
    deadline = time.monotonic() + within
    while True:
        samples = await scrape(port)
        if done(samples):
            return samples
        assert time.monotonic() < deadline, f"{what}: not within {within} s"
        await asyncio.sleep(0.2)


async def test_a_billed_call_and_a_refused_call_move_the_agi_series(
        e2e: E2E, ami: AmiWatch, store: RedisStore, call_in: object, relative: SipAgent) -> None:  # noqa: F811
    agi, reconciler = e2e.config.agi_metrics_port, e2e.config.reconciler_metrics_port
    before, rec_before = await quiet(agi), await first_scrape(reconciler)
    assert set(AGI_SERIES) <= names(before)
    assert set(RECONCILER_SERIES) <= names(rec_before)

    # One call billed: login, number, the relative answers, talk, the relative hangs up.
    card = await new_card(store, "open", 10_000)
    term: Terminal = await call_in("open")  # type: ignore[operator]
    await term.login(card)
    await term.answer("enter-number", MOBILE[1:])
    await relative.wait_for("state", lambda e: e["state"] == "CONFIRMED", timeout=30)
    await term.bridged()
    during = await scrape(agi)
    assert get(during, "kinline_open_holds") >= 1 and get(during, "kinline_cards_in_call") >= 1
    # The reconciler sees the bridge in Asterisk's event log (it reads it every second).
    bridged_before = get(rec_before, "kinline_calls_bridged")
    await scrape_until(reconciler, lambda s: get(s, "kinline_calls_bridged") == bridged_before + 1, "bridged gauge")
    await relative.send("hangup")
    assert await term.hangup_cause() == "16"

    # One call refused: the facility's schedule is closed now.
    closed_card = await new_card(store, "closed", 10_000)
    refused: Terminal = await call_in("closed")  # type: ignore[operator]
    await refused.login(closed_card)
    await refused.prompt("outside-schedule")
    await refused.hangup_cause()

    def route_count(s: Samples, route: str) -> float:
        return get(s, "kinline_agi_route_duration_seconds_count", route=route)

    # The refused call's hangup route runs from its hangup handler, after its Hangup event; the
    # billed call's after_dial closed it (settled, card freed): its handler runs no route.
    after = await scrape_until(
        agi, lambda s: route_count(s, "hangup") >= route_count(before, "hangup") + 1
        and route_count(s, "after_dial") >= route_count(before, "after_dial") + 1, "after_dial and a hangup route")

    def moved(name: str, **labels: str) -> float:
        return get(after, name, **labels) - get(before, name, **labels)

    assert moved("kinline_calls_total", outcome="dialed") == 1
    assert moved("kinline_calls_total", outcome="refused") == 1
    assert moved("kinline_call_refusals_total", reason="outside_schedule") == 1
    assert moved("kinline_settlements_total", status="answer") == 1
    assert moved("kinline_settlement_retries_total") == 0
    for route, runs in (("inmate_call", 2), ("after_dial", 1), ("hangup", 1)):
        assert moved("kinline_agi_route_duration_seconds_count", route=route) == runs, route
        assert moved("kinline_agi_route_own_seconds_count", route=route) == runs, route
        assert moved("kinline_agi_route_runs_total", route=route, result="ok") == runs, route
        assert moved("kinline_agi_route_duration_seconds_bucket", route=route, le="+Inf") == runs, route
    # The IVR route lasted the whole login and number entry: seconds, mostly waiting for Asterisk.
    assert moved("kinline_agi_route_duration_seconds_sum", route="inmate_call") > 3
    assert moved("kinline_agi_route_own_seconds_sum", route="inmate_call") < \
        moved("kinline_agi_route_duration_seconds_sum", route="inmate_call")
    await scrape_until(agi, lambda s: get(s, "kinline_calls_in_ivr") == 0, "no call left in the IVR")
    records = await store.call_records(card)
    assert [r.dial_status for r in records] == ["ANSWER"] and not await store.call_records(closed_card)

    # The bridge ended in the log; the hangup path settled the call, so the reconciler did not.
    rec_after = await scrape_until(reconciler, lambda s: get(s, "kinline_calls_bridged") == bridged_before,
                                   "bridged gauge back")
    assert get(rec_after, "kinline_reconciler_settled_total") == get(rec_before, "kinline_reconciler_settled_total")
    assert get(rec_after, "kinline_reconciler_cycles_total", result="ok") > \
        get(rec_before, "kinline_reconciler_cycles_total", result="ok")


async def test_an_api_request_moves_the_api_series(e2e: E2E) -> None:
    url = f"http://127.0.0.1:{e2e.config.api_port}"
    key = ("kinline_api_requests_total",
           frozenset({"method": "GET", "route": "/v1/me/balance", "status": "401"}.items()))
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        schema = (await client.get("/openapi.json")).json()
        assert "/metrics" not in schema["paths"]

        async def samples() -> Samples:
            response = await client.get("/metrics")
            assert response.status_code == 200
            return {(s.name, frozenset(s.labels.items())): s.value
                    for family in text_string_to_metric_families(response.text) for s in family.samples}

        before = await samples()
        assert (await client.get("/v1/me/balance")).status_code == 401  # no session
        after = await samples()
    assert after.get(key, 0.0) - before.get(key, 0.0) == 1


async def test_a_wake_and_its_cancel_move_the_push_series(
        e2e: E2E, fakes: FakePushServices, bridge_with_fakes: None) -> None:  # noqa: F811
    port = e2e.config.pushbridge_metrics_port
    phone = "+79165550177"
    devices = DeviceStore(e2e.config.postgres_url)
    device, _ = await devices.register(phone, "fcm", f"e2e-metrics-{uuid.uuid4().hex}", "org.kinline.app")
    redis = connect(e2e.config.redis_url)
    call_id = f"e2e-{uuid.uuid4().hex[:12]}"
    try:
        before = await first_scrape(port)  # the bridge was just restarted
        assert "kinline_pushes_total" in names(before)

        def pushes(s: Samples, kind: str) -> float:
            return get(s, "kinline_pushes_total", platform="fcm", kind=kind, outcome="delivered")

        await redis.xadd(WAKE_STREAM, wake_fields(call_id, phone, "Colony number one", 20))  # type: ignore[arg-type]
        woken = await scrape_until(port, lambda s: pushes(s, "wake") >= pushes(before, "wake") + 1, "wake push")
        # Answered elsewhere at once: the cancel goes to the woken device (and no repeated wake).
        await redis.xadd(WAKE_STREAM, wake_fields(call_id, phone, "Colony number one", 20,  # type: ignore[arg-type]
                                                  Kind.CANCEL))
        after = await scrape_until(port, lambda s: pushes(s, "cancel") >= pushes(before, "cancel") + 1,
                                   "cancel push")
        assert pushes(woken, "wake") - pushes(before, "wake") == 1
        assert pushes(after, "wake") - pushes(before, "wake") == 1
        assert pushes(after, "cancel") - pushes(before, "cancel") == 1
        assert get(after, "kinline_push_duration_seconds_count", platform="fcm") - \
            get(before, "kinline_push_duration_seconds_count", platform="fcm") == 2
        assert [p.data["kind"] for p in fakes.fcm.pushes_to(device.token)] == ["wake", "cancel"]
    finally:
        await redis.aclose()
        await devices.delete(phone, device.device_id)
        await devices.aclose()
