"""The inmate call's decisions, with in-memory storage and a scripted caller."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest

from ivr import prompts as p
from ivr.call_plan import CallPlan
from ivr.errors import InsufficientFunds
from ivr.inmate_call import Ask, Entry, InmateCalls, Refused, answered_seconds
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
from ivr.pin import PinHasher, hash_scrypt
from ivr.relatives import CardSettings
from ivr.tariffs import Tariff, demo_tariff

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # a Monday, 13:00 in Moscow
PINS = PinHasher(bytes(range(32)))
PIN_HASH = PINS.hash("2468")
TERMINAL = "term-101"


@dataclass(frozen=True)
class During:
    """Keys pressed while ``prompt`` is said (type-ahead), then ``#``."""

    prompt: str
    digits: str


class FakeCaller:
    """The terminal, scripted: each entry is what is keyed for the next ask, after
    its prompt or ``During`` a prompt said before it. ``played`` is what is said, in
    order (the lead-in as soon as it is queued: the next step says it first)."""

    def __init__(self, *entries: str | During) -> None:
        self.entries = list(entries)
        self.played: list[str] = []
        self.asked: list[str] = []
        self.preambles: list[tuple[str, list[str]]] = []  # (ask, what was said before it: a key cuts it)
        self.uninterruptible: list[str] = []  # lead-in and prompts said where a key counts for nothing
        self.lost: list[str] = []  # keys pressed during a prompt no entry followed
        self.pending: list[str] = []
        self.together: list[list[str]] = []  # asks made back to back (ask_each)
        self.language = "?"

    def set_language(self, language: str) -> None:
        self.language = language

    def lead_in(self, items: Sequence[str]) -> None:
        self.pending.extend(items)
        self.played.extend(items)

    async def play(self, items: Sequence[str]) -> None:
        self.uninterruptible.extend([*self.pending, *items])
        self.pending = []
        self.played.extend(items)

    async def ask(self, item: str, max_digits: int, timeout_ms: int, preamble: Sequence[str] = ()) -> Entry:
        said = [*self.pending, *preamble]
        self.pending = []
        self.played.extend(preamble)
        self.asked.append(item)
        self.preambles.append((item, said))
        if not self.entries:
            return Entry("", True)
        entry = self.entries.pop(0)
        if isinstance(entry, str):
            return Entry(entry, False)
        if entry.prompt == item:
            return Entry(entry.digits, False)
        if entry.prompt in said:  # the key cut the rest of the preamble short
            skipped = len(said) - said.index(entry.prompt) - 1
            del self.played[len(self.played) - skipped:]
            return Entry(entry.digits, False)
        self.lost.append(entry.digits)
        return Entry("", True)

    async def ask_each(self, asks: Sequence[Ask]) -> list[Entry]:
        self.together.append([a.item for a in asks])
        return [await self.ask(a.item, a.max_digits, a.timeout_ms) for a in asks]

    async def record(self, sound: str, max_ms: int, silence_s: int) -> int:
        await self.play([])
        return 0


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
        self.login_fails: dict[str, list[datetime]] = {}
        self.upgrades: list[tuple[str, str]] = []
        self.active: dict[str, str] = {}
        self.holds: dict[str, int] = {}
        self.records: list[CallRecord] = []
        self.relatives = FakeRelatives(self)

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

    async def upgrade_pin_hash(self, card: str, old: str, new: str) -> bool:
        if self.cards[card].pin_hash != old:
            return False
        self.cards[card] = replace(self.cards[card], pin_hash=new)
        self.upgrades.append((old, new))
        return True

    async def login_failures(self, terminal: str, since: datetime) -> list[datetime]:
        return [t for t in self.login_fails.get(terminal, []) if t > since]

    async def record_login_failure(self, terminal: str, now: datetime, keep_s: int) -> list[datetime]:
        kept = [t for t in self.login_fails.get(terminal, []) if t > now - timedelta(seconds=keep_s)] + [now]
        self.login_fails[terminal] = kept
        return kept

    async def acquire_card(self, card: str, uniqueid: str, ttl_s: int) -> bool:
        return self.active.setdefault(card, uniqueid) == uniqueid

    async def release_card(self, card: str, uniqueid: str) -> None:
        if self.active.get(card) == uniqueid:
            del self.active[card]

    async def reserve(self, call_id: str, card: str, amount: int, hold_s: int, plan: str,
                      payer_phone: str = "") -> Reservation:
        assert json.loads(plan)["call_id"] == call_id
        if payer_phone:
            balance = self.relatives.balances[payer_phone]
            if balance < amount:
                raise InsufficientFunds(payer_phone)
            self.relatives.balances[payer_phone] = balance - amount
            self.holds[call_id] = amount
            return Reservation(call_id, card, amount, balance - amount)
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


