"""`kinline`: the administration CLI (facilities, terminals, inmates, cards,
numbers, tariffs, money). docs/CLI.md has every command with an example.

Exit codes: 0 done; 2 bad input (one line on stderr, no traceback);
1 the system failed (Redis unreachable...).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import getpass
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import fields, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, TYPE_CHECKING, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import redis

from history.queries import History, HistoryUnavailable, newest_first
from ivr.errors import KinlineError, NotFound, PinFormatError
from ivr.model import AllowedNumber, CallRecord, Card, CardStatus, Facility, Inmate, InmateStatus
from ivr.pin import PinHasher
from ivr.relatives import INACTIVE_REFUND_DAYS, RelativeEntry
from ivr.schedule import parse_schedule
from ivr.tariffs import Rate, RouteKind, Tariff
from store.redis_store import LedgerEntry, RedisStore, check_e164, connect
from store.relatives import RelativeStore
from tools.config import StackConfig, load_config, load_secrets

if TYPE_CHECKING:
    from tools.asterisk_conf import Terminal

LANGUAGES = ("ru", "fr", "en")
CURRENCIES = ("RUB", "EUR")
_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_CARD = re.compile(r"^[0-9]{4,20}$")
_PAYMENT_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_MONEY = re.compile(r"^[0-9]+(\.[0-9]+)?$")
FOREVER = datetime(9999, 12, 31, tzinfo=UTC)


class UsageError(Exception):
    """Bad input from the user: one line on stderr, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"kinline: {message} (see kinline --help)\n")
        raise SystemExit(2)


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


# --- parsing user input ----------------------------------------------------------


def parse_money(text: str) -> int:
    """"1.50" -> 150 minor units; at most 2 decimals, never negative."""
    text = text.strip()
    if not _MONEY.match(text):
        raise UsageError(f"bad amount {text!r}: want a non-negative decimal like 3.59")
    try:
        value = Decimal(text)
    except InvalidOperation as err:  # pragma: no cover - the regex admits only decimals
        raise UsageError(f"bad amount {text!r}") from err
    if value != value.quantize(Decimal("0.01")):
        raise UsageError(f"bad amount {text!r}: at most 2 decimals")
    return int(value * 100)


def format_money(amount: int, currency: str = "") -> str:
    sign = "-" if amount < 0 else ""
    amount = abs(amount)
    text = f"{sign}{amount // 100}.{amount % 100:02d}"
    return f"{text} {currency}" if currency else text


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError) as err:
        raise UsageError(f"unknown time zone {tz!r}") from err


def parse_until(text: str, tz: str) -> datetime:
    """An ISO date ("2025-12-31": valid through that whole local day) or date
    and time (local to the facility unless it has an offset), in UTC."""
    text = text.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            local = datetime.combine(day + timedelta(days=1), time(0), tzinfo=_zone(tz))
        else:
            local = datetime.fromisoformat(text)
            if local.tzinfo is None:
                local = local.replace(tzinfo=_zone(tz))
    except ValueError as err:
        raise UsageError(f"bad date {text!r}: want YYYY-MM-DD or YYYY-MM-DDTHH:MM") from err
    return local.astimezone(UTC)


def _check(pattern: re.Pattern[str], what: str, value: str) -> str:
    if not pattern.match(value):
        raise UsageError(f"bad {what} {value!r}")
    return value


def _parse_rate(text: str) -> Rate:
    parts = text.split(":")
    if len(parts) != 3:
        raise UsageError(f"bad rate {text!r}: want KIND:PREFIX:PRICE, e.g. mobile:79:3.59")
    kind_text, prefix, price = parts
    try:
        kind = RouteKind(kind_text)
    except ValueError as err:
        kinds = ", ".join(k.value for k in RouteKind)
        raise UsageError(f"bad route kind {kind_text!r} in {text!r}: want one of {kinds}") from err
    prefix = prefix.lstrip("+")
    if not prefix.isascii() or (prefix and not prefix.isdigit()):
        raise UsageError(f"bad prefix {prefix!r} in {text!r}: digits only (may be empty)")
    return Rate(prefix, kind, parse_money(price))


def _pin(given: str | None) -> str:
    if given is not None:
        return given
    if not sys.stdin.isatty():
        raise UsageError("give the PIN with --pin (no terminal to ask on)")
    first = getpass.getpass("PIN: ")
    if getpass.getpass("PIN again: ") != first:
        raise UsageError("the two PINs differ")
    return first


# --- commands ----------------------------------------------------------------------

Handler = Callable[[RedisStore, StackConfig, argparse.Namespace], Awaitable[None]]


async def _need_facility(store: RedisStore, facility_id: str) -> Facility:
    facility = await store.facility(facility_id)
    if facility is None:
        raise NotFound(f"no facility {facility_id}")
    return facility


