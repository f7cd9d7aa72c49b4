"""The free audio test call's rules (ivr/app_test.py), its AMI Originate and its API answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.deps import ApiDeps
from api.main import build_app
from api.originate import CHANNEL, CONTEXT, originate_fields
from api.payments import FakeProvider
from ivr.app_test import (
    ANSWERED,
    FAILED,
    LIMIT,
    WINDOW_S,
    Admission,
    NoAppDevice,
    SwitchUnavailable,
    TestCall,
    TestCalls,
    TooManyTestCalls,
    admit,
    is_call_id,
    new_call_id,
    retry_after_s,
)

PHONE = "+79161234567"
HOUR_MS = WINDOW_S * 1000
T0 = 1_800_000_000_000


def test_five_pass_the_sixth_waits_until_the_first_leaves_the_hour() -> None:
    counted: list[int] = []
    for i in range(LIMIT):
        now = T0 + i * 60_000  # one a minute
        assert admit(counted, now) == Admission(True, 0, i + 1)
        counted.append(now)
    now = T0 + 10 * 60_000
    refused = admit(counted, now)
    assert not refused.allowed and refused.used == LIMIT
    assert refused.retry_after_s == WINDOW_S - 10 * 60  # the first (T0) leaves at T0 + 1 h
    assert not admit(counted, T0 + HOUR_MS - 1).allowed  # still inside 1 ms before the hour...
    assert admit(counted, T0 + HOUR_MS).allowed  # ... gone at the hour: the window rolls
    assert not admit([*counted[1:], T0 + HOUR_MS], T0 + HOUR_MS + 1).allowed


def test_retry_after_is_whole_seconds_and_never_zero() -> None:
    assert retry_after_s(T0, T0 + HOUR_MS - 1) == 1
    assert retry_after_s(T0, T0 + HOUR_MS) == 1
    assert retry_after_s(T0, T0 + HOUR_MS - 1001) == 2
    assert retry_after_s(T0, T0) == WINDOW_S
    assert retry_after_s(T0 + 5, T0) == WINDOW_S  # counted a moment "later" by a request served together


@settings(max_examples=200)
@given(st.lists(st.integers(min_value=0, max_value=3 * HOUR_MS), min_size=1, max_size=40))
def test_any_hour_holds_at_most_five_and_retry_after_is_exact(offsets: list[int]) -> None:
    counted: list[int] = []
    for now in sorted(T0 + o for o in offsets):
        answer = admit(counted, now)
        if answer.allowed:
            counted.append(now)
            continue
        later = now + answer.retry_after_s * 1000
        assert admit(counted, later).allowed  # allowed again after Retry-After ...
        if answer.retry_after_s > 1:
            assert not admit(counted, later - 1000).allowed  # ... and not a second sooner
    for start in counted:
        assert len([t for t in counted if start <= t < start + HOUR_MS]) <= LIMIT


def test_call_ids() -> None:
    made = new_call_id()
    assert is_call_id(made) and made.startswith("test-") and made != new_call_id()
    assert not is_call_id("test-0123") and not is_call_id("x" + made) and not is_call_id(made + "\n")


def test_the_originate_names_only_validated_values() -> None:
    call = TestCall(new_call_id(), PHONE, "fr", T0, 1)
    fields = originate_fields(call, wake_window_s=30)
    assert (fields["Channel"], fields["Context"], fields["Exten"], fields["Async"]) == (CHANNEL, CONTEXT, "s", "true")
    assert fields["Variable"] == f"KINLINE_TEST_ID={call.call_id},KINLINE_TEST_LANG=fr,KINLINE_TEST_ECHO_S=10"
    assert int(fields["Timeout"]) >= (30 + 30) * 1000  # the wake window and the ring
    assert PHONE not in str(fields)  # the relative stays in Redis, not on the channel


@dataclass
class MemoryLimiter:
    counted: dict[str, list[tuple[str, int]]] = field(default_factory=dict)

    async def admit(self, phone: str, call: TestCall, now_ms: int, limit: int, window_s: int) -> Admission:
        mine = self.counted.setdefault(phone, [])
        answer = admit([t for _, t in mine], now_ms, limit, window_s)
        if answer.allowed:
            mine.append((call.call_id, now_ms))
        return answer

    async def give_back(self, phone: str, call_id: str) -> None:
        self.counted[phone] = [(c, t) for c, t in self.counted.get(phone, []) if c != call_id]

    tried: set[str] = field(default_factory=set)  # calls with a wake step
    not_started_at: dict[str, int] = field(default_factory=dict)
    broken: bool = False

    async def not_started(self, phone: str, call_id: str, now_ms: int) -> bool:
        if self.broken:
            raise ConnectionError("Redis down")
        if call_id in self.tried or call_id in self.not_started_at:
            return False
        await self.give_back(phone, call_id)
        self.not_started_at[call_id] = now_ms
        return True

    async def counted_before(self, phone: str, before_ms: int) -> list[str]:
        return [c for c, t in self.counted.get(phone, []) if t < before_ms]


@dataclass
class FakeDevices:
    phones: dict[str, list[str]] = field(default_factory=lambda: {PHONE: ["0123456789abcdef"]})

    async def active_devices(self, phone: str) -> list[str]:
        return self.phones.get(phone, [])


@dataclass
class FakeDialer:
    down: bool = False
    calls: list[TestCall] = field(default_factory=list)
    ends: dict[str, str | None] = field(default_factory=dict)  # call id -> what ended() says
    end: str | None = None  # what it says of the others
    end_bound_s: float = 90.0

    async def call_app(self, call: TestCall) -> None:
        if self.down:
            raise SwitchUnavailable("AMI down")
        self.calls.append(call)

    async def ended(self, call: TestCall) -> str | None:
        return self.ends.get(call.call_id, self.end)


async def test_the_service_counts_only_calls_the_switch_took() -> None:
    limiter, dialer = MemoryLimiter(), FakeDialer()
    calls = TestCalls(FakeDevices(), limiter, dialer)
    with pytest.raises(NoAppDevice):
        await calls.start("+79030000000", "ru", T0)
    dialer.down = True
    with pytest.raises(SwitchUnavailable):
        await calls.start(PHONE, "ru", T0)
    assert limiter.counted[PHONE] == []  # given back
    dialer.down = False
    started = [await calls.start(PHONE, "en", T0 + i) for i in range(LIMIT)]
    assert [c.used for c in started] == list(range(1, LIMIT + 1))
    assert [c.call_id for c in dialer.calls] == [c.call_id for c in started]
    with pytest.raises(TooManyTestCalls) as refused:
        await calls.start(PHONE, "en", T0 + 1000)
    assert refused.value.retry_after_s == WINDOW_S - 1
    with pytest.raises(ValueError):
        await calls.start(PHONE, "de", T0 + HOUR_MS + 10)


async def test_a_call_the_switch_never_started_is_given_back_and_marked() -> None:
    """The AGI server down: the Originate fails with no wake step: uncounted, marked at the
    clock's time. A call that failed after a step (the app was woken or rung), one that was
    answered, one whose end is unknown, and a store error all leave the count as it is."""
    limiter, dialer = MemoryLimiter(), FakeDialer()
    calls = TestCalls(FakeDevices(), limiter, dialer, clock=lambda: T0 + 500)
    never, rung, answered, unknown, broken = [await calls.start(PHONE, "ru", T0 + i) for i in range(5)]
    await calls.aclose()  # the watches start() left: this test settles each call itself
    dialer.ends.update({never.call_id: FAILED, rung.call_id: FAILED, answered.call_id: ANSWERED,
                        broken.call_id: FAILED})
    limiter.tried.add(rung.call_id)
    assert await calls.settle(never) is True
    assert limiter.not_started_at == {never.call_id: T0 + 500}
    assert await calls.settle(never) is False  # once
    assert [await calls.settle(c) for c in (rung, answered, unknown)] == [False, False, False]
    limiter.broken = True
    assert await calls.settle(broken) is False  # logged, not raised
    assert [c for c, _ in limiter.counted[PHONE]] == [c.call_id for c in (rung, answered, unknown, broken)]
    assert (await calls.start(PHONE, "ru", T0 + 10)).used == LIMIT  # the place it freed


async def test_start_settles_by_itself_once_the_switch_ends_the_call() -> None:
    limiter, dialer = MemoryLimiter(), FakeDialer(end=FAILED)
    calls = TestCalls(FakeDevices(), limiter, dialer)
    never = await calls.start(PHONE, "fr", T0)
    for _ in range(3):
        await asyncio.sleep(0)  # its watch asks the dialer, then the limiter
    assert never.call_id in limiter.not_started_at and limiter.counted[PHONE] == []
    dialer.end = ANSWERED
    answered = await calls.start(PHONE, "fr", T0 + 1)
    for _ in range(3):
        await asyncio.sleep(0)
    assert answered.used == 1 and limiter.counted[PHONE] == [(answered.call_id, T0 + 1)]
    await calls.aclose()


async def test_a_call_whose_end_was_never_heard_is_settled_by_the_next_request() -> None:
    """The API restarted (or lost AMI) while its calls were on: no end ever comes. Once the
    switch's bound has passed since a call was counted, the relative's next request uncounts
    it if it left no step; a call with a step, and one still inside the bound, stay counted."""
    limiter, dialer = MemoryLimiter(), FakeDialer()  # ended() says None: the end is unknown
    calls = TestCalls(FakeDevices(), limiter, dialer)
    bound_ms = int(dialer.end_bound_s * 1000)
    never, woken, recent = [await calls.start(PHONE, "ru", t) for t in (T0, T0 + 1, T0 + bound_ms)]
    await calls.aclose()
    limiter.tried.add(woken.call_id)
    assert await calls.sweep(PHONE, T0 + bound_ms) == []  # exactly at the bound: maybe still on
    assert await calls.sweep(PHONE, T0 + bound_ms + 1) == [never.call_id]
    assert limiter.not_started_at == {never.call_id: T0 + bound_ms + 1}
    assert [c for c, _ in limiter.counted[PHONE]] == [woken.call_id, recent.call_id]
    again = await calls.start(PHONE, "ru", T0 + 2 * bound_ms + 1)  # sweeps `recent` first
    assert again.used == 2 and recent.call_id in limiter.not_started_at
    await calls.aclose()


# The API's answers, on the service above (no Redis: the deps' login and idempotency are fakes).
class Sessions:
    async def session_phone(self, token_hash: str) -> str | None:
        return PHONE


class NoIdempotency:
    async def begin(self, scope: str, fingerprint: str) -> tuple[str, int, str]:
        return "new", 0, ""

    async def finish(self, scope: str, status: int, body: str) -> None: ...

    async def abandon(self, scope: str) -> None: ...


@pytest.fixture
def dialer() -> FakeDialer:
    return FakeDialer()


def serving(deps: ApiDeps) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(deps)), base_url="http://api")


def fake_deps(calls: TestCalls | None) -> ApiDeps:
    return ApiDeps(accounts=None, codes=Sessions(), idempotency=NoIdempotency(), sms=None,  # type: ignore[arg-type]
                   provider=FakeProvider(), webhook_secret="w" * 32, app_tests=calls)


@pytest.fixture
async def client(dialer: FakeDialer) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(fake_deps(TestCalls(FakeDevices(), MemoryLimiter(), dialer))) as c:
        yield c


AUTH = {"Authorization": "Bearer t"}


async def test_api_five_accepted_then_429_with_retry_after(client: httpx.AsyncClient, dialer: FakeDialer) -> None:
    answers = [await client.post("/v1/app/test-call", headers=AUTH) for _ in range(LIMIT + 1)]
    assert [a.status_code for a in answers] == [202] * LIMIT + [429]
    assert answers[0].json()["status"] == "calling" and answers[0].json()["language"] == "ru"
    assert 1 <= int(answers[-1].headers["Retry-After"]) <= WINDOW_S
    assert "5 test calls" in answers[-1].json()["detail"]
    assert len(dialer.calls) == LIMIT


async def test_api_switch_down_is_503_and_not_counted(client: httpx.AsyncClient, dialer: FakeDialer) -> None:
    dialer.down = True
    down = await client.post("/v1/app/test-call", json={"language": "fr"}, headers=AUTH)
    assert down.status_code == 503 and "not counted" in down.json()["detail"]
    dialer.down = False
    assert [(await client.post("/v1/app/test-call", headers=AUTH)).status_code for _ in range(LIMIT)] == [202] * LIMIT


async def test_api_refuses_a_language_it_cannot_speak_and_needs_a_login(client: httpx.AsyncClient) -> None:
    assert (await client.post("/v1/app/test-call", json={"language": "de"}, headers=AUTH)).status_code == 422
    assert (await client.post("/v1/app/test-call")).status_code == 401


async def test_api_without_the_switch_offers_no_test_call() -> None:
    async with serving(fake_deps(None)) as c:
        assert (await c.post("/v1/app/test-call", headers=AUTH)).status_code == 404
        assert "/v1/app/test-call" not in (await c.get("/openapi.json")).json()["paths"]


async def test_api_no_device_is_409_and_not_counted() -> None:
    devices, limiter = FakeDevices({}), MemoryLimiter()
    async with serving(fake_deps(TestCalls(devices, limiter, FakeDialer()))) as c:
        refused = await c.post("/v1/app/test-call", headers=AUTH)
        assert refused.status_code == 409 and "no active app device" in refused.json()["detail"]
        assert limiter.counted == {}
        devices.phones[PHONE] = ["0123456789abcdef"]
        assert (await c.post("/v1/app/test-call", headers=AUTH)).json()["used"] == 1


def test_the_answering_device_from_its_own_channel_or_its_leg() -> None:
    from agi.routes.app_test import answering_device

    device = "0123456789abcdef"
    assert answering_device(f"app-{device}", f"PJSIP/app-{device}-00000007") == device  # registered: dialed at once
    assert answering_device("", f"Local/{device}@kinline-app-leg-00000002;1") == device  # woken: its leg answered
    assert answering_device("term-open", "PJSIP/term-open-00000001") is None
    assert answering_device("", "Local/s@kinline-app-test-dial-00000000;2") is None


async def test_ami_down_is_switch_unavailable_within_the_bound() -> None:
    """Nothing listens on the AMI port: the dialer says so (the API's 503) within its bound."""
    import socket
    import time

    from api.originate import AmiDialer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the dialer tries it
    dialer = AmiDialer("127.0.0.1", port, "kinline-originate", "x", timeout=0.3)
    started = time.monotonic()
    try:
        for _ in range(2):  # the first (connecting) and a later call alike
            with pytest.raises(SwitchUnavailable):
                await dialer.call_app(TestCall(new_call_id(), PHONE, "ru", T0, 1))
    finally:
        await dialer.aclose()
    assert time.monotonic() - started < 2