class FakeRelatives:
    """Relatives' accounts in memory (ivr.ports.RelativeAccounts, the parts calls use)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.balances: dict[str, int] = {}
        self.settings: dict[tuple[str, str], CardSettings] = {}
        self.spent: list[tuple[str, str, datetime, int]] = []  # phone, card, when, amount

    async def balance(self, phone: str) -> int | None:
        return self.balances.get(phone)

    async def card_settings(self, phone: str, card: str) -> CardSettings | None:
        return self.settings.get((phone, card))

    async def spent_since(self, phone: str, card: str, since: datetime) -> int:
        return sum(a for ph, c, t, a in self.spent if (ph, c) == (phone, card) and t >= since)

    async def paying_relatives(self, card: str) -> list[str]:
        return sorted(ph for (ph, c), s in self.settings.items()
                      if c == card and (c, ph) in self.store.allowed and s.always_in_touch and not s.blocked)


@pytest.fixture
def store() -> Store:
    return Store()


def service(store: Store, now: datetime = NOW, *, relatives: bool = False) -> InmateCalls:
    return InmateCalls(store, store, now=lambda: now, pins=PINS,
                       relatives=store.relatives if relatives else None)  # type: ignore[arg-type]


async def test_login_speaks_balance_in_card_language(store: Store) -> None:
    caller = FakeCaller("1001", "2468")
    session = await service(store).login(caller, "f1", "u1", TERMINAL)
    assert session.card.number == "1001"
    assert caller.language == "ru"
    i = caller.played.index(p.YOUR_BALANCE)
    assert caller.played[i + 1:] == ["word:пятьсот", "word:рублей"]
    assert store.active == {"1001": "u1"}


async def test_wrong_pin_three_times_same_prompt_as_wrong_card(store: Store) -> None:
    caller = FakeCaller("1001", "1111", "9999", "2468", "1001", "0000")
    with pytest.raises(Refused) as refused:
        await service(store).login(caller, "f1", "u1", TERMINAL)
    assert refused.value.prompt == p.TOO_MANY_TRIES
    assert caller.played.count(p.LOGIN_FAILED) == 3
    assert len(store.failures) == 2  # the unknown card 9999 counts against no card
    assert len(store.login_fails[TERMINAL]) == 3  # but all three count against the terminal


async def test_every_login_try_asks_the_card_and_the_pin_back_to_back(store: Store) -> None:
    # One go per try (Caller.ask_each): a PIN keyed right after the card's '#' is the PIN's.
    caller = FakeCaller("1001", "1111", "1001", "2468")
    await service(store).login(caller, "f1", "u1", TERMINAL)
    assert caller.together == [[p.ENTER_CARD, p.ENTER_PIN], [p.ENTER_CARD, p.ENTER_PIN]]


async def test_no_digits_at_all_is_not_a_failed_login(store: Store) -> None:
    caller = FakeCaller()
    with pytest.raises(Refused) as refused:
        await service(store).login(caller, "f1", "u1", TERMINAL)
    assert refused.value.prompt == p.TOO_MANY_TRIES
    assert TERMINAL not in store.login_fails and store.failures == []
    assert store.active == {}


async def test_ten_failures_lock_the_card_but_only_the_right_pin_hears_it(store: Store) -> None:
    store.failures = [NOW - timedelta(hours=1)] * 9
    caller = FakeCaller("1001", "1111")
    with pytest.raises(Refused) as refused:
        await service(store).login(caller, "f1", "u1", TERMINAL)
    # The tenth wrong PIN locks the card, and sounds like any wrong card number.
    assert store.cards["1001"].status is CardStatus.LOCKED
    assert refused.value.prompt == p.TOO_MANY_TRIES  # (the other two tries: no digits)
    assert caller.played.count(p.LOGIN_FAILED) == 3
    assert p.CARD_LOCKED not in caller.played
    # A wrong PIN on the locked card: the same as an unknown card.
    locked_wrong = FakeCaller("1001", "1111", "55555", "1111", "1001", "2468")
    with pytest.raises(Refused) as again:
        await service(store).login(locked_wrong, "f1", "u2", "term-102")
    assert locked_wrong.played.count(p.LOGIN_FAILED) == 2
    # Only the right PIN is told that the card is locked.
    assert again.value.prompt == p.CARD_LOCKED
    assert store.active == {}


async def test_unknown_card_and_wrong_pin_sound_the_same(store: Store) -> None:
    unknown, wrong = FakeCaller("424242", "2468"), FakeCaller("1001", "1111")
    for caller, terminal in ((unknown, "term-a"), (wrong, "term-b")):
        with pytest.raises(Refused) as refused:
            await service(store).login(caller, "f1", "u1", terminal)
        assert refused.value.prompt == p.TOO_MANY_TRIES
    assert unknown.played == wrong.played == [p.WELCOME, p.LOGIN_FAILED, p.LOGIN_FAILED, p.LOGIN_FAILED]
    assert unknown.asked == wrong.asked


async def test_five_failed_logins_make_the_terminal_wait(store: Store) -> None:
    # Two calls of wrong PINs on two cards: the fifth failure stops the second call.
    store.cards["2002"] = replace(store.cards["1001"], number="2002")
    first = FakeCaller("1001", "1111", "2002", "1111", "1001", "2222")
    with pytest.raises(Refused) as refused:
        await service(store).login(first, "f1", "u1", TERMINAL)
    assert refused.value.prompt == p.TOO_MANY_TRIES
    second = FakeCaller("2002", "1111", "1001", "3333", "2002", "4444")
    with pytest.raises(Refused) as refused:
        await service(store).login(second, "f1", "u2", TERMINAL)
    assert refused.value.prompt == p.TERMINAL_WAIT
    assert second.played.count(p.LOGIN_FAILED) == 1  # the 4th; the 5th ends the call
    assert len(store.login_fails[TERMINAL]) == 5
    assert len(store.failures) == 5
    # A new call from that terminal is not asked for a card at all, even with the right PIN.
    waiting = FakeCaller("1001", "2468")
    with pytest.raises(Refused) as refused:
        await service(store, NOW + timedelta(minutes=9)).login(waiting, "f1", "u3", TERMINAL)
    assert refused.value.prompt == p.TERMINAL_WAIT
    assert waiting.asked == []
    assert len(store.failures) == 5  # a waiting terminal adds nothing to any card
    # Another terminal is not affected.
    await service(store).login(FakeCaller("1001", "2468"), "f1", "u4", "term-102")
    await service(store).end("1001", "u4")
    # Ten minutes after the first failure, the terminal may try again.
    later = service(store, NOW + timedelta(minutes=10, seconds=1))
    session = await later.login(FakeCaller("1001", "2468"), "f1", "u5", TERMINAL)
    assert session.card.number == "1001"


async def test_twenty_failures_a_day_make_the_terminal_wait_longer(store: Store) -> None:
    store.login_fails[TERMINAL] = [NOW - timedelta(hours=h, minutes=20) for h in range(19)]
    with pytest.raises(Refused) as refused:
        await service(store).login(FakeCaller("1001", "1111"), "f1", "u1", TERMINAL)
    assert refused.value.prompt == p.TERMINAL_WAIT
    with pytest.raises(Refused) as refused:
        await service(store, NOW + timedelta(hours=1)).login(FakeCaller("1001", "2468"), "f1", "u2", TERMINAL)
    assert refused.value.prompt == p.TERMINAL_WAIT


async def test_unknown_terminal_is_refused(store: Store) -> None:
    caller = FakeCaller("1001", "2468")
    with pytest.raises(Refused) as refused:
        await service(store).login(caller, "f1", "u1", "")
    assert refused.value.prompt == p.APOLOGY
    assert caller.asked == []


async def test_legacy_scrypt_pin_is_upgraded_after_a_right_pin(store: Store) -> None:
    legacy = hash_scrypt("2468", n=2**10)
    store.cards["1001"] = replace(store.cards["1001"], pin_hash=legacy)
    with pytest.raises(Refused):
        await service(store).login(FakeCaller("1001", "1111"), "f1", "u1", TERMINAL)
    assert store.cards["1001"].pin_hash == legacy  # a wrong PIN upgrades nothing
    await service(store).login(FakeCaller("1001", "2468"), "f1", "u2", TERMINAL)
    upgraded = store.cards["1001"].pin_hash
    assert store.upgrades == [(legacy, upgraded)]
    assert upgraded.startswith(f"hmac-sha256${PINS.key_id}$") and PINS.verify("2468", upgraded)
    await service(store).end("1001", "u2")
    await service(store).login(FakeCaller("1001", "2468"), "f1", "u3", TERMINAL)
    assert len(store.upgrades) == 1


async def test_pin_hash_of_another_key_refuses_and_counts_nothing(store: Store) -> None:
    store.cards["1001"] = replace(store.cards["1001"], pin_hash=PinHasher(bytes(32)).hash("2468"))
    with pytest.raises(Refused) as refused:
        await service(store).login(FakeCaller("1001", "2468"), "f1", "u1", TERMINAL)
    assert refused.value.prompt == p.APOLOGY
    assert store.failures == [] and TERMINAL not in store.login_fails


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
        await service(store).login(FakeCaller("1001", "2468"), "f1", "u1", TERMINAL)
    assert refused.value.prompt == prompt
    assert store.active.get("1001") != "u1"


async def test_suspect_with_valid_permission_may_call(store: Store) -> None:
    store.inmates["i1"] = replace(store.inmates["i1"], status=InmateStatus.SUSPECT,
                                  permission_until=NOW + timedelta(days=3))
    await service(store).login(FakeCaller("1001", "2468"), "f1", "u1", TERMINAL)


async def _plan(store: Store, *entries: str) -> tuple[CallPlan, FakeCaller]:
    calls = service(store)
    session = await calls.login(FakeCaller("1001", "2468"), "f1", "u1", TERMINAL)
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
    session = await calls.login(FakeCaller("1001", "2468"), "f1", "u1", TERMINAL)
    full = await calls.choose_number(FakeCaller("79161234567"), session, "u1", 1)
    quiet = FakeCaller()
    await calls.announce(quiet, session, full, "ru")
    assert quiet.played == []
    store.cards["1001"] = replace(store.cards["1001"], balance=150 + 2 * 359)
    short = await calls.choose_number(FakeCaller("79161234567"), session, "u1", 2)
    told = FakeCaller()
    await calls.announce(told, session, short, "ru")
    assert told.played == [p.CALL_MAY_LAST, "word:две", "word:минуты"]


def _moscow(hh: int, mm: int, ss: int) -> datetime:
    return datetime(2026, 11, 23, hh - 3, mm, ss, tzinfo=UTC)


async def test_near_closing_time_the_refusal_names_the_schedule(store: Store) -> None:
    calls = service(store, _moscow(20, 59, 30))  # 30 s before 21:00, less than one 60 s increment
    session = await calls.login(FakeCaller("1001", "2468"), "f1", "u1", TERMINAL)
    caller = FakeCaller("79161234567")
    with pytest.raises(Refused):
        await calls.choose_number(caller, session, "u1", 1)
    assert caller.played[0] == p.SCHEDULE_CLOSING
    assert p.NO_FUNDS not in caller.played
    assert store.holds == {}


async def test_a_short_call_is_announced_in_seconds_not_as_one_minute(store: Store) -> None:
    store.tariffs["f1"] = replace(demo_tariff(), increment_s=6)
    calls = service(store, _moscow(20, 59, 15))  # 45 s before closing
    session = await calls.login(FakeCaller("1001", "2468"), "f1", "u1", TERMINAL)
    plan = await calls.choose_number(FakeCaller("79161234567"), session, "u1", 1)
    assert plan.max_s == 45
    told = FakeCaller()
    await calls.announce(told, session, plan, "ru")
    assert told.played == [p.CALL_MAY_LAST, "word:сорок", "word:пять", "word:секунд"]


async def test_minutes_and_seconds_are_both_said(store: Store) -> None:
    calls = service(store, _moscow(20, 58, 30))  # 90 s before closing
    session = await calls.login(FakeCaller("1001", "2468"), "f1", "u1", TERMINAL)
    plan = await calls.choose_number(FakeCaller("79161234567"), session, "u1", 1)
    assert plan.max_s == 90
    told = FakeCaller()
    await calls.announce(told, session, plan, "en")
    assert told.played == [p.CALL_MAY_LAST, "word:one", "word:minute", "word:thirty", "word:seconds"]


# --- calls the relative pays ("01") -------------------------------------------------

MOTHER = "+79161234567"


async def _plan_01(store: Store, *entries: str, now: datetime = NOW) -> tuple[CallPlan, FakeCaller]:
    calls = service(store, now, relatives=True)
    session = await calls.login(FakeCaller("1001", "2468"), "f1", "u1", TERMINAL)
    caller = FakeCaller(*entries)
    return await calls.choose_number(caller, session, "u1", 1), caller


def _mother_pays(store: Store, balance: int = 10_000, **settings: object) -> None:
    store.relatives.balances[MOTHER] = balance
    store.relatives.settings[(MOTHER, "1001")] = CardSettings(always_in_touch=True, **settings)  # type: ignore[arg-type]


async def test_01_reserves_the_relatives_money_not_the_cards(store: Store) -> None:
    _mother_pays(store, 150 + 3 * 359 + 100)
    plan, caller = await _plan_01(store, "0179161234567")
    assert caller.played == []
    assert plan.payer == "callee"
    assert plan.max_s == 180
    assert plan.reserved == 150 + 3 * 359
    assert store.relatives.balances[MOTHER] == 100
    assert store.cards["1001"].balance == 50_000


def _not_enabled(store: Store) -> None:
    _mother_pays(store)
    store.relatives.settings[(MOTHER, "1001")] = CardSettings(always_in_touch=False)


@pytest.mark.parametrize(("setup", "prompt"), [
    (lambda s: None, p.RELATIVE_NO_ACCOUNT),
    (lambda s: s.relatives.balances.update({MOTHER: 10_000}), p.RELATIVE_NOT_ENABLED),  # no settings
    (_not_enabled, p.RELATIVE_NOT_ENABLED),
    (lambda s: _mother_pays(s, blocked=True), p.RELATIVE_BLOCKED),
    (lambda s: _mother_pays(s, 150 + 358), p.RELATIVE_NO_FUNDS),
    (lambda s: _mother_pays(s, cap_day=150 + 358), p.RELATIVE_CAP),
    (lambda s: _mother_pays(s, cap_month=150 + 358), p.RELATIVE_CAP),
])
async def test_01_refusals_say_why_the_relative_does_not_pay(store: Store, setup: object, prompt: str) -> None:
    setup(store)  # type: ignore[operator]
    calls = service(store, relatives=True)
    session = await calls.login(FakeCaller("1001", "2468"), "f1", "u1", TERMINAL)
    caller = FakeCaller("0179161234567", "79031234567")
    plan = await calls.choose_number(caller, session, "u1", 1)
    assert caller.played == [prompt]
    assert plan.e164 == "+79031234567" and plan.payer == "caller"  # then the inmate may dial another
    assert list(store.holds) == [plan.call_id]


async def test_01_caps_count_what_this_card_already_cost_today_and_this_month(store: Store) -> None:
    _mother_pays(store, cap_day=2_000, cap_month=4_000)
    store.relatives.spent.append((MOTHER, "1001", NOW - timedelta(hours=1), 1_000))  # today (Moscow)
    store.relatives.spent.append((MOTHER, "1001", NOW - timedelta(days=5), 1_500))  # this month
    store.relatives.spent.append((MOTHER, "2002", NOW - timedelta(hours=1), 9_000))  # another card
    plan, _ = await _plan_01(store, "0179161234567")
    # the day leaves 1000, the month 1500: two minutes (150 + 2 x 359 = 868)
    assert (plan.max_s, plan.reserved) == (120, 868)


async def test_01_day_cap_starts_at_the_facilitys_midnight(store: Store) -> None:
    _mother_pays(store, cap_day=600)
    # 20:30 UTC yesterday is 23:30 in Moscow: yesterday there, so it does not count today
    store.relatives.spent.append((MOTHER, "1001", NOW.replace(hour=20, minute=30) - timedelta(days=1), 600))
    plan, _ = await _plan_01(store, "0179161234567")
    assert plan.reserved == 509
    # 21:30 UTC yesterday is 00:30 today in Moscow: 92 spent today leave 508 < 150 + 359
    store.relatives.spent.append((MOTHER, "1001", NOW.replace(hour=21, minute=30) - timedelta(days=1), 92))
    with pytest.raises(Refused):
        await _plan_01(store, "0179161234567", "0179161234567", "0179161234567")


async def test_a_relative_who_blocked_the_card_is_not_called_at_the_cards_expense_either(store: Store) -> None:
    _mother_pays(store, blocked=True)
    calls = service(store, relatives=True)
    session = await calls.login(FakeCaller("1001", "2468"), "f1", "u1", TERMINAL)
    caller = FakeCaller("79161234567", "79031234567")
    plan = await calls.choose_number(caller, session, "u1", 1)
    assert caller.played == [p.RELATIVE_BLOCKED]
    assert plan.e164 == "+79031234567"


async def test_an_empty_card_may_log_in_when_a_relative_pays_and_call_01(store: Store) -> None:
    store.cards["1001"] = replace(store.cards["1001"], balance=0)
    with pytest.raises(Refused) as refused:
        await service(store, relatives=True).login(FakeCaller("1001", "2468"), "f1", "u1", TERMINAL)
    assert refused.value.prompt == p.NO_FUNDS
    _mother_pays(store)
    calls = service(store, relatives=True)
    login = FakeCaller("1001", "2468")
    session = await calls.login(login, "f1", "u2", TERMINAL)
    assert login.played[-1] == p.ONLY_RELATIVE_PAID
    caller = FakeCaller("79161234567", "0179161234567")
    plan = await calls.choose_number(caller, session, "u2", 1)
    assert caller.played == [p.NO_FUNDS]
    assert plan.payer == "callee"


# -- type-ahead: what is said before an entry is its preamble -----------------

async def test_type_ahead_through_the_welcome_and_the_balance_dials_the_number(store: Store) -> None:
    # A returning caller keys the card during the welcome and the number during the
    # balance's first word: the rest of the balance is not said, the number counts.
    caller = FakeCaller(During(p.WELCOME, "1001"), "2468", During(p.YOUR_BALANCE, "79161234567"))
    calls = service(store)
    session = await calls.login(caller, "f1", "u1", TERMINAL)
    plan = await calls.choose_number(caller, session, "u1", 1)
    assert plan.e164 == "+79161234567"
    assert caller.preambles == [(p.ENTER_CARD, [p.WELCOME]), (p.ENTER_PIN, []),
                                (p.ENTER_NUMBER, [p.YOUR_BALANCE, "word:пятьсот", "word:рублей"])]
    assert caller.played == [p.WELCOME, p.YOUR_BALANCE]  # cut at the first key
    assert caller.lost == [] and caller.uninterruptible == []


async def test_type_ahead_in_french_through_every_word_of_the_balance(store: Store) -> None:
    store.cards["1001"] = replace(store.cards["1001"], language="fr", balance=2_101)
    words = p.money(2_101, "RUB", "fr")
    assert words == ["word:vingt", "word:et", "word:un", "word:roubles", "word:et", "word:un", "word:kopeck"]
    for word in dict.fromkeys([p.YOUR_BALANCE, *words]):  # a key during each of them
        caller = FakeCaller("1001", "2468", During(word, "79161234567"))
        calls = service(store)
        session = await calls.login(caller, "f1", "u1", TERMINAL)
        assert (await calls.choose_number(caller, session, "u1", 1)).e164 == "+79161234567"
        assert caller.played[-1] == word  # nothing after the key is said
        await calls.end("1001", "u1")
        store.holds.clear()
        store.cards["1001"] = replace(store.cards["1001"], balance=2_101)


async def test_a_failed_login_leads_into_the_card_again(store: Store) -> None:
    caller = FakeCaller("1001", "1111", During(p.LOGIN_FAILED, "1001"), "2468")
    await service(store).login(caller, "f1", "u1", TERMINAL)
    assert caller.preambles[2] == (p.ENTER_CARD, [p.LOGIN_FAILED])


async def test_why_a_number_was_refused_leads_into_the_next_try(store: Store) -> None:
    caller = FakeCaller("79990001122", During(p.NUMBER_NOT_ALLOWED, "791"),
                        During(p.NUMBER_INCOMPLETE, "79161234567"))
    session = await service(store).login(FakeCaller("1001", "2468"), "f1", "u1", TERMINAL)
    plan = await service(store).choose_number(caller, session, "u1", 1)
    assert plan.e164 == "+79161234567"
    assert [said for _, said in caller.preambles] == [[], [p.NUMBER_NOT_ALLOWED], [p.NUMBER_INCOMPLETE]]


async def test_only_relative_paid_calls_lead_into_the_number(store: Store) -> None:
    store.cards["1001"] = replace(store.cards["1001"], balance=0)
    store.relatives.settings[("+79161234567", "1001")] = CardSettings(always_in_touch=True)
    caller = FakeCaller("1001", "2468")
    await service(store, relatives=True).login(caller, "f1", "u1", TERMINAL)
    assert caller.pending == [p.YOUR_BALANCE, "word:ноль", "word:рублей", p.ONLY_RELATIVE_PAID]


async def test_refusals_and_goodbye_are_not_preambles(store: Store) -> None:
    # No funds: the balance leads into the refusal, which ends the call: said uninterruptibly.
    store.cards["1001"] = replace(store.cards["1001"], balance=0)
    caller = FakeCaller("1001", "2468")
    with pytest.raises(Refused) as refused:
        await service(store).login(caller, "f1", "u1", TERMINAL)
    await caller.play([refused.value.prompt])  # as the route says it
    assert caller.uninterruptible == [p.YOUR_BALANCE, "word:ноль", "word:рублей", p.NO_FUNDS]
    # Three wrong numbers: the last reason is said before goodbye, both uninterruptibly.
    store.cards["1001"] = replace(store.cards["1001"], balance=50_000)
    session = await service(store).login(FakeCaller("1001", "2468"), "f1", "u2", TERMINAL)
    caller = FakeCaller("1", "2", "3")
    with pytest.raises(Refused) as refused:
        await service(store).choose_number(caller, session, "u2", 1)
    await caller.play([refused.value.prompt])
    assert caller.uninterruptible == [p.NUMBER_INVALID, p.GOODBYE]


async def test_keys_during_a_prompt_no_entry_follows_are_lost(store: Store) -> None:
    # "The call may last..." leads into Dial, not into an entry: said uninterruptibly.
    store.facilities["f1"] = replace(store.facilities["f1"], max_call_s=3600)
    store.cards["1001"] = replace(store.cards["1001"], balance=1_000)
    calls = service(store)
    caller = FakeCaller("1001", "2468", "79161234567")
    session = await calls.login(caller, "f1", "u1", TERMINAL)
    plan = await calls.choose_number(caller, session, "u1", 1)
    await calls.announce(caller, session, plan, "ru")
    assert caller.uninterruptible[0] == p.CALL_MAY_LAST