async def _need_inmate(store: RedisStore, inmate_id: str) -> Inmate:
    inmate = await store.inmate(inmate_id)
    if inmate is None:
        raise NotFound(f"no inmate {inmate_id}")
    return inmate


async def _need_card(store: RedisStore, number: str) -> Card:
    card = await store.card(number)
    if card is None:
        raise NotFound(f"no card {number}")
    return card


async def facility_add(store: RedisStore, config: StackConfig, opts: argparse.Namespace) -> None:
    _check(_ID, "facility id", opts.id)
    _zone(opts.tz)
    parse_schedule(opts.schedule)
    if not 1 <= opts.max_minutes <= 240:
        raise UsageError(f"--max-minutes must be 1 to 240, not {opts.max_minutes}")
    if not opts.name.strip():
        raise UsageError("the facility name is empty")
    facility = Facility(opts.id, opts.name.strip(), opts.tz, opts.currency, opts.language, opts.schedule,
                        opts.max_minutes * 60)
    await store.put_facility(facility)
    # Its name is said to every relative: spoken now, not during the first call's set-up.
    from agi.deps import say_facility_name

    await asyncio.to_thread(say_facility_name, config.path("prompts"), facility)
    _out(f"facility {facility.id} saved")


async def facility_show(store: RedisStore, config: StackConfig, opts: argparse.Namespace) -> None:
    from tools.asterisk_conf import load_terminals

    f = await _need_facility(store, opts.id)
    _out(f"facility {f.id}: {f.name}")
    _out(f"  timezone     {f.timezone}")
    _out(f"  currency     {f.currency}")
    _out(f"  language     {f.language}")
    _out(f"  schedule     {f.schedule}")
    _out(f"  max call     {f.max_call_s // 60} min" + (f" {f.max_call_s % 60} s" if f.max_call_s % 60 else ""))
    tariff = await store.tariff(f.id)
    if tariff is None:
        _out("  tariff       none (calls are refused until one is set)")
    else:
        _print_tariff(tariff, f.currency)
    terminals = [t.name for t in load_terminals(config) if t.facility == f.id]
    _out(f"  terminals    {', '.join(terminals) if terminals else 'none'}")


def _print_tariff(tariff: Tariff, currency: str) -> None:
    _out(f"  fee          {format_money(tariff.connection_fee, currency)} per connection")
    _out(f"  free under   {tariff.free_threshold_s} s; billed per started {tariff.increment_s} s")
    for rate in sorted(tariff.rates, key=lambda r: (r.kind.value, r.prefix)):
        prefix = "+" + rate.prefix if rate.prefix else "(any)"
        _out(f"  rate         {rate.kind.value:<14}{prefix:<10}{format_money(rate.per_minute, currency)}/min")


def _save_terminals(config: StackConfig, terminals: list[Terminal], done: str, generated: str | None) -> None:
    """Save the terminals, reload Asterisk, say so; a generated password is shown here, once."""
    from tools.asterisk_conf import save_terminals
    from tools.stack import apply_terminals

    save_terminals(config, terminals)
    reloaded = apply_terminals(config)
    _out(done)
    if generated is not None:
        _out(f"SIP password (shown once, not stored): {generated}")
    _out(reloaded)


async def terminal_add(store: RedisStore, config: StackConfig, opts: argparse.Namespace) -> None:
    """Only the password's digest (md5_cred) is stored: a generated password is shown here, once."""
    from tools.asterisk_conf import TerminalLogin, load_terminals, new_password

    facility = await _need_facility(store, opts.facility)
    terminals = load_terminals(config)
    if any(t.name == opts.name for t in terminals):
        raise UsageError(f"terminal {opts.name} exists")
    login = TerminalLogin(opts.name, opts.password or new_password(), opts.language or facility.language, facility.id)
    login.validate()
    _save_terminals(config, [*terminals, login.stored()], f"terminal {login.name} added to facility {facility.id}",
                    None if opts.password else login.password)


async def terminal_password(store: RedisStore, config: StackConfig, opts: argparse.Namespace) -> None:
    """Give a terminal a new SIP password (its old one cannot be shown: only its digest is stored)."""
    from tools.asterisk_conf import TerminalLogin, load_terminals, new_password

    terminals = load_terminals(config)
    old = next((t for t in terminals if t.name == opts.name), None)
    if old is None:
        raise UsageError(f"no terminal {opts.name}")
    login = TerminalLogin(old.name, opts.password or new_password(), old.language, old.facility)
    login.validate()
    _save_terminals(config, [login.stored() if t.name == old.name else t for t in terminals],
                    f"terminal {login.name}: new SIP password set; the old one no longer works",
                    None if opts.password else login.password)


