"""Wake requests: what the call side asks of the bridge, through the Redis stream `kl:wake`.

One stream entry, all values strings:

    call_id   the call's id; the app matches the INVITE by it
    phone     the relative's number, E.164 with its + (as their account), whose devices are pushed
    caller    what the app shows: the facility's display name
    window_s  seconds the call waits for the app (the ring window)
    kind      wake | cancel (answered elsewhere, the caller hung up, timeout)
    ts        epoch milliseconds when the call side asked

The window runs from `ts`: a request read after `ts + window_s` is dropped (its
call no longer waits). `wake_fields` builds an entry; `parse_request` checks one."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

from pushbridge.errors import BadRequest
from pushbridge.providers import Kind, Wake

WAKE_STREAM = "kl:wake"
WAKE_GROUP = "pushbridge"
STREAM_MAXLEN = 100_000  # the producer trims (XADD MAXLEN ~): old entries are past their window anyway
MAX_WINDOW_S = 300.0
CANCEL_WINDOW_S = 30.0  # how long a provider may keep a cancel push
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")  # the relatives' accounts' form


@dataclass(frozen=True)
class WakeRequest:
    call_id: str
    phone: str
    caller: str
    window_s: float
    kind: Kind
    ts_ms: int

    @property
    def deadline(self) -> float:
        """Epoch seconds past which the call no longer waits."""
        return self.ts_ms / 1000 + self.window_s

    def expired(self, now: float) -> bool:
        return now >= self.deadline

    def wake(self) -> Wake:
        return Wake(self.call_id, self.caller, self.ts_ms / 1000, self.window_s, Kind.WAKE)

    def cancel(self, now: float) -> Wake:
        return self.wake().cancel(now, CANCEL_WINDOW_S)


def wake_fields(call_id: str, phone: str, caller: str, window_s: float, kind: Kind = Kind.WAKE,
                ts_ms: int | None = None) -> dict[str, str]:
    """A stream entry (the producer's side: XADD kl:wake MAXLEN ~ STREAM_MAXLEN * fields)."""
    ts = time.time_ns() // 1_000_000 if ts_ms is None else ts_ms
    return {"call_id": call_id, "phone": phone, "caller": caller, "window_s": f"{window_s:g}",
            "kind": str(kind), "ts": str(ts)}


def parse_request(fields: Mapping[str, str]) -> WakeRequest:
    """One stream entry, checked; BadRequest says what is wrong."""
    def text(key: str) -> str:
        value = fields.get(key, "")
        if not value:
            raise BadRequest(f"{key} missing")
        return value

    call_id, phone = text("call_id"), text("phone")
    if len(call_id) > 128 or not call_id.isprintable():
        raise BadRequest(f"call_id {call_id[:40]!r} is not a call id")
    if not E164.match(phone):
        raise BadRequest(f"phone {phone[:20]!r} is not an E.164 number (+ and 7-15 digits)")
    try:
        kind = Kind(text("kind"))
    except ValueError:
        raise BadRequest(f"kind {fields.get('kind', '')[:20]!r} is not wake or cancel") from None
    try:
        window = float(text("window_s"))
        ts = int(text("ts"))
    except ValueError as exc:
        raise BadRequest(f"window_s or ts is not a number: {exc}") from None
    if not 0 < window <= MAX_WINDOW_S:
        raise BadRequest(f"window_s {window:g} is outside (0, {MAX_WINDOW_S:g}]")
    if ts <= 0:
        raise BadRequest(f"ts {ts} is not epoch milliseconds")
    return WakeRequest(call_id, phone, fields.get("caller", ""), window, kind, ts)
