"""The push bridge as the stack runs it: a wake request in Redis -> a real push to the fake
FCM -> the app (a pjsua2 agent) registers on the apps' SIP port of the real Asterisk ->
AMI event of its REGISTER -> the bridge publishes on kl:contact:<phone> and records the
attempt; a cancel reaches the woken device.

Which AMI event: res_pjsip_registrar's TestEvent AOR_CONTACT_ADDED / _REMOVED (class
reporting; Debian's Asterisk is built with TEST_FRAMEWORK), published as Created /
Removed with the contact's URI once Asterisk has stored it: the test checks Asterisk
lists the contact when the message arrives (pushbridge/contacts.py has the measurements).

The stack's bridge is restarted with a [push] config pointing at the fakes for this test
(and restarted without it afterwards, as the session's other tests expect)."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from ami.client import AmiClient
from ivr.devices import endpoint_id
from pushbridge.providers import Kind
from store import wake_records as records
from store.app_wake import WAKE_STREAM, contact_channel, wake_fields
from store.devices import DeviceStore
from tests.e2e.conftest import E2E
from tests.e2e.harness import SipAgent
from tests.fakes.push_providers import FakePushServices
from tools import stack
from tools.config import load_secrets

pytestmark = pytest.mark.e2e

PHONE = "+79165550101"
STEP = 15.0


@pytest.fixture
def bridge_with_fakes(e2e: E2E, fakes: FakePushServices, tmp_path: Path) -> Iterator[None]:
    config = fakes.write_config(tmp_path / "push")
    stack.stop_service(e2e.config, "pushbridge")
    os.environ["KINLINE_PUSH_CONFIG"] = str(config)
    try:
        stack.start_service(e2e.config, "pushbridge")
        yield
    finally:
        stack.stop_service(e2e.config, "pushbridge")
        os.environ.pop("KINLINE_PUSH_CONFIG", None)
        stack.start_service(e2e.config, "pushbridge")


@pytest.fixture
async def ami_status(e2e: E2E) -> AsyncIterator[AmiClient]:
    """The status light's AMI user (Getvar of PJSIP_AOR), as the API asks."""
    secret = load_secrets(e2e.config)
    client = AmiClient(e2e.config.host, e2e.config.ami_port, secret.ami_status_user, secret.ami_status_secret,
                       events="off")
    await client.start()
    try:
        yield client
    finally:
        await client.close()


async def next_contact(channel: aioredis.client.PubSub, device_id: str, statuses: frozenset[str],
                       within: float = STEP) -> dict[str, str]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        message = await channel.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if message is not None:
            data: dict[str, str] = json.loads(message["data"])
            if data["device_id"] == device_id and data["status"] in statuses:
                return data
    raise AssertionError(f"no {sorted(statuses)} contact of {device_id} published within {within} s")


async def test_a_woken_app_registers_and_its_contact_is_published(
        e2e: E2E, fakes: FakePushServices, bridge_with_fakes: None, redis: aioredis.Redis,
        ami_status: AmiClient) -> None:
    devices = DeviceStore(e2e.config.postgres_url)
    device, password = await devices.register(PHONE, "fcm", f"e2e-fcm-{uuid.uuid4().hex}", "org.kinline.app")
    token, call_id = device.token, f"e2e-{uuid.uuid4().hex[:12]}"
    channel = redis.pubsub()
    await channel.subscribe(contact_channel(PHONE))
    agent: SipAgent | None = None
    try:
        await redis.xadd(WAKE_STREAM, wake_fields(call_id, PHONE, "Colony number one", 20))  # type: ignore[arg-type]
        deadline = time.monotonic() + STEP
        while not [p for p in fakes.fcm.pushes_to(token) if p.data.get("call_id") == call_id]:
            assert time.monotonic() < deadline, f"no push at fake FCM: {await records.read_attempts(redis, call_id)}"
            await asyncio.sleep(0.02)
        [push] = fakes.fcm.pushes_to(token)
        assert (push.data["kind"], push.data["caller"]) == ("wake", "Colony number one")

        # The app wakes and registers on the apps' door.
        agent = await SipAgent.start("register", "--registrar", f"sip:{e2e.config.host}:{e2e.config.app_sip_port}",
                                     "--user", endpoint_id(device.device_id), "--password", password,
                                     "--rtp-port", "24100")
        await agent.wait_for("reg", lambda e: e["code"] == 200, timeout=STEP)
        created = await next_contact(channel, device.device_id, frozenset({"Created"}))
        assert created["source"] == "registrar"
        assert created["uri"].startswith(f"sip:{endpoint_id(device.device_id)}@127.0.0.1:")
        # Asterisk has stored it: what a dialer woken by the message finds.
        listed = await ami_status.action("Getvar", Variable=f"PJSIP_AOR({endpoint_id(device.device_id)},contact)")
        assert listed.get("Value"), "the contact was published before Asterisk listed it"

        events = await records.read_attempts(redis, call_id)
        [sent] = [e for e in events if e.event == records.PUSH_SENT]
        [registered] = [e for e in events if e.event == records.CONTACT_REGISTERED]
        assert (sent.device_id, sent.provider, sent.result) == (device.device_id, "fcm", "delivered")
        assert registered.device_id == device.device_id and registered.ms >= sent.ms
        [attempt] = records.per_device(events)
        assert attempt.push_to_contact_ms is not None and attempt.push_to_contact_ms >= 0  # the wake latency

        # Answered elsewhere: the woken device gets a cancel push.
        await redis.xadd(WAKE_STREAM, wake_fields(call_id, PHONE, "Colony number one", 20,  # type: ignore[arg-type]
                                                  Kind.CANCEL))
        deadline = time.monotonic() + STEP
        while len(fakes.fcm.pushes_to(token)) < 2:
            assert time.monotonic() < deadline, "no cancel push"
            await asyncio.sleep(0.02)
        assert fakes.fcm.pushes_to(token)[1].data["kind"] == "cancel"

        # The app unregisters: Removed is published.
        await agent.send("unregister")
        deadline = time.monotonic() + STEP
        while len([e for e in agent.events if e["event"] == "reg" and e["code"] == 200]) < 2:
            assert time.monotonic() < deadline, "the unREGISTER was not answered"
            await asyncio.sleep(0.05)
        removed = await next_contact(channel, device.device_id, frozenset({"Removed"}))
        assert (removed["uri"], removed["source"]) == (created["uri"], "registrar")
    finally:
        if agent is not None:
            await agent.close()
        await channel.aclose()
        await devices.delete(PHONE, device.device_id)
        await devices.aclose()