async def terminal_remove(store: RedisStore, config: StackConfig, opts: argparse.Namespace) -> None:
    from tools.asterisk_conf import load_terminals

    terminals = load_terminals(config)
    kept = [t for t in terminals if t.name != opts.name]
    if len(kept) == len(terminals):
        raise UsageError(f"no terminal {opts.name}")
    _save_terminals(config, kept, f"terminal {opts.name} removed", None)


async def terminal_unthrottle(store: RedisStore, config: StackConfig, opts: argparse.Namespace) -> None:
    """Forget a terminal's failed logins: a terminal told to wait may log in again at once."""
    failures = await store.login_failures(opts.name, datetime.now(UTC) - timedelta(days=1))
    await store.clear_login_failures(opts.name)
    _out(f"terminal {opts.name}: {len(failures)} failed login(s) of the last 24 h cleared")


async def inmate_add(store: RedisStore, config: StackConfig, opts: argparse.Namespace) -> None:
    _check(_ID, "inmate id", opts.id)
    facility = await _need_facility(store, opts.facility)
    if not opts.name.strip():
        raise UsageError("the inmate name is empty")
    status = InmateStatus(opts.status)
    permission = parse_until(opts.permission_until, facility.timezone) if opts.permission_until else None
    if permission is not None and status is not InmateStatus.SUSPECT:
        raise UsageError("--permission-until is for suspects (--status suspect)")
    suspended = parse_until(opts.suspended_until, facility.timezone) if opts.suspended_until else None
    await store.put_inmate(Inmate(opts.id, opts.name.strip(), facility.id, status, permission, suspended))
    _out(f"inmate {opts.id} saved")
    if status is InmateStatus.SUSPECT and permission is None:
        _out("note: a suspect cannot call until a permission is given (kinline inmate permit)")


async def inmate_permit(store: RedisStore, config: StackConfig, opts: argparse.Namespace) -> None:
    inmate = await _need_inmate(store, opts.id)
    if inmate.status is not InmateStatus.SUSPECT:
        raise UsageError(f"inmate {inmate.id} is not a suspect: no permission needed")
    facility = await _need_facility(store, inmate.facility_id)
    until = parse_until(opts.until, facility.timezone)
    await store.put_inmate(replace(inmate, permission_until=until))
    _out(f"inmate {inmate.id} may call until {until.isoformat()}")


async def inmate_suspend(store: RedisStore, config: StackConfig, opts: argparse.Namespace) -> None:
    inmate = await _need_inmate(store, opts.id)
    facility = await _need_facility(store, inmate.facility_id)
    until = parse_until(opts.until, facility.timezone) if opts.until else FOREVER
    await store.put_inmate(replace(inmate, suspended_until=until))
    _out(f"inmate {inmate.id} suspended" + ("" if until == FOREVER else f" until {until.isoformat()}"))


async def inmate_unsuspend(store: RedisStore, config: StackConfig, opts: argparse.Namespace) -> None:
    inmate = await _need_inmate(store, opts.id)
    await store.put_inmate(replace(inmate, suspended_until=None))
    _out(f"inmate {inmate.id} may call again")


async def inmate_show(store: RedisStore, config: StackConfig, opts: argparse.Namespace) -> None:
    inmate = await _need_inmate(store, opts.id)
    _out(f"inmate {inmate.id}: {inmate.name}")
    _out(f"  facility     {inmate.facility_id}")
    _out(f"  status       {inmate.status.value}")
    if inmate.status is InmateStatus.SUSPECT:
        _out(f"  permission   {inmate.permission_until.isoformat() if inmate.permission_until else 'none'}")
    if inmate.suspended_until is not None:
        forever = inmate.suspended_until == FOREVER
        _out(f"  suspended    {'until further notice' if forever else 'until ' + inmate.suspended_until.isoformat()}")
    cards = await store.cards_of(inmate.id)
    _out(f"  cards        {', '.join(cards) if cards else 'none'}")


async def card_add(store: RedisStore, config: StackConfig, opts: argparse.Namespace) -> None:
    _check(_CARD, "card number (4 to 20 digits)", opts.number)
    inmate = await _need_inmate(store, opts.inmate)
    facility = await _need_facility(store, inmate.facility_id)
    card = await store.create_card(opts.number, inmate.id, facility.id, _pin(opts.pin),
                                   opts.language or facility.language)
    _out(f"card {card.number} added for inmate {inmate.id} (facility {facility.id}, language {card.language})")


