"""What the domain needs from storage, as small Protocols (Redis implements them)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
from ivr.relatives import CardSettings, Payout, RelativeEntry, Transfer
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

    async def reserve(self, call_id: str, card: str, amount: int, hold_s: int, plan: str,
                      payer_phone: str = "") -> Reservation:
        """Move ``amount`` from the balance to a hold; raise InsufficientFunds.
        The balance is the card's, or the relative's (``payer_phone``) for a
        call they pay ("01"; NotFound if they have no account); ``settle``
        finds the payer from the record (``payer`` callee: the number called).
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
    channels seen gone, card locks, and how far Asterisk's log was read.

    The reconciler runs every second over every open attempt: the batch methods
    (``evidences``, ``gone_times``, ``add_evidences``) each cost one round trip
    to storage, however many attempts they cover."""

    async def open_attempts(self) -> list[OpenAttempt]: ...

    async def evidences(self, call_ids: Sequence[str]) -> list[Evidence]:
        """The evidence of each attempt, in the order asked (``Evidence()`` if none)."""
        ...

    async def add_evidence(self, call_id: str, **values: str | int) -> None: ...

    async def add_evidences(self, values: Mapping[str, Mapping[str, str | int]]) -> None:
        """``add_evidence`` for several attempts at once: call_id -> fields of ``Evidence``."""
        ...

    async def mark_gone(self, uniqueid: str, at_ms: int) -> None: ...

    async def gone_times(self, uniqueids: Sequence[str]) -> dict[str, int]:
        """When each of these channels was seen gone; those not seen gone are left out."""
        ...

    async def card_locks(self) -> dict[str, str]: ...

    async def release_card(self, card: str, uniqueid: str) -> None: ...

    async def log_offset(self, node: str) -> int: ...

    async def set_log_offset(self, node: str, offset: int) -> None: ...


# --- relatives (issue 7): accounts, login codes, SMS ---------------------------


class RelativeAccounts(Protocol):
    """A relative's balance and settings; every movement one atomic script,
    idempotent by its id, never below zero, with a ledger entry."""

    async def balance(self, phone: str) -> int | None: ...

    async def entries(self, phone: str, limit: int) -> list[RelativeEntry]: ...

    async def create_payment(self, payment_id: str, phone: str, amount: int) -> None:
        """Remember a payment made at the provider, to credit when it succeeds."""
        ...

    async def credit_payment(self, payment_id: str, amount: int) -> tuple[bool, int]:
        """Credit a succeeded payment once: (newly credited, balance after).
        NotFound if unknown, StoreConflict if ``amount`` differs from the payment's."""
        ...

    async def card_allows(self, phone: str, card: str) -> bool:
        """True if ``card`` exists and its approved list holds ``phone``."""
        ...

    async def transfer(self, op_id: str, phone: str, card: str, amount: int) -> Transfer:
        """Move money to the card (both balances in one script); InsufficientFunds,
        NotFound (no card, or the phone is not on its list); idempotent by op_id."""
        ...

    async def refund(self, op_id: str, phone: str, amount: int) -> Payout:
        """Take unspent money out for a payout record; idempotent by op_id."""
        ...

    async def card_settings(self, phone: str, card: str) -> CardSettings | None: ...

    async def put_card_settings(self, phone: str, card: str, settings: CardSettings) -> None: ...

    async def spent_since(self, phone: str, card: str, since: datetime) -> int:
        """What calls from ``card`` cost the relative since ``since`` (for their caps)."""
        ...

    async def paying_relatives(self, card: str) -> list[str]:
        """Numbers on the card's list whose relative pays the inmate's calls (always in touch, not blocked)."""
        ...


class LoginCodes(Protocol):
    """One-time codes (kept hashed) and sessions (tokens kept hashed)."""

    async def issue_code(self, phone: str, code_hash: str, now: datetime) -> bool:
        """Keep a new code (replacing the last) unless CODES_PER_HOUR were issued
        in the last hour: then False and nothing changes."""
        ...

    async def check_code(self, phone: str, code_hash: str, token_hash: str) -> str:
        """ok (the session is open, the account exists), wrong, expired or exhausted."""
        ...

    async def session_phone(self, token_hash: str) -> str | None: ...

    async def code_wait(self, phone: str, now: datetime) -> int:
        """Seconds until the number may be sent a code again (after issue_code refused one)."""
        ...

    async def take_code_slot(self, client: str, now: datetime, limit: int) -> int:
        """Count one code request from a client address unless ``limit`` were counted
        in the last hour: 0 if counted, else the seconds until one leaves the hour."""
        ...


class Idempotency(Protocol):
    """First answers of requests made with an Idempotency-Key."""

    async def begin(self, scope: str, fingerprint: str) -> tuple[str, int, str]:
        """("new", 0, "") the first time; ("done", status, body) for a repeat;
        ("mismatch", 0, "") for another request under the same key; ("busy", 0, "")
        while the first is still running."""
        ...

    async def finish(self, scope: str, status: int, body: str) -> None: ...

    async def abandon(self, scope: str) -> None: ...


class SmsSender(Protocol):
    async def send(self, phone: str, text: str) -> None: ...
