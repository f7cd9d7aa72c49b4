"""The relative's accept menu ("01" calls), with a scripted relative and stores in memory."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import cast

import pytest

from agi.channel import AgiChannel
from agi.deps import CallDeps
from agi.plan_vars import plan_to_text
from agi.protocol import AgiEnvironment, AgiHangup, AgiResult
from agi.routes.accept import make_accept
from ivr import prompts as p
from ivr.accept import MENU_ROUNDS, MENU_TIMEOUT_MS, AcceptMenu, Offer, OfferError, Outcome, inmate_hears
from ivr.call_plan import CallPlan
from ivr.inmate_call import Entry
from ivr.model import Card, CardStatus, Facility
from ivr.relatives import CardSettings

PHONE = "+79161234567"
FACILITY_ITEM = "file:kinline/en/facility/abc"
NAME_ITEM = "file:names/i1"


class Relative:
    """The called party: keys typed at each ask (None = no key in time)."""

    def __init__(self, *keys: str | None, early: Sequence[str] = ()) -> None:
        self.keys = list(keys)
        self.early = list(early)  # keys typed during the announcement
        self.played: list[str] = []
        self.asked: list[tuple[str, int, int]] = []
        self.language = "?"

    def set_language(self, language: str) -> None:
        self.language = language

    async def play(self, items: Sequence[str]) -> None:
        self.played.extend(items)

    async def ask(self, item: str, max_digits: int, timeout_ms: int, preamble: Sequence[str] = ()) -> Entry:
        self.played.extend(preamble)
        if item != p.ACCEPT_MENU:  # the announcement: a key typed during it, if scripted
            self.played.append(item)
            if self.early:
                return Entry(self.early.pop(0), False)
            return Entry("", True)
        self.asked.append((item, max_digits, timeout_ms))
        key = self.keys.pop(0) if self.keys else None
        return Entry("", True) if key is None else Entry(key, False)

    async def record(self, sound: str, max_ms: int, silence_s: int) -> int:
        raise AssertionError("the relative is never recorded")


class Store:
    def __init__(self) -> None:
        self.facilities = {"f1": Facility("f1", "Colony 1", "Europe/Moscow", "RUB", "ru", "mon-sun 08:00-21:00")}
        self.cards = {"1001": Card("1001", "i1", "f1", "x", "en", CardStatus.ACTIVE, 0)}
        self.balances: dict[str, int] = {PHONE: 10_000}
        self.settings: dict[tuple[str, str], CardSettings] = {
            (PHONE, "1001"): CardSettings(always_in_touch=True, cap_day=5_000)}

    async def facility(self, facility_id: str) -> Facility | None:
        return self.facilities.get(facility_id)

    async def card(self, number: str) -> Card | None:
        return self.cards.get(number)

    async def balance(self, phone: str) -> int | None:
        return self.balances.get(phone)

    async def card_settings(self, phone: str, card: str) -> CardSettings | None:
        return self.settings.get((phone, card))

    async def put_card_settings(self, phone: str, card: str, settings: CardSettings) -> None:
        self.settings[(phone, card)] = settings


def plan(record: bool = True, reserved: int = 2_000) -> CallPlan:
    return CallPlan(call_id="u1-1", uniqueid="u1", card="1001", inmate_id="i1", facility_id="f1", e164=PHONE,
                    route_kind="mobile", payer="callee", rate=359, fee=150, free_threshold_s=3, increment_s=60,
                    max_s=300, warn_s=60, record=record, reserved=reserved,
                    started_at=datetime(2026, 11, 23, 10, tzinfo=UTC))


async def run(*keys: str | None, store: Store | None = None, name: str | None = NAME_ITEM,
              record: bool = True) -> tuple[Outcome, Relative, Store]:
    store = store or Store()
    menu = AcceptMenu(store, store)
    relative = Relative(*keys)
    offer = await menu.offer(plan(record))
    outcome = await menu.run(relative, offer, FACILITY_ITEM, name)
    await menu.farewell(relative, outcome)
    return outcome, relative, store


def announcement(balance: int = 10_000 + 2_000, name: str | None = NAME_ITEM, record: bool = True) -> list[str]:
    return [p.CALLEE_INTRO, FACILITY_ITEM, *([name] if name else []), *([p.CALL_RECORDED] if record else []),
            p.ACCEPT_PAID, *p.money(359, "RUB", "en"), p.PER_MINUTE, p.YOUR_BALANCE, *p.money(balance, "RUB", "en")]


async def test_one_accepts_after_the_whole_offer_in_the_cards_language() -> None:
    outcome, relative, store = await run("1")
    assert outcome is Outcome.ACCEPTED and outcome.bridges
    assert relative.language == "en"  # the card's, not the facility's (ru)
    # Facility, recorded name, recording notice, the price per minute, the balance
    # before this call's hold (10 000 left + 2 000 held), then the menu: one key, 10 s.
    assert relative.played == announcement()
    assert relative.asked == [(p.ACCEPT_MENU, 1, MENU_TIMEOUT_MS)]
    assert store.settings[(PHONE, "1001")].blocked is False


async def test_no_recorded_name_and_a_privileged_call_say_less() -> None:
    _, relative, _ = await run("1", name=None, record=False)
    assert relative.played == announcement(name=None, record=False)


async def test_two_declines_and_says_so() -> None:
    outcome, relative, store = await run("2")
    assert outcome is Outcome.DECLINED and not outcome.bridges
    assert relative.played[-1] == p.ACCEPT_DECLINED
    assert store.settings[(PHONE, "1001")].blocked is False


async def test_silence_declines_at_once() -> None:
    outcome, relative, _ = await run(None)
    assert outcome is Outcome.DECLINED
    assert len(relative.asked) == 1  # no second round for a voicemail
    assert relative.played[-1] == p.ACCEPT_DECLINED


async def test_nine_blocks_the_card_keeping_the_other_settings() -> None:
    outcome, relative, store = await run("9")
    assert outcome is Outcome.BLOCKED and not outcome.bridges
    assert store.settings[(PHONE, "1001")] == CardSettings(always_in_touch=True, cap_day=5_000, blocked=True)
    assert relative.played[-1] == p.ACCEPT_BLOCKED


async def test_nine_blocks_a_card_with_no_settings_yet() -> None:
    store = Store()
    store.settings.clear()
    outcome, _, store = await run("9", store=store)
    assert outcome is Outcome.BLOCKED
    assert store.settings[(PHONE, "1001")] == CardSettings(blocked=True)


@pytest.mark.parametrize("key", ["0", "5", "*", ""])
async def test_zero_or_another_key_repeats_the_offer(key: str) -> None:
    outcome, relative, _ = await run(key, "1")
    assert outcome is Outcome.ACCEPTED
    assert relative.played == announcement() * 2
    assert len(relative.asked) == 2


async def test_repeats_are_bounded_then_the_call_is_declined() -> None:
    outcome, relative, _ = await run(*["0"] * (MENU_ROUNDS + 5))
    assert outcome is Outcome.DECLINED
    assert len(relative.asked) == MENU_ROUNDS
    assert relative.played[-1] == p.ACCEPT_DECLINED


async def test_accepting_says_nothing_more() -> None:
    _, relative, _ = await run("1")
    assert relative.played[-1] != p.ACCEPT_DECLINED and p.ACCEPT_BLOCKED not in relative.played


@pytest.mark.parametrize("missing", ["card", "facility", "account"])
async def test_an_offer_with_a_missing_fact_is_refused(missing: str) -> None:
    store = Store()
    if missing == "card":
        store.cards.clear()
    elif missing == "facility":
        store.facilities.clear()
    else:
        store.balances.clear()
    with pytest.raises(OfferError):
        await AcceptMenu(store, store).offer(plan())


async def test_offer_is_what_the_relative_had_before_the_hold() -> None:
    store = Store()
    offer = await AcceptMenu(store, store).offer(plan(reserved=777))
    assert offer == Offer(plan(reserved=777), store.facilities["f1"], "en", 10_777)


@pytest.mark.parametrize(("outcome", "prompt"), [
    ("accepted", None), ("declined", p.CALL_DECLINED), ("hungup", p.CALL_DECLINED),
    ("blocked", p.RELATIVE_BLOCKED), ("", p.UNREACHABLE), ("nonsense", p.UNREACHABLE),
])
def test_what_the_inmate_hears_after_the_menu(outcome: str, prompt: str | None) -> None:
    assert inmate_hears(outcome) == prompt


# -- the FastAGI route on the relative's leg, over a scripted channel ----------------

CALLER = "PJSIP/term-open-00000001"


class FakeChannel:
    """The relative's leg as the route sees it: the caller's plan, prompts, keys."""

    def __init__(self, plan_text: str | None, *keys: str | None, inmate_left_after: int = 99) -> None:
        self.plan_text = plan_text
        self.checks_left = inmate_left_after  # the inmate is there for this many checks
        self.keys = list(keys)
        self.set: list[tuple[str, str]] = []
        self.streamed: list[str] = []
        self.log = logging.LoggerAdapter(logging.getLogger("test"), {})

    async def command(self, *words: str | int, timeout: float | None = None) -> AgiResult:
        if words == ("GET FULL VARIABLE", "${CHANNEL(hangupsource)}", CALLER):
            self.checks_left -= 1
            return AgiResult("1", "" if self.checks_left >= 0 else CALLER)
        assert words == ("GET FULL VARIABLE", "${KINLINE_PLAN}", CALLER)
        return AgiResult("0") if self.plan_text is None else AgiResult("1", self.plan_text)

    async def set_variable(self, name: str, value: str | int) -> None:
        self.set.append((name, str(value)))

    async def stream_file(self, name: str, escape_digits: str = "") -> str:
        self.streamed.append(name)
        return ""

    async def get_data(self, prompt: str, timeout_ms: int, max_digits: int) -> tuple[str, bool]:
        self.streamed.append(prompt)
        if not prompt.endswith("accept-menu"):  # the announcement's last words: no key typed early
            return "", True
        key = self.keys.pop(0) if self.keys else None
        if key == "hangup":
            raise AgiHangup("channel hung up")
        return ("", True) if key is None else (key, False)

    async def read_digits(self, files: list[str], timeout_ms: int, max_digits: int) -> tuple[str, bool]:
        """The announcement and the entry's prompt in one Read: no key typed early."""
        self.streamed.extend(files[:-1])
        return await self.get_data(files[-1], timeout_ms, max_digits)


