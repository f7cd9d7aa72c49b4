"""Records of each wake attempt, per call: Redis list `kl:wakeattempt:<call_id>`, one JSON
event per entry, in the order written, kept two days.

The bridge writes `request_read`, `push_sent` (per device: provider, result, tries,
the provider's latency), `deactivated`, `contact_registered` (per device, the first
contact after its push), `cancel_sent`, and `dropped` / `no_device` / `no_provider` /
`directory_error` / `rejected` when nothing is pushed. The call side (the 00 routing)
writes `invite_sent` and `answered` with `record`. A test call the switch never started
gets `not_started` (store/app_test.py). Times are epoch milliseconds."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import redis.asyncio as aioredis

ATTEMPT_KEY = "kl:wakeattempt:{call_id}"
KEEP_S = 2 * 24 * 3600

REQUEST_READ = "request_read"
PUSH_SENT = "push_sent"
DEACTIVATED = "deactivated"
CONTACT_REGISTERED = "contact_registered"
CANCEL_SENT = "cancel_sent"
INVITE_SENT = "invite_sent"
ANSWERED = "answered"
DROPPED = "dropped"
NO_DEVICE = "no_device"
NO_PROVIDER = "no_provider"
DIRECTORY_ERROR = "directory_error"
NOT_STARTED = "not_started"


@dataclass(frozen=True)
class AttemptEvent:
    event: str
    ms: int  # epoch milliseconds when it happened
    device_id: str = ""
    provider: str = ""  # platform: fcm, apns-voip, hms
    result: str = ""  # delivered, invalid_token, failed, no_provider...
    detail: str = ""  # the reason, a contact URI, a stream entry id
    tries: int = 0
    latency_ms: float = 0.0  # push: first try -> final answer; request_read: ts -> read

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v not in ("", 0, 0.0)}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> AttemptEvent:
        raw: dict[str, Any] = json.loads(text)
        return cls(**raw)


def attempt_key(call_id: str) -> str:
    return ATTEMPT_KEY.format(call_id=call_id)


def add_to(pipe: aioredis.client.Pipeline, call_id: str, *events: AttemptEvent) -> None:
    """Queue the events on a pipeline (with the key's expiry)."""
    key = attempt_key(call_id)
    pipe.rpush(key, *(e.to_json() for e in events))
    pipe.expire(key, KEEP_S)


async def record(redis: aioredis.Redis, call_id: str, *events: AttemptEvent) -> None:
    if not events:
        return
    async with redis.pipeline(transaction=False) as pipe:
        add_to(pipe, call_id, *events)
        await pipe.execute()


async def read_attempts(redis: aioredis.Redis, call_id: str) -> list[AttemptEvent]:
    """Every event of the call's wake attempts, in the order written."""
    return [AttemptEvent.from_json(_text(item)) for item in await redis.lrange(attempt_key(call_id), 0, -1)]


def _text(item: str | bytes) -> str:
    return item.decode() if isinstance(item, bytes) else item


@dataclass(frozen=True)
class DeviceAttempt:
    """One device's wake, from the call's events: each step's time (epoch ms) or None."""

    device_id: str
    provider: str
    push_result: str
    push_sent_ms: int | None = None
    contact_ms: int | None = None
    invite_ms: int | None = None
    answered_ms: int | None = None

    @property
    def push_to_contact_ms(self) -> int | None:
        """The wake latency: push sent -> the app's contact registered."""
        return None if self.push_sent_ms is None or self.contact_ms is None else self.contact_ms - self.push_sent_ms


def per_device(events: list[AttemptEvent]) -> list[DeviceAttempt]:
    """The call's wake per device, in the order the devices were pushed; each step's first time."""
    steps = {PUSH_SENT: "push_sent_ms", CONTACT_REGISTERED: "contact_ms", INVITE_SENT: "invite_ms",
             ANSWERED: "answered_ms"}
    found: dict[str, dict[str, Any]] = {}
    for e in events:
        if not e.device_id or e.event not in steps:
            continue
        entry = found.setdefault(e.device_id, {"device_id": e.device_id, "provider": e.provider, "push_result": ""})
        entry["provider"] = entry["provider"] or e.provider
        if e.event == PUSH_SENT:
            entry["push_result"] = e.result
        entry.setdefault(steps[e.event], e.ms)
    return sorted((DeviceAttempt(**v) for v in found.values()),
                  key=lambda d: (d.push_sent_ms is None, d.push_sent_ms or 0))
