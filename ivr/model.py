"""The things Kinline knows about: facilities, inmates, cards, numbers, calls.

Plain frozen dataclasses; money in integer minor units; times are aware
``datetime`` in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum

DEFAULT_MAX_CALL_S = 15 * 60


@dataclass(frozen=True)
class Facility:
    id: str
    name: str
    timezone: str  # IANA name, e.g. "Europe/Moscow"
    currency: str  # "RUB" | "EUR"
    language: str  # "ru" | "fr" | "en": greeting before the card is known
    schedule: str  # ivr.schedule text, e.g. "mon-sun 08:00-21:00"
    max_call_s: int = DEFAULT_MAX_CALL_S


class InmateStatus(Enum):
    CONVICTED = "convicted"
    SUSPECT = "suspect"


@dataclass(frozen=True)
class Inmate:
    id: str
    name: str
    facility_id: str
    status: InmateStatus
    permission_until: datetime | None = None  # suspects: written permission's expiry
    suspended_until: datetime | None = None


class CardStatus(Enum):
    ACTIVE = "active"
    LOCKED = "locked"  # too many wrong PINs; staff unlock it
    BLOCKED = "blocked"  # withdrawn by the administration


@dataclass(frozen=True)
class Card:
    number: str
    inmate_id: str
    facility_id: str
    pin_hash: str
    language: str
    status: CardStatus
    balance: int


@dataclass(frozen=True)
class AllowedNumber:
    e164: str  # "+79161234567"
    label: str
    privileged: bool = False  # lawyers: never recorded


@dataclass(frozen=True)
class Reservation:
    call_id: str
    card: str
    amount: int
    balance_after: int


@dataclass(frozen=True)
class CallRecord:
    """One call detail record: what happened and what it cost."""

    call_id: str
    uniqueid: str
    card: str
    inmate_id: str
    facility_id: str
    number: str
    route_kind: str
    payer: str
    started_at: datetime
    answered_s: int
    billed_s: int
    amount: int
    dial_status: str
    hangup_cause: str
    recording_path: str = ""
    recording_sha256: str = ""
    connected_at: datetime | None = None  # the bridge (None: never connected)
    ended_at: datetime | None = None  # the end of the dial attempt
    # How the times were known: "call" (the call's own hangup path), or the
    # reconciler's "exact" (Asterisk's event log), "heartbeat" (Asterisk died:
    # billed up to the last moment the call was proven up) or "deadline".
    evidence: str = "call"
    # Why the call was billed less than its answered time ("" when it was not):
    # a dropped call (ivr.drops) is not billed for the increment it dropped in.
    credit_reason: str = ""


@dataclass(frozen=True)
class Settlement:
    call_id: str
    charged: int
    released: int
    balance_after: int
    duplicate: bool  # this call was already settled: nothing moved


@dataclass(frozen=True)
class OpenAttempt:
    """A dial attempt that still holds money: its plan (JSON) and hold deadline."""

    call_id: str
    plan: str
    deadline_ms: int


@dataclass(frozen=True)
class Evidence:
    """What is proven of an attempt, in epoch milliseconds (None: not known).

    ``bridged_ms``/``ended_ms``/``dial_status``/``hangup_cause`` come from the
    dial plan's own stamps, logged by Asterisk to disk (CEL); ``heartbeat_ms`` is
    the last moment the call was proven up while bridged; ``caller_gone_ms`` is
    when the caller's channel was seen gone (its end logged, or its Asterisk
    restarted)."""

    bridged_ms: int | None = None
    ended_ms: int | None = None
    dial_status: str = ""
    hangup_cause: str = ""
    heartbeat_ms: int | None = None
    caller_gone_ms: int | None = None
