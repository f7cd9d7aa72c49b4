"""What every push provider shares: the device, the wake, the result and the
`PushProvider` Protocol the bridge depends on.

A provider never raises for what the push service answers: `send` returns a
`PushResult` that says delivered, invalid token (the bridge deactivates the
device) or failed, with the reason. Retries live in `retry.py`."""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal, Protocol

Platform = Literal["fcm", "apns-voip", "hms"]
PLATFORMS: tuple[Platform, ...] = ("fcm", "apns-voip", "hms")

Clock = Callable[[], float]
"""Wall-clock seconds since the epoch (time.time); injected so tests move time."""


class Kind(enum.StrEnum):
    WAKE = "wake"  # ring: the app registers and takes the INVITE carrying the call id
    CANCEL = "cancel"  # stop ringing: answered elsewhere or the caller hung up


@dataclass(frozen=True)
class Device:
    """One registered app install. `app_id` is the Android package (FCM), the iOS bundle
    id (APNs; the topic is `<bundle>.voip`) or the AppGallery app id (HMS)."""

    platform: Platform
    token: str
    app_id: str
    device_id: str = ""  # our own id, so the bridge knows which device to deactivate

    def __str__(self) -> str:
        tail = self.token[-6:] if len(self.token) > 6 else self.token
        return f"{self.platform}:{self.device_id or '?'}:…{tail}"


@dataclass(frozen=True)
class Wake:
    """A push for one call: `issued_at` + `window` is the deadline past which nobody retries
    and the providers drop the message (TTL, apns-expiration)."""

    call_id: str
    caller: str  # what the app shows: the facility's display name
    issued_at: float  # epoch seconds
    window: float  # seconds
    kind: Kind = Kind.WAKE

    def __post_init__(self) -> None:
        if not self.call_id:
            raise ValueError("a push needs the call id")
        if self.window <= 0:
            raise ValueError(f"push window must be positive, got {self.window}")

    @property
    def deadline(self) -> float:
        return self.issued_at + self.window

    def remaining(self, now: float) -> float:
        return self.deadline - now

    def ttl_seconds(self, now: float) -> int:
        """Whole seconds left, at least 1: what the provider may keep the message."""
        return max(1, math.ceil(self.remaining(now)))

    def cancel(self, now: float, window: float) -> Wake:
        """The cancel push for this call: same id, a fresh window of its own."""
        return replace(self, kind=Kind.CANCEL, issued_at=now, window=window)

    def data(self) -> dict[str, str]:
        """The app's payload, string values only (FCM data messages require them)."""
        return {
            "kind": str(self.kind),
            "call_id": self.call_id,
            "caller": self.caller,
            "deadline": str(int(self.deadline)),
        }


class Outcome(enum.StrEnum):
    DELIVERED = "delivered"  # the provider accepted it (not: the phone rang)
    INVALID_TOKEN = "invalid_token"  # deactivate the device; never push it again
    FAILED = "failed"  # this push is lost; the device stays


@dataclass(frozen=True)
class PushResult:
    device: Device
    outcome: Outcome
    attempts: int
    reason: str = ""
    message_id: str = ""  # the provider's id: FCM message name, apns-id, HMS requestId
    elapsed: float = 0.0  # seconds from the first try to the final answer (retries included)

    @property
    def delivered(self) -> bool:
        return self.outcome is Outcome.DELIVERED


class PushProvider(Protocol):
    """One push service. `send` returns once the push is accepted, refused for good, or
    the wake's deadline leaves no time for another try; it does not raise for answers."""

    @property
    def platform(self) -> Platform: ...

    async def send(self, device: Device, wake: Wake) -> PushResult: ...

    async def aclose(self) -> None: ...
