"""The free audio test call to the relative's app ("Тест аудио"): rules and the service.

The platform calls the app through the same push bridge as "00" calls; the app hears a
voice guide, a beep, its own voice echoed for ``ECHO_S`` and goodbye. Never billed: no
hold, no ledger entry, no call record. At most ``LIMIT`` per rolling ``WINDOW_S`` per
relative; a relative with no active device is refused before anything is counted, and a
call the switch could not start is not counted either (fail closed, the count given back).

A call the switch took but never started (the AGI server down: the dial plan hangs up
before waking or dialing anything) is given back too, once the switch says the call
ended: its Originate failed and it left no wake step. Its outcome is then ``not_started``
(the API's "failed"), and the relative may try again at once. When that word is lost (the
API restarted, or its AMI connection dropped, while the call was on), the relative's next
request or outcome question settles it (``TestCalls.sweep``): a call counted longer ago than
the switch may take to reach the app (``Dialer.end_bound_s``) with no wake step was never
started either.

The adapters: the API (api/routes/app_test.py) asks ``TestCalls.start``; the limit is
kept by store/app_test.py (one Lua script: check and add at once); the switch is asked
through ``Dialer`` (AMI Originate, api/originate.py); the call itself is
dialplan/app_test.conf and agi/routes/app_test.py."""

from __future__ import annotations

import asyncio
import logging
import math
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ivr.clock import now_ms
from ivr.errors import KinlineError
from ivr.prompts import LANGUAGES

LIMIT = 5  # test calls per relative ...
WINDOW_S = 3600  # ... in any rolling hour
ECHO_S = 10  # how long the app hears itself
RING_S = 30  # the app's INVITE rings this long once a contact is there
CALLER_NAME = "Kinline test"  # what the push (and the app's screen) shows
ID_PREFIX = "test-"
_ID = re.compile(r"^test-[0-9a-f]{16}$")
# What the switch says when a call has ended (Dialer.ended).
ANSWERED = "answered"  # the app answered: the guide and the echo ran
FAILED = "failed"  # nobody answered: not reached, declined, or never started at all

log = logging.getLogger(__name__)


class TestCallError(KinlineError):
    """A test call that cannot be started."""

    __test__ = False  # not a pytest class


class NoAppDevice(TestCallError):
    """The relative has no active app device: nothing to call (not counted)."""


