"""One push, tried until it is accepted, refused for good or out of time.

A provider supplies `attempt(device, wake, timeout) -> Answer`: one HTTP request,
classified. `deliver` loops: 429/5xx/transport errors wait (Retry-After when the
provider gave one, else exponential backoff with jitter) and try again, but never
past the wake's deadline: a wait that would end after it gives up at once."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from pushbridge.providers.base import Clock, Device, Outcome, Platform, PushResult, Wake
from pushbridge.providers.errors import AuthError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivered:
    message_id: str


@dataclass(frozen=True)
class InvalidToken:
    reason: str


@dataclass(frozen=True)
class Retry:
    reason: str
    retry_after: float | None = None  # seconds, from the provider's Retry-After


@dataclass(frozen=True)
class Fail:
    reason: str


Answer = Delivered | InvalidToken | Retry | Fail
Attempt = Callable[[Device, Wake, float], Awaitable[Answer]]


@dataclass(frozen=True)
class Backoff:
    """Delay before try n+1 after n failed tries: base * 2**(n-1), capped, plus up to
    `jitter` of it at random so many devices throttled at once do not retry in step."""

    base: float = 0.25
    cap: float = 4.0
    jitter: float = 0.2

    def delay(self, tries: int) -> float:
        d = min(self.cap, self.base * 2.0 ** (tries - 1))
        return d * (1 + random.uniform(0, self.jitter))  # spacing, not secrecy


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as delta seconds; an HTTP date or garbage counts as absent."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return max(0.0, seconds)


async def deliver(
    provider: str, attempt: Attempt, device: Device, wake: Wake, *, clock: Clock, backoff: Backoff
) -> PushResult:
    tries = 0
    last = "no try"
    started = time.monotonic()
    while True:
        remaining = wake.remaining(clock())
        if remaining <= 0:
            return _failed(provider, device, wake, started, tries, f"window over after {tries} tries: {last}")
        tries += 1
        try:
            async with asyncio.timeout(remaining):
                answer = await _guarded(attempt, device, wake, remaining)
        except TimeoutError:
            return _failed(provider, device, wake, started, tries, f"no answer before the deadline ({last})")
        match answer:
            case Delivered(message_id):
                log.info("call %s: %s push %s to %s delivered (try %d, id %s)",
                         wake.call_id, provider, wake.kind, device, tries, message_id)
                return PushResult(device, Outcome.DELIVERED, tries, "", message_id, time.monotonic() - started)
            case InvalidToken(reason):
                log.warning("call %s: %s token of %s is invalid (%s): deactivate it",
                            wake.call_id, provider, device, reason)
                return PushResult(device, Outcome.INVALID_TOKEN, tries, reason, "", time.monotonic() - started)
            case Fail(reason):
                return _failed(provider, device, wake, started, tries, reason)
            case Retry(reason, retry_after):
                last = reason
                wait = retry_after if retry_after is not None else backoff.delay(tries)
                if clock() + wait >= wake.deadline:
                    return _failed(provider, device, wake, started, tries,
                                   f"{reason}; a retry in {wait:.2f} s would pass the deadline")
                log.info("call %s: %s push to %s: %s; retry %d in %.2f s",
                         wake.call_id, provider, device, reason, tries + 1, wait)
                await asyncio.sleep(wait)


async def _guarded(attempt: Attempt, device: Device, wake: Wake, remaining: float) -> Answer:
    """Transport errors and OAuth failures become answers, so the loop alone decides."""
    try:
        return await attempt(device, wake, remaining)
    except AuthError as exc:
        if exc.retryable:
            return Retry(f"auth: {exc}", exc.retry_after)
        return Fail(f"auth: {exc}")
    except httpx.TransportError as exc:
        return Retry(f"transport: {type(exc).__name__}: {exc}")


def _failed(provider: str, device: Device, wake: Wake, started: float, tries: int, reason: str) -> PushResult:
    log.warning("call %s: %s push %s to %s failed after %d tries: %s",
                wake.call_id, provider, wake.kind, device, tries, reason)
    return PushResult(device, Outcome.FAILED, tries, reason, "", time.monotonic() - started)


class HttpPushProvider:
    """What the providers share: an HTTP client, a clock, the backoff, and
    ``send`` = ``deliver`` over the subclass's one ``_attempt``."""

    NAME = ""  # in logs and results: "FCM", "APNs", "HMS"
    PLATFORM: Platform

    def __init__(self, client: httpx.AsyncClient, clock: Clock, backoff: Backoff | None) -> None:
        self._client = client
        self._clock = clock
        self._backoff = backoff or Backoff()

    @property
    def platform(self) -> Platform:
        return self.PLATFORM

    async def aclose(self) -> None:
        await self._client.aclose()

    async def send(self, device: Device, wake: Wake) -> PushResult:
        return await deliver(self.NAME, self._attempt, device, wake, clock=self._clock, backoff=self._backoff)

    async def _attempt(self, device: Device, wake: Wake, timeout: float) -> Answer:
        raise NotImplementedError
