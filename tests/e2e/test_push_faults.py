"""Push faults on the real stack: the provider (the fake FCM) answers like FCM does when a
token is dead, or fails twice before it takes the push. A pjsua2 terminal dials 00; the
stack's AGI server, push bridge, PostgreSQL device registry and Asterisk are the real ones.

- invalid token (FCM 404 UNREGISTERED): the bridge deactivates the device in the registry
  and, no push having been delivered, tells the waiting call (Unwakeable on
  kl:contact:<phone>): the inmate hears "the app is unreachable" at once, well before the
  window ends, nothing is billed; a second call to that relative pushes nothing (no active
  device: refused at once);
- 503, 500, then success: the bridge retries inside the window, the woken app registers,
  takes the INVITE and the call is bridged and billed at the app rate.

The stack's AGI server (window 10 s) and bridge (the fakes' [push] config) are restarted
for this module, as in test_app_calls.py, whose fixtures and helpers are reused."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest
import redis.asyncio as aioredis

from store import wake_records as records
from store.devices import DeviceStore
from store.redis_store import RedisStore
from tests.e2e.conftest import E2E
from tests.e2e.harness import AmiWatch, SipAgent
from tests.e2e.test_app_calls import (  # noqa: F401 (fixtures)
    STEP,
    WINDOW_S,
    app_relative,
    app_stack,
    apps,
    assert_billed_at_the_app_rate,
    call_record,
    talk_and_hang_up,
    terminal,
    wakes_of,
)
from tests.e2e.test_inmate_calls import Terminal, new_card
from tests.fakes.push_providers import INVALID, FakePushServices, server_error

pytestmark = pytest.mark.e2e


async def until_pushed(services: FakePushServices, token: str, count: int) -> None:
    deadline = time.monotonic() + STEP
    while len(services.fcm.pushes_to(token)) < count:
        assert time.monotonic() < deadline, f"{len(services.fcm.pushes_to(token))} of {count} pushes at the fake FCM"
        await asyncio.sleep(0.02)


async def test_an_invalid_token_is_deactivated_the_call_unreachable_and_never_pushed_again(
        e2e: E2E, store: RedisStore, devices: DeviceStore, redis: aioredis.Redis,
        fakes: FakePushServices, ami: AmiWatch, terminal: object) -> None:  # noqa: F811
    card = await new_card(store, "open", 10_000)
    phone, device_id, _, token = await app_relative(store, devices, card)
    fakes.fcm.script(token, INVALID)  # FCM: 404 NOT_FOUND, errorCode UNREGISTERED
    term: Terminal = await terminal()  # type: ignore[operator]
    await term.login(card)
    await term.answer("enter-number", "00" + phone[1:])
    await term.prompt("app-connecting")
    await until_pushed(fakes, token, 1)
    [push] = fakes.fcm.pushes_to(token)
    assert push.answer == "invalid"
    deadline = time.monotonic() + STEP
    while [d.active for d in await devices.devices(phone)] != [False]:  # the bridge deactivated it
        assert time.monotonic() < deadline, f"still active: {await devices.devices(phone)}"
        await asyncio.sleep(0.05)
    [device] = await devices.devices(phone)
    assert device.device_id == device_id and "fcm" in (device.deactivated_reason or "")
    await term.prompt("app-unreachable", timeout=WINDOW_S + STEP)
    heard_s = time.monotonic() - push.received_at
    sys.stderr.write(f"invalid token: 'unreachable' {heard_s:.2f} s after the push (window {WINDOW_S} s)\n")
    assert heard_s < WINDOW_S / 2, f"'unreachable' {heard_s:.1f} s after the push: the call waited the window"
    await term.prompt("dial-another")
    await term.agent.send("hangup")
    await term.hangup_cause()
    cdr = await call_record(store, card)
    assert (cdr.route_kind, cdr.amount, cdr.billed_s) == ("app_audio", 0, 0)
    assert cdr.dial_status != "ANSWER"
    assert (await store.card(card)).balance == 10_000  # type: ignore[union-attr]
    events = await records.read_attempts(redis, cdr.call_id)
    [sent] = [e for e in events if e.event == records.PUSH_SENT]
    assert (sent.device_id, sent.result) == (device_id, "invalid_token")
    [deactivated] = [e for e in events if e.event == records.DEACTIVATED]
    assert (deactivated.device_id, deactivated.result) == (device_id, "done")
    assert not [e for e in events if e.event == records.INVITE_SENT]
    assert await wakes_of(redis, cdr.call_id) == ["wake", "cancel"]  # the cancel logic as on a timeout
    assert not [m for m in ami.events if m.event == "DialBegin" and m.get("Uniqueid") == term.uid]
    await term.agent.close()

    # The next call to that relative: no active device, refused at once, nothing pushed.
    deadline = time.monotonic() + STEP
    while not await store.acquire_card(card, "probe", 5):  # the first call's card lock is freed
        assert time.monotonic() < deadline, "card still locked"
        await asyncio.sleep(0.1)
    await store.release_card(card, "probe")
    wakes_before = len(await redis.xrange("kl:wake"))
    again: Terminal = await terminal()  # type: ignore[operator]
    await again.login(card)
    await again.answer("enter-number", "00" + phone[1:])
    await again.prompt("app-none")
    await again.agent.send("hangup")
    await again.hangup_cause()
    assert len(fakes.fcm.pushes_to(token)) == 1  # the dead token was not pushed again
    new = (await redis.xrange("kl:wake"))[wakes_before:]
    assert not [f for _, f in new if f.get("phone") == phone], new  # no wake was even asked
    assert (await store.card(card)).balance == 10_000  # type: ignore[union-attr]


async def test_server_errors_then_success_are_retried_and_the_woken_app_is_bridged(
        e2e: E2E, store: RedisStore, devices: DeviceStore, redis: aioredis.Redis,
        fakes: FakePushServices, terminal: object, apps: object) -> None:  # noqa: F811
    card = await new_card(store, "open", 10_000)
    phone, device_id, password, token = await app_relative(store, devices, card)
    fakes.fcm.script(token, server_error(503), server_error(500))  # then 200
    term: Terminal = await terminal()  # type: ignore[operator]
    await term.login(card)
    await term.answer("enter-number", "00" + phone[1:])
    await term.prompt("app-connecting")
    await until_pushed(fakes, token, 3)
    pushes = fakes.fcm.pushes_to(token)
    assert [p.answer for p in pushes] == ["error", "error", "ok"]
    assert pushes[2].received_at - pushes[0].received_at < WINDOW_S  # retried inside the window
    call_id = pushes[2].data["call_id"]
    app: SipAgent = await apps(device_id, password, 24900)  # type: ignore[operator]  # the woken app registers
    await talk_and_hang_up(term, app)
    cdr = await call_record(store, card)
    assert cdr.call_id == call_id
    assert_billed_at_the_app_rate(cdr, phone)
    events = await records.read_attempts(redis, call_id)
    [sent] = [e for e in events if e.event == records.PUSH_SENT]
    assert (sent.device_id, sent.result, sent.tries) == (device_id, "delivered", 3)
    [attempt] = records.per_device(events)
    assert attempt.contact_ms is not None and attempt.invite_ms is not None and attempt.answered_ms is not None
    assert attempt.push_sent_ms is not None and attempt.push_sent_ms <= attempt.contact_ms <= attempt.invite_ms
    assert [d.active for d in await devices.devices(phone)] == [True]
    assert await wakes_of(redis, call_id) == ["wake", "cancel"]
