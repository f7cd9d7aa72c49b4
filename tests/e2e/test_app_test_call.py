"""The free audio test call end to end: the relatives' API (POST /v1/app/test-call), AMI
Originate as the originate-only user, Asterisk, FastAGI, Redis, PostgreSQL (the devices and
PJSIP realtime), the push bridge with the fake FCM, and pjsua2 apps (sipagent register
mode) that register only once their push came, answer and record what they hear.

For this module the stack's AGI server waits 10 s for a woken app (KINLINE_APP_WINDOW_S)
and its push bridge pushes to the fakes (KINLINE_PUSH_CONFIG); both are restarted without
them afterwards, as the session's other tests expect."""

from __future__ import annotations

import asyncio
import math
import secrets
import struct
import time
import uuid
import wave
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from ivr.app_test import LIMIT, WINDOW_S
from ivr.devices import endpoint_id
from ivr.model import AllowedNumber
from ivr.relatives import code_hash, token_hash
from store import wake_records as records
from store.devices import DeviceStore
from store.redis_store import CDR_LOG, RedisStore
from store.relatives import RelativeStore
from tests.e2e.conftest import E2E, restarted_with
from tests.e2e.harness import AmiWatch, SipAgent
from tests.e2e.test_inmate_calls import new_card
from tests.fakes.push_providers import FakePushServices
from tools import stack

pytestmark = pytest.mark.e2e

APP_WINDOW_S = 10
STEP = 20.0
TONE_HZ = 1230  # what the app says during the echo (the beep and the guide have no such pure tone)
CALL_S = 45  # guide + beep + 10 s of echo + goodbye, with room


