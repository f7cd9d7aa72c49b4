"""Calls to the relative's app ("00") end to end: a pjsua2 terminal, Asterisk, FastAGI,
Redis, PostgreSQL (the device registry and PJSIP realtime), the push bridge with the fake
FCM, and a pjsua2 app (sipagent register mode) on the apps' SIP port.

For this module the stack's AGI server waits 10 s for a woken app (KINLINE_APP_WINDOW_S)
and its push bridge pushes to the fakes (KINLINE_PUSH_CONFIG); both are restarted
without them afterwards, as the session's other tests expect."""

from __future__ import annotations

import asyncio
import math
import re
import secrets
import socket
import time
import uuid
import wave
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from ivr.devices import endpoint_id
from ivr.model import AllowedNumber, CallRecord
from ivr.relatives import CardSettings, code_hash, token_hash
from store import wake_records as records
from store.app_wake import WAKE_STREAM
from store.devices import DeviceStore
from store.redis_store import RedisStore
from store.relatives import RelativeStore
from tests.e2e.conftest import E2E, restarted_with
from tests.e2e.harness import AmiWatch, SipAgent
from tests.e2e.rawsip import _header, digest
from tests.e2e.test_inmate_calls import Terminal, new_card
from tests.e2e.test_relative_calls import tone_share
from tests.fakes.push_providers import FakePushServices

pytestmark = pytest.mark.e2e

WINDOW_S = 10  # room for the slow app below
STEP = 20.0
APP_FEE, APP_RATE = 150, 205  # the demo tariff: connection fee, app_audio per minute
# A slow app starts registering this long after its push (Asterisk lists a new contact a
# moment after its event: the wait looks again until it does).
SLOW_APP_S = 5.5


