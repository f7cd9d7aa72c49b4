"""The inmate call's decisions, with in-memory storage and a scripted caller."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from ivr import prompts as p
from ivr.errors import InsufficientFunds
from ivr.inmate_call import CallPlan, Entry, InmateCalls, Refused, answered_seconds
from ivr.model import (
    AllowedNumber,
    CallRecord,
    Card,
    CardStatus,
    Facility,
    Inmate,
    InmateStatus,
    Reservation,
    Settlement,
)
from ivr.pin import hash_pin
from ivr.tariffs import Tariff, demo_tariff

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # a Monday, 13:00 in Moscow
PIN_HASH = hash_pin("2468")


class FakeCaller:
    def __init__(self, *entries: str) -> None:
        self.entries = list(entries)
        self.played: list[str] = []
        self.asked: list[str] = []
        self.language = "?"

    def set_language(self, language: str) -> None:
        self.language = language

    async def play(self, items: Sequence[str]) -> None:
        self.played.extend(items)

    async def ask(self, item: str, max_digits: int, timeout_ms: int) -> Entry:
        self.asked.append(item)
        if not self.entries:
            return Entry("", True)
        return Entry(self.entries.pop(0), False)


class Store:
    """Directory and Wallet in memory (the Redis one is tested against real Redis)."""

    def __init__(self) -> None:
        self.facilities = {"f1": Facility("f1", "Colony 1", "Europe/Moscow", "RUB", "ru", "mon-sun 08:00-21:00")}
        self.inmates = {"i1": Inmate("i1", "Ivan", "f1", InmateStatus.CONVICTED)}
        self.cards = {"1001": Card("1001", "i1", "f1", PIN_HASH, "ru", CardStatus.ACTIVE, 50_000)}
        self.allowed = {("1001", "+79161234567"): AllowedNumber("+79161234567", "Mother"),
                        ("1001", "+79031234567"): AllowedNumber("+79031234567", "Lawyer", privileged=True)}
        self.tariffs: dict[str, Tariff] = {"f1": demo_tariff()}
        self.failures: list[datetime] = []
        self.active: dict[str, str] = {}
        self.holds: dict[str, int] = {}
        self.records: list[CallRecord] = []

    async def facility(self, facility_id: str) -> Facility | None:
        return self.facilities.get(facility_id)

    async def card(self, number: str) -> Card | None:
        return self.cards.get(number)

    async def inmate(self, inmate_id: str) -> Inmate | None:
        return self.inmates.get(inmate_id)

    async def allowed_number(self, card: str, e164: str) -> AllowedNumber | None:
        return self.allowed.get((card, e164))

    async def tariff(self, facility_id: str) -> Tariff | None:
        return self.tariffs.get(facility_id)

    async def record_pin_failure(self, card: str, now: datetime) -> int:
        self.failures.append(now)
        if len(self.failures) >= 10:
            self.cards[card] = replace(self.cards[card], status=CardStatus.LOCKED)
        return len(self.failures)

    async def acquire_card(self, card: str, uniqueid: str, ttl_s: int) -> bool:
        return self.active.setdefault(card, uniqueid) == uniqueid

    async def release_card(self, card: str, uniqueid: str) -> None:
        if self.active.get(card) == uniqueid:
            del self.active[card]

    async def reserve(self, call_id: str, card: str, amount: int, hold_s: int) -> Reservation:
        c = self.cards[card]
        if c.balance < amount:
            raise InsufficientFunds(card)
        self.cards[card] = replace(c, balance=c.balance - amount)
        self.holds[call_id] = amount
        return Reservation(call_id, card, amount, c.balance - amount)

    async def settle(self, record: CallRecord) -> Settlement:
        held = self.holds.pop(record.call_id)
        charged = min(held, record.amount)
        c = self.cards[record.card]
        self.cards[record.card] = replace(c, balance=c.balance + held - charged)
        self.records.append(replace(record, amount=charged))
        return Settlement(record.call_id, charged, held - charged, c.balance + held - charged, False)

    async def release_expired(self, now: datetime) -> list[str]:
        return []

    async def top_up(self, card: str, amount: int, payment_id: str) -> int:
        return 0


@pytest.fixture
def store() -> Store:
    return Store()


def service(store: Store, now: datetime = NOW) -> InmateCalls:
    return InmateCalls(store, store, now=lambda: now)


async def test_login_speaks_balance_in_card_language(store: Store) -> None:
    caller = FakeCaller("1001", "2468")
    session = await service(store).login(caller, "f1", "u1")
    assert session.card.number == "1001"
    assert caller.language == "ru"
    i = caller.played.index(p.YOUR_BALANCE)
    assert caller.played[i + 1:] == ["word:пятьсот", "word:рублей"]
    assert store.active == {"1001": "u1"}


async def test_wrong_pin_three_times_same_prompt_as_wrong_card(store: Store) -> None:
    caller = FakeCaller("1001", "1111", "9999", "2468", "1001", "0000")
    with pytest.raises(Refused) as refused:
        await service(store).login(caller, "f1", "u1")
    assert refused.value.prompt == p.TOO_MANY_TRIES
    assert caller.played.count(p.LOGIN_FAILED) == 3
    assert len(store.failures) == 2  # the unknown card 9999 counts against no card
    assert store.active == {}


async def test_ten_failures_lock_the_card(store: Store) -> None:
    store.failures = [NOW - timedelta(hours=1)] * 9
    caller = FakeCaller("1001", "1111")
    with pytest.raises(Refused) as refused:
        await service(store).login(caller, "f1", "u1")
    assert refused.value.prompt == p.CARD_LOCKED
    assert store.cards["1001"].status is CardStatus.LOCKED
    # Even the right PIN now only hears that the card is locked.
    with pytest.raises(Refused) as again:
        await service(store).login(FakeCaller("1001", "2468"), "f1", "u2")
    assert again.value.prompt == p.CARD_LOCKED


@pytest.mark.parametrize(
    ("change", "prompt"),
    [
        (lambda s: s.inmates.update(i1=replace(s.inmates["i1"], suspended_until=NOW + timedelta(days=1))),
         p.INMATE_SUSPENDED),
        (lambda s: s.inmates.update(i1=replace(s.inmates["i1"], status=InmateStatus.SUSPECT)),
         p.PERMISSION_MISSING),
        (lambda s: s.inmates.update(i1=replace(s.inmates["i1"], status=InmateStatus.SUSPECT,
                                               permission_until=NOW - timedelta(seconds=1))),
         p.PERMISSION_MISSING),
        (lambda s: s.facilities.update(f1=replace(s.facilities["f1"], schedule="sat-sun 08:00-21:00")),
         p.OUTSIDE_SCHEDULE),
        (lambda s: s.cards.update({"1001": replace(s.cards["1001"], balance=354)}), p.NO_FUNDS),
        (lambda s: s.cards.update({"1001": replace(s.cards["1001"], status=CardStatus.BLOCKED)}), p.CARD_BLOCKED),
        (lambda s: s.active.update({"1001": "other-call"}), p.CARD_IN_USE),
    ],
)
async def test_checks_refuse_with_their_own_prompt(store: Store, change: object, prompt: str) -> None:
    change(store)  # type: ignore[operator]
    with pytest.raises(Refused) as refused:
        await service(store).login(FakeCaller("1001", "2468"), "f1", "u1")
    assert refused.value.prompt == prompt
    assert store.active.get("1001") != "u1"


async def test_suspect_with_valid_permission_may_call(store: Store) -> None:
    store.inmates["i1"] = replace(store.inmates["i1"], status=InmateStatus.SUSPECT,
                                  permission_until=NOW + timedelta(days=3))
    await service(store).login(FakeCaller("1001", "2468"), "f1", "u1")


async def _plan(store: Store, *entries: str) -> tuple[CallPlan, FakeCaller]:
    calls = service(store)
    session = await calls.login(FakeCaller("1001", "2468"), "f1", "u1")
    caller = FakeCaller(*entries)
    return await calls.choose_number(caller, session, "u1", 1), caller


async def test_number_errors_are_explained_then_a_good_number_is_planned(store: Store) -> None:
    plan, caller = await _plan(store, "7916", "0179161234567", "123*79161234567")
    assert caller.played == [p.NUMBER_INCOMPLETE, p.SERVICE_UNAVAILABLE]
    assert plan.e164 == "+79161234567"
    assert plan.route_kind == "mobile"
    assert plan.rate == 359
    assert plan.max_s == 900  # 500 RUB pays more than the facility's 15 minutes
    assert plan.reserved == 150 + 15 * 359
    assert store.cards["1001"].balance == 50_000 - plan.reserved
    assert plan.record is True


async def test_invalid_and_not_allowed_numbers(store: Store) -> None:
    plan, caller = await _plan(store, "12345", "*", "79161112233", "74951234567*79161234567")
    assert caller.played == [p.NUMBER_INVALID, p.NUMBER_NOT_ALLOWED]
    assert plan.e164 == "+79161234567"


async def test_three_bad_numbers_end_the_call(store: Store) -> None:
    with pytest.raises(Refused) as refused:
        await _plan(store, "1", "2", "3")
    assert refused.value.prompt == p.GOODBYE


async def test_privileged_number_is_not_recorded(store: Store) -> None:
    plan, _ = await _plan(store, "79031234567")
    assert plan.record is False


async def test_balance_caps_the_call_length(store: Store) -> None:
    store.cards["1001"] = replace(store.cards["1001"], balance=150 + 2 * 359 + 358)
    plan, _ = await _plan(store, "79161234567")
    assert plan.max_s == 120
    assert plan.reserved == 150 + 2 * 359
    assert (plan.warn_s, plan.warning_prompt) == (60, p.LIMIT_WARNING)


async def test_a_call_of_one_minute_or_less_is_warned_it_ends_soon(store: Store) -> None:
    store.cards["1001"] = replace(store.cards["1001"], balance=150 + 359)
    plan, _ = await _plan(store, "79161234567")
    assert plan.max_s == 60
    assert (plan.warn_s, plan.warning_prompt) == (30, p.LIMIT_WARNING_SOON)


@pytest.mark.parametrize(
    ("status", "ms", "charged"),
    [("ANSWER", 0, 0), ("ANSWER", 2_000, 0), ("ANSWER", 2_999, 0), ("ANSWER", 3_000, 509),
     ("ANSWER", 59_000, 509), ("ANSWER", 60_000, 509), ("ANSWER", 60_001, 868), ("ANSWER", 61_000, 868),
     ("ANSWER", 10_000_000, 150 + 15 * 359), ("BUSY", 0, 0), ("NOANSWER", 0, 0)],
)
async def test_settlement_bills_started_minutes(store: Store, status: str, ms: int, charged: int) -> None:
    plan, _ = await _plan(store, "79161234567")
    settlement = await service(store).settle(plan, status, ms, "16")
    assert settlement.charged == charged
    assert store.cards["1001"].balance == 50_000 - charged
    assert store.records[-1].amount == charged


def test_answered_seconds_rounding() -> None:
    plan = CallPlan("c", "u", "1001", "i1", "f1", "+79161234567", "mobile", "caller", 359, 150, 3, 60,
                    120, 60, True, 868, NOW)
    assert [answered_seconds(ms, plan) for ms in (0, 2_999, 3_000, 3_001, 60_200, 500_000)] == [0, 2, 3, 4, 61, 120]


async def test_call_length_is_announced_only_when_shorter_than_usual(store: Store) -> None:
    calls = service(store)
    session = await calls.login(FakeCaller("1001", "2468"), "f1", "u1")
    full = await calls.choose_number(FakeCaller("79161234567"), session, "u1", 1)
    quiet = FakeCaller()
    await calls.announce(quiet, session, full, "ru")
    assert quiet.played == []
    store.cards["1001"] = replace(store.cards["1001"], balance=150 + 2 * 359)
    short = await calls.choose_number(FakeCaller("79161234567"), session, "u1", 2)
    told = FakeCaller()
    await calls.announce(told, session, short, "ru")
    assert told.played == [p.CALL_MAY_LAST, "word:две", "word:минуты"]
