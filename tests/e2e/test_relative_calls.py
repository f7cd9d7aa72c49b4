# ruff: noqa: F811 (the fixtures imported from test_inmate_calls are parameters here)
"""Calls the relative pays for ("01") end to end: a pjsua2 terminal, Asterisk,
FastAGI, Redis, and a pjsua2 relative behind the trunk who answers and keys
(RFC 4733) their decision in the accept menu. Only 1 bridges; the relative's
balance pays, to the kopeck, and the card's is never touched."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ivr import billing
from ivr.model import AllowedNumber, CallRecord
from ivr.recordings import name_sound
from ivr.relatives import CardSettings, RelativeEntry, code_hash, token_hash
from ivr.tariffs import demo_tariff
from store.redis_store import RedisStore
from store.relatives import RelativeStore
from tests.e2e.audio import RINGBACK_HZ, tone_share  # noqa: F401 (test_app_calls imports them here)
from tests.e2e.conftest import E2E
from tests.e2e.harness import AmiWatch, SipAgent
from tests.e2e.test_faults import _dead, _kill, restore  # noqa: F401 (fixture)
from tests.e2e.test_inmate_calls import (  # noqa: F401 (fixture)
    INMATE_SERVICE,
    Terminal,
    new_card,  # its inmates have recorded their name
    relative,
)
from tools import stack
from tools.asterisk_conf import TRUNK_RTP_TIMEOUT_S

pytestmark = pytest.mark.e2e

CARD_BALANCE = 10_000
RELATIVE_BALANCE = 10_000
MOBILE_RATE = 359  # demo tariff: mobile 3.59/min, fee 1.50, 60 s increments


async def paying_relative(store: RedisStore, card: str, balance: int = RELATIVE_BALANCE) -> tuple[str, RelativeStore]:
    """A relative of their own (a fresh mobile number on the card's list) with
    an account holding ``balance``, who lets the card call at their expense."""
    phone = "+7916" + str(secrets.randbelow(10**7)).zfill(7)
    rel = RelativeStore(store.redis)
    assert await rel.issue_code(phone, code_hash(phone, "123456"), datetime.now(UTC))
    assert await rel.check_code(phone, code_hash(phone, "123456"), token_hash(f"tok-{phone}")) == "ok"
    await rel.create_payment(f"pay-{phone}", phone, balance)
    assert await rel.credit_payment(f"pay-{phone}", balance) == (True, balance)
    await store.allow_number(card, AllowedNumber(phone, "Sister"))
    await rel.put_card_settings(phone, card, CardSettings(always_in_touch=True, cap_month=500_000))
    return phone, rel


@pytest.fixture
async def terminal(e2e: E2E, ami: AmiWatch, tmp_path: Path) -> object:
    """The open facility's terminal, recording what the inmate hears (tmp_path/inmate.wav)."""
    agents: list[SipAgent] = []

    async def start() -> Terminal:
        t = e2e.terminals["open"]
        agent = await SipAgent.start(
            "call", "--target", e2e.target(INMATE_SERVICE), "--user", t.name, "--password", t.password,
            "--rtp-port", "20600", "--record", str(tmp_path / "inmate.wav"),
        )
        agents.append(agent)
        channel = await ami.wait_new("Newchannel", lambda m: m.get("Channel").startswith(f"PJSIP/{t.name}-"),
                                     timeout=15)
        return Terminal(agent, ami, channel.get("Uniqueid"))

    yield start
    for agent in agents:
        await agent.close()


async def dial_relative(terminal: object, card: str, phone: str) -> Terminal:
    term: Terminal = await terminal()  # type: ignore[operator]
    await term.login(card)
    await term.answer("enter-number", "01" + phone[1:])
    return term


async def menu(ami: AmiWatch, term: Terminal) -> str:
    """Wait until the relative's leg asks for their key; its uniqueid."""
    dial = await ami.wait_for("DialBegin", lambda m: m.get("Uniqueid") == term.uid, timeout=30)
    leg = dial.get("DestUniqueid")
    await ami.wait_played(leg, "kinline/en/accept-menu", timeout=60)
    return leg


async def press(relative: SipAgent, key: str) -> float:
    """The relative keys ``key`` (RFC 4733); the wall-clock time it was sent."""
    await relative.send(f"dtmf {key} rfc2833")
    sent = await relative.wait_for("dtmf_sent", lambda e: e["digits"] == key, timeout=5)
    return float(sent["t"])


def heard(ami: AmiWatch, uid: str) -> list[str]:
    """The sound files played on channel ``uid`` (prompts, names; not number words)."""
    return [sound.removeprefix("kinline/en/") for sound in ami.played(uid) if "/words/" not in sound]


async def call_record(store: RedisStore, card: str, timeout: float = 20) -> CallRecord:
    deadline = time.monotonic() + timeout
    while not (records := await store.call_records(card)):
        assert time.monotonic() < deadline, "no call record"
        await asyncio.sleep(0.25)
    assert len(records) == 1
    return records[0]


def movements(entries: list[RelativeEntry]) -> list[tuple[str, int, str]]:
    """(kind, amount, card) of the relative's ledger, oldest first, without the top-up."""
    return [(e.kind, e.amount, e.card) for e in reversed(entries) if e.kind != "topup"]


async def assert_card_untouched(store: RedisStore, card: str, balance: int) -> None:
    assert (await store.card(card)).balance == balance  # type: ignore[union-attr]
    assert [e.kind for e in await store.ledger(card)] == (["topup"] if balance else [])



async def test_one_accepts_the_relative_pays_to_the_kopeck_and_the_inmate_hears_ringback(
    e2e: E2E, ami: AmiWatch, store: RedisStore, terminal: object, relative: SipAgent, tmp_path: Path
) -> None:
    card = await new_card(store, "open", CARD_BALANCE)
    phone, rel = await paying_relative(store, card)
    term = await dial_relative(terminal, card, phone)
    media = await term.agent.wait_for("media", timeout=10)
    answered = await relative.wait_for("state", lambda e: e["state"] == "CONFIRMED", timeout=30)
    leg = await menu(ami, term)
    pressed = await press(relative, "1")
    await term.bridged()
    await asyncio.sleep(3)
    await relative.send("hangup")
    assert await term.hangup_cause() == "16"

    # The relative heard who calls, the recording notice, the price and their
    # balance (before this call's hold), then the menu, in the card's language.
    intro, facility, *rest = heard(ami, leg)
    assert (intro, facility[:9]) == ("callee-intro", "facility/")
    assert rest == [name_sound(f"inmate-{card}"), "call-recorded", "accept-paid", "per-minute", "your-balance",
                    "accept-menu"]
    cdr = await call_record(store, card)
    assert (cdr.dial_status, cdr.payer, cdr.number, cdr.credit_reason) == ("ANSWER", "callee", phone, "")
    assert 2 <= cdr.answered_s <= 6  # billing starts at the bridge: the menu time is free
    assert cdr.amount == billing.charge(cdr.answered_s, MOBILE_RATE, demo_tariff()) == 150 + 359
    assert await rel.balance(phone) == RELATIVE_BALANCE - cdr.amount
    held = movements(await rel.entries(phone))[0][1]
    assert movements(await rel.entries(phone)) == [("reserve", held, card), ("charge", cdr.amount, card),
                                                   ("release", held - cdr.amount, card)]
    await assert_card_untouched(store, card, CARD_BALANCE)
    # The inmate heard ringback from the relative's answer to their key
    # (a 425 Hz tone, 0.8 s in 4 s: about 20 % of the time).
    await term.agent.close()  # the recorder writes its WAV header at exit
    share = tone_share(tmp_path / "inmate.wav", answered["t"] - media["t"] + 0.5, pressed - media["t"])
    assert share > 0.1, f"ringback in {share:.0%} of the menu time"
    assert tone_share(tmp_path / "inmate.wav", 0, 3) < 0.05  # the IVR's own greeting is not a 425 Hz tone


@pytest.mark.parametrize("key", ["2", None, "hangup"], ids=["two", "silence", "hangup"])
async def test_two_silence_or_a_hangup_declines_and_nothing_is_billed(
    e2e: E2E, ami: AmiWatch, store: RedisStore, terminal: object, relative: SipAgent, key: str | None
) -> None:
    card = await new_card(store, "open", CARD_BALANCE)
    phone, rel = await paying_relative(store, card)
    term = await dial_relative(terminal, card, phone)
    leg = await menu(ami, term)
    asked = time.monotonic()
    if key == "hangup":
        await relative.send("hangup")  # free: the menu time is never billed
    elif key is not None:
        await press(relative, key)
    await term.prompt("call-declined", timeout=40)
    if key is None:
        assert time.monotonic() - asked >= 10  # the relative had 10 s (after the menu) to key
    await term.prompt("dial-another")
    await term.agent.send("hangup")
    await term.hangup_cause()

    assert "BridgeEnter" not in ami.of(term.uid)
    assert heard(ami, leg)[-1] == ("accept-menu" if key == "hangup" else "accept-declined")
    cdr = await call_record(store, card)
    assert (cdr.dial_status, cdr.payer, cdr.answered_s, cdr.billed_s, cdr.amount) == ("ANSWER", "callee", 0, 0, 0)
    assert cdr.credit_reason == "" and cdr.connected_at is None  # never connected: not a "drop" either
    assert await rel.balance(phone) == RELATIVE_BALANCE
    held = movements(await rel.entries(phone))[0][1]
    assert movements(await rel.entries(phone)) == [("reserve", held, card), ("charge", 0, card),
                                                   ("release", held, card)]
    await assert_card_untouched(store, card, CARD_BALANCE)


async def test_the_inmate_hanging_up_during_the_menu_cuts_the_relative_before_the_keys(
    e2e: E2E, ami: AmiWatch, store: RedisStore, terminal: object, relative: SipAgent
) -> None:
    card = await new_card(store, "open", CARD_BALANCE)
    phone, rel = await paying_relative(store, card)
    term = await dial_relative(terminal, card, phone)
    dial = await ami.wait_for("DialBegin", lambda m: m.get("Uniqueid") == term.uid, timeout=30)
    leg = dial.get("DestUniqueid")
    await ami.wait_played(leg, "kinline/en/callee-intro", timeout=30)
    await term.agent.send("hangup")  # the inmate gives up while the relative hears the offer
    await relative.ended(timeout=40)  # hung up by Kinline after the announcement
    assert "accept-menu" not in heard(ami, leg)  # never asked for a key nobody could use
    assert "BridgeEnter" not in ami.of(term.uid)
    cdr = await call_record(store, card)
    assert (cdr.dial_status, cdr.payer, cdr.answered_s, cdr.amount) == ("ANSWER", "callee", 0, 0)
    assert await rel.balance(phone) == RELATIVE_BALANCE
    await assert_card_untouched(store, card, CARD_BALANCE)


async def test_nine_blocks_and_the_next_01_call_is_refused_with_the_reason(
    e2e: E2E, ami: AmiWatch, store: RedisStore, terminal: object, relative: SipAgent
) -> None:
    card = await new_card(store, "open", CARD_BALANCE)
    phone, rel = await paying_relative(store, card)
    term = await dial_relative(terminal, card, phone)
    # The relative knows the menu: 9 during the price, before the menu is said (type-ahead).
    dial = await ami.wait_for("DialBegin", lambda m: m.get("Uniqueid") == term.uid, timeout=30)
    leg = dial.get("DestUniqueid")
    await ami.wait_played(leg, "kinline/en/accept-paid", timeout=60)
    await press(relative, "9")
    await term.prompt("relative-blocked", timeout=30)
    # Blocked, the other choices kept: only the relative (API) or staff (CLI) unblock.
    assert await rel.card_settings(phone, card) == CardSettings(always_in_touch=True, cap_month=500_000,
                                                                 blocked=True)
    await term.answer("enter-number", "01" + phone[1:])  # the next 01 call to them
    await term.prompt("relative-blocked")
    await term.agent.send("hangup")
    await term.hangup_cause()

    assert heard(ami, leg)[-1] == "accept-blocked" and "accept-menu" not in heard(ami, leg)
    assert len([e for e in relative.events if e["event"] == "incoming"]) == 1  # never rung again
    cdr = await call_record(store, card)
    assert (cdr.dial_status, cdr.amount) == ("ANSWER", 0)
    assert await rel.balance(phone) == RELATIVE_BALANCE
    await assert_card_untouched(store, card, CARD_BALANCE)


async def test_an_empty_card_calls_with_01_and_a_drop_credits_the_last_increment(
    e2e: E2E, ami: AmiWatch, store: RedisStore, terminal: object, relative: SipAgent
) -> None:
    card = await new_card(store, "open", 0)
    phone, rel = await paying_relative(store, card)
    term: Terminal = await terminal()  # type: ignore[operator]
    await term.login(card)
    await term.prompt("only-relative-paid")  # an empty card is let in, for 01 calls
    await term.answer("enter-number", "01" + phone[1:])
    await menu(ami, term)
    await press(relative, "1")
    await term.bridged()
    await asyncio.sleep(3)
    os.kill(relative.proc.pid, signal.SIGSTOP)  # no more RTP, and no BYE
    try:
        trunk = await ami.wait_for("Hangup", lambda m: m.get("Channel").startswith("PJSIP/trunk-"),
                                   timeout=TRUNK_RTP_TIMEOUT_S + 15)
        await term.hangup_cause(timeout=15)
    finally:
        os.kill(relative.proc.pid, signal.SIGCONT)
    assert trunk.get("Cause") == "44"  # Asterisk's RTP timeout
    cdr = await call_record(store, card)
    assert (cdr.dial_status, cdr.payer, cdr.hangup_cause) == ("ANSWER", "callee", "44")
    assert 3 + TRUNK_RTP_TIMEOUT_S - 1 <= cdr.answered_s <= 3 + TRUNK_RTP_TIMEOUT_S + 5
    assert (cdr.billed_s, cdr.amount) == (0, 0)  # under one 60 s increment: all of it credited
    assert cdr.credit_reason == "dropped: network cause 44, last increment credited"
    assert await rel.balance(phone) == RELATIVE_BALANCE
    charges = [e for e in await rel.entries(phone) if e.kind == "charge"]
    assert [(e.amount, e.note, e.card) for e in charges] == [(0, cdr.credit_reason, card)]
    await assert_card_untouched(store, card, 0)


async def test_the_agi_down_when_the_relative_answers_fails_closed(
    e2e: E2E, ami: AmiWatch, store: RedisStore, terminal: object, restore: None
) -> None:
    """No menu, no "yes": the relative's leg is hung up, never bridged, and the
    attempt (settled by the reconciler from the event log) costs nothing."""
    card = await new_card(store, "open", CARD_BALANCE)
    phone, rel = await paying_relative(store, card)
    slow = await SipAgent.start("answer", "--port", str(e2e.config.trunk_port), "--mode", "answer",
                                "--ring", "2", "--rtp-port", "20700")
    try:
        term = await dial_relative(terminal, card, phone)
        await slow.wait_for("incoming", timeout=30)
        _kill(e2e, "agi")  # before the relative answers (2 s of ringing)
        await _dead(e2e, "agi")
        await slow.wait_for("state", lambda e: e["state"] == "CONFIRMED", timeout=10)
        await slow.ended(timeout=15)  # hung up by Kinline, not bridged
        assert await term.hangup_cause() == "41"  # the apology: the platform failed
    finally:
        await slow.close()
    assert "BridgeEnter" not in ami.of(term.uid)
    assert stack._pid(e2e.config, "agi") is None, "the AGI server stayed down through the call"
    cdr = await call_record(store, card, timeout=45)
    assert (cdr.dial_status, cdr.payer, cdr.answered_s, cdr.amount) == ("ANSWER", "callee", 0, 0)
    assert await rel.balance(phone) == RELATIVE_BALANCE
    await assert_card_untouched(store, card, CARD_BALANCE)