@pytest.fixture(scope="module")
def app_stack(e2e: E2E, fakes: FakePushServices, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The AGI server and the push bridge pointed at the fake providers, with the test's window."""
    config = fakes.write_config(tmp_path_factory.mktemp("push"))
    with restarted_with(e2e.config, ("agi", "pushbridge"),
                        {"KINLINE_PUSH_CONFIG": str(config), "KINLINE_APP_WINDOW_S": str(WINDOW_S)}):
        yield


@pytest.fixture
async def terminal(e2e: E2E, ami: AmiWatch, app_stack: None, tmp_path: Path) -> AsyncIterator[object]:
    """The open facility's terminal, recording what the inmate hears (tmp_path/inmate.wav)."""
    agents: list[SipAgent] = []

    async def start() -> Terminal:
        t = e2e.terminals["open"]
        agent = await SipAgent.start("call", "--target", e2e.target("100"), "--user", t.name,
                                     "--password", t.password, "--rtp-port", "20800",
                                     "--record", str(tmp_path / "inmate.wav"))
        agents.append(agent)
        channel = await ami.wait_new("Newchannel", lambda m: m.get("Channel").startswith(f"PJSIP/{t.name}-"))
        return Terminal(agent, ami, channel.get("Uniqueid"))

    yield start
    for agent in agents:
        await agent.close()


@pytest.fixture
async def apps(e2e: E2E) -> AsyncIterator[object]:
    """Start app agents registered as a device (closed after the test)."""
    agents: list[SipAgent] = []

    async def start(device_id: str, password: str, rtp_port: int, ring_s: float = 0.3) -> SipAgent:
        agent = await SipAgent.start("register", "--registrar", f"sip:{e2e.config.host}:{e2e.config.app_sip_port}",
                                     "--user", endpoint_id(device_id), "--password", password,
                                     "--rtp-port", str(rtp_port), "--ring", str(ring_s))
        agents.append(agent)
        await agent.wait_for("reg", lambda e: e["code"] == 200, timeout=STEP)
        return agent

    yield start
    for agent in agents:
        await agent.close()


def new_phone() -> str:
    return f"+7916{secrets.randbelow(10**7):07d}"


async def app_relative(store: RedisStore, devices: DeviceStore, card: str) -> tuple[str, str, str, str]:
    """A relative on the card's list with one app device: (phone, device id, SIP password, push token)."""
    phone = new_phone()
    await store.allow_number(card, AllowedNumber(phone, "Daughter"))
    token = f"e2e-fcm-{uuid.uuid4().hex}"
    device, password = await devices.register(phone, "fcm", token, "org.kinline.app")
    return phone, device.device_id, password, token


async def call_record(store: RedisStore, card: str, timeout: float = STEP) -> CallRecord:
    deadline = time.monotonic() + timeout
    while not (found := await store.call_records(card)):
        assert time.monotonic() < deadline, "no call record"
        await asyncio.sleep(0.1)
    [cdr] = found
    return cdr


async def wakes_of(redis: aioredis.Redis, call_id: str) -> list[str]:
    entries = await redis.xrange(WAKE_STREAM)
    return [fields["kind"] for _, fields in entries if fields.get("call_id") == call_id]


async def cancelled_ms(redis: aioredis.Redis, call_id: str) -> int:
    """When the call's cancel was asked (epoch ms)."""
    [ts] = [int(fields["ts"]) for _, fields in await redis.xrange(WAKE_STREAM)
            if fields.get("call_id") == call_id and fields["kind"] == "cancel"]
    return ts


async def talk_and_hang_up(term: Terminal, app: SipAgent) -> None:
    await app.wait_for("incoming", timeout=STEP)
    await app.wait_for("state", lambda e: e["state"] == "CONFIRMED", timeout=STEP)
    await term.bridged()
    await asyncio.sleep(4)
    await app.send("hangup")
    assert await term.hangup_cause() == "16"  # after_dial: goodbye, then the inmate's line ends


def assert_billed_at_the_app_rate(cdr: CallRecord, phone: str) -> None:
    assert (cdr.dial_status, cdr.number, cdr.route_kind) == ("ANSWER", phone, "app_audio")
    assert 3 <= cdr.answered_s <= 6  # ~4 s from the bridge
    assert cdr.billed_s == 60
    assert cdr.amount == APP_FEE + math.ceil(APP_RATE * cdr.billed_s / 60)


async def test_a_registered_app_is_dialed_without_a_push_and_billed_at_the_app_rate(
        e2e: E2E, store: RedisStore, devices: DeviceStore, redis: aioredis.Redis, fakes: FakePushServices,
        terminal: object, apps: object) -> None:
    card = await new_card(store, "open", 10_000)
    phone, device_id, password, token = await app_relative(store, devices, card)
    app: SipAgent = await apps(device_id, password, 24400)  # type: ignore[operator]
    term: Terminal = await terminal()  # type: ignore[operator]
    await term.login(card)
    await term.answer("enter-number", "00" + phone[1:])
    await talk_and_hang_up(term, app)
    cdr = await call_record(store, card)
    assert_billed_at_the_app_rate(cdr, phone)
    assert cdr.payer == "caller"
    assert (await store.card(card)).balance == 10_000 - cdr.amount  # type: ignore[union-attr]
    assert fakes.fcm.pushes_to(token) == []  # dialed at once: no push
    assert await wakes_of(redis, cdr.call_id) == ["cancel"]  # after the call, for devices woken elsewhere
    [attempt] = records.per_device(await records.read_attempts(redis, cdr.call_id))
    assert attempt.device_id == device_id and attempt.push_sent_ms is None
    assert attempt.invite_ms is not None and attempt.answered_ms is not None
    assert attempt.invite_ms <= attempt.answered_ms
    assert cdr.connected_at is not None
    assert abs(attempt.answered_ms - cdr.connected_at.timestamp() * 1000) < 1000


async def test_an_app_not_registered_is_woken_by_a_push_registers_and_is_billed(
        e2e: E2E, store: RedisStore, devices: DeviceStore, redis: aioredis.Redis, fakes: FakePushServices,
        terminal: object, apps: object) -> None:
    card = await new_card(store, "open", 10_000)
    phone, device_id, password, token = await app_relative(store, devices, card)
    term: Terminal = await terminal()  # type: ignore[operator]
    await term.login(card)
    await term.answer("enter-number", "00" + phone[1:])
    await term.prompt("app-connecting")
    # The push reaches the fake FCM; the app it wakes registers and takes the INVITE.
    deadline = time.monotonic() + STEP
    while not fakes.fcm.pushes_to(token):
        assert time.monotonic() < deadline, "no push at the fake FCM"
        await asyncio.sleep(0.02)
    [push] = fakes.fcm.pushes_to(token)
    assert push.data["kind"] == "wake"
    call_id = push.data["call_id"]
    await asyncio.sleep(SLOW_APP_S)  # a slow app: after the bridge's own repeated push
    app: SipAgent = await apps(device_id, password, 24500)  # type: ignore[operator]
    await talk_and_hang_up(term, app)
    cdr = await call_record(store, card)
    assert cdr.call_id == call_id  # the push named the call the INVITE belongs to
    assert_billed_at_the_app_rate(cdr, phone)
    [attempt] = records.per_device(await records.read_attempts(redis, call_id))
    assert attempt.device_id == device_id and attempt.push_result == "delivered"
    assert attempt.push_to_contact_ms is not None and attempt.push_to_contact_ms >= 0  # the wake latency
    assert attempt.contact_ms is not None and attempt.invite_ms is not None and attempt.answered_ms is not None
    assert attempt.contact_ms <= attempt.invite_ms <= attempt.answered_ms
    assert await wakes_of(redis, call_id) == ["wake", "cancel"]
    # The cancel went at the bridge (other devices stop ringing), not after the call.
    assert cdr.ended_at is not None
    assert attempt.answered_ms <= await cancelled_ms(redis, call_id) < cdr.ended_at.timestamp() * 1000 - 2000


async def test_an_app_that_never_registers_is_unreachable_not_billed_and_the_card_freed(
        e2e: E2E, store: RedisStore, devices: DeviceStore, redis: aioredis.Redis, fakes: FakePushServices,
        ami: AmiWatch, terminal: object, tmp_path: Path) -> None:
    card = await new_card(store, "open", 10_000)
    phone, _, _, token = await app_relative(store, devices, card)
    term: Terminal = await terminal()  # type: ignore[operator]
    await term.login(card)
    await term.answer("enter-number", "00" + phone[1:])
    started = time.monotonic()
    await term.prompt("app-connecting")
    await term.prompt("app-unreachable", timeout=WINDOW_S + STEP)
    assert time.monotonic() - started >= WINDOW_S - 1  # it waited the window
    await term.prompt("dial-another")
    await term.agent.send("hangup")
    await term.hangup_cause()
    await term.agent.close()  # the recorder writes its WAV header at exit
    # Nothing was dialed: any 425 Hz ring tone is the wait's ringback (0.8 s in every 4 s).
    recording = tmp_path / "inmate.wav"
    with wave.open(str(recording), "rb") as wav:
        length = wav.getnframes() / wav.getframerate()
    share = tone_share(recording, 0, length)
    assert share > 0.03, f"ringback in {share:.1%} of the call"
    cdr = await call_record(store, card)
    assert (cdr.route_kind, cdr.dial_status, cdr.amount, cdr.billed_s) == ("app_audio", "CHANUNAVAIL", 0, 0)
    assert len(fakes.fcm.pushes_to(token)) >= 1
    assert await wakes_of(redis, cdr.call_id) == ["wake", "cancel"]
    assert not [m for m in ami.events if m.event == "DialBegin" and m.get("Uniqueid") == term.uid]
    assert (await store.card(card)).balance == 10_000  # type: ignore[union-attr]
    deadline = time.monotonic() + STEP
    while not await store.acquire_card(card, "probe", 5):  # freed by the hangup handler
        assert time.monotonic() < deadline, "card still locked"
        await asyncio.sleep(0.1)
    await store.release_card(card, "probe")


async def test_01_00_the_relative_accepts_in_the_app_and_pays_at_the_app_rate(
        e2e: E2E, store: RedisStore, devices: DeviceStore, redis: aioredis.Redis, ami: AmiWatch,
        terminal: object, apps: object) -> None:
    card = await new_card(store, "open", 10_000)
    phone, device_id, password, _ = await app_relative(store, devices, card)
    rel = RelativeStore(store.redis)
    assert await rel.issue_code(phone, code_hash(phone, "123456"), datetime.now(UTC))
    assert await rel.check_code(phone, code_hash(phone, "123456"), token_hash(f"tok-{phone}")) == "ok"
    await rel.create_payment(f"pay-{phone}", phone, 10_000)
    assert await rel.credit_payment(f"pay-{phone}", 10_000) == (True, 10_000)
    await rel.put_card_settings(phone, card, CardSettings(always_in_touch=True))
    app: SipAgent = await apps(device_id, password, 24600)  # type: ignore[operator]
    term: Terminal = await terminal()  # type: ignore[operator]
    await term.login(card)
    await term.answer("enter-number", "0100" + phone[1:])
    await app.wait_for("state", lambda e: e["state"] == "CONFIRMED", timeout=STEP)
    dial = await ami.wait_for("DialBegin", lambda m: m.get("Uniqueid") == term.uid, timeout=STEP)
    assert dial.get("DestChannel").startswith(f"PJSIP/{endpoint_id(device_id)}-")
    leg = dial.get("DestUniqueid")
    await ami.wait_played(leg, "kinline/en/accept-menu", timeout=60)
    await app.send("dtmf 1 rfc2833")
    await term.bridged()
    await asyncio.sleep(4)
    await app.send("hangup")
    assert await term.hangup_cause() == "16"
    cdr = await call_record(store, card)
    assert_billed_at_the_app_rate(cdr, phone)
    assert cdr.payer == "callee"
    assert await rel.balance(phone) == 10_000 - cdr.amount
    assert (await store.card(card)).balance == 10_000  # type: ignore[union-attr]


async def test_01_00_a_woken_app_that_declines_ends_the_ringing_and_nothing_is_billed(
        e2e: E2E, store: RedisStore, devices: DeviceStore, redis: aioredis.Redis, ami: AmiWatch,
        fakes: FakePushServices, terminal: object, apps: object) -> None:
    """The accept menu through a woken device's leg: it runs on the app's own channel, and
    a decline ends the call's Dial as for a registered app (the inmate is told, nobody pays)."""
    card = await new_card(store, "open", 10_000)
    phone, device_id, password, token = await app_relative(store, devices, card)
    rel = RelativeStore(store.redis)
    assert await rel.issue_code(phone, code_hash(phone, "123456"), datetime.now(UTC))
    assert await rel.check_code(phone, code_hash(phone, "123456"), token_hash(f"tok-{phone}")) == "ok"
    await rel.create_payment(f"pay-{phone}", phone, 10_000)
    assert await rel.credit_payment(f"pay-{phone}", 10_000) == (True, 10_000)
    await rel.put_card_settings(phone, card, CardSettings(always_in_touch=True))
    term: Terminal = await terminal()  # type: ignore[operator]
    await term.login(card)
    await term.answer("enter-number", "0100" + phone[1:])
    deadline = time.monotonic() + STEP
    while not fakes.fcm.pushes_to(token):
        assert time.monotonic() < deadline, "no push at the fake FCM"
        await asyncio.sleep(0.02)
    app: SipAgent = await apps(device_id, password, 25100)  # type: ignore[operator]
    await app.wait_for("state", lambda e: e["state"] == "CONFIRMED", timeout=STEP)
    app_channel = f"PJSIP/{endpoint_id(device_id)}-"
    dial = await ami.wait_for("DialBegin", lambda m: m.get("DestChannel").startswith(app_channel), timeout=STEP)
    assert dial.get("Channel").startswith(f"Local/{device_id}@kinline-app-leg-")  # rung by its leg
    leg = dial.get("DestUniqueid")
    await ami.wait_played(leg, "kinline/en/accept-menu", timeout=60)
    await app.send("dtmf 2 rfc2833")
    await term.prompt("call-declined")
    await app.ended()
    await term.agent.send("hangup")
    await term.hangup_cause()
    cdr = await call_record(store, card)
    assert (cdr.route_kind, cdr.payer, cdr.amount, cdr.billed_s) == ("app_audio", "callee", 0, 0)
    assert await rel.balance(phone) == 10_000
    assert (await store.card(card)).balance == 10_000  # type: ignore[union-attr]


async def test_two_devices_ring_together_the_first_answer_wins_the_other_is_cancelled(
        e2e: E2E, store: RedisStore, devices: DeviceStore, redis: aioredis.Redis, ami: AmiWatch,
        terminal: object, apps: object) -> None:
    card = await new_card(store, "open", 10_000)
    phone, first_id, first_password, _ = await app_relative(store, devices, card)
    second, second_password = await devices.register(phone, "fcm", f"e2e-fcm-{uuid.uuid4().hex}", "org.kinline.app")
    slow: SipAgent = await apps(first_id, first_password, 24700, 15.0)  # type: ignore[operator]
    quick: SipAgent = await apps(second.device_id, second_password, 24800, 0.5)  # type: ignore[operator]
    term: Terminal = await terminal()  # type: ignore[operator]
    await term.login(card)
    await term.answer("enter-number", "00" + phone[1:])
    await slow.wait_for("incoming", timeout=STEP)  # both rang
    await quick.wait_for("incoming", timeout=STEP)
    await quick.wait_for("state", lambda e: e["state"] == "CONFIRMED", timeout=STEP)
    await term.bridged()
    await slow.ended()  # Dial cancelled the other INVITE
    assert not [e for e in slow.events if e["event"] == "state" and e["state"] == "CONFIRMED"]
    await asyncio.sleep(3)
    await quick.send("hangup")
    assert await term.hangup_cause() == "16"
    cdr = await call_record(store, card)
    assert (cdr.dial_status, cdr.route_kind) == ("ANSWER", "app_audio")
    steps = {d.device_id: d for d in records.per_device(await records.read_attempts(redis, cdr.call_id))}
    assert steps[first_id].invite_ms is not None and steps[second.device_id].invite_ms is not None
    assert steps[second.device_id].answered_ms is not None and steps[first_id].answered_ms is None


async def test_a_device_registering_after_another_rings_too_and_its_answer_wins(
        e2e: E2E, store: RedisStore, devices: DeviceStore, redis: aioredis.Redis, fakes: FakePushServices,
        terminal: object, apps: object) -> None:
    """Two woken devices: A registers and rings without answering; B registers 4 s later,
    is rung while A still rings, and answers: B is bridged and billed at the app rate from
    the bridge, A's INVITE is cancelled (SIP CANCEL: 487), one cancel push (to A)."""
    card = await new_card(store, "open", 10_000)
    phone, first_id, first_password, first_token = await app_relative(store, devices, card)
    second_token = f"e2e-fcm-{uuid.uuid4().hex}"
    second, second_password = await devices.register(phone, "fcm", second_token, "org.kinline.app")
    term: Terminal = await terminal()  # type: ignore[operator]
    await term.login(card)
    await term.answer("enter-number", "00" + phone[1:])
    await term.prompt("app-connecting")
    deadline = time.monotonic() + STEP
    while not (fakes.fcm.pushes_to(first_token) and fakes.fcm.pushes_to(second_token)):
        assert time.monotonic() < deadline, "no push to both devices at the fake FCM"
        await asyncio.sleep(0.02)
    call_id = fakes.fcm.pushes_to(first_token)[0].data["call_id"]
    slow: SipAgent = await apps(first_id, first_password, 24900, 15.0)  # type: ignore[operator]
    await slow.wait_for("incoming", timeout=STEP)  # A rings (and would answer only after 15 s)
    await asyncio.sleep(4)
    quick: SipAgent = await apps(second.device_id, second_password, 25000, 0.5)  # type: ignore[operator]
    await quick.wait_for("incoming", timeout=STEP)  # B rings while A still does
    assert not [e for e in slow.events if e["event"] == "state" and e["state"] == "DISCONNECTED"]
    await quick.wait_for("state", lambda e: e["state"] == "CONFIRMED", timeout=STEP)
    await term.bridged()
    cancelled = await slow.ended()
    assert cancelled["code"] == 487, cancelled  # Dial cancelled A's INVITE (Request Terminated)
    assert not [e for e in slow.events if e["event"] == "state" and e["state"] == "CONFIRMED"]
    await asyncio.sleep(4)
    await quick.send("hangup")
    assert await term.hangup_cause() == "16"
    cdr = await call_record(store, card)
    assert cdr.call_id == call_id
    assert_billed_at_the_app_rate(cdr, phone)
    assert (await store.card(card)).balance == 10_000 - cdr.amount  # type: ignore[union-attr]
    steps = {d.device_id: d for d in records.per_device(await records.read_attempts(redis, call_id))}
    a, b = steps[first_id], steps[second.device_id]
    assert a.invite_ms is not None and a.answered_ms is None
    assert b.contact_ms is not None and b.invite_ms is not None and b.answered_ms is not None
    assert b.contact_ms <= b.invite_ms <= b.answered_ms
    assert b.invite_ms - a.invite_ms >= 3000  # B was rung when it registered, not with A
    assert cdr.connected_at is not None
    assert abs(b.answered_ms - cdr.connected_at.timestamp() * 1000) < 1000
    assert await wakes_of(redis, call_id) == ["wake", "cancel"]  # one cancel, at the bridge
    assert cdr.ended_at is not None
    assert b.answered_ms <= await cancelled_ms(redis, call_id) < cdr.ended_at.timestamp() * 1000 - 2000

    def cancel_pushes(token: str) -> int:
        return sum(1 for push in fakes.fcm.pushes_to(token) if push.data["kind"] == "cancel")

    deadline = time.monotonic() + STEP
    while cancel_pushes(first_token) < 1:  # the bridge pushed the cancel to A, not to B who answered
        assert time.monotonic() < deadline, "no cancel push to A"
        await asyncio.sleep(0.05)
    assert (cancel_pushes(first_token), cancel_pushes(second_token)) == (1, 0)


async def test_the_inmate_hanging_up_while_a_device_rings_and_another_is_awaited_cancels_once(
        e2e: E2E, store: RedisStore, devices: DeviceStore, redis: aioredis.Redis, fakes: FakePushServices,
        terminal: object, apps: object) -> None:
    """A rings (its leg Dialed it), B's leg still waits for B's contact: the inmate hangs
    up. A's INVITE is cancelled, B's leg (hung up) asks the cancel, once: B stops ringing."""
    card = await new_card(store, "open", 10_000)
    phone, first_id, first_password, first_token = await app_relative(store, devices, card)
    second_token = f"e2e-fcm-{uuid.uuid4().hex}"
    await devices.register(phone, "fcm", second_token, "org.kinline.app")
    term: Terminal = await terminal()  # type: ignore[operator]
    await term.login(card)
    await term.answer("enter-number", "00" + phone[1:])
    deadline = time.monotonic() + STEP
    while not fakes.fcm.pushes_to(first_token):
        assert time.monotonic() < deadline, "no push at the fake FCM"
        await asyncio.sleep(0.02)
    call_id = fakes.fcm.pushes_to(first_token)[0].data["call_id"]
    app: SipAgent = await apps(first_id, first_password, 25200, 15.0)  # type: ignore[operator]
    await app.wait_for("incoming", timeout=STEP)
    assert await wakes_of(redis, call_id) == ["wake"]  # A rings, B is still awaited
    await term.agent.send("hangup")
    await term.hangup_cause()
    cancelled = await app.ended()
    assert cancelled["code"] == 487, cancelled
    deadline = time.monotonic() + STEP
    while await wakes_of(redis, call_id) != ["wake", "cancel"]:
        assert time.monotonic() < deadline, f"no cancel: {await wakes_of(redis, call_id)}"
        await asyncio.sleep(0.05)
    while not [push for push in fakes.fcm.pushes_to(second_token) if push.data["kind"] == "cancel"]:
        assert time.monotonic() < deadline, "no cancel push to B"
        await asyncio.sleep(0.05)
    cdr = await call_record(store, card)
    assert (cdr.route_kind, cdr.amount, cdr.billed_s) == ("app_audio", 0, 0)
    assert (await store.card(card)).balance == 10_000  # type: ignore[union-attr]
    assert await wakes_of(redis, call_id) == ["wake", "cancel"]  # once, though every leg was hung up


async def test_the_inmate_hanging_up_during_the_wait_cancels_the_wake_and_pays_nothing(
        e2e: E2E, store: RedisStore, devices: DeviceStore, redis: aioredis.Redis, fakes: FakePushServices,
        terminal: object) -> None:
    card = await new_card(store, "open", 10_000)
    phone, _, _, token = await app_relative(store, devices, card)
    term: Terminal = await terminal()  # type: ignore[operator]
    await term.login(card)
    await term.answer("enter-number", "00" + phone[1:])
    await term.prompt("app-connecting")
    deadline = time.monotonic() + STEP
    while not fakes.fcm.pushes_to(token):
        assert time.monotonic() < deadline, "no push at the fake FCM"
        await asyncio.sleep(0.02)
    hung_up = time.monotonic()
    await term.agent.send("hangup")
    await term.hangup_cause()
    cdr = await call_record(store, card)
    assert (cdr.route_kind, cdr.amount, cdr.billed_s) == ("app_audio", 0, 0)
    deadline = time.monotonic() + STEP
    while await wakes_of(redis, cdr.call_id) != ["wake", "cancel"]:
        assert time.monotonic() < deadline, f"no cancel: {await wakes_of(redis, cdr.call_id)}"
        await asyncio.sleep(0.05)
    assert time.monotonic() - hung_up < WINDOW_S  # noticed before the window ran out
    while len(fakes.fcm.pushes_to(token)) < 2:  # the bridge pushed the cancel to the woken device
        assert time.monotonic() < deadline, "no cancel push"
        await asyncio.sleep(0.05)
    assert fakes.fcm.pushes_to(token)[1].data["kind"] == "cancel"
    assert (await store.card(card)).balance == 10_000  # type: ignore[union-attr]
    while not await store.acquire_card(card, "probe", 5):
        assert time.monotonic() < deadline, "card still locked"
        await asyncio.sleep(0.1)
    await store.release_card(card, "probe")


class RawApp:
    """The app as raw SIP over UDP (pjsua2 does not show an INVITE's headers): REGISTERs
    with digest, answers OPTIONS (qualify) with 200, and refuses each INVITE with 486,
    keeping it (headers included)."""

    def __init__(self, host: str, port: int, user: str, password: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.target = (host, port)
        self.user, self.password = user, password
        self.invites: list[str] = []

    def close(self) -> None:
        self.sock.close()

    def register(self, timeout: float = 5.0) -> int:
        lhost, lport = self.sock.getsockname()
        uri = f"sip:{self.target[0]}:{self.target[1]}"
        call_id, tag = secrets.token_hex(8), secrets.token_hex(4)

        def send(cseq: int, auth: str = "") -> None:
            lines = [f"REGISTER {uri} SIP/2.0",
                     f"Via: SIP/2.0/UDP {lhost}:{lport};branch=z9hG4bK{secrets.token_hex(8)};rport",
                     "Max-Forwards: 70", f"From: <sip:{self.user}@{self.target[0]}>;tag={tag}",
                     f"To: <sip:{self.user}@{self.target[0]}>", f"Call-ID: {call_id}", f"CSeq: {cseq} REGISTER",
                     f"Contact: <sip:{self.user}@{lhost}:{lport}>", "Expires: 120",
                     *([f"Authorization: {auth}"] if auth else []), "Content-Length: 0"]
            self.sock.sendto(("\r\n".join(lines) + "\r\n\r\n").encode(), self.target)

        send(1)
        reply = self._reply(call_id, timeout)
        if reply.startswith("SIP/2.0 401"):
            send(2, digest("REGISTER", uri, self.user, self.password, _header(reply, "WWW-Authenticate")))
            reply = self._reply(call_id, timeout)
        return int(reply.split(" ", 2)[1]) if reply else 0

    def _reply(self, call_id: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data, peer = self.sock.recvfrom(65535)
            except TimeoutError:
                return ""
            text = data.decode(errors="replace")
            if text.startswith("SIP/2.0 ") and _header(text, "Call-ID") == call_id and not text.startswith("SIP/2.0 1"):
                return text
            if not text.startswith("SIP/2.0 "):
                self._answer(text, peer)
        return ""

    def _answer(self, request: str, peer: tuple[str, int]) -> None:
        method = request.split(" ", 1)[0]
        if method in ("ACK", ""):
            return
        code = "486 Busy Here" if method == "INVITE" else "200 OK"
        if method == "INVITE":
            self.invites.append(request)
        to = _header(request, "To")
        lines = [f"SIP/2.0 {code}", *[f"Via: {v}" for v in re.findall(r"^Via\s*:\s*(.*?)\r?$", request,
                                                                     re.IGNORECASE | re.MULTILINE)],
                 f"From: {_header(request, 'From')}", f"To: {to}" + ("" if "tag=" in to else ";tag=raw1"),
                 f"Call-ID: {_header(request, 'Call-ID')}", f"CSeq: {_header(request, 'CSeq')}", "Content-Length: 0"]
        self.sock.sendto(("\r\n".join(lines) + "\r\n\r\n").encode(), peer)

    def serve_until_invite(self, timeout: float) -> str:
        """Answer requests until an INVITE came (refused 486) or ``timeout``; the INVITE or ''."""
        deadline = time.monotonic() + timeout
        while not self.invites and (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data, peer = self.sock.recvfrom(65535)
            except TimeoutError:
                break
            text = data.decode(errors="replace")
            if not text.startswith("SIP/2.0 "):
                self._answer(text, peer)
        return self.invites[0] if self.invites else ""


async def refused_app_call(e2e: E2E, store: RedisStore, devices: DeviceStore, terminal: object,
                           ) -> tuple[str, CallRecord, str]:
    """A 00 call to a raw app that refuses the INVITE: (the card, its call record, the INVITE)."""
    card = await new_card(store, "open", 10_000)
    phone, device_id, password, _ = await app_relative(store, devices, card)
    app = RawApp(e2e.config.host, e2e.config.app_sip_port, endpoint_id(device_id), password)
    try:
        assert await asyncio.to_thread(app.register) == 200
        serving = asyncio.ensure_future(asyncio.to_thread(app.serve_until_invite, 3 * STEP))  # qualify, INVITE
        term: Terminal = await terminal()  # type: ignore[operator]
        await term.login(card)
        await term.answer("enter-number", "00" + phone[1:])
        invite = await serving
    finally:
        app.close()
    assert invite.startswith(f"INVITE sip:{endpoint_id(device_id)}@")
    await term.prompt("app-unreachable")  # the only device refused: the app is unreachable
    await term.prompt("dial-another")
    await term.agent.send("hangup")
    await term.hangup_cause()
    return card, await call_record(store, card), invite


async def test_an_app_refusing_the_invite_is_unreachable_and_nothing_is_billed(
        e2e: E2E, store: RedisStore, devices: DeviceStore, terminal: object) -> None:
    card, cdr, _ = await refused_app_call(e2e, store, devices, terminal)
    assert (cdr.route_kind, cdr.dial_status, cdr.amount) == ("app_audio", "BUSY", 0)
    assert (await store.card(card)).balance == 10_000  # type: ignore[union-attr]


async def test_the_app_invite_carries_the_call_id(
        e2e: E2E, store: RedisStore, devices: DeviceStore, terminal: object) -> None:
    _, cdr, invite = await refused_app_call(e2e, store, devices, terminal)
    assert _header(invite, "X-Kinline-Call-Id") == cdr.call_id, invite
