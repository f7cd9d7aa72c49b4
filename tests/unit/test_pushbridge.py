"""The push bridge's wake handling, in memory: scripted providers (P's retry loop over
scripted answers), an in-memory device directory and a small stand-in for the few Redis
commands the bridge writes (records, publish)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from ami.protocol import AmiMessage
from pushbridge.contacts import ContactHandler, contact_event
from pushbridge.devices import MemoryDirectory
from pushbridge.errors import BadRequest
from pushbridge.inflight import InFlight
from pushbridge.providers import Device, Kind, Platform, PushProvider, PushResult, Wake
from pushbridge.providers.retry import Answer, Backoff, Delivered, Fail, InvalidToken, Retry, deliver
from pushbridge.requests import WakeRequest, parse_request
from pushbridge.wakes import WakeService
from store import wake_records as records
from store.app_wake import wake_fields

STEP = 2.0
PHONE = "+79161234567"


class MemoryRedis:
    """RPUSH/EXPIRE/LRANGE/SET/DELETE/PUBLISH, in pipelines too: what the bridge writes."""

    def __init__(self) -> None:
        self.lists: dict[str, list[str]] = defaultdict(list)
        self.values: dict[str, tuple[str, int | None]] = {}
        self.published: list[tuple[str, dict[str, Any]]] = []

    def pipeline(self, transaction: bool = True) -> MemoryPipeline:
        return MemoryPipeline(self)

    async def lrange(self, key: str, start: int, end: int) -> list[str]:
        return list(self.lists.get(key, []))


class MemoryPipeline:
    def __init__(self, redis: MemoryRedis) -> None:
        self.redis = redis
        self.ops: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    async def __aenter__(self) -> MemoryPipeline:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        def queue(*args: Any, **kwargs: Any) -> None:
            self.ops.append((name, args, kwargs))
        return queue

    async def execute(self) -> None:
        r = self.redis
        for name, args, kwargs in self.ops:
            if name == "rpush":
                r.lists[args[0]].extend(args[1:])
            elif name == "set":
                r.values[args[0]] = (args[1], kwargs.get("ex"))
            elif name == "delete":
                r.values.pop(args[0], None)
            elif name == "publish":
                r.published.append((args[0], json.loads(args[1])))
            elif name != "expire":
                raise AssertionError(f"unexpected command {name}")
        self.ops.clear()


@dataclass
class Sent:
    token: str
    kind: Kind
    wake: Wake
    at: float


@dataclass
class ScriptedProvider:
    """A PushProvider whose HTTP answers are scripted per token; `send` is P's `deliver`,
    so retries, backoff and the deadline are the real ones."""

    name: Platform
    answers: dict[str, deque[Answer]] = field(default_factory=dict)
    sent: list[Sent] = field(default_factory=list)
    gate: asyncio.Event | None = None  # when set: every attempt waits for it

    @property
    def platform(self) -> Platform:
        return self.name

    def script(self, token: str, *answers: Answer) -> None:
        self.answers[token] = deque(answers)

    async def _attempt(self, device: Device, wake: Wake, timeout: float) -> Answer:
        self.sent.append(Sent(device.token, wake.kind, wake, time.monotonic()))
        if self.gate is not None:
            await self.gate.wait()
        queue = self.answers.get(device.token)
        return queue.popleft() if queue else Delivered(f"id-{len(self.sent)}")

    async def send(self, device: Device, wake: Wake) -> PushResult:
        return await deliver(self.name, self._attempt, device, wake, clock=time.time,
                             backoff=Backoff(base=0.01, cap=0.02, jitter=0))

    async def aclose(self) -> None:
        return None

    def to(self, token: str, kind: Kind = Kind.WAKE) -> list[Sent]:
        return [s for s in self.sent if s.token == token and s.kind is kind]


@dataclass
class Bridge:
    redis: MemoryRedis
    directory: MemoryDirectory
    providers: dict[Platform, ScriptedProvider]
    inflight: InFlight
    service: WakeService

    async def run(self, request: WakeRequest) -> None:
        await asyncio.wait_for(self.service.start(request, time.time()), STEP)

    def events(self, call_id: str) -> list[records.AttemptEvent]:
        return [records.AttemptEvent.from_json(t) for t in self.redis.lists[records.attempt_key(call_id)]]

    def named(self, call_id: str, event: str) -> list[records.AttemptEvent]:
        return [e for e in self.events(call_id) if e.event == event]


def make_bridge(platforms: tuple[Platform, ...] = ("fcm", "apns-voip", "hms"), repush_after: float = 0.0) -> Bridge:
    redis = MemoryRedis()
    directory = MemoryDirectory()
    providers: dict[Platform, ScriptedProvider] = {p: ScriptedProvider(p) for p in platforms}
    inflight = InFlight(time.time)
    typed: dict[Platform, PushProvider] = dict(providers)
    service = WakeService(redis, directory, typed, inflight, repush_after=repush_after)  # type: ignore[arg-type]
    return Bridge(redis, directory, providers, inflight, service)


@pytest.fixture
def bridge() -> Iterator[Bridge]:
    yield make_bridge()


def request(call_id: str = "call-1", kind: Kind = Kind.WAKE, window_s: float = 30.0,
            ts_ms: int | None = None, phone: str = PHONE) -> WakeRequest:
    return parse_request(wake_fields(call_id, phone, "Colony 1", window_s, kind, ts_ms))


def three_devices(bridge: Bridge) -> list[Device]:
    return [bridge.directory.add(PHONE, Device("fcm", "tok-android", "org.kinline.app", "11")),
            bridge.directory.add(PHONE, Device("apns-voip", "tok-iphone", "org.kinline.app", "12")),
            bridge.directory.add(PHONE, Device("hms", "tok-huawei", "104567890", "13"))]


# --- requests -----------------------------------------------------------------------------------

def test_a_request_round_trips_through_its_stream_fields() -> None:
    r = request("c-9", Kind.CANCEL, 25, ts_ms=1_700_000_000_000)
    assert r == WakeRequest("c-9", PHONE, "Colony 1", 25.0, Kind.CANCEL, 1_700_000_000_000)
    assert r.deadline == 1_700_000_025.0
    assert r.wake().deadline == r.deadline and r.wake().kind is Kind.WAKE


@pytest.mark.parametrize(("change", "why"), [
    ({"call_id": ""}, "call_id missing"),
    ({"phone": "79161234567"}, "not an E.164 number"),
    ({"kind": "ring"}, "not wake or cancel"),
    ({"window_s": "abc"}, "not a number"),
    ({"window_s": "0"}, "outside (0, 300]"),
    ({"window_s": "301"}, "outside (0, 300]"),
    ({"ts": "-5"}, "not epoch milliseconds"),
])
def test_bad_requests_say_what_is_wrong(change: dict[str, str], why: str) -> None:
    with pytest.raises(BadRequest, match=f".*{why.replace('(', '.').replace(')', '.')}"):
        parse_request({**wake_fields("c", PHONE, "x", 30), **change})


# --- wakes ----------------------------------------------------------------------------------------

async def test_every_device_is_pushed_at_once(bridge: Bridge) -> None:
    three_devices(bridge)
    gate = asyncio.Event()
    for provider in bridge.providers.values():
        provider.gate = gate  # no push is answered until all three are on their way
    task = bridge.service.start(request(), time.time())
    deadline = time.monotonic() + STEP
    while sum(len(p.sent) for p in bridge.providers.values()) < 3:
        assert time.monotonic() < deadline, "the pushes were not sent at once"
        await asyncio.sleep(0.005)
    gate.set()
    await asyncio.wait_for(task, STEP)
    sent = bridge.named("call-1", records.PUSH_SENT)
    assert {(e.device_id, e.provider, e.result, e.tries) for e in sent} == {
        ("11", "fcm", "delivered", 1), ("12", "apns-voip", "delivered", 1), ("13", "hms", "delivered", 1)}
    pushed = [s for p in bridge.providers.values() for s in p.sent]
    assert {(s.wake.call_id, s.wake.caller, s.wake.window) for s in pushed} == {("call-1", "Colony 1", 30.0)}
    assert bridge.inflight.get("call-1") is not None and bridge.inflight.get("call-1").woken == {"11", "12", "13"}  # type: ignore[union-attr]
    read = bridge.named("call-1", records.REQUEST_READ)
    assert len(read) == 1 and read[0].result == "wake"


async def test_an_invalid_token_is_deactivated_and_never_pushed_again(bridge: Bridge) -> None:
    three_devices(bridge)
    bridge.providers["apns-voip"].script("tok-iphone", InvalidToken("410 Unregistered"))
    await bridge.run(request("call-1"))
    assert not bridge.directory.is_active("12")
    assert "410 Unregistered" in bridge.directory.devices["12"].reason
    [sent] = [e for e in bridge.named("call-1", records.PUSH_SENT) if e.device_id == "12"]
    assert sent.result == "invalid_token"
    [deactivated] = bridge.named("call-1", records.DEACTIVATED)
    assert (deactivated.device_id, deactivated.result) == ("12", "done")
    await bridge.run(request("call-2"))
    assert len(bridge.providers["apns-voip"].to("tok-iphone")) == 1  # call-1's only
    assert {e.device_id for e in bridge.named("call-2", records.PUSH_SENT)} == {"11", "13"}


async def test_a_server_error_then_success_is_retried(bridge: Bridge) -> None:
    three_devices(bridge)
    bridge.providers["fcm"].script("tok-android", Retry("503 UNAVAILABLE"), Retry("500 INTERNAL"),
                                   Delivered("projects/p/messages/1"))
    await bridge.run(request())
    assert len(bridge.providers["fcm"].to("tok-android")) == 3
    [sent] = [e for e in bridge.named("call-1", records.PUSH_SENT) if e.device_id == "11"]
    assert (sent.result, sent.tries) == ("delivered", 3)
    assert bridge.directory.is_active("11")


async def test_a_failed_push_keeps_the_device(bridge: Bridge) -> None:
    three_devices(bridge)
    bridge.providers["hms"].script("tok-huawei", Fail("400 bad request"))
    await bridge.run(request())
    [sent] = [e for e in bridge.named("call-1", records.PUSH_SENT) if e.device_id == "13"]
    assert (sent.result, sent.detail) == ("failed", "400 bad request")
    assert bridge.directory.is_active("13")
    assert "13" not in bridge.inflight.get("call-1").woken  # type: ignore[union-attr]


async def test_a_wake_read_after_its_window_is_dropped(bridge: Bridge) -> None:
    three_devices(bridge)
    old = int(time.time() * 1000) - 31_000
    await bridge.run(request(window_s=30, ts_ms=old))
    assert not any(p.sent for p in bridge.providers.values())
    assert [e.event for e in bridge.events("call-1")] == [records.REQUEST_READ, records.DROPPED]
    assert bridge.directory.reads == 0


async def test_a_wake_inside_its_window_is_pushed_with_the_time_left() -> None:
    bridge = make_bridge()
    three_devices(bridge)
    await bridge.run(request(window_s=30, ts_ms=int(time.time() * 1000) - 20_000))
    wake = bridge.providers["fcm"].sent[0].wake
    assert 9 <= wake.remaining(time.time()) <= 10


async def test_no_provider_fails_fast_without_asking_the_directory() -> None:
    bridge = make_bridge(platforms=())
    three_devices(bridge)
    await bridge.run(request())
    assert [e.event for e in bridge.events("call-1")] == [records.REQUEST_READ, records.NO_PROVIDER]
    assert bridge.directory.reads == 0


async def test_a_platform_without_provider_is_recorded_the_others_pushed() -> None:
    bridge = make_bridge(platforms=("fcm",))
    three_devices(bridge)
    await bridge.run(request())
    results = {e.device_id: e.result for e in bridge.named("call-1", records.PUSH_SENT)}
    assert results == {"11": "delivered", "12": "no_provider", "13": "no_provider"}


async def test_a_relative_without_devices_is_recorded(bridge: Bridge) -> None:
    await bridge.run(request())
    assert [e.event for e in bridge.events("call-1")] == [records.REQUEST_READ, records.NO_DEVICE]


# --- cancels ----------------------------------------------------------------------------------------

async def test_a_cancel_goes_only_to_the_woken_devices(bridge: Bridge) -> None:
    three_devices(bridge)
    bridge.providers["apns-voip"].script("tok-iphone", InvalidToken("410"))
    bridge.providers["hms"].script("tok-huawei", Fail("400"))
    await bridge.run(request())
    await bridge.run(request(kind=Kind.CANCEL))
    assert len(bridge.providers["fcm"].to("tok-android", Kind.CANCEL)) == 1
    assert not bridge.providers["apns-voip"].to("tok-iphone", Kind.CANCEL)
    assert not bridge.providers["hms"].to("tok-huawei", Kind.CANCEL)
    [cancel] = bridge.named("call-1", records.CANCEL_SENT)
    assert (cancel.device_id, cancel.result) == ("11", "delivered")
    sent = bridge.providers["fcm"].to("tok-android", Kind.CANCEL)[0].wake
    assert sent.call_id == "call-1" and sent.data()["kind"] == "cancel"


async def test_a_cancel_while_a_device_is_still_retried_reaches_it_once_woken(bridge: Bridge) -> None:
    three_devices(bridge)
    slow = asyncio.Event()

    hms = bridge.providers["hms"]

    async def held(device: Device, wake: Wake, timeout: float) -> Answer:
        hms.sent.append(Sent(device.token, wake.kind, wake, time.monotonic()))
        if wake.kind is Kind.WAKE:
            await slow.wait()
        return Delivered("late")
    hms._attempt = held  # type: ignore[method-assign]
    wake = bridge.service.start(request(), time.time())
    deadline = time.monotonic() + STEP
    while {e.device_id for e in bridge.named("call-1", records.PUSH_SENT)} != {"11", "12"}:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.005)
    await bridge.run(request(kind=Kind.CANCEL))
    assert len(bridge.providers["fcm"].to("tok-android", Kind.CANCEL)) == 1  # at once, not after the slow one
    assert len(bridge.providers["apns-voip"].to("tok-iphone", Kind.CANCEL)) == 1
    slow.set()
    await asyncio.wait_for(wake, STEP)
    assert [s.kind for s in hms.sent] == [Kind.WAKE, Kind.CANCEL]  # cancelled once it took the wake
    cancels = {e.device_id for e in bridge.named("call-1", records.CANCEL_SENT)}
    assert cancels == {"11", "12", "13"}


async def test_a_cancel_after_a_restart_uses_the_records() -> None:
    first = make_bridge()
    three_devices(first)
    first.providers["hms"].script("tok-huawei", Fail("400"))
    await first.run(request())
    second = make_bridge()  # a new process: nothing in flight, the same Redis and directory
    second.redis, second.directory = first.redis, first.directory
    second.service = WakeService(first.redis, first.directory, dict(second.providers),  # type: ignore[arg-type]
                                 second.inflight)
    await second.run(request(kind=Kind.CANCEL))
    assert {s.token for p in second.providers.values() for s in p.sent} == {"tok-android", "tok-iphone"}


async def test_a_cancel_with_nothing_woken_pushes_nothing(bridge: Bridge) -> None:
    three_devices(bridge)
    await bridge.run(request(kind=Kind.CANCEL))
    assert not any(p.sent for p in bridge.providers.values())


# --- contacts ---------------------------------------------------------------------------------------

def ami(**fields: str) -> AmiMessage:
    return AmiMessage({"Event": "ContactStatus", "Privilege": "system,all", **fields})


def registrar(state: str, device: str = "12", port: int = 40000) -> AmiMessage:
    """A res_pjsip_registrar TestEvent as Asterisk 22.10 sends it (fields copied from the stack)."""
    return AmiMessage({"Event": "TestEvent", "Privilege": "reporting,all", "Timestamp": "1795418764.115108",
                       "Type": "StateChange", "State": state, "AppFile": "res_pjsip_registrar.c",
                       "AppFunction": "register_aor_core", "AppLine": "964",
                       "Contact": f"sip:app-{device}@127.0.0.1:{port}", "AOR": f"app-{device}",
                       "Expiration": "300", "UserAgent": "(null)"})


def test_only_app_contacts_are_events() -> None:
    event = contact_event(ami(URI="sip:app-12@127.0.0.1:40000;ob", ContactStatus="Created", AOR="app-12",
                              EndpointName="app-12"))
    assert event is not None and (event.device_id, event.status, event.reachable) == ("12", "Created", True)
    assert event.source == "contact_status"
    assert contact_event(ami(URI="sip:t@x", ContactStatus="Created", AOR="term9001")) is None
    assert contact_event(AmiMessage({"Event": "PeerStatus", "AOR": "app-12"})) is None
    assert contact_event(ami(URI="sip:x", ContactStatus="", AOR="app-12")) is None
    removed = contact_event(ami(URI="sip:x", ContactStatus="Removed", AOR="app-12"))
    assert removed is not None and removed.gone and not removed.reachable


def test_the_registrar_events_are_contacts_with_their_uri() -> None:
    added, refreshed, removed = (contact_event(registrar(s)) for s in
                                 ("AOR_CONTACT_ADDED", "AOR_CONTACT_REFRESHED", "AOR_CONTACT_REMOVED"))
    assert added is not None and refreshed is not None and removed is not None
    assert (added.device_id, added.status, added.uri, added.source) == (
        "12", "Created", "sip:app-12@127.0.0.1:40000", "registrar")
    assert added.registering and refreshed.status == "Updated" and refreshed.registering
    assert removed.status == "Removed" and removed.gone and not removed.registering
    assert contact_event(registrar("INCOMING_AUTH_VERIFY_RESULT")) is None  # a test event of another kind
    assert contact_event(AmiMessage({**registrar("AOR_CONTACT_ADDED").fields, "AOR": "term9001"})) is None
    assert contact_event(AmiMessage({**registrar("AOR_CONTACT_ADDED").fields, "AOR": "app-"})) is None


async def test_a_new_contact_is_published_and_recorded_once(bridge: Bridge) -> None:
    three_devices(bridge)
    await bridge.run(request())
    handler = ContactHandler(bridge.redis, bridge.directory, bridge.inflight)  # type: ignore[arg-type]
    uri = "sip:app-12@127.0.0.1:40000"
    for state in ("AOR_CONTACT_ADDED", "AOR_CONTACT_REFRESHED"):
        event = contact_event(registrar(state))
        assert event is not None and await handler.handle(event)
    assert [(c, m["device_id"], m["status"], m["uri"], m["source"]) for c, m in bridge.redis.published] == [
        (f"kl:contact:{PHONE}", "12", "Created", uri, "registrar"),
        (f"kl:contact:{PHONE}", "12", "Updated", uri, "registrar")]
    assert all(isinstance(m["ts"], int) for _, m in bridge.redis.published)
    [registered] = bridge.named("call-1", records.CONTACT_REGISTERED)
    assert (registered.device_id, registered.provider, registered.result, registered.detail) == (
        "12", "apns-voip", "Created", uri)
    gone = contact_event(registrar("AOR_CONTACT_REMOVED"))
    assert gone is not None and await handler.handle(gone)
    assert bridge.redis.published[-1][1]["status"] == "Removed"
    assert len(bridge.named("call-1", records.CONTACT_REGISTERED)) == 1
    assert bridge.redis.values == {}  # no reachability key any more


async def test_a_contact_of_a_device_nobody_waits_for_is_published_from_the_directory(bridge: Bridge) -> None:
    three_devices(bridge)
    handler = ContactHandler(bridge.redis, bridge.directory, bridge.inflight)  # type: ignore[arg-type]
    event = contact_event(registrar("AOR_CONTACT_ADDED", "13"))
    assert event is not None and await handler.handle(event)
    assert bridge.redis.published[0][0] == f"kl:contact:{PHONE}"
    unknown = contact_event(registrar("AOR_CONTACT_ADDED", "99"))
    assert unknown is not None and not await handler.handle(unknown)
    assert len(bridge.redis.published) == 1


def test_the_attempts_per_device_give_each_steps_first_time() -> None:
    E = records.AttemptEvent
    events = [E(records.REQUEST_READ, 1000), E(records.PUSH_SENT, 1001, "12", "apns-voip", "delivered"),
              E(records.PUSH_SENT, 1002, "11", "fcm", "failed"), E(records.CONTACT_REGISTERED, 1650, "12", "apns-voip"),
              E(records.CONTACT_REGISTERED, 1700, "12", "apns-voip"), E(records.INVITE_SENT, 1660, "12"),
              E(records.ANSWERED, 3000, "12")]
    iphone, android = records.per_device(events)
    assert iphone == records.DeviceAttempt("12", "apns-voip", "delivered", 1001, 1650, 1660, 3000)
    assert iphone.push_to_contact_ms == 649
    assert android == records.DeviceAttempt("11", "fcm", "failed", 1002)
    assert android.push_to_contact_ms is None


async def test_the_device_that_answered_gets_no_cancel(bridge: Bridge) -> None:
    three_devices(bridge)
    await bridge.run(request())
    bridge.redis.lists[records.attempt_key("call-1")].append(
        records.AttemptEvent(records.ANSWERED, int(time.time() * 1000), "12").to_json())  # the call side's record
    await bridge.run(request(kind=Kind.CANCEL))
    assert {e.device_id for e in bridge.named("call-1", records.CANCEL_SENT)} == {"11", "13"}
    assert not bridge.providers["apns-voip"].to("tok-iphone", Kind.CANCEL)


# --- pushing again ------------------------------------------------------------------------------------

async def test_a_data_push_without_contact_is_pushed_once_more_a_voip_push_never() -> None:
    bridge = make_bridge(repush_after=0.1)
    three_devices(bridge)
    await bridge.run(request())
    assert [len(bridge.providers[p].sent) for p in ("fcm", "apns-voip", "hms")] == [2, 1, 2]
    repeats = [e for e in bridge.named("call-1", records.PUSH_SENT) if e.detail.startswith("repeat")]
    assert {(e.device_id, e.result) for e in repeats} == {("11", "delivered"), ("13", "delivered")}
    first = min(e.ms for e in bridge.named("call-1", records.PUSH_SENT))
    assert all(e.ms - first >= 100 for e in repeats)


async def test_no_repeat_once_the_contact_came_or_the_call_was_cancelled() -> None:
    bridge = make_bridge(platforms=("fcm", "hms"), repush_after=0.2)
    bridge.directory.add(PHONE, Device("fcm", "tok-android", "org.kinline.app", "11"))
    bridge.directory.add(PHONE, Device("hms", "tok-huawei", "104567890", "13"))
    task = bridge.service.start(request(), time.time())
    deadline = time.monotonic() + STEP
    while len(bridge.named("call-1", records.PUSH_SENT)) < 2:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.005)
    handler = ContactHandler(bridge.redis, bridge.directory, bridge.inflight)  # type: ignore[arg-type]
    event = contact_event(ami(URI="sip:app-11@h", ContactStatus="Created", AOR="app-11"))
    assert event is not None and await handler.handle(event)
    await asyncio.wait_for(task, STEP)
    assert len(bridge.providers["fcm"].sent) == 1  # its contact came
    assert len(bridge.providers["hms"].sent) == 2  # it did not
    cancelled = make_bridge(platforms=("fcm",), repush_after=0.2)
    cancelled.directory.add(PHONE, Device("fcm", "tok-android", "org.kinline.app", "11"))
    task = cancelled.service.start(request("call-2"), time.time())
    while not cancelled.named("call-2", records.PUSH_SENT):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.005)
    await cancelled.run(request("call-2", Kind.CANCEL))
    await asyncio.wait_for(task, STEP)
    assert [s.kind for s in cancelled.providers["fcm"].sent] == [Kind.WAKE, Kind.CANCEL]


async def test_no_repeat_too_close_to_the_end_of_the_window() -> None:
    bridge = make_bridge(platforms=("fcm",), repush_after=0.1)
    bridge.directory.add(PHONE, Device("fcm", "tok-android", "org.kinline.app", "11"))
    await bridge.run(request(window_s=3.0))
    assert len(bridge.providers["fcm"].sent) == 1


def test_a_pjsip_successful_auth_of_an_app_is_a_hint() -> None:
    auth = AmiMessage({"Event": "SuccessfulAuth", "Privilege": "security,all", "Service": "PJSIP",
                       "AccountID": "app-12", "RemoteAddress": "IPV4/UDP/127.0.0.1/40000", "UsingPassword": "1"})
    event = contact_event(auth)
    assert event is not None and (event.device_id, event.status, event.uri, event.source) == (
        "12", "Authenticated", "", "auth")
    assert event.registering and not event.reachable and not event.gone
    assert contact_event(AmiMessage({**auth.fields, "AccountID": "term9001"})) is None
    assert contact_event(AmiMessage({**auth.fields, "Service": "AMI"})) is None


async def test_hints_count_only_until_the_first_registrar_event(bridge: Bridge) -> None:
    """An Asterisk without TEST_FRAMEWORK sends only SuccessfulAuth: the hint wakes the call;
    once a registrar event was seen the hints (earlier than the stored contact) are dropped."""
    three_devices(bridge)
    await bridge.run(request())
    handler = ContactHandler(bridge.redis, bridge.directory, bridge.inflight)  # type: ignore[arg-type]

    def hint(device: str) -> AmiMessage:
        return AmiMessage({"Event": "SuccessfulAuth", "Service": "PJSIP", "AccountID": f"app-{device}"})

    event = contact_event(hint("11"))
    assert event is not None and await handler.handle(event)
    assert [(m["device_id"], m["status"]) for _, m in bridge.redis.published] == [("11", "Authenticated")]
    [registered] = bridge.named("call-1", records.CONTACT_REGISTERED)
    assert (registered.device_id, registered.result) == ("11", "Authenticated")
    added = contact_event(registrar("AOR_CONTACT_ADDED", "12"))
    assert added is not None and await handler.handle(added)
    late_hint = contact_event(hint("13"))
    assert late_hint is not None and not await handler.handle(late_hint)
    assert [(m["device_id"], m["status"]) for _, m in bridge.redis.published] == [
        ("11", "Authenticated"), ("12", "Created")]
    assert [e.device_id for e in bridge.named("call-1", records.CONTACT_REGISTERED)] == ["11", "12"]


# --- unwakeable: no push delivered, the waiting call is told at once ---------------------------------

def unwakeable(bridge: Bridge) -> list[tuple[str, dict[str, Any]]]:
    return [(c, m) for c, m in bridge.redis.published if m.get("status") == "Unwakeable"]


async def test_every_push_refused_tells_the_call_it_is_unwakeable(bridge: Bridge) -> None:
    three_devices(bridge)
    bridge.providers["fcm"].script("tok-android", InvalidToken("404 UNREGISTERED"))
    bridge.providers["apns-voip"].script("tok-iphone", InvalidToken("410 Unregistered"))
    bridge.providers["hms"].script("tok-huawei", Fail("400 bad request"))
    await bridge.run(request("call-1"))
    [(channel, message)] = unwakeable(bridge)
    assert channel == f"kl:contact:{PHONE}"
    assert (message["call_id"], message["source"]) == ("call-1", "push") and "device_id" not in message
    assert isinstance(message["ts"], int)
    value, ttl = bridge.redis.values["kl:unwakeable:call-1"]
    assert value == "1" and ttl is not None and 29 <= ttl <= 30  # for a leg that subscribes later


async def test_a_delivered_push_publishes_nothing_for_the_call(bridge: Bridge) -> None:
    three_devices(bridge)
    bridge.providers["apns-voip"].script("tok-iphone", InvalidToken("410 Unregistered"))
    bridge.providers["hms"].script("tok-huawei", Fail("400 bad request"))
    await bridge.run(request("call-1"))  # the FCM device took it
    assert bridge.redis.published == [] and bridge.redis.values == {}


async def test_no_repeat_is_left_to_try_before_the_call_is_told() -> None:
    """Only a delivered device is pushed again: a wake with none delivered is told at once,
    not after the repeat's delay."""
    bridge = make_bridge(platforms=("fcm",), repush_after=1.0)
    bridge.directory.add(PHONE, Device("fcm", "tok-android", "org.kinline.app", "11"))
    bridge.providers["fcm"].script("tok-android", InvalidToken("404 UNREGISTERED"))
    started = time.monotonic()
    await bridge.run(request("call-1"))
    assert time.monotonic() - started < 0.5
    assert [m["call_id"] for _, m in unwakeable(bridge)] == ["call-1"]
    assert len(bridge.providers["fcm"].sent) == 1


@pytest.mark.parametrize("case", ["no device", "no provider"])
async def test_nothing_to_push_is_unwakeable_too(case: str) -> None:
    bridge = make_bridge(platforms=() if case == "no provider" else ("fcm",))
    if case == "no provider":
        three_devices(bridge)
    await bridge.run(request("call-7"))
    assert [(c, m["call_id"]) for c, m in unwakeable(bridge)] == [(f"kl:contact:{PHONE}", "call-7")]


async def test_a_cancelled_call_is_not_told() -> None:
    bridge = make_bridge(platforms=("fcm",))
    bridge.directory.add(PHONE, Device("fcm", "tok-android", "org.kinline.app", "11"))
    bridge.providers["fcm"].script("tok-android", Retry("503"), InvalidToken("404 UNREGISTERED"))
    gate = asyncio.Event()
    bridge.providers["fcm"].gate = gate
    task = bridge.service.start(request("call-1"), time.time())
    deadline = time.monotonic() + STEP
    while bridge.inflight.get("call-1") is None:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.005)
    await bridge.run(request("call-1", Kind.CANCEL))
    gate.set()
    await asyncio.wait_for(task, STEP)
    assert unwakeable(bridge) == []