class TooManyTestCalls(TestCallError):
    """The limit is reached; ``retry_after_s``: until the oldest counted call leaves the window."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"at most {LIMIT} test calls per {WINDOW_S // 60} min: retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


class SwitchUnavailable(TestCallError):
    """The switch could not be asked to call (Asterisk or AMI down): not counted."""


@dataclass(frozen=True)
class Admission:
    allowed: bool
    retry_after_s: int = 0  # when refused: seconds until a test call is allowed again
    used: int = 0  # test calls counted in the window, this one included when allowed


def new_call_id() -> str:
    return f"{ID_PREFIX}{secrets.token_hex(8)}"


def is_call_id(text: str) -> bool:
    return bool(_ID.fullmatch(text))


def check_language(language: str) -> str:
    if language not in LANGUAGES:
        raise ValueError(f"language must be one of {', '.join(LANGUAGES)}")
    return language


def retry_after_s(oldest_ms: int, now_ms: int, window_s: int = WINDOW_S) -> int:
    """Whole seconds (1 to the window) until a call counted at ``oldest_ms`` leaves the
    window (never more than the window: requests served together may count a moment apart)."""
    return min(window_s, max(1, math.ceil((oldest_ms + window_s * 1000 - now_ms) / 1000)))


def admit(counted_ms: Sequence[int], now_ms: int, limit: int = LIMIT, window_s: int = WINDOW_S) -> Admission:
    """Whether one more test call may start now, given when the earlier ones were counted
    (epoch ms, any order). The rule the store's script applies atomically: calls older than
    the window no longer count; with ``limit`` left inside it, the answer is no until the
    oldest of the last ``limit`` leaves."""
    inside = sorted(t for t in counted_ms if t > now_ms - window_s * 1000)
    if len(inside) < limit:
        return Admission(True, 0, len(inside) + 1)
    return Admission(False, retry_after_s(inside[len(inside) - limit], now_ms, window_s), len(inside))


@dataclass(frozen=True)
class TestCall:
    __test__ = False  # not a pytest class

    call_id: str
    phone: str
    language: str
    requested_ms: int
    used: int  # test calls in the window, this one included
    limit: int = LIMIT


class Limiter(Protocol):
    async def admit(self, phone: str, call: TestCall, now_ms: int, limit: int, window_s: int) -> Admission:
        """Atomically: ``admit`` over the relative's counted calls and, if allowed, count
        ``call`` (and keep it, for the switch's side and the outcome)."""
        ...

    async def give_back(self, phone: str, call_id: str) -> None:
        """Uncount a call the switch never started."""
        ...

    async def not_started(self, phone: str, call_id: str, now_ms: int) -> bool:
        """Atomically: if the call left no wake step (nothing was woken, dialed or tried),
        uncount it and record its outcome ``not_started``; True if it did so."""
        ...

    async def counted_before(self, phone: str, before_ms: int) -> list[str]:
        """The ids of the relative's counted calls counted before ``before_ms`` (epoch ms)."""
        ...


class Devices(Protocol):
    async def active_devices(self, phone: str) -> list[str]:
        """The ids of the relative's active app devices (E.164 phone with its +)."""
        ...


class Dialer(Protocol):
    end_bound_s: float  # the longest the switch takes from the request to a call's end

    async def call_app(self, call: TestCall) -> None:
        """Ask the switch to call the app; raise SwitchUnavailable if it cannot be asked."""
        ...

    async def ended(self, call: TestCall) -> str | None:
        """Wait for the switch's last word on a call ``call_app`` queued: ANSWERED, FAILED,
        or None when none came within the adapter's bound (e.g. lost with its connection)."""
        ...


class TestCalls:
    __test__ = False  # not a pytest class

    def __init__(self, devices: Devices, limiter: Limiter, dialer: Dialer, *, limit: int = LIMIT,
                 window_s: int = WINDOW_S, clock: Callable[[], int] = now_ms) -> None:
        self.devices = devices
        self.limiter = limiter
        self.dialer = dialer
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._watches: set[asyncio.Task[bool]] = set()

    async def start(self, phone: str, language: str, now_ms: int) -> TestCall:
        """Start a test call to the relative's app; raises NoAppDevice, TooManyTestCalls or
        SwitchUnavailable (the last two leave the count as it was before)."""
        check_language(language)
        await self.sweep(phone, now_ms)
        if not await self.devices.active_devices(phone):
            raise NoAppDevice("no active app device: register the app first")
        call = TestCall(new_call_id(), phone, language, now_ms, 0, self.limit)
        admission = await self.limiter.admit(phone, call, now_ms, self.limit, self.window_s)
        if not admission.allowed:
            raise TooManyTestCalls(admission.retry_after_s)
        call = TestCall(call.call_id, phone, language, now_ms, admission.used, self.limit)
        try:
            await self.dialer.call_app(call)
        except BaseException:
            await self.limiter.give_back(phone, call.call_id)
            raise
        watch = asyncio.create_task(self.settle(call), name=f"test call {call.call_id}")
        self._watches.add(watch)
        watch.add_done_callback(self._watches.discard)
        return call

    async def settle(self, call: TestCall) -> bool:
        """Once the switch says the call ended: a call that failed without a single wake
        step was never started (the AGI server down, the record gone): uncount it and mark it
        ``not_started``. True if so. Any error here leaves the call counted (logged)."""
        try:
            if await self.dialer.ended(call) != FAILED:
                return False
            given_back = await self.limiter.not_started(call.phone, call.call_id, self.clock())
        except Exception:
            log.exception("test call %s: its end could not be settled: it stays counted", call.call_id)
            return False
        if given_back:
            log.warning("test call %s: the switch never started it: not counted", call.call_id)
        return given_back

    async def sweep(self, phone: str, now_ms: int) -> list[str]:
        """Settle the relative's counted calls whose end this process never heard (it
        restarted, or its AMI connection dropped, while they were on): one counted longer
        ago than the switch may take to end it and with no wake step was never started, so it
        is uncounted and marked ``not_started``. The ids so settled (a call with a step, or one
        just settled by its watch, is left as it is: the store's check is atomic)."""
        before_ms = now_ms - math.ceil(self.dialer.end_bound_s * 1000)
        settled = [call_id for call_id in await self.limiter.counted_before(phone, before_ms)
                   if await self.limiter.not_started(phone, call_id, now_ms)]
        for call_id in settled:
            log.warning("test call %s: its end was never heard and it left no step: never started, not counted",
                        call_id)
        return settled

    async def aclose(self) -> None:
        """Stop waiting for the calls' ends (the API shutting down): those stay counted."""
        for watch in list(self._watches):
            watch.cancel()
        await asyncio.gather(*self._watches, return_exceptions=True)
