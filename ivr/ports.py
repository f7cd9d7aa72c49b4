"""What the domain needs from storage, as small Protocols (Redis implements them)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from ivr.model import (
    AllowedNumber,
    CallRecord,
    Card,
    Evidence,
    Facility,
    Inmate,
    OpenAttempt,
    Reservation,
    Settlement,
)
from ivr.tariffs import Tariff

PIN_FAILURES_TO_LOCK = 10
PIN_FAILURE_WINDOW_S = 24 * 3600


class Directory(Protocol):
    """Read the provisioned data; count wrong PINs and failed logins."""

    async def facility(self, facility_id: str) -> Facility | None: ...

    async def card(self, number: str) -> Card | None: ...

    async def inmate(self, inmate_id: str) -> Inmate | None: ...

    async def allowed_number(self, card: str, e164: str) -> AllowedNumber | None: ...

    async def tariff(self, facility_id: str) -> Tariff | None: ...

    async def record_pin_failure(self, card: str, now: datetime) -> int:
        """Count a wrong PIN; return failures in the last 24 h. At
        PIN_FAILURES_TO_LOCK the card becomes LOCKED (atomically)."""
        ...

    async def upgrade_pin_hash(self, card: str, old: str, new: str) -> bool:
        """Replace the card's PIN hash ``old`` by ``new`` (same PIN, better
        hash); False, and nothing changed, if the hash is no longer ``old``."""
        ...

    async def login_failures(self, terminal: str, since: datetime) -> list[datetime]:
        """Times of the failed logins at ``terminal`` after ``since``, oldest first."""
        ...

    async def record_login_failure(self, terminal: str, now: datetime, keep_s: int) -> list[datetime]:
        """Count a failed login (wrong card number or PIN) at ``terminal``;
        forget those older than ``keep_s``; return the ones kept, oldest first."""
        ...


class Wallet(Protocol):
    """Money and the one-call-per-card lock; every movement atomic and in the ledger."""

    async def acquire_card(self, card: str, uniqueid: str, ttl_s: int) -> bool:
        """Mark the card in a call; False if another call holds it."""
        ...

    async def release_card(self, card: str, uniqueid: str) -> None:
        """Free the card if ``uniqueid`` holds it."""
        ...

    async def reserve(self, call_id: str, card: str, amount: int, hold_s: int, plan: str) -> Reservation:
        """Move ``amount`` from the balance to a hold; raise InsufficientFunds.
        Idempotent by call_id. ``plan`` (the CallPlan as JSON) is kept with the
        hold until it is settled, so the reconciler can settle the attempt; a
        hold still open ``hold_s`` after it was made is settled from the best
        evidence the reconciler has."""
        ...

    async def settle(self, record: CallRecord) -> Settlement:
        """Charge ``record.amount`` from the hold, return the rest, write the
        ledger and the call record. Settling a call_id twice moves nothing."""
        ...

    async def release_expired(self, now: datetime) -> list[str]:
        """Return held money of reservations past their hold time (crashes)."""
        ...

    async def top_up(self, card: str, amount: int, payment_id: str) -> int:
        """Add money; idempotent by payment_id. Returns the balance."""
        ...


class Attempts(Protocol):
    """What the reconciler reads and writes: open attempts, their evidence,
    channels seen gone, card locks, and how far Asterisk's log was read."""

    async def open_attempts(self) -> list[OpenAttempt]: ...

    async def evidence(self, call_id: str) -> Evidence: ...

    async def add_evidence(self, call_id: str, **values: str | int) -> None: ...

    async def mark_gone(self, uniqueid: str, at_ms: int) -> None: ...

    async def gone_at(self, uniqueid: str) -> int | None: ...

    async def card_locks(self) -> dict[str, str]: ...

    async def release_card(self, card: str, uniqueid: str) -> None: ...

    async def log_offset(self, node: str) -> int: ...

    async def set_log_offset(self, node: str, offset: int) -> None: ...
