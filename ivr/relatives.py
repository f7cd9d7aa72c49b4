"""Relatives' accounts: the rules, with no I/O.

A relative is known by a verified phone number (E.164). Their balance is in
minor units and moves only through the store's Lua scripts (store/relatives.py).
Per inmate card the relative chooses whether the inmate may call at the
relative's expense ("always in touch"), optional caps per day and per month,
and whether the card is blocked. ``may_pay`` is the check the ``01`` routing
will make before a relative-paid call (a later issue wires it in).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from ivr.errors import KinlineError

MAX_AMOUNT = 10**9  # minor units in one movement (10 million roubles): anything above is refused
CODE_DIGITS = 6
CODE_TTL_S = 5 * 60
CODES_PER_HOUR = 5
TRIES_PER_CODE = 5
SESSION_TTL_S = 12 * 3600
CODES_PER_CLIENT_HOUR = 20  # codes asked from one client address in an hour, whatever the numbers
INACTIVE_REFUND_DAYS = 180  # 47 CFR 64.6130: unused money goes back after this long without a movement

_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")

PayRefusal = Literal["not_enabled", "blocked", "cap_day", "cap_month"]


class RelativeError(KinlineError):
    """A relative's request that the rules refuse; ``reason`` is a machine code."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class CardSettings:
    """What a relative chose for one inmate card."""

    always_in_touch: bool = False
    cap_day: int | None = None  # minor units per calendar day, None: no cap
    cap_month: int | None = None
    blocked: bool = False

    def __post_init__(self) -> None:
        for name in ("cap_day", "cap_month"):
            cap = getattr(self, name)
            if cap is not None:
                check_amount(cap)


@dataclass(frozen=True)
class RelativeEntry:
    """One movement of a relative's balance (the relative's ledger)."""

    id: str  # stream entry id
    ts: datetime
    ref: str  # provider payment id, "transfer:<op>", "refund:<op>", or a call id
    kind: str  # topup | transfer | refund, or for a call the relative pays: reserve | charge | release
    amount: int  # always > 0; the kind says which way it moved
    balance_after: int
    card: str = ""  # the card a transfer went to, or whose call the relative paid
    note: str = ""  # why a call was charged less than its time (a dropped call), or "inactivity" (a refund)


@dataclass(frozen=True)
class Transfer:
    """A transfer done (or found done: same operation id)."""

    op_id: str
    card: str
    amount: int
    balance_after: int  # the relative's


@dataclass(frozen=True)
class Payout:
    """Money a relative asked back; staff pay it and mark it paid (CLI)."""

    id: str
    phone: str
    amount: int
    status: str  # requested | paid
    created: datetime
    paid_at: datetime | None = None
    note: str = ""  # "inactivity": refunded without being asked (refund_inactive)


@dataclass(frozen=True)
class InactiveRefund:
    """An account refunded (or, in a dry run, to be refunded) after inactivity."""

    phone: str
    amount: int
    last_activity: datetime  # its last ledger entry, or its creation
    payout_id: str = ""  # empty in a dry run


def check_amount(amount: int) -> None:
    """A money amount a relative may move: a positive integer up to MAX_AMOUNT."""
    if type(amount) is not int or not 0 < amount <= MAX_AMOUNT:
        raise RelativeError("bad_amount")


def check_phone(phone: str) -> str:
    """The phone number if it is E.164 (``+`` and 7 to 15 digits); else RelativeError."""
    if not isinstance(phone, str) or not _E164.match(phone):
        raise RelativeError("bad_phone")
    return phone


def may_pay(settings: CardSettings | None, spent_today: int, spent_month: int, amount: int) -> PayRefusal | None:
    """Why the relative may not pay ``amount`` more for calls from this card, or None.

    ``spent_today`` / ``spent_month`` are what calls from this card already cost
    the relative in the current day / month. Blocked wins over everything; a
    card with no settings is not enabled.
    """
    if min(spent_today, spent_month) < 0 or amount <= 0:
        raise ValueError(f"spent and amount must be >= 0 and > 0: {spent_today}, {spent_month}, {amount}")
    if settings is None:
        return "not_enabled"
    if settings.blocked:
        return "blocked"
    if not settings.always_in_touch:
        return "not_enabled"
    if settings.cap_day is not None and spent_today + amount > settings.cap_day:
        return "cap_day"
    if settings.cap_month is not None and spent_month + amount > settings.cap_month:
        return "cap_month"
    return None


def new_code() -> str:
    """A one-time login code of CODE_DIGITS digits, uniformly drawn."""
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def code_hash(phone: str, code: str) -> str:
    """What the store keeps of a code (never the code itself)."""
    return hashlib.sha256(f"{phone}:{code}".encode()).hexdigest()


def new_token() -> str:
    """An opaque session token (256 random bits)."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What the store keeps of a session token."""
    return hashlib.sha256(token.encode()).hexdigest()


def operation_id(phone: str, idempotency_key: str) -> str:
    """The store's id of a money movement asked with this Idempotency-Key."""
    return hashlib.sha256(f"{phone}\x00{idempotency_key}".encode()).hexdigest()[:32]
