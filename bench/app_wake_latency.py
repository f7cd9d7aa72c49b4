"""Benchmark on a running stack: the app's contact events, and contact registered -> INVITE.

    KINLINE_PORT_OFFSET=3 .venv/bin/python -m bench.app_wake_latency events --state /tmp/stack-state

`events`: which AMI events Asterisk sends when an app REGISTERs, re-REGISTERs,
unREGISTERs and lets its contact expire, and when, after the 200 OK the app received
(an app is a raw UDP socket answering the digest challenge and qualify OPTIONS; the
AMI user is the stack's read-only one, every class it has). Also: how long after the
REGISTER's SuccessfulAuth event Asterisk lists the contact (``PJSIP_AOR(app-<id>,contact)``
polled by Getvar as the status user), i.e. what a dialer woken by the hint finds.

    KINLINE_PORT_OFFSET=3 .venv/bin/python -m bench.app_wake_latency wake --state /tmp/stack-state --calls 40

`wake`: N 00 calls, one at a time, each to a new relative with one FCM device that is not
registered. A pjsua2 terminal logs in and dials 00 + the number; the fake FCM gets the
push and a pjsua2 app (tests/agents/sipagent.py, register mode) starts registering after
a random delay (0.2-1.5 s); it answers the INVITE. Measured per call:

- from the records (kl:wakeattempt:<call_id>): contact_registered -> invite_sent (the
  bridge's clock, then the AGI's; both epoch ms on this box);
- from the app's own clock: REGISTER 200 OK received -> INVITE received.

It needs the stack's AGI server with the fakes' push config: the bench restarts the
stack's pushbridge and agi with it (and restarts them as they were at the end), and adds
a terminal of its own (facility bench-wake) for the run.

Measured here (2-core box, test stack at offset 3, 2026-11-23, other helpers' e2e stacks
running beside it: load average 10-13), window 15 s, 30 calls each:

- before the wait could cut "connecting to the app" short (the AGI at d8fb1e0; 3 calls,
  app 0.4-1.3 s after its push): contact -> INVITE 1.9-2.6 s, the prompt's 2.93 s ending;
- W's wait that cuts the prompt short at a contact (working tree, not yet committed),
  app 0.2-1.5 s after its push: records contact -> INVITE p50 43.5 ms, p99/max 249 ms
  (min 19); the app's 200 OK -> INVITE p50 52.5 ms, max 268 ms; registrar event
  (Asterisk's Timestamp) -> publish p50 0.3 ms, max 3.7 ms;
- the same, app 4-6 s after its push (after the prompt; some after the bridge's repeated
  push): p50 46 ms, p99/max 325 ms (29 of 30; in one the app never registered, a bench
  RTP-port clash since fixed); the app's 200 OK -> INVITE p50 55 ms, max 360 ms; event
  -> publish p50 0.3 ms, max 15 ms.

Again at ecbcc6f (W's cut-short committed), load average 20-50: app 0.2-1.5 s after its
push: contact -> INVITE p50 48 ms, max 393 ms; the app's 200 OK -> INVITE p50 59 ms, max
403 ms; event -> publish p50 0.5 ms, max 11 ms. App 4-6 s after: p50 42.5 ms, max 148 ms
(30 of 30); the app's 200 OK -> INVITE p50 50 ms, max 155 ms; event -> publish p50 0.0 ms,
max 8.4 ms. In the slowest calls the publish -> "cut short" took 45-336 ms and "woken" ->
the leg's INVITE up to 200 ms.

The bridge's share is the event -> publish (under a millisecond at p50); the rest is the
AGI: the wait's wake-up, PJSIP_DIAL_CONTACTS, the route's end, Dial of the Local legs,
each leg's own FastAGI session and the pre-dial handler (agi.log: "woken" -> the leg's
"registered" 30-260 ms in the slow calls).

`events` (5 devices, current settings): see pushbridge/contacts.py's docstring.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import secrets
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from ami.client import AmiClient
from ami.protocol import AmiMessage
from ivr.devices import endpoint_id
from ivr.model import AllowedNumber, Facility
from ivr.pin import PinHasher
from ivr.tariffs import demo_tariff
from store import wake_records as records
from store.app_wake import contact_channel
from store.devices import DeviceStore
from store.redis_store import RedisStore
from tests.e2e.harness import AmiWatch, SipAgent, watching
from tests.e2e.rawsip import digest
from tests.e2e.test_inmate_calls import Terminal, new_card
from tests.fakes.push_providers import FakePushServices
from tools import stack
from tools.asterisk_conf import TerminalLogin, load_terminals, new_password, save_terminals
from tools.config import StackConfig, load_config, load_secrets

PHONE = "+70000000001"  # the bench's own relative for the events mode: its devices are deleted at the end


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary(name: str, values: list[float]) -> str:
    if not values:
        return f"{name}: none"
    return (f"{name}: n={len(values)} p50 {statistics.median(values):.1f} ms, p99 {pct(values, 99):.1f} ms, "
            f"min {min(values):.1f}, max {max(values):.1f}")


class UdpApp(asyncio.DatagramProtocol):
    """An app as raw SIP over UDP: REGISTERs with digest, answers OPTIONS 200 and INVITE 486."""

    def __init__(self, user: str, password: str, door: tuple[str, int]) -> None:
        self.user, self.password, self.door = user, password, door
        self.transport: asyncio.DatagramTransport | None = None
        self.call_id = secrets.token_hex(8)
        self.cseq = 0
        self.waiting: dict[int, asyncio.Future[tuple[float, str]]] = {}
        self.requests: list[tuple[float, str]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        at = time.time()
        text = data.decode(errors="replace")
        if text.startswith("SIP/2.0 "):
            if text.startswith("SIP/2.0 1"):
                return
            found = re.search(r"^CSeq:\s*(\d+)", text, re.IGNORECASE | re.MULTILINE)
            future = self.waiting.pop(int(found.group(1)), None) if found else None
            if future is not None and not future.done():
                future.set_result((at, text))
            return
        method = text.split(" ", 1)[0]
        self.requests.append((at, method))
        if method in ("ACK", ""):
            return
        heads = [ln for ln in text.split("\r\n")
                 if ln.split(":", 1)[0].strip().lower() in ("via", "from", "to", "call-id", "cseq")]
        code = "486 Busy Here" if method == "INVITE" else "200 OK"
        heads = [h + ";tag=bench" if h.lower().startswith("to:") and "tag=" not in h else h for h in heads]
        assert self.transport is not None
        self.transport.sendto("\r\n".join([f"SIP/2.0 {code}", *heads, "Content-Length: 0", "", ""]).encode(), addr)

    async def _request(self, expires: int, auth: str = "") -> tuple[float, str]:
        self.cseq += 1
        host, port = self.door
        lines = [f"REGISTER sip:{host}:{port} SIP/2.0",
                 f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};rport;branch=z9hG4bK{secrets.token_hex(8)}",
                 "Max-Forwards: 70", f"From: <sip:{self.user}@{host}>;tag={secrets.token_hex(4)}",
                 f"To: <sip:{self.user}@{host}>", f"Call-ID: {self.call_id}", f"CSeq: {self.cseq} REGISTER",
                 f"Contact: <sip:{self.user}@127.0.0.1:{self.port}>", f"Expires: {expires}",
                 *([f"Authorization: {auth}"] if auth else []), "Content-Length: 0", "", ""]
        future: asyncio.Future[tuple[float, str]] = asyncio.get_running_loop().create_future()
        self.waiting[self.cseq] = future
        assert self.transport is not None
        self.transport.sendto("\r\n".join(lines).encode(), self.door)
        return await asyncio.wait_for(future, 5)

    async def register(self, expires: int) -> tuple[float, float]:
        """(sent, 200 OK received), epoch seconds."""
        sent = time.time()
        _, challenge = await self._request(expires)
        if challenge.startswith("SIP/2.0 401"):
            header = next(ln.split(":", 1)[1].strip() for ln in challenge.split("\r\n")
                          if ln.lower().startswith("www-authenticate:"))
            host, port = self.door
            at, answer = await self._request(expires, digest("REGISTER", f"sip:{host}:{port}", self.user,
                                                             self.password, header, secrets.token_hex(4)))
        else:
            at, answer = time.time(), challenge
        if not answer.startswith("SIP/2.0 200"):
            raise RuntimeError(f"{self.user}: REGISTER answered {answer.splitlines()[0]}")
        return sent, at


@dataclass
class Seen:
    events: list[tuple[float, AmiMessage]] = field(default_factory=list)

    def about(self, endpoint: str, since: float) -> list[tuple[float, AmiMessage]]:
        return [(t, m) for t, m in self.events if t >= since and any(endpoint in v for v in m.fields.values())]


async def collect(queue: asyncio.Queue[AmiMessage], seen: Seen) -> None:
    while True:
        message = await queue.get()
        seen.events.append((time.time(), message))


def describe(message: AmiMessage) -> str:
    keys = ("ContactStatus", "PeerStatus", "State", "Status", "Service", "AOR", "URI", "Contact")
    extra = ",".join(f"{k}={message.get(k)}" for k in keys if message.get(k))
    return f"{message.event}({extra})" if extra else message.event


async def contact_listed(status: AmiClient, endpoint: str, within: float) -> float | None:
    """When PJSIP_AOR(endpoint,contact) first answers non-empty (epoch s), polled every ~2 ms."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            reply = await status.action("Getvar", Variable=f"PJSIP_AOR({endpoint},contact)")
            if reply.get("Value"):
                return time.time()
        await asyncio.sleep(0.002)
    return None


