"""An inmate's call, from the greeting to the settled bill, independent of Asterisk.

The adapter gives a ``Caller`` (play prompts, collect digits); this module
decides. A refusal is a ``Refused`` carrying the prompt that explains it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from ivr import billing, throttle
from ivr import prompts as p
from ivr.app_call import AppDevices
from ivr.call_plan import CallPlan, call_record, plan_to_json, settle_record
from ivr.call_plan import answered_seconds as answered_seconds
from ivr.errors import InsufficientFunds, KinlineError, NoRateError, NotFound, NumberError, PinHashError
from ivr.model import Card, CardStatus, Facility, Inmate, InmateStatus, Settlement
from ivr.numbering import DialedNumber, Leg, Payer, classify_incomplete, parse_dialed
from ivr.pin import PinHasher
from ivr.ports import PIN_FAILURES_TO_LOCK, Directory, RelativeAccounts, Wallet
from ivr.relatives import PayRefusal, may_pay
from ivr.schedule import is_open, parse_schedule, seconds_until_close
from ivr.tariffs import Tariff, route_kind

log = logging.getLogger(__name__)

LOGIN_TRIES = 3
NUMBER_TRIES = 3
DIAL_ATTEMPTS = 3
CARD_DIGITS = 16
PIN_DIGITS = 8
NUMBER_DIGITS = 24
DIGIT_TIMEOUT_MS = 10_000
NUMBER_TIMEOUT_MS = 15_000
RING_S = 45
HOLD_MARGIN_S = 300
WARN_S = 60  # both parties hear "one minute left"
RERECORD_NAME = "9"  # alone at the number prompt: record the name again

# Why a relative does not pay for a "01" call, as the inmate hears it.
PAY_REFUSAL_PROMPTS: dict[PayRefusal, str] = {
    "not_enabled": p.RELATIVE_NOT_ENABLED, "blocked": p.RELATIVE_BLOCKED,
    "cap_day": p.RELATIVE_CAP, "cap_month": p.RELATIVE_CAP,
}


class Refused(KinlineError):
    """The call cannot go on; ``prompt`` tells the caller why."""

    def __init__(self, prompt: str, reason: str) -> None:
        super().__init__(reason)
        self.prompt = prompt
        self.reason = reason


@dataclass(frozen=True)
class Entry:
    digits: str
    timed_out: bool


@dataclass(frozen=True)
class Ask:
    """One entry to ask for: its prompt, the most digits, the timeout between keys."""

    item: str
    max_digits: int
    timeout_ms: int


class Caller(Protocol):
    """The person at the terminal, as the domain sees them."""

    def set_language(self, language: str) -> None: ...

    def lead_in(self, items: Sequence[str]) -> None:
        """Say ``items`` before whatever comes next. Before an entry they are its
        preamble: a key cuts them short and is the entry's first digit (type-ahead).
        Before a ``play`` or a ``record`` they are said first, uninterruptibly."""
        ...

    async def play(self, items: Sequence[str]) -> None:
        """Say ``items`` (after any lead-in), uninterruptibly: nothing is asked after them."""
        ...

    async def ask(self, item: str, max_digits: int, timeout_ms: int, preamble: Sequence[str] = ()) -> Entry:
        """Say the lead-in, ``preamble`` then ``item`` and collect digits (up to
        ``max_digits``, ``#`` ends, ``timeout_ms`` between keys). A key pressed
        during any of them cuts the speech short and is the entry's first digit."""
        ...

    async def ask_each(self, asks: Sequence[Ask]) -> list[Entry]:
        """The ``asks`` back to back, each as ``ask`` with no preamble (the lead-in goes
        before the first): the next one's prompt starts as soon as an entry ends, and keys
        keyed after an entry's end are the next entry's, however fast they come."""
        ...

    async def record(self, sound: str, max_ms: int, silence_s: int) -> int:
        """A beep, then the caller's voice into ``sound`` (where the switch keeps
        it, no extension) until ``max_ms``, ``silence_s`` of silence or ``#``.
        Returns the milliseconds recorded (0: nothing)."""
        ...


class NameMenu(Protocol):
    """The inmate records their name again (ivr/names.py)."""

    async def record(self, caller: Caller, inmate_id: str, uniqueid: str) -> bool: ...


@dataclass(frozen=True)
class Session:
    card: Card
    inmate: Inmate
    facility: Facility
    tariff: Tariff


def _utcnow() -> datetime:
    return datetime.now(UTC)


class InmateCalls:
    def __init__(self, directory: Directory, wallet: Wallet, now: Callable[[], datetime] = _utcnow,
                 warn_s: int = WARN_S, *, pins: PinHasher, relatives: RelativeAccounts | None = None,
                 names: NameMenu | None = None, apps: AppDevices | None = None) -> None:
        """Without ``relatives`` no call is paid by a relative ("01" is refused);
        without ``apps`` no call goes to the relative's app ("00" is refused)."""
        self.directory = directory
        self.wallet = wallet
        self.pins = pins
        self.relatives = relatives
        self.names = names  # "9" at the number prompt records the name again
        self.apps = apps
        self.now = now
        self.warn_s = warn_s

    # -- login and checks -------------------------------------------------

    async def login(self, caller: Caller, facility_id: str, uniqueid: str, terminal: str) -> Session:
        """Greeting, card and PIN, checks, balance. ``terminal`` (the caller's
        SIP endpoint) is throttled after too many failed logins."""
        if not terminal:
            raise Refused(p.APOLOGY, "terminal unknown: cannot throttle failed logins")
        since = self.now() - timedelta(seconds=throttle.KEEP_S)
        facility, failures = await asyncio.gather(self.directory.facility(facility_id),
                                                  self.directory.login_failures(terminal, since))
        if facility is None:
            raise Refused(p.APOLOGY, f"terminal's facility {facility_id!r} unknown")
        caller.set_language(facility.language)
        if (wait := throttle.wait_s(failures, self.now())) > 0:
            raise Refused(p.TERMINAL_WAIT, f"terminal {terminal} throttled for {wait} s after failed logins")
        caller.lead_in([p.WELCOME])  # the card may be keyed during the welcome
        card = await self._authenticate(caller, facility, terminal, uniqueid)
        caller.set_language(card.language)
        session = await self._check(card, facility)
        if not await self.wallet.acquire_card(card.number, uniqueid, facility.max_call_s + 3600):
            raise Refused(p.CARD_IN_USE, "card already in a call")
        try:
            cheapest = min((r.per_minute for r in session.tariff.rates), default=0)
            # The balance leads into the number: a returning caller keys it during the words.
            caller.lead_in([p.YOUR_BALANCE, *p.money(card.balance, facility.currency, card.language)])
            if card.balance < billing.required_to_start(cheapest, session.tariff):
                # An empty card may still call a relative who pays ("01").
                if self.relatives is None or not await self.relatives.paying_relatives(card.number):
                    raise Refused(p.NO_FUNDS, "balance below fee + one increment, no relative pays")
                caller.lead_in([p.ONLY_RELATIVE_PAID])
        except BaseException:
            await self.wallet.release_card(card.number, uniqueid)
            raise
        return session

    async def _authenticate(self, caller: Caller, facility: Facility, terminal: str, uniqueid: str) -> Card:
        """Card number and PIN, LOGIN_TRIES times. A wrong card number and a
        wrong PIN sound the same; "card locked" is said only after the right
        PIN. Every failure counts against the terminal (ivr/throttle.py)."""
        for _ in range(LOGIN_TRIES):
            # One go: a PIN keyed right after the card's '#' is the PIN's, not lost between.
            number, pin = await caller.ask_each([Ask(p.ENTER_CARD, CARD_DIGITS, DIGIT_TIMEOUT_MS),
                                                 Ask(p.ENTER_PIN, PIN_DIGITS, DIGIT_TIMEOUT_MS)])
            card = await self.directory.card(number.digits) if number.digits.isdigit() else None
            if card is not None and card.facility_id != facility.id:
                card = None
            if card is not None and await self._pin_matches(pin.digits, card, uniqueid):
                if card.status is CardStatus.LOCKED:
                    raise Refused(p.CARD_LOCKED, "card locked after wrong PINs (right PIN given)")
                return card
            if card is None:
                self.pins.verify(pin.digits, self.pins.dummy)  # the same work as for a real card
            else:
                failures = await self.directory.record_pin_failure(card.number, self.now())
                log.info("[%s] wrong PIN for card %s (%d in 24 h, lock at %d)", uniqueid, card.number,
                         failures, PIN_FAILURES_TO_LOCK)
            if number.digits:  # no card number at all (a timeout) guesses nothing
                now = self.now()
                recent = await self.directory.record_login_failure(terminal, now, throttle.KEEP_S)
                if throttle.wait_s(recent, now) > 0:
                    raise Refused(p.TERMINAL_WAIT, f"terminal {terminal} throttled: {len(recent)} failed logins")
            caller.lead_in([p.LOGIN_FAILED])  # then the card again (or, the last time, the refusal)
        raise Refused(p.TOO_MANY_TRIES, "three wrong card/PIN entries")

    async def _pin_matches(self, pin: str, card: Card, uniqueid: str) -> bool:
        """Check the PIN; a legacy slow hash is checked in a thread and, if
        right, replaced by the keyed form. A malformed hash, or one made with
        another key, refuses the call (fail closed) and counts nothing."""
        encoded = card.pin_hash
        try:
            if self.pins.is_slow(encoded):
                good = await asyncio.to_thread(self.pins.verify, pin, encoded)
            else:
                good = self.pins.verify(pin, encoded)
        except PinHashError as err:
            log.error("[%s] card %s: PIN hash unusable: %s", uniqueid, card.number, err)
            raise Refused(p.APOLOGY, f"card {card.number}: PIN hash unusable") from err
        if good and self.pins.needs_upgrade(encoded):
            upgraded = await self.directory.upgrade_pin_hash(card.number, encoded, self.pins.hash(pin))
            log.info("[%s] card %s: PIN hash upgraded to the keyed form%s", uniqueid, card.number,
                     "" if upgraded else " (skipped: the PIN changed meanwhile)")
        return good

    async def _check(self, card: Card, facility: Facility) -> Session:
        if card.status is not CardStatus.ACTIVE:
            raise Refused(p.CARD_BLOCKED, f"card {card.status.value}")
        inmate, tariff = await asyncio.gather(self.directory.inmate(card.inmate_id),
                                              self.directory.tariff(facility.id))
        if inmate is None:
            raise Refused(p.CARD_BLOCKED, "card's inmate unknown")
        now = self.now()
        if inmate.suspended_until is not None and inmate.suspended_until > now:
            raise Refused(p.INMATE_SUSPENDED, "inmate suspended")
        if inmate.status is InmateStatus.SUSPECT and (
            inmate.permission_until is None or inmate.permission_until <= now
        ):
            raise Refused(p.PERMISSION_MISSING, "suspect without valid permission")
        if not is_open(parse_schedule(facility.schedule), now, facility.timezone):
            raise Refused(p.OUTSIDE_SCHEDULE, "outside the facility's schedule")
        if tariff is None:
            raise Refused(p.APOLOGY, f"facility {facility.id} has no tariff")
        return Session(card, inmate, facility, tariff)

    async def resume(self, card_number: str, facility_id: str) -> Session:
        """The session again, for another number in the same call (checks rerun)."""
        card = await self.directory.card(card_number)
        facility = await self.directory.facility(facility_id)
        if card is None or facility is None:
            raise Refused(p.APOLOGY, "card or facility vanished during the call")
        return await self._check(card, facility)

    # -- the number -------------------------------------------------------

    async def choose_number(self, caller: Caller, session: Session, uniqueid: str, attempt: int) -> CallPlan:
        """Ask for a number until one may be dialed; reserve its cost. Why a
        number was refused leads into the next try (type-ahead through it)."""
        failures = 0
        asked = 0
        while failures < NUMBER_TRIES and asked < NUMBER_TRIES * 3:
            asked += 1
            entry = await caller.ask(p.ENTER_NUMBER, NUMBER_DIGITS, NUMBER_TIMEOUT_MS)
            digits = entry.digits.rsplit("*", 1)[-1]
            if not digits:
                if "*" not in entry.digits:
                    failures += 1
                    caller.lead_in([p.NO_INPUT])
                continue
            if digits == RERECORD_NAME and self.names is not None:
                # No number starts with 9: alone, it is the name menu (not a failure).
                log.info("[%s] inmate %s records their name again", uniqueid, session.inmate.id)
                await self.names.record(caller, session.inmate.id, uniqueid)
                continue
            try:
                number = parse_dialed(digits)
            except NumberError as exc:
                failures += 1
                log.info("[%s] number refused: %s", uniqueid, exc.reason)
                incomplete = exc.reason == "too_short" or classify_incomplete(digits)
                caller.lead_in([p.NUMBER_INCOMPLETE if incomplete else p.NUMBER_INVALID])
                continue
            if number.leg is Leg.APP and (app_refusal := await self._app_refusal(number, uniqueid)):
                failures += 1
                caller.lead_in([app_refusal])
                continue
            refusal = await self._plan(session, number, uniqueid, attempt)
            if isinstance(refusal, CallPlan):
                return refusal
            failures += 1
            caller.lead_in([refusal])
        raise Refused(p.GOODBYE, "no valid number entered")

    async def _app_refusal(self, number: DialedNumber, uniqueid: str) -> str | None:
        """Why the relative's app cannot be called (a prompt), or None: it has an active device."""
        if self.apps is None:
            return p.SERVICE_UNAVAILABLE
        if not await self.apps.active_devices(number.e164):
            log.info("[%s] refused: %s has no active app device", uniqueid, number.e164[:5] + "...")
            return p.APP_NONE
        return None

    async def _plan(self, session: Session, number: DialedNumber, uniqueid: str, attempt: int) -> CallPlan | str:
        payer_phone = number.e164 if number.payer is Payer.CALLEE else ""
        if payer_phone:
            allowed = await self.directory.allowed_number(session.card.number, number.e164)
            blocked, card_now = False, None
        else:
            # The inmate pays: the three reads at once (they sit between the '#' and the INVITE).
            allowed, blocked, card_now = await asyncio.gather(
                self.directory.allowed_number(session.card.number, number.e164),
                self._blocked_by(number.e164, session.card.number), self.directory.card(session.card.number))
        if allowed is None:
            return p.NUMBER_NOT_ALLOWED
        kind = route_kind(number)
        try:
            rate = session.tariff.lookup(number.e164, kind)
        except NoRateError:
            return p.NO_RATE
        facility = session.facility
        now = self.now()
        until_close = seconds_until_close(parse_schedule(facility.schedule), now, facility.timezone)
        if until_close < session.tariff.increment_s:
            # Closing time, not money: the call could not last one whole increment.
            log.info("[%s] refused: %d s until the schedule closes", uniqueid, until_close)
            return p.SCHEDULE_CLOSING
        longest = min(facility.max_call_s, until_close)
        no_funds = p.RELATIVE_NO_FUNDS if payer_phone else p.NO_FUNDS
        if payer_phone:
            funds = await self._relative_allowance(session, payer_phone, rate.per_minute, uniqueid)
            if isinstance(funds, str):
                return funds
        else:
            if blocked:
                log.info("[%s] refused: the relative blocked calls from card %s", uniqueid, session.card.number)
                return p.RELATIVE_BLOCKED
            funds = card_now.balance if card_now is not None else 0
        max_s = billing.max_call_seconds(funds, rate.per_minute, session.tariff, longest)
        if max_s <= 0:
            return no_funds
        amount = billing.charge(max_s, rate.per_minute, session.tariff)
        plan = CallPlan(
            call_id=f"{uniqueid}-{attempt}", uniqueid=uniqueid, card=session.card.number,
            inmate_id=session.inmate.id, facility_id=facility.id, e164=number.e164, route_kind=kind.value,
            payer=number.payer.value, rate=rate.per_minute, fee=session.tariff.connection_fee,
            free_threshold_s=session.tariff.free_threshold_s, increment_s=session.tariff.increment_s,
            max_s=max_s, warn_s=self.warn_s if max_s > self.warn_s else max_s // 2,
            record=not allowed.privileged, reserved=amount, started_at=now,
        )
        try:
            # The plan is stored with the hold: the reconciler can settle the
            # attempt from it if the call's own hangup path never runs.
            reservation = await self.wallet.reserve(plan.call_id, plan.card, amount,
                                                    max_s + RING_S + HOLD_MARGIN_S, plan_to_json(plan),
                                                    payer_phone=payer_phone)
        except InsufficientFunds:
            return no_funds
        except NotFound:
            if not payer_phone:
                raise
            return p.RELATIVE_NO_ACCOUNT  # the account was closed meanwhile
        return replace(plan, reserved=reservation.amount)

    async def _blocked_by(self, e164: str, card: str) -> bool:
        """Has the relative at ``e164`` blocked calls from ``card`` (key 9 in their menu)?"""
        if self.relatives is None:
            return False
        settings = await self.relatives.card_settings(e164, card)
        return settings is not None and settings.blocked

    async def _relative_allowance(self, session: Session, phone: str, rate: int, uniqueid: str) -> int | str:
        """What the relative at ``phone`` lets this call cost (their balance,
        within their caps for this card), or the prompt saying why they do not pay."""
        if self.relatives is None:
            return p.SERVICE_UNAVAILABLE
        card = session.card.number
        balance = await self.relatives.balance(phone)
        if balance is None:
            log.info("[%s] refused: %s has no account", uniqueid, phone[:5] + "...")
            return p.RELATIVE_NO_ACCOUNT
        settings = await self.relatives.card_settings(phone, card)
        day, month = period_starts(self.now(), session.facility.timezone)
        spent_day = await self.relatives.spent_since(phone, card, day)
        spent_month = await self.relatives.spent_since(phone, card, month)
        first = billing.required_to_start(rate, session.tariff)
        refusal = may_pay(settings, spent_day, spent_month, first)
        if refusal is not None:
            log.info("[%s] refused: the relative does not pay (%s)", uniqueid, refusal)
            return PAY_REFUSAL_PROMPTS[refusal]
        if balance < first:
            log.info("[%s] refused: the relative's balance %d < %d", uniqueid, balance, first)
            return p.RELATIVE_NO_FUNDS
        assert settings is not None  # may_pay refuses a card without settings
        allowance = balance
        if settings.cap_day is not None:
            allowance = min(allowance, settings.cap_day - spent_day)
        if settings.cap_month is not None:
            allowance = min(allowance, settings.cap_month - spent_month)
        return allowance

    @staticmethod
    def announces(session: Session, plan: CallPlan) -> bool:
        """Will ``announce`` say anything (the call is shorter than the facility's maximum)?"""
        return plan.max_s < session.facility.max_call_s

    async def announce(self, caller: Caller, session: Session, plan: CallPlan, language: str) -> None:
        """Say how long the call may last when money or the schedule make it
        shorter than the facility's usual maximum. (Every second spoken here
        delays the INVITE, so the usual case says nothing.)"""
        if self.announces(session, plan):
            await caller.play([p.CALL_MAY_LAST, *p.duration(plan.max_s, language)])

    # -- after the call -----------------------------------------------------

    async def settle(self, plan: CallPlan, dial_status: str, answered_ms: int, hangup_cause: str,
                     recording_path: str = "", recording_sha256: str = "",
                     connected_at: datetime | None = None, ended_at: datetime | None = None,
                     evidence: str = "call") -> Settlement:
        record = call_record(plan, dial_status, answered_ms, hangup_cause, recording_path, recording_sha256,
                             connected_at, ended_at, evidence)
        return await settle_record(self.wallet, plan, record)

    async def end(self, card: str, uniqueid: str) -> None:
        await self.wallet.release_card(card, uniqueid)


def period_starts(now: datetime, timezone: str) -> tuple[datetime, datetime]:
    """The start of ``now``'s day and month in the facility's time zone (a relative's caps)."""
    local = now.astimezone(ZoneInfo(timezone))
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return day, day.replace(day=1)


DIAL_RESULT_PROMPTS = {"BUSY": p.BUSY, "NOANSWER": p.NO_ANSWER, "CHANUNAVAIL": p.UNREACHABLE,
                       "CONGESTION": p.UNREACHABLE, "CANCEL": p.UNREACHABLE}