class FakeDeps:
    def __init__(self, store: Store | None) -> None:
        self.calls = SimpleNamespace(directory=store, relatives=store)

    async def facility_name(self, facility: Facility) -> str:
        return FACILITY_ITEM

    def name_item(self, inmate_id: str) -> str | None:
        return NAME_ITEM


async def run_route(channel: FakeChannel, store: Store | None = None,
                    args: tuple[str, ...] = (CALLER, "u1-1")) -> list[tuple[str, str]]:
    route = make_accept(cast(CallDeps, FakeDeps(store or Store())))
    env = AgiEnvironment("accept", "u2", "PJSIP/trunk-00000002", "en", "", "s", "kinline-accept", args)
    await route(cast(AgiChannel, channel), env)
    return channel.set


ON_CALLER = f"SHARED(KINLINE_ACCEPT,{CALLER})"


async def test_route_accepted_opens_the_bridge_and_tells_the_caller() -> None:
    channel = FakeChannel(plan_to_text(plan()), "1")
    assert await run_route(channel) == [(ON_CALLER, "hungup"), (ON_CALLER, "accepted"),
                                        ("KINLINE_ACCEPT", "accepted")]
    assert channel.streamed[0] == "kinline/en/callee-intro" and channel.streamed[-1] == "kinline/en/accept-menu"