@pytest.fixture(scope="module")
def app_stack(e2e: E2E, fakes: FakePushServices, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The AGI server and the push bridge pointed at the fake providers, with the test's window."""
    config = fakes.write_config(tmp_path_factory.mktemp("push"))
    with restarted_with(e2e.config, ("agi", "pushbridge"),
                        {"KINLINE_PUSH_CONFIG": str(config), "KINLINE_APP_WINDOW_S": str(APP_WINDOW_S)}):
        yield


@pytest.fixture
async def api(e2e: E2E, app_stack: None) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://{e2e.config.host}:{e2e.config.api_port}", timeout=10) as client:
        yield client


@pytest.fixture
async def apps(e2e: E2E) -> AsyncIterator[list[SipAgent]]:
    agents: list[SipAgent] = []
    yield agents
    for agent in agents:
        await agent.close()


async def relative(store: RedisStore, devices: DeviceStore, card: str, balance: int = 10_000,
                   ) -> tuple[str, str, str, str, dict[str, str]]:
    """A relative on the card's list with money, a session and one app device:
    (phone, device id, SIP password, push token, the API's auth header)."""
    phone = f"+7916{secrets.randbelow(10**7):07d}"
    await store.allow_number(card, AllowedNumber(phone, "Daughter"))
    rel = RelativeStore(store.redis)
    assert await rel.issue_code(phone, code_hash(phone, "123456"), datetime.now(UTC))
    assert await rel.check_code(phone, code_hash(phone, "123456"), token_hash(f"tok-{phone}")) == "ok"
    await rel.create_payment(f"pay-{phone}", phone, balance)
    assert await rel.credit_payment(f"pay-{phone}", balance) == (True, balance)
    token = f"e2e-fcm-{uuid.uuid4().hex}"
    device, password = await devices.register(phone, "fcm", token, "org.kinline.app")
    return phone, device.device_id, password, token, {"Authorization": f"Bearer tok-{phone}"}


def write_tone(path: Path, hz: int = TONE_HZ, seconds: int = 1) -> Path:
    """A whole number of seconds of a pure tone (it loops without a click)."""
    rate = 8000
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(b"".join(struct.pack("<h", round(8000 * math.sin(2 * math.pi * hz * i / rate)))
                                 for i in range(rate * seconds)))
    return path


def analyse(path: Path, hz: int = TONE_HZ) -> tuple[float, float, float]:
    """(seconds recorded, seconds of sound: 20 ms frames with RMS > 300, seconds whose
    20 ms frames hold more than half their energy at ``hz``: Goertzel)."""
    with wave.open(str(path), "rb") as wav:
        rate = wav.getframerate()
        raw = wav.readframes(wav.getnframes())
    samples = struct.unpack(f"<{len(raw) // 2}h", raw)
    n = rate // 50
    coeff = 2 * math.cos(2 * math.pi * hz / rate)
    loud = toned = 0
    for i in range(0, len(samples) - n + 1, n):
        frame = samples[i:i + n]
        energy = sum(x * x for x in frame)
        if math.sqrt(energy / n) > 300:
            loud += 1
        s1 = s2 = 0.0
        for x in frame:
            s1, s2 = x + coeff * s1 - s2, s1
        power = s1 * s1 + s2 * s2 - coeff * s1 * s2
        toned += energy > 1e5 * n and power > 0.5 * energy * n / 2
    return len(samples) / rate, loud / 50, toned / 50


async def pushed(fakes: FakePushServices, token: str) -> dict[str, str]:
    deadline = time.monotonic() + STEP
    while not fakes.fcm.pushes_to(token):
        assert time.monotonic() < deadline, "no push at the fake FCM"
        await asyncio.sleep(0.02)
    data: dict[str, str] = fakes.fcm.pushes_to(token)[0].data
    return data


async def woken_app(e2e: E2E, apps: list[SipAgent], device_id: str, password: str, rtp_port: int,
                    record: Path, play: Path | None) -> SipAgent:
    args = ["register", "--registrar", f"sip:{e2e.config.host}:{e2e.config.app_sip_port}",
            "--user", endpoint_id(device_id), "--password", password, "--rtp-port", str(rtp_port),
            "--ring", "0.3", "--record", str(record)]
    agent = await SipAgent.start(*args, *(["--play", str(play)] if play else []))
    apps.append(agent)
    await agent.wait_for("reg", lambda e: e["code"] == 200, timeout=STEP)
    return agent


async def money_state(store: RedisStore, rel: RelativeStore, card: str, phones: list[str]) -> object:
    return ((await store.card(card)).balance, [(e.kind, e.amount) for e in await store.ledger(card)],  # type: ignore[union-attr]
            [await rel.balance(p) for p in phones], [len(await rel.entries(p)) for p in phones],
            await store.redis.xlen(CDR_LOG))


async def test_the_woken_app_hears_the_guide_and_its_own_echo_and_nothing_is_billed(
        e2e: E2E, store: RedisStore, devices: DeviceStore, redis: aioredis.Redis, fakes: FakePushServices,
        api: httpx.AsyncClient, apps: list[SipAgent], tmp_path: Path) -> None:
    card = await new_card(store, "open", 10_000)
    rel = RelativeStore(store.redis)
    # Two relatives at once: one app says a 1230 Hz tone during the test, the other nothing.
    toning = await relative(store, devices, card)
    silent = await relative(store, devices, card)
    before = await money_state(store, rel, card, [toning[0], silent[0]])
    started = []
    for who in (toning, silent):
        r = await api.post("/v1/app/test-call", json={"language": "en"}, headers=who[4])
        assert r.status_code == 202, r.text
        assert r.json()["used"] == 1 and r.json()["limit"] == LIMIT
        started.append(r.json()["call_id"])
    tone = write_tone(tmp_path / "tone.wav")
    agents = []
    for (phone, device_id, password, token, _), call_id, rtp, play in (
            (toning, started[0], 25400, tone), (silent, started[1], 25500, None)):
        push = await pushed(fakes, token)  # the app is not registered: woken by the bridge
        assert (push["kind"], push["call_id"]) == ("wake", call_id)
        agents.append(await woken_app(e2e, apps, device_id, password, rtp, tmp_path / f"{phone[1:]}.wav", play))
    for agent in agents:
        await agent.wait_for("state", lambda e: e["state"] == "CONFIRMED", timeout=STEP)
    for agent in agents:  # the switch ends the test by itself after the goodbye
        await agent.ended(timeout=CALL_S)
        await agent.close()  # the recorder writes its WAV header at exit
    heard = {who[0]: analyse(tmp_path / f"{who[0][1:]}.wav") for who in (toning, silent)}
    for length, loud_s, _ in heard.values():
        assert length >= 12 and loud_s >= 2, heard  # the guide and the goodbye were heard
    assert heard[toning[0]][2] >= 5, heard  # its own tone came back during the echo (~10 s)
    assert heard[silent[0]][2] < 0.5, heard  # no tone where the app said none
    # The wake records: push, contact, INVITE, answer; the outcome in the API.
    for (phone, device_id, *_), call_id in zip((toning, silent), started, strict=True):
        [steps] = records.per_device(await records.read_attempts(redis, call_id))
        assert steps.device_id == device_id and steps.push_result == "delivered"
        assert None not in (steps.push_sent_ms, steps.contact_ms, steps.invite_ms, steps.answered_ms)
        outcome = await api.get(f"/v1/app/test-call/{call_id}", headers={"Authorization": f"Bearer tok-{phone}"})
        assert outcome.status_code == 200 and outcome.json()["status"] == "answered", outcome.text
    assert (await api.get(f"/v1/app/test-call/{started[0]}", headers=silent[4])).status_code == 404  # not theirs
    assert await money_state(store, rel, card, [toning[0], silent[0]]) == before  # never billed


async def test_a_sixth_test_call_in_the_hour_is_refused_with_retry_after(
        e2e: E2E, store: RedisStore, devices: DeviceStore, api: httpx.AsyncClient) -> None:
    card = await new_card(store, "open", 10_000)
    _, _, _, _, auth = await relative(store, devices, card)
    nobody = "+7916" + f"{secrets.randbelow(10**7):07d}"
    rel = RelativeStore(store.redis)
    assert await rel.issue_code(nobody, code_hash(nobody, "123456"), datetime.now(UTC))
    assert await rel.check_code(nobody, code_hash(nobody, "123456"), token_hash(f"tok-{nobody}")) == "ok"
    no_app = await api.post("/v1/app/test-call", headers={"Authorization": f"Bearer tok-{nobody}"})
    assert no_app.status_code == 409 and "device" in no_app.json()["detail"]
    answers = []
    for _ in range(LIMIT + 1):
        answers.append(await api.post("/v1/app/test-call", headers=auth))
    assert [r.status_code for r in answers] == [202] * LIMIT + [429], [r.text for r in answers]
    assert [r.json()["used"] for r in answers[:LIMIT]] == list(range(1, LIMIT + 1))
    retry = int(answers[-1].headers["Retry-After"])
    assert WINDOW_S - 30 <= retry <= WINDOW_S, retry  # until the first of the five leaves the hour
    assert "detail" in answers[-1].json()


async def test_with_the_agi_server_down_no_app_is_called(
        e2e: E2E, store: RedisStore, devices: DeviceStore, fakes: FakePushServices, ami: AmiWatch,
        api: httpx.AsyncClient) -> None:
    """Fail closed: the switch took the call, but without the AGI route nobody is woken or dialed;
    once the switch ends it, the call is "failed" and given back (the relative may try again)."""
    card = await new_card(store, "open", 10_000)
    _, _, _, token, auth = await relative(store, devices, card)
    stack.stop_service(e2e.config, "agi")
    try:
        r = await api.post("/v1/app/test-call", headers=auth)
        assert r.status_code == 202, r.text
        ended = await ami.wait_for("Hangup", lambda m: m.get("Channel").startswith("Local/s@kinline-app-test-dial-")
                                   and m.get("Channel").endswith(";2"), timeout=STEP)
        assert ended.get("Cause") == "41"  # the dial plan's refusal: AGISTATUS was not a decision
        assert not [m for m in ami.events if m.event == "DialBegin"
                    and m.get("Channel").startswith("Local/s@kinline-app-test-dial-")]
        assert fakes.fcm.pushes_to(token) == []
        assert r.json()["used"] == 1
        deadline = time.monotonic() + STEP
        while (outcome := (await api.get(f"/v1/app/test-call/{r.json()['call_id']}", headers=auth)).json())[
                "status"] == "requested" and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # the API hears the Originate's end (OriginateResponse) just after the hangup
        assert outcome["status"] == "failed", outcome
        assert [step["event"] for step in outcome["steps"]] == ["not_started"]
        again = await api.post("/v1/app/test-call", headers=auth)
        assert again.status_code == 202 and again.json()["used"] == 1, again.text  # the first was given back
    finally:
        stack.start_service(e2e.config, "agi")
