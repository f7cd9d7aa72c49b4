"""The push bridge over real parts: a real Redis (the stream, the records, the publish), P's
fake FCM, APNs and HMS over HTTP (they verify the JWTs and payloads), a fake AMI sending
registrar (TestEvent) contact events to the real AmiClient, and PostgreSQL for the device directory.
The process itself (python -m pushbridge.main) is started once, with no push provider."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from ami.client import AmiClient
from pushbridge.devices import MemoryDirectory, PgDirectory
from pushbridge.errors import DirectoryError
from pushbridge.main import ALIVE_KEY, AMI_EVENTS, run_bridge
from pushbridge.providers import Device, Kind, build_providers, load_push_config
from store import wake_records as records
from store.app_wake import WAKE_GROUP, WAKE_STREAM, contact_channel, wake_fields
from store.devices import DeviceStore
from store.redis_store import connect
from tests.component.conftest import RedisServer
from tests.component.pgserver import PostgresServer, pg_url, postgres  # noqa: F401 (fixtures)
from tests.component.test_ami_client import SECRET, USER, FakeAmi
from tests.fakes.push_providers import INVALID, FakePushServices, Push, server_error

STEP = 5.0
PHONE = "+79161234567"
REPO = Path(__file__).resolve().parents[2]


async def wait_for(predicate: Callable[[], bool], within: float = STEP, what: str = "condition") -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not met within {within} s"
        await asyncio.sleep(0.01)


@dataclass
class Running:
    redis: aioredis.Redis
    fakes: FakePushServices
    ami: FakeAmi
    directory: MemoryDirectory
    devices: dict[str, Device]  # token -> device

    async def wake(self, call_id: str, kind: Kind = Kind.WAKE, window_s: float = 20.0,
                   ts_ms: int | None = None) -> None:
        await self.redis.xadd(WAKE_STREAM, wake_fields(call_id, PHONE, "Colony 1", window_s, kind, ts_ms))

    async def events(self, call_id: str) -> list[records.AttemptEvent]:
        return await records.read_attempts(self.redis, call_id)

    async def until(self, call_id: str, event: str, count: int) -> list[records.AttemptEvent]:
        deadline = time.monotonic() + STEP
        while True:
            found = [e for e in await self.events(call_id) if e.event == event]
            if len(found) >= count:
                return found
            assert time.monotonic() < deadline, f"{call_id}: {count} {event} not recorded: {await self.events(call_id)}"
            await asyncio.sleep(0.02)

    def pushes(self, kind: Kind) -> list[Push]:
        return [p for fake in self.fakes.all for p in fake.pushes if p.data.get("kind") == str(kind)]


@pytest.fixture
async def running(flushed: RedisServer, tmp_path: Path) -> AsyncIterator[Running]:
    redis = connect(flushed.url)
    directory = MemoryDirectory()
    devices = {d.token: directory.add(PHONE, d) for d in (
        Device("fcm", "tok-android", "org.kinline.app", "21"),
        Device("apns-voip", "tok-iphone", "org.kinline.app", "22"),
        Device("hms", "tok-huawei", "104567890", "23"))}
    ami = FakeAmi()
    await ami.start()
    stop = asyncio.Event()
    async with FakePushServices() as fakes:
        providers = build_providers(load_push_config(fakes.write_config(tmp_path / "push")))
        client = AmiClient("127.0.0.1", ami.port, USER, SECRET, reconnect_delay=0.05, events=AMI_EVENTS)
        bridge = asyncio.create_task(run_bridge(redis, directory, providers, client, stop, consumer="bridge-test",
                                                repush_after=0))  # repeats: unit tests
        try:
            await wait_for(lambda: bool(ami.logged_in), what="AMI login")
            yield Running(redis, fakes, ami, directory, devices)
        finally:
            stop.set()
            await asyncio.wait_for(bridge, STEP)
            for provider in providers.values():
                await provider.aclose()
            await ami.stop()
            await redis.aclose()


async def test_a_wake_pushes_every_device_and_a_new_contact_is_published(running: Running) -> None:
    """stream -> three real pushes -> the app registers (the registrar's event) -> publish and record."""
    async def registers(push: Push) -> None:
        if push.data["kind"] == "wake":
            device = running.devices[push.token]
            await running.ami.event(Event="TestEvent", Privilege="reporting,all", Type="StateChange",
                                    State="AOR_CONTACT_ADDED", AppFile="res_pjsip_registrar.c",
                                    Contact=f"sip:app-{device.device_id}@127.0.0.1:40{device.device_id}",
                                    AOR=f"app-{device.device_id}", Expiration="300", UserAgent="")
    running.fakes.on_push(registers)
    channel = running.redis.pubsub()
    await channel.subscribe(contact_channel(PHONE))
    try:
        await running.wake("call-1")
        published: list[dict[str, str]] = []
        deadline = time.monotonic() + STEP
        while len(published) < 3:
            assert time.monotonic() < deadline, f"published only {published}"
            message = await channel.get_message(ignore_subscribe_messages=True, timeout=0.2)
            if message is not None:
                published.append(json.loads(message["data"]))
    finally:
        await channel.aclose()
    assert {(m["device_id"], m["status"], m["source"]) for m in published} == {
        ("21", "Created", "registrar"), ("22", "Created", "registrar"), ("23", "Created", "registrar")}
    assert {p.data["call_id"] for p in running.pushes(Kind.WAKE)} == {"call-1"}
    assert {p.provider for p in running.pushes(Kind.WAKE)} == {"FCM", "APNs", "HMS"}
    assert {m["uri"] for m in published if m["device_id"] == "22"} == {"sip:app-22@127.0.0.1:4022"}
    sent = await running.until("call-1", records.PUSH_SENT, 3)
    assert {(e.device_id, e.result) for e in sent} == {("21", "delivered"), ("22", "delivered"), ("23", "delivered")}
    registered = await running.until("call-1", records.CONTACT_REGISTERED, 3)
    assert {e.device_id for e in registered} == {"21", "22", "23"}
    assert all(e.ms >= min(s.ms for s in sent) for e in registered)
    info = await running.redis.xinfo_groups(WAKE_STREAM)
    assert info[0]["name"] == WAKE_GROUP


async def test_invalid_token_retry_and_cancel_only_to_the_woken(running: Running) -> None:
    running.fakes.apns.script("tok-iphone", INVALID)
    running.fakes.hms.script("tok-huawei", server_error(503), server_error(500))
    await running.wake("call-2")
    sent = await running.until("call-2", records.PUSH_SENT, 3)
    assert {(e.device_id, e.result, e.tries) for e in sent} == {
        ("21", "delivered", 1), ("22", "invalid_token", 1), ("23", "delivered", 3)}
    assert not running.directory.is_active("22")
    await running.wake("call-2", Kind.CANCEL)
    cancels = await running.until("call-2", records.CANCEL_SENT, 2)
    assert {(e.device_id, e.result) for e in cancels} == {("21", "delivered"), ("23", "delivered")}
    assert {p.token for p in running.pushes(Kind.CANCEL)} == {"tok-android", "tok-huawei"}
    await running.wake("call-3")
    await running.until("call-3", records.PUSH_SENT, 2)
    assert len(running.fakes.apns.pushes_to("tok-iphone")) == 1  # call-2's 410 only: never pushed again


async def test_a_wake_past_its_window_is_dropped(running: Running) -> None:
    await running.wake("call-old", window_s=5, ts_ms=int(time.time() * 1000) - 6_000)
    await running.until("call-old", records.DROPPED, 1)
    assert not running.pushes(Kind.WAKE)


async def test_pending_entries_of_a_crashed_bridge_are_served_again(flushed: RedisServer, tmp_path: Path) -> None:
    """Entries read by 'bridge-test' and never acknowledged (it died): served on its restart;
    the one whose window passed meanwhile is dropped. All are acknowledged."""
    redis = connect(flushed.url)
    try:
        await redis.xgroup_create(WAKE_STREAM, WAKE_GROUP, id="0", mkstream=True)
        now = int(time.time() * 1000)
        await redis.xadd(WAKE_STREAM, wake_fields("live", PHONE, "C", 30, ts_ms=now))
        await redis.xadd(WAKE_STREAM, wake_fields("stale", PHONE, "C", 5, ts_ms=now - 10_000))
        await redis.xadd(WAKE_STREAM, {"call_id": "bad", "phone": "12"})
        read = await redis.xreadgroup(WAKE_GROUP, "bridge-test", {WAKE_STREAM: ">"}, count=10)
        assert len(read[0][1]) == 3  # read, then the bridge "crashed"
        directory = MemoryDirectory()
        directory.add(PHONE, Device("fcm", "tok-android", "org.kinline.app", "21"))
        ami = FakeAmi()
        await ami.start()
        stop = asyncio.Event()
        async with FakePushServices() as fakes:
            providers = build_providers(load_push_config(fakes.write_config(tmp_path / "push")))
            client = AmiClient("127.0.0.1", ami.port, USER, SECRET, reconnect_delay=0.05)
            bridge = asyncio.create_task(run_bridge(redis, directory, providers, client, stop,
                                                    consumer="bridge-test", repush_after=0))
            try:
                deadline = time.monotonic() + STEP
                while (await redis.xpending(WAKE_STREAM, WAKE_GROUP))["pending"]:
                    assert time.monotonic() < deadline, "pending entries not served"
                    await asyncio.sleep(0.02)
            finally:
                stop.set()
                await asyncio.wait_for(bridge, STEP)
                for provider in providers.values():
                    await provider.aclose()
                await ami.stop()
            assert [p.data["call_id"] for p in fakes.fcm.pushes] == ["live"]
        assert [e.event for e in await records.read_attempts(redis, "stale")] == [records.REQUEST_READ,
                                                                                   records.DROPPED]
        [rejected] = await records.read_attempts(redis, "bad")
        assert rejected.event == "rejected" and "phone" in rejected.detail
    finally:
        await redis.aclose()


# --- the directory on PostgreSQL -------------------------------------------------------------------

async def test_the_postgresql_directory_reads_the_apis_devices(pg_url: str, postgres: PostgresServer) -> None:  # noqa: F811
    """Devices registered by the API's own store (store/devices.py: its schema, its rows)."""
    conn = await asyncpg.connect(pg_url)
    await conn.execute("DROP TABLE IF EXISTS devices, ps_endpoints, ps_auths, ps_aors")
    api = DeviceStore(pg_url)
    directory = PgDirectory(pg_url)
    try:
        android, _ = await api.register(PHONE, "fcm", "tok-android-0123456789", "org.kinline.app")
        iphone, _ = await api.register(PHONE, "apns-voip", "ab" * 32, "org.kinline.app")
        other, _ = await api.register("+79000000000", "hms", "tok-huawei-0123456789", "104567890")
        devices = await directory.active_devices(PHONE)
        assert sorted((d.platform, d.token, d.app_id, d.device_id) for d in devices) == sorted([
            ("fcm", "tok-android-0123456789", "org.kinline.app", android.device_id),
            ("apns-voip", "ab" * 32, "org.kinline.app", iphone.device_id)])
        assert await directory.phone_of(other.device_id) == "+79000000000"
        assert await directory.phone_of("0123456789abcdef") is None
        await directory.deactivate(iphone.device_id, "apns-voip: 410 Unregistered")
        assert [d.device_id for d in await directory.active_devices(PHONE)] == [android.device_id]
        [mine] = [d for d in await api.devices(PHONE) if d.device_id == iphone.device_id]
        assert (mine.active, mine.deactivated_reason) == (False, "apns-voip: 410 Unregistered")
        postgres.stop()
        with pytest.raises(DirectoryError):
            await directory.active_devices(PHONE)
    finally:
        await directory.aclose()
        await api.aclose()
        with contextlib.suppress(Exception):
            await conn.close()
        if postgres.proc is None:
            postgres.start()


# --- the process ---------------------------------------------------------------------------------------

async def test_the_process_without_provider_says_so_and_fails_wakes_fast(flushed: RedisServer, tmp_path: Path) -> None:
    ami = FakeAmi()
    await ami.start()
    log = tmp_path / "pushbridge.log"
    env = {k: v for k, v in os.environ.items() if k != "KINLINE_PUSH_CONFIG"}
    env.update(KINLINE_REDIS_URL=flushed.url, KINLINE_POSTGRES_URL="postgresql://nobody:x@127.0.0.1:1/none",
               KINLINE_AMI_USER=USER, KINLINE_AMI_SECRET=SECRET, PYTHONPATH=str(REPO))
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pushbridge.main", "--ami-port", str(ami.port)],
                                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    redis = connect(flushed.url)
    try:
        deadline = time.monotonic() + 15
        while not (alive := await redis.get(ALIVE_KEY)):
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
            await asyncio.sleep(0.05)
        assert json.loads(alive)["platforms"] == []
        await redis.xadd(WAKE_STREAM, wake_fields("call-x", PHONE, "C", 30))
        deadline = time.monotonic() + STEP
        while len(events := await records.read_attempts(redis, "call-x")) < 2:
            assert time.monotonic() < deadline, log.read_text()
            await asyncio.sleep(0.02)
        assert [e.event for e in events] == [records.REQUEST_READ, records.NO_PROVIDER]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(STEP) == 0
        assert await redis.get(ALIVE_KEY) is None
        assert "pushes are disabled" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(STEP)
        await redis.aclose()
        await ami.stop()