@pytest.mark.parametrize(("key", "outcome", "farewell"), [("2", "declined", "accept-declined"),
                                                          (None, "declined", "accept-declined"),
                                                          ("9", "blocked", "accept-blocked")])
async def test_route_other_outcomes_keep_the_bridge_shut(key: str | None, outcome: str, farewell: str) -> None:
    channel = FakeChannel(plan_to_text(plan()), key)
    assert await run_route(channel) == [(ON_CALLER, "hungup"), (ON_CALLER, outcome)]
    assert channel.streamed[-1] == f"kinline/en/{farewell}"


async def test_route_a_hangup_in_the_menu_leaves_the_caller_a_no() -> None:
    channel = FakeChannel(plan_to_text(plan()), "hangup")
    assert await run_route(channel) == [(ON_CALLER, "hungup")]


@pytest.mark.parametrize("case", ["no plan", "caller pays", "other call", "no account", "no arguments",
                                  "no relatives' store"])
async def test_route_fails_closed_without_a_relative_paid_plan_and_account(case: str) -> None:
    text = {"no plan": None, "caller pays": plan_to_text(replace(plan(), payer="caller"))}.get(
        case, plan_to_text(plan()))
    store = Store()
    if case == "no account":
        store.balances.clear()
    args = () if case == "no arguments" else (CALLER, "u1-2" if case == "other call" else "u1-1")
    channel = FakeChannel(text, "1")
    if case == "no relatives' store":
        route = make_accept(cast(CallDeps, SimpleNamespace(calls=SimpleNamespace(directory=store, relatives=None))))
        env = AgiEnvironment("accept", "u2", "PJSIP/trunk-00000002", "en", "", "s", "kinline-accept", (CALLER, "u1-1"))
        await route(cast(AgiChannel, channel), env)
    else:
        await run_route(channel, store, args)
    assert channel.set == [] and channel.streamed == []  # nothing said, nothing set: not accepted


