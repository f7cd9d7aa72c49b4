"""The calls waiting for an app right now, in this process: which devices each pushed,
which of them took the push (a cancel goes to those), which registered since.

Kept until the wake's deadline plus a grace (a cancel for a timeout comes at the
deadline). After a restart it is empty: the attempt records in Redis stand in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pushbridge.providers import Device
from pushbridge.requests import WakeRequest

GRACE_S = 60.0


@dataclass
class Pending:
    request: WakeRequest
    devices: dict[str, Device]  # device id -> device pushed
    woken: set[str] = field(default_factory=set)  # the provider accepted the wake
    registered: set[str] = field(default_factory=set)  # a contact came after the push
    cancelled: bool = False

    @property
    def call_id(self) -> str:
        return self.request.call_id


class InFlight:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._calls: dict[str, Pending] = {}

    def add(self, request: WakeRequest, devices: list[Device]) -> Pending:
        self.prune()
        pending = Pending(request, {d.device_id: d for d in devices})
        self._calls[request.call_id] = pending
        return pending

    def get(self, call_id: str) -> Pending | None:
        return self._calls.get(call_id)

    def waiting_for(self, device_id: str) -> list[Pending]:
        """Calls that pushed this device and still wait (window open, not cancelled)."""
        now = self._clock()
        return [p for p in self._calls.values()
                if device_id in p.devices and not p.cancelled and not p.request.expired(now)]

    def phone_of(self, device_id: str) -> str | None:
        for pending in self._calls.values():
            if device_id in pending.devices:
                return pending.request.phone
        return None

    def prune(self) -> None:
        now = self._clock()
        for call_id in [c for c, p in self._calls.items() if now > p.request.deadline + GRACE_S]:
            del self._calls[call_id]

    def __len__(self) -> int:
        return len(self._calls)