async def events_mode(config: StackConfig, rounds: int, expiry: bool) -> None:
    secret = load_secrets(config)
    ami = AmiClient(config.host, config.ami_port, secret.ami_user, secret.ami_secret)
    status = AmiClient(config.host, config.ami_port, secret.ami_status_user, secret.ami_status_secret,
                       action_timeout=2.0, events="off")
    queue = ami.subscribe()
    await ami.start()
    await status.start()
    seen = Seen()
    collector = asyncio.create_task(collect(queue, seen))
    store = DeviceStore(config.postgres_url)
    made: list[str] = []
    loop = asyncio.get_running_loop()
    hint_to_listed: list[float] = []
    ok_to_listed: list[float] = []
    added_to_listed: list[float] = []
    qualified: list[str] = []
    lines: dict[str, list[str]] = {}

    def note(phase: str, since: float, ok_at: float, endpoint: str) -> None:
        lines.setdefault(phase, []).append(" ".join(f"{describe(m)}@{(t - ok_at) * 1000:+.1f}ms"
                                                    for t, m in seen.about(endpoint, since)) or "(none)")

    try:
        for _ in range(rounds):
            device, password = await store.register(PHONE, "fcm", f"bench-{uuid.uuid4().hex}", "ru.kinline.bench")
            made.append(device.device_id)
            endpoint = endpoint_id(device.device_id)
            _, app = await loop.create_datagram_endpoint(lambda e=endpoint, p=password: UdpApp(  # type: ignore[misc]
                e, p, (config.app_sip_host, config.app_sip_port)), local_addr=("127.0.0.1", 0))
            try:
                since = time.time()
                listed_task = asyncio.create_task(contact_listed(status, endpoint, 3.0))
                _, ok_at = await app.register(300)
                listed = await listed_task
                await asyncio.sleep(2.0)
                note("REGISTER", since, ok_at, endpoint)
                hints = [t for t, m in seen.about(endpoint, since) if m.event == "SuccessfulAuth"]
                added = [t for t, m in seen.about(endpoint, since) if m.get("State") == "AOR_CONTACT_ADDED"]
                if listed is not None:
                    ok_to_listed.append((listed - ok_at) * 1000)
                    if hints:
                        hint_to_listed.append((listed - hints[-1]) * 1000)
                    if added:
                        added_to_listed.append((listed - added[-1]) * 1000)
                options = [t for t, method in app.requests if method == "OPTIONS" and t >= since]
                qualified.append(f"{(options[0] - ok_at) * 1000:+.0f}ms" if options else "none")
                since = time.time()
                _, ok_at = await app.register(300)
                await asyncio.sleep(2.0)
                note("re-REGISTER", since, ok_at, endpoint)
                since = time.time()
                _, ok_at = await app.register(0)
                await asyncio.sleep(2.0)
                note("unREGISTER", since, ok_at, endpoint)
                if expiry:
                    since = time.time()
                    _, ok_at = await app.register(60)
                    expire_by = ok_at + 60 + 35  # res_pjsip prunes expired contacts every 30 s
                    while time.time() < expire_by:
                        await asyncio.sleep(1)
                    note("expiry (Expires: 60, not refreshed)", since, ok_at, endpoint)
                    expiry = False
            finally:
                app.transport.close()  # type: ignore[union-attr]
        for phase, found in lines.items():
            _out(f"{phase}:")
            for line in found:
                _out(f"  {line}")
        _out(summary("200 OK received -> contact listed (PJSIP_AOR)", ok_to_listed))
        _out(summary("SuccessfulAuth received -> contact listed (PJSIP_AOR)", hint_to_listed))
        _out(summary("TestEvent AOR_CONTACT_ADDED received -> contact listed (PJSIP_AOR)", added_to_listed))
        _out(f"first qualify OPTIONS after the 200 OK, per device: {' '.join(qualified)}")
    finally:
        collector.cancel()
        for device_id in made:
            await store.delete(PHONE, device_id)
        await store.aclose()
        await ami.close()
        await status.close()


