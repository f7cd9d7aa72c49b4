"""Wake requests: what the call side asks of the bridge, through the Redis stream `kl:wake`
(its fields: store/app_wake.py, which builds an entry with `wake_fields`).

The window runs from `ts`: a request read after `ts + window_s` is dropped (its
call no longer waits). `parse_request` checks one entry."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from pushbridge.errors import BadRequest
from pushbridge.providers import Kind, Wake

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