@pytest.mark.parametrize(("left_after", "asked"), [(0, False), (1, False), (2, True)])
async def test_route_the_inmate_gone_before_the_offer_the_menu_or_the_key_is_never_bridged(
        left_after: int, asked: bool) -> None:
    channel = FakeChannel(plan_to_text(plan()), "1", inmate_left_after=left_after)
    assert await run_route(channel) == [(ON_CALLER, "hungup"), (ON_CALLER, "callergone")]
    assert bool(channel.streamed) is (left_after > 0)  # gone before the offer: nothing said
    assert ("kinline/en/accept-menu" in channel.streamed) is asked  # gone before the menu: no 10 s wait


@pytest.mark.parametrize(("present_checks", "rounds"), [(0, 0), (1, 0), (2, 1), (3, 1), (4, 2)])
async def test_the_inmate_hanging_up_stops_the_menu(present_checks: int, rounds: int) -> None:
    store = Store()
    menu = AcceptMenu(store, store)
    relative = Relative("0", "0", "1")
    checks = 0

    async def inmate_waits() -> bool:
        nonlocal checks
        checks += 1
        return checks <= present_checks

    outcome = await menu.run(relative, await menu.offer(plan()), FACILITY_ITEM, NAME_ITEM, inmate_waits)
    assert outcome is Outcome.CALLER_GONE and not outcome.bridges
    assert len(relative.asked) == rounds


async def test_a_key_during_the_announcement_decides_without_the_menu() -> None:
    store = Store()
    menu = AcceptMenu(store, store)
    relative = Relative(early=["1"])
    outcome = await menu.run(relative, await menu.offer(plan()), FACILITY_ITEM, NAME_ITEM)
    assert outcome is Outcome.ACCEPTED
    assert relative.asked == []  # the menu was not said, nothing waited for