@dataclass
class WakeResult:
    call_id: str = ""
    contact_to_invite_ms: float | None = None  # records: contact_registered -> invite_sent
    ok_to_invite_ms: float | None = None  # the app's clock: REGISTER 200 OK -> INVITE received
    event_to_publish_ms: float | None = None  # Asterisk's event Timestamp -> the bridge's publish ts
    publish_to_invite_ms: float | None = None  # the bridge's publish ts -> invite_sent (the AGI's part)
    error: str = ""


def _setup_facility() -> Facility:
    return Facility(BENCH_FACILITY, "Bench colony", "UTC", "RUB", "en", "mon-sun 00:00-23:59")


BENCH_FACILITY = "bench-wake"
BENCH_TERMINAL = "bench-wake-term"


async def one_wake(config: StackConfig, store: RedisStore, devices: DeviceStore, ami: AmiWatch,
                   fakes: FakePushServices, login: TerminalLogin,
                   n: int, delay_s: float, registrar_ts: dict[str, float]) -> WakeResult:
    """One 00 call to a new relative's app that registers ``delay_s`` after its push."""
    result = WakeResult()
    card = await new_card(store, BENCH_FACILITY, 10_000)
    phone = f"+7916{secrets.randbelow(10**7):07d}"
    await store.allow_number(card, AllowedNumber(phone, "Daughter"))
    token = f"bench-fcm-{uuid.uuid4().hex}"
    device, password = await devices.register(phone, "fcm", token, "org.kinline.app")
    endpoint = endpoint_id(device.device_id)
    pubsub = store.redis.pubsub()
    await pubsub.subscribe(contact_channel(phone))
    agents: list[SipAgent] = []
    try:
        term_agent = await SipAgent.start("call", "--target", f"sip:100@{config.host}:{config.sip_port}",
                                          "--user", login.name, "--password", login.password,
                                          "--rtp-port", str(20100 + 4 * (n % 100)))
        agents.append(term_agent)
        channel = await ami.wait_new("Newchannel", lambda m: m.get("Channel").startswith(f"PJSIP/{login.name}-"))
        term = Terminal(term_agent, ami, channel.get("Uniqueid"))
        await term.login(card)
        await term.answer("enter-number", "00" + phone[1:])
        deadline = time.monotonic() + 20
        while not fakes.fcm.pushes_to(token):
            if time.monotonic() > deadline:
                raise RuntimeError("no push at the fake FCM")
            await asyncio.sleep(0.01)
        result.call_id = fakes.fcm.pushes_to(token)[0].data["call_id"]
        await asyncio.sleep(delay_s)  # the phone wakes the app
        app = await SipAgent.start("register", "--registrar", f"sip:{config.app_sip_host}:{config.app_sip_port}",
                                   "--user", endpoint, "--password", password,
                                   "--rtp-port", str(20102 + 4 * (n % 100)), "--ring", "0.2")
        agents.append(app)
        registered = await app.wait_for("reg", lambda e: e["code"] == 200, timeout=20)
        incoming = await app.wait_for("incoming", timeout=20)
        result.ok_to_invite_ms = (incoming["t"] - registered["t"]) * 1000
        published: dict[str, Any] | None = None
        until = time.monotonic() + 2.0
        while published is None and time.monotonic() < until:
            # None also when it read the subscribe confirmation: keep reading until the bound.
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
            if message is None:
                continue
            data = json.loads(message["data"])
            if data.get("device_id") == device.device_id and data.get("status") == "Created":
                published = data
        await app.wait_for("state", lambda e: e["state"] == "CONFIRMED", timeout=20)
        await term_agent.send("hangup")
        await term.hangup_cause()
        events = await records.read_attempts(store.redis, result.call_id)
        [attempt] = records.per_device(events)
        if attempt.contact_ms is not None and attempt.invite_ms is not None:
            result.contact_to_invite_ms = attempt.invite_ms - attempt.contact_ms
        if published is not None:
            if attempt.invite_ms is not None:
                result.publish_to_invite_ms = attempt.invite_ms - published["ts"]
            if endpoint in registrar_ts:
                result.event_to_publish_ms = published["ts"] - registrar_ts[endpoint] * 1000
    except (RuntimeError, TimeoutError, ValueError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        for agent in agents:
            await agent.close()
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await devices.delete(phone, device.device_id)
    return result


async def wake_mode(config: StackConfig, calls: int, window_s: int, seed: int, delays: tuple[float, float]) -> None:
    rng = random.Random(seed)
    secret = load_secrets(config)
    store = RedisStore.from_url(config.redis_url, PinHasher.from_hex(secret.pin_key))
    devices = DeviceStore(config.postgres_url)
    await store.put_facility(_setup_facility())
    await store.put_tariff(BENCH_FACILITY, demo_tariff())
    login = TerminalLogin(BENCH_TERMINAL, new_password(), "en", BENCH_FACILITY)
    terminals = [t for t in load_terminals(config) if t.name != BENCH_TERMINAL]
    save_terminals(config, [*terminals, login.stored()])
    _out(stack.apply_terminals(config))
    registrar_ts: dict[str, float] = {}  # AOR -> Asterisk's Timestamp of its AOR_CONTACT_ADDED
    results: list[WakeResult] = []
    folder = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-wake-{os.getpid()}"
    async with FakePushServices() as fakes, watching(config) as ami:
        listener = AmiClient(config.host, config.ami_port, secret.ami_user, secret.ami_secret, events="reporting")
        queue = listener.subscribe()
        await listener.start()

        async def follow() -> None:
            while True:
                m = await queue.get()
                if m.get("State") == "AOR_CONTACT_ADDED":
                    registrar_ts[m.get("AOR")] = float(m.get("Timestamp") or 0)

        follower = asyncio.create_task(follow())
        os.environ["KINLINE_PUSH_CONFIG"] = str(fakes.write_config(folder))
        os.environ["KINLINE_APP_WINDOW_S"] = str(window_s)
        for name in ("pushbridge", "agi"):
            await asyncio.to_thread(stack.stop_service, config, name)
        for name in ("agi", "pushbridge"):
            await asyncio.to_thread(stack.start_service, config, name)
        try:
            started = time.monotonic()
            for n in range(calls):
                delay = rng.uniform(*delays)
                result = await one_wake(config, store, devices, ami, fakes, login, n, delay, registrar_ts)
                results.append(result)
                _out(f"call {n + 1}/{calls} {result.call_id}: app delay {delay:.2f} s, "
                     + (result.error or f"contact -> INVITE {result.contact_to_invite_ms} ms (records), "
                        f"200 OK -> INVITE {result.ok_to_invite_ms:.1f} ms (app)"))
                ami.events.clear()
            _out(f"{calls} calls in {time.monotonic() - started:.0f} s")
        finally:
            follower.cancel()
            await listener.close()
            os.environ.pop("KINLINE_PUSH_CONFIG", None)
            os.environ.pop("KINLINE_APP_WINDOW_S", None)
            for name in ("pushbridge", "agi"):
                await asyncio.to_thread(stack.stop_service, config, name)
            for name in ("agi", "pushbridge"):
                await asyncio.to_thread(stack.start_service, config, name)
            save_terminals(config, terminals)
            stack.apply_terminals(config)
            await devices.aclose()
            await store.aclose()

    def values(name: str) -> list[float]:
        return [float(getattr(r, name)) for r in results if getattr(r, name) is not None]

    _out(f"calls: {len(results)}, failed: {len([r for r in results if r.error])}")
    _out(summary("contact_registered -> invite_sent (records: bridge clock -> AGI clock)",
                 values("contact_to_invite_ms")))
    _out(summary("REGISTER 200 OK -> INVITE received (the app's clock)", values("ok_to_invite_ms")))
    _out(summary("registrar TestEvent (Asterisk's Timestamp) -> bridge publish", values("event_to_publish_ms")))
    _out(summary("bridge publish -> invite_sent (the AGI: wake-up, PJSIP_DIAL_CONTACTS, Dial)",
                 values("publish_to_invite_ms")))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("events", "wake"))
    parser.add_argument("--config", default="config/test.toml")
    parser.add_argument("--state", default=None, help="the stack's state folder (default: the config's)")
    parser.add_argument("--rounds", type=int, default=5, help="events: devices registered in turn")
    parser.add_argument("--expiry", action="store_true", help="events: also let one contact expire (~100 s)")
    parser.add_argument("--calls", type=int, default=40, help="wake: 00 calls placed, one at a time")
    parser.add_argument("--window", type=int, default=15, help="wake: the AGI's app window (s)")
    parser.add_argument("--seed", type=int, default=1, help="wake: the apps' random delays")
    parser.add_argument("--delay", default="0.2-1.5", help="wake: the app starts registering MIN-MAX s after its push")
    opts = parser.parse_args()
    if opts.state:
        os.environ["KINLINE_STATE"] = opts.state
    config = load_config(opts.config)
    if opts.mode == "events":
        asyncio.run(events_mode(config, opts.rounds, opts.expiry))
    else:
        low, high = (float(x) for x in opts.delay.split("-"))
        asyncio.run(wake_mode(config, opts.calls, opts.window, opts.seed, (low, high)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