async def card_show(store: RedisStore, config: StackConfig, opts: argparse.Namespace) -> None:
    card = await _need_card(store, opts.number)
    inmate = await store.inmate(card.inmate_id)
    facility = await store.facility(card.facility_id)
    currency = facility.currency if facility else ""
    _out(f"card {card.number}")
    _out(f"  inmate       {card.inmate_id}" + (f" ({inmate.name})" if inmate else ""))
    _out(f"  facility     {card.facility_id}" + (f" ({facility.name})" if facility else ""))
    _out(f"  status       {card.status.value}")
    _out(f"  language     {card.language}")
    _out(f"  balance      {format_money(card.balance, currency)}")
    _out(f"  wrong PINs   {await store.pin_failures(card.number, datetime.now(UTC))} in the last 24 h")
    lock = await store.card_lock(card.number)
    if lock is None:
        _out("  in a call    no")
    else:
        holder, ttl = lock
        _out(f"  in a call    yes, locked by call {holder}" + (f" (lock expires in {ttl} s)" if ttl >= 0 else ""))
    holds = await store.open_holds(card.number)
    if not holds:
        _out("  holds        none")
    for i, (res, deadline) in enumerate(holds):
        _out(f"  {'holds' if i == 0 else '':<12} {format_money(res.amount, currency)} for call {res.call_id}"
             f" (returned by {deadline.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC if never settled)")
    numbers = await store.list_numbers(card.number)
    if not numbers:
        _out("  numbers      none")
    for i, n in enumerate(numbers):
        flag = "  [privileged: not recorded]" if n.privileged else ""
        _out(f"  {'numbers' if i == 0 else '':<12} {n.e164:<16} {n.label}{flag}")
    records = await store.call_records(card.number, opts.calls)
    _out(f"recent calls ({len(records)}, newest first):" if records else "no calls yet")
    for r in records:
        _out(f"  {r.started_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC  {r.number:<16} {r.route_kind:<10} "
             f"{r.dial_status:<9} answered {r.answered_s} s  billed {r.billed_s} s  "
             f"{format_money(r.amount, currency)}")


async def card_unlock(store: RedisStore, config: StackConfig, opts: argparse.Namespace) -> None:
    await store.unlock_card(opts.number)
    _out(f"card {opts.number} active; wrong-PIN count cleared")


async def card_block(store: RedisStore, config: StackConfig, opts: argparse.Namespace) -> None:
    await store.set_card_status(opts.number, CardStatus.BLOCKED)
    _out(f"card {opts.number} blocked (kinline card unlock {opts.number} to reactivate)")


async def card_pin(store: RedisStore, config: StackConfig, opts: argparse.Namespace) -> None:
    await _need_card(store, opts.number)
    await store.set_pin(opts.number, _pin(opts.pin))
    _out(f"card {opts.number}: new PIN set")


CDR_COLUMNS = tuple(f.name for f in fields(CallRecord))


def write_cdr_csv(records: Sequence[CallRecord], out: IO[str]) -> None:
    writer = csv.writer(out)
    writer.writerow(CDR_COLUMNS)
    for r in records:
        row = [getattr(r, name) for name in CDR_COLUMNS]
        writer.writerow([v.isoformat() if isinstance(v, datetime) else v for v in row])


async def card_export_cdr(store: RedisStore, config: StackConfig, opts: argparse.Namespace) -> None:
    await _need_card(store, opts.number)
    records = await store.call_records(opts.number, opts.limit)
    if opts.out:
        with Path(opts.out).open("w", newline="", encoding="utf-8") as fh:
            write_cdr_csv(records, fh)
        sys.stderr.write(f"{len(records)} call records written to {opts.out}\n")
    else:
        write_cdr_csv(records, sys.stdout)


async def card_ledger(store: RedisStore, config: StackConfig, opts: argparse.Namespace) -> None:
    card = await _need_card(store, opts.number)
    facility = await store.facility(card.facility_id)
    currency = facility.currency if facility else ""
    entries = await store.ledger(card.number, opts.limit)
    if not entries:
        _out(f"card {card.number}: no ledger entries")
        return
    _out(f"card {card.number} ledger ({len(entries)}, newest first):")
    for e in entries:
        sign = "+" if e.kind in ("topup", "release", "adjust") else "-"
        _out(f"  {e.ts.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC  {e.kind:<8} {sign}{format_money(e.amount):>10}  "
             f"balance {format_money(e.balance_after, currency):>14}  {e.ref}" + (f"  ({e.note})" if e.note else ""))


async def number_allow(store: RedisStore, config: StackConfig, opts: argparse.Namespace) -> None:
    check_e164(opts.e164)
    await store.allow_number(opts.card, AllowedNumber(opts.e164, opts.label, opts.privileged))
    _out(f"card {opts.card} may call {opts.e164}" + (" (privileged: never recorded)" if opts.privileged else ""))


async def number_remove(store: RedisStore, config: StackConfig, opts: argparse.Namespace) -> None:
    if not await store.remove_number(opts.card, opts.e164):
        raise NotFound(f"{opts.e164} is not on the list of card {opts.card}")
    _out(f"card {opts.card} may no longer call {opts.e164}")


async def number_list(store: RedisStore, config: StackConfig, opts: argparse.Namespace) -> None:
    await _need_card(store, opts.card)
    for n in await store.list_numbers(opts.card):
        _out(f"{n.e164}\t{n.label}" + ("\tprivileged" if n.privileged else ""))


async def tariff_set(store: RedisStore, config: StackConfig, opts: argparse.Namespace) -> None:
    facility = await _need_facility(store, opts.facility)
    if opts.increment <= 0 or opts.free_seconds < 0:
        raise UsageError("--increment must be positive and --free-seconds not negative")
    tariff = Tariff(
        rates=tuple(_parse_rate(r) for r in opts.rate),
        connection_fee=parse_money(opts.fee),
        free_threshold_s=opts.free_seconds,
        increment_s=opts.increment,
    )
    await store.put_tariff(facility.id, tariff)
    _out(f"tariff of facility {facility.id} saved ({len(tariff.rates)} rates)")


async def tariff_show(store: RedisStore, config: StackConfig, opts: argparse.Namespace) -> None:
    facility = await _need_facility(store, opts.facility)
    tariff = await store.tariff(facility.id)
    if tariff is None:
        raise NotFound(f"facility {facility.id} has no tariff")
    _out(f"tariff of facility {facility.id}")
    _print_tariff(tariff, facility.currency)


async def _currency(store: RedisStore, card: Card) -> str:
    facility = await store.facility(card.facility_id)
    return facility.currency if facility else ""


async def _payment(store: RedisStore, opts: argparse.Namespace,
                   move: Callable[[str, int, str], Awaitable[int]]) -> None:
    """A top-up or a refund: checked input, one idempotent movement, the new balance."""
    card = await _need_card(store, opts.card)
    amount = parse_money(opts.amount)
    if amount == 0:
        raise UsageError("the amount must be more than 0")
    _check(_PAYMENT_ID, "payment id", opts.payment_id)
    after = await move(card.number, amount, opts.payment_id)
    _out(f"card {card.number} balance {format_money(after, await _currency(store, card))}")


async def topup(store: RedisStore, config: StackConfig, opts: argparse.Namespace) -> None:
    await _payment(store, opts, store.top_up)


async def refund(store: RedisStore, config: StackConfig, opts: argparse.Namespace) -> None:
    await _payment(store, opts, store.refund)


async def payout_list(store: RedisStore, config: StackConfig, opts: argparse.Namespace) -> None:
    payouts = [p for p in await RelativeStore(store.redis).payouts(opts.limit) if opts.all or p.status != "paid"]
    if not payouts:
        _out("no payouts" if opts.all else "no payouts to pay")
    for p in payouts:
        paid = f"  paid {p.paid_at:%Y-%m-%d %H:%M} UTC" if p.paid_at else ""
        _out(f"{p.id}  {p.created:%Y-%m-%d %H:%M} UTC  {p.phone:<16} {format_money(p.amount):>12}  {p.status}{paid}")


async def payout_paid(store: RedisStore, config: StackConfig, opts: argparse.Namespace) -> None:
    if await RelativeStore(store.redis).mark_payout_paid(opts.id):
        _out(f"payout {opts.id} marked paid")
    else:
        _out(f"payout {opts.id} was already paid")


async def relative_show(store: RedisStore, config: StackConfig, opts: argparse.Namespace) -> None:
    rel = RelativeStore(store.redis)
    check_e164(opts.phone)
    balance = await rel.balance(opts.phone)
    if balance is None:
        raise NotFound(f"no relative's account for {opts.phone}")
    last = await rel.last_activity(opts.phone)
    _out(f"relative {opts.phone}")
    _out(f"  balance        {format_money(balance)}")
    _out(f"  last activity  {last:%Y-%m-%d %H:%M} UTC" if last else "  last activity  -")
    settings = await rel.all_card_settings(opts.phone)
    if not settings:
        _out("  cards          none set")
    for card, s in settings.items():
        caps = ", ".join(f"{name} {format_money(cap)}" for name, cap in (("day", s.cap_day), ("month", s.cap_month))
                         if cap is not None) or "no caps"
        flags = ("BLOCKED" if s.blocked else "") or ("always in touch" if s.always_in_touch else "does not pay")
        _out(f"  card {card:<10} {flags}; {caps}")


async def relative_unblock(store: RedisStore, config: StackConfig, opts: argparse.Namespace) -> None:
    rel = RelativeStore(store.redis)
    check_e164(opts.phone)
    settings = await rel.card_settings(opts.phone, opts.card)
    if settings is None or not settings.blocked:
        _out(f"card {opts.card} was not blocked by {opts.phone}")
        return
    await rel.put_card_settings(opts.phone, opts.card, replace(settings, blocked=False))
    _out(f"card {opts.card} unblocked for {opts.phone} (always in touch "
         f"{'on' if settings.always_in_touch else 'off'}, as the relative left it)")


async def relative_refund_inactive(store: RedisStore, config: StackConfig, opts: argparse.Namespace) -> None:
    if opts.days < 1:
        raise UsageError(f"--days must be at least 1: {opts.days}")
    done = await RelativeStore(store.redis).refund_inactive(datetime.now(UTC), opts.days, dry_run=opts.dry_run)
    for r in done:
        what = "would refund" if opts.dry_run else f"refunded, payout {r.payout_id}"
        _out(f"{r.phone:<16} {format_money(r.amount):>12}  idle since {r.last_activity:%Y-%m-%d} UTC  {what}")
    total = format_money(sum(r.amount for r in done))
    _out(f"{len(done)} account(s), {total} {'to refund (dry run)' if opts.dry_run else 'refunded'}")


def _day(text: str | None, what: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{what} must be a day, YYYY-MM-DD: {text!r}") from None


async def history_calls(store: RedisStore, config: StackConfig, opts: argparse.Namespace) -> None:
    """Calls from the history database (PostgreSQL), by card and/or called number, between two days (UTC)."""
    if opts.number:
        check_e164(opts.number)
    since, until = _day(opts.since, "--from"), _day(opts.until, "--to")
    history = History(config.postgres_url, max_size=1)
    try:
        calls = await history.calls(
            card=opts.card, number=opts.number, limit=opts.limit,
            since=datetime.combine(since, time(0), UTC) if since else None,
            until=datetime.combine(until, time(0), UTC) + timedelta(days=1) if until else None)
    finally:
        await history.aclose()
    if not calls:
        _out("no calls")
        return
    _out(f"{len(calls)} calls, newest first (times UTC; amount paid by the payer):")
    for c in calls:
        payer = "card" if c.payer == "caller" else f"relative {c.number}" if c.payer == "callee" else c.payer
        _out(f"  {c.started_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}  card {c.card}  to {c.number}  {c.dial_status:<8}"
             f" {c.answered_s:>5} s answered {c.billed_s:>5} s billed  {format_money(c.amount):>10}  paid by {payer}"
             f"  {c.call_id}" + (f"  ({c.credit_reason})" if c.credit_reason else ""))


async def history_ledger(store: RedisStore, config: StackConfig, opts: argparse.Namespace) -> None:
    """A card's or a relative's whole ledger: the history database's entries and Redis' newest not yet copied."""
    history = History(config.postgres_url, max_size=1)
    try:
        if opts.card:
            entries: Sequence[LedgerEntry | RelativeEntry] = newest_first(
                await store.ledger(opts.card, opts.limit), await history.card_ledger(opts.card, opts.limit),
                opts.limit)
            whose = f"card {opts.card}"
        else:
            check_e164(opts.phone)
            entries = newest_first(await RelativeStore(store.redis).entries(opts.phone, opts.limit),
                                   await history.relative_ledger(opts.phone, opts.limit), opts.limit)
            whose = f"relative {opts.phone}"
    finally:
        await history.aclose()
    if not entries:
        _out(f"{whose}: no ledger entries")
        return
    _out(f"{whose} ledger ({len(entries)}, newest first):")
    for e in entries:
        sign = "-" if e.kind in ("reserve", "charge", "refund", "transfer") else "+"
        card = f"  card {e.card}" if isinstance(e, RelativeEntry) and e.card else ""
        _out(f"  {e.ts.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC  {e.kind:<8} {sign}{format_money(e.amount):>10}  "
             f"balance {format_money(e.balance_after):>12}  {e.ref}{card}" + (f"  ({e.note})" if e.note else ""))


async def demo_load(store: RedisStore, config: StackConfig, opts: argparse.Namespace) -> None:
    from tools.demo_data import FACILITY, load_demo
    from tools.stack import apply_terminals

    summary = await load_demo(store, config)
    reloaded = apply_terminals(config)
    _out("demo data loaded")
    summary["balance"] = format_money(summary["balance"], FACILITY.currency)
    for key, value in summary.items():
        _out(f"  {key:<12} {', '.join(map(str, value)) if isinstance(value, list) else value}")
    _out(reloaded)


# --- the parser ----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="kinline", description="Kinline administration: facilities, terminals, inmates, "
                     "cards, numbers, tariffs and money. Amounts are decimals (1.50).")
    parser.add_argument("--config", default=None, help="stack config (default: $KINLINE_CONFIG or config/dev.toml)")
    groups = parser.add_subparsers(dest="group", required=True, metavar="COMMAND", parser_class=_Parser)

    def sub(group: argparse._SubParsersAction[_Parser], name: str, handler: Handler, help_text: str) -> _Parser:
        p = group.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    def group(name: str, help_text: str) -> argparse._SubParsersAction[_Parser]:
        p = groups.add_parser(name, help=help_text, description=help_text)
        return p.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=_Parser)

    fac = group("facility", "facilities: time zone, currency, language, schedule, maximum call length")
    p = sub(fac, "add", facility_add, "add or replace a facility")
    p.add_argument("id")
    p.add_argument("name")
    p.add_argument("--tz", default="Europe/Moscow", help="IANA time zone (default Europe/Moscow)")
    p.add_argument("--currency", default="RUB", choices=CURRENCIES)
    p.add_argument("--language", default="ru", choices=LANGUAGES)
    p.add_argument("--schedule", default="mon-sun 08:00-21:00", help='weekly schedule, e.g. "mon-fri 08:00-20:00"')
    p.add_argument("--max-minutes", type=int, default=15, help="longest call in minutes (default 15)")
    p = sub(fac, "show", facility_show, "show a facility, its tariff and terminals")
    p.add_argument("id")

    term = group("terminal", "prison terminals (SIP devices)")
    p = sub(term, "add", terminal_add, "add a terminal; prints a generated SIP password once (its digest is stored)")
    p.add_argument("name")
    p.add_argument("--facility", required=True)
    p.add_argument("--password", default=None, help="12-64 letters or digits (default: generated)")
    p.add_argument("--language", default=None, choices=LANGUAGES, help="default: the facility's language")
    p = sub(term, "password", terminal_password, "set a terminal's SIP password; prints a generated one once")
    p.add_argument("name")
    p.add_argument("--password", default=None, help="12-64 letters or digits (default: generated)")
    p = sub(term, "remove", terminal_remove, "remove a terminal; Asterisk no longer accepts it")
    p.add_argument("name")
    p = sub(term, "unthrottle", terminal_unthrottle, "clear a terminal's failed logins (it may log in again)")
    p.add_argument("name")

    inm = group("inmate", "inmates")
    p = sub(inm, "add", inmate_add, "add or replace an inmate")
    p.add_argument("id")
    p.add_argument("name")
    p.add_argument("--facility", required=True)
    p.add_argument("--status", default="convicted", choices=[s.value for s in InmateStatus])
    p.add_argument("--permission-until", default=None, help="suspects: permission expiry, YYYY-MM-DD[THH:MM]")
    p.add_argument("--suspended-until", default=None, help="YYYY-MM-DD[THH:MM]")
    p = sub(inm, "permit", inmate_permit, "record a suspect's written permission to call")
    p.add_argument("id")
    p.add_argument("--until", required=True, help="YYYY-MM-DD[THH:MM], facility time")
    p = sub(inm, "suspend", inmate_suspend, "suspend calls (until a date, or until unsuspended)")
    p.add_argument("id")
    p.add_argument("--until", default=None, help="YYYY-MM-DD[THH:MM], facility time (default: until further notice)")
    p = sub(inm, "unsuspend", inmate_unsuspend, "lift a suspension")
    p.add_argument("id")
    p = sub(inm, "show", inmate_show, "show an inmate and their cards")
    p.add_argument("id")

    crd = group("card", "calling cards")
    p = sub(crd, "add", card_add, "add a card (balance 0; PIN stored as a salted hash)")
    p.add_argument("number")
    p.add_argument("--inmate", required=True)
    p.add_argument("--pin", default=None, help="4-8 digits (default: asked on the terminal)")
    p.add_argument("--language", default=None, choices=LANGUAGES, help="default: the facility's language")
    p = sub(crd, "show", card_show, "balance, status, lock, open holds, numbers and recent calls")
    p.add_argument("number")
    p.add_argument("--calls", type=int, default=10, help="how many recent calls (default 10)")
    p = sub(crd, "unlock", card_unlock, "make a locked or blocked card active; clear wrong PINs")
    p.add_argument("number")
    p = sub(crd, "block", card_block, "withdraw a card")
    p.add_argument("number")
    p = sub(crd, "pin", card_pin, "set a new PIN")
    p.add_argument("number")
    p.add_argument("--pin", default=None, help="4-8 digits (default: asked on the terminal)")
    p = sub(crd, "export-cdr", card_export_cdr, "call detail records as CSV (newest first)")
    p.add_argument("number")
    p.add_argument("--out", default=None, help="file to write (default: stdout)")
    p.add_argument("--limit", type=int, default=1_000_000)
    p = sub(crd, "ledger", card_ledger, "the card's ledger: every money movement, newest first")
    p.add_argument("number")
    p.add_argument("--limit", type=int, default=50, help="how many entries (default 50)")

    num = group("number", "numbers a card may call")
    p = sub(num, "allow", number_allow, "allow a number (E.164, e.g. +79161234567)")
    p.add_argument("card")
    p.add_argument("e164")
    p.add_argument("--label", default="")
    p.add_argument("--privileged", action="store_true", help="a lawyer: calls never recorded")
    p = sub(num, "remove", number_remove, "remove a number")
    p.add_argument("card")
    p.add_argument("e164")
    p = sub(num, "list", number_list, "list a card's numbers")
    p.add_argument("card")

    tar = group("tariff", "prices of a facility")
    p = sub(tar, "set", tariff_set, "replace a facility's tariff")
    p.add_argument("--facility", required=True)
    p.add_argument("--fee", required=True, help="connection fee, e.g. 1.50")
    p.add_argument("--free-seconds", type=int, default=3, help="answered under this: free (default 3)")
    p.add_argument("--increment", type=int, default=60, help="billing increment in seconds (default 60)")
    p.add_argument("--rate", action="append", required=True,
                   help="KIND:PREFIX:PRICE per minute, e.g. mobile:7:3.59 (repeat; empty prefix = any)")
    p = sub(tar, "show", tariff_show, "show a facility's tariff")
    p.add_argument("--facility", required=True)

    p = sub(groups, "topup", topup, "add money to a card (idempotent by --payment-id)")
    p.add_argument("card")
    p.add_argument("amount")
    p.add_argument("--payment-id", required=True)
    p = sub(groups, "refund", refund, "return unspent money from a card (idempotent by --payment-id)")
    p.add_argument("card")
    p.add_argument("amount")
    p.add_argument("--payment-id", required=True)

    pay = group("payout", "refunds relatives asked for (the relatives' API): staff pay them, then mark them paid")
    p = sub(pay, "list", payout_list, "payouts not yet paid, oldest first")
    p.add_argument("--all", action="store_true", help="paid ones too")
    p.add_argument("--limit", type=int, default=1000)
    p = sub(pay, "paid", payout_paid, "mark a payout paid (after the money was sent)")
    p.add_argument("id")

    rel = group("relative", "relatives' accounts (the relatives' API): show, unblock a card, refunds after inactivity")
    p = sub(rel, "show", relative_show, "balance, last movement and the relative's settings per card")
    p.add_argument("phone", help="E.164, e.g. +79161234567")
    p = sub(rel, "unblock", relative_unblock, "undo a block the relative set (9 in the accept menu, or the API)")
    p.add_argument("phone")
    p.add_argument("card")
    p = sub(rel, "refund-inactive", relative_refund_inactive,
            "move the whole balance of accounts idle for --days to payouts (47 CFR 64.6130; hourly in the reconciler)")
    p.add_argument("--days", type=int, default=INACTIVE_REFUND_DAYS,
                   help=f"no ledger entry for this many days (default {INACTIVE_REFUND_DAYS})")
    p.add_argument("--dry-run", action="store_true", help="list what would be refunded, move nothing")

    his = group("history", "call records and ledgers in the history database (PostgreSQL), all of them")
    p = sub(his, "calls", history_calls, "calls of a card and/or to a number, newest first")
    p.add_argument("--card")
    p.add_argument("--number", help="called number, E.164 (+79161234567)")
    p.add_argument("--from", dest="since", help="first day, YYYY-MM-DD (UTC)")
    p.add_argument("--to", dest="until", help="last day, YYYY-MM-DD (UTC), included")
    p.add_argument("--limit", type=int, default=100)
    p = sub(his, "ledger", history_ledger, "a card's or a relative's ledger, newest first")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--card")
    who.add_argument("--phone", help="the relative's number, E.164")
    p.add_argument("--limit", type=int, default=100)

    dem = group("demo", "demo data for make run")
    sub(dem, "load", demo_load, "load the demo facility, tariff, inmate, card 1001 and numbers (idempotent)")
    return parser


async def _run(handler: Handler, config: StackConfig, opts: argparse.Namespace) -> None:
    store = RedisStore(connect(config.redis_url), PinHasher.from_hex(load_secrets(config).pin_key))
    try:
        await handler(store, config, opts)
    finally:
        await store.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        opts = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    try:
        config = load_config(opts.config)
    except (OSError, KeyError, ValueError) as err:
        sys.stderr.write(f"kinline: cannot read the config: {err}\n")
        return 2
    try:
        asyncio.run(_run(opts.handler, config, opts))
    except PinFormatError as err:
        sys.stderr.write(f"kinline: bad PIN ({err.reason}): want 4 to 8 digits\n")
        return 2
    except (UsageError, KinlineError, ValueError) as err:
        sys.stderr.write(f"kinline: {err}\n")
        return 2
    except redis.RedisError as err:
        sys.stderr.write(f"kinline: Redis at {config.redis_address} failed: {err}\n")
        return 1
    except HistoryUnavailable as err:
        sys.stderr.write(f"kinline: the history database at {config.host}:{config.postgres_port} failed: {err}\n")
        return 1
    except OSError as err:
        sys.stderr.write(f"kinline: {err}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
