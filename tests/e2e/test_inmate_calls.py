"""Inmate calls end to end: a pjsua2 terminal, Asterisk, FastAGI, Redis, and a
pjsua2 relative behind the trunk."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ami.client import AmiClient
from ami.protocol import AmiMessage
from ivr.model import AllowedNumber, CardStatus, Inmate, InmateStatus
from ivr.recordings import name_sound
from store.redis_store import RedisStore
from tests.e2e.audio import rms
from tests.e2e.conftest import E2E, give_name
from tests.e2e.harness import AmiWatch, SipAgent
from tools.config import load_secrets

pytestmark = pytest.mark.e2e

MOBILE = "+79161234567"
LAWYER = "+79031234567"
PIN = "2468"
INMATE_SERVICE = "100"  # any number a terminal dials reaches the IVR


@dataclass
class Terminal:
    """The inmate at a terminal: a SIP agent plus the AMI view of its channel."""

    agent: SipAgent
    ami: AmiWatch
    uid: str

    async def prompt(self, name: str, timeout: float = 20) -> AmiMessage:
        """Wait until prompt ``name`` starts playing on the terminal's channel."""
        return await self.ami.wait_played(self.uid, f"kinline/en/{name}", timeout)

    async def answer(self, name: str, digits: str) -> None:
        await self.prompt(name)
        await self.agent.send(f"dtmf {digits}# info")

    async def login(self, card: str, pin: str = PIN) -> None:
        await self.answer("enter-card", card)
        await self.answer("enter-pin", pin)

    async def bridged(self) -> None:
        await self.ami.wait_for("BridgeEnter", lambda m: m.get("Uniqueid") == self.uid, timeout=30)

    def channel(self) -> str:
        return next(m.get("Channel") for m in self.ami.events
                    if m.event == "Newchannel" and m.get("Uniqueid") == self.uid)

    async def hangup_cause(self, timeout: float = 30) -> str:
        hangup = await self.ami.wait_for("Hangup", lambda m: m.get("Uniqueid") == self.uid, timeout)
        return hangup.get("Cause")


@pytest.fixture
async def call_in(e2e: E2E, ami: AmiWatch) -> AsyncIterator[object]:
    agents: list[SipAgent] = []
    seen: set[str] = set()  # a second call in one test must not find the first one's channel

    async def start(facility: str = "open", record: Path | None = None) -> Terminal:
        t = e2e.terminals[facility]
        agent = await SipAgent.start(
            "call", "--target", e2e.target(INMATE_SERVICE), "--user", t.name, "--password", t.password,
            "--rtp-port", "20600", *(("--record", str(record)) if record else ()),
        )
        agents.append(agent)
        channel = await ami.wait_for("Newchannel", lambda m: m.get("Channel").startswith(f"PJSIP/{t.name}-")
                                     and m.get("Uniqueid") not in seen)
        seen.add(channel.get("Uniqueid"))
        return Terminal(agent, ami, channel.get("Uniqueid"))

    yield start
    for agent in agents:
        await agent.close()


@pytest.fixture
async def relative(e2e: E2E, request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SipAgent]:
    mode = getattr(request, "param", "answer")
    agent = await SipAgent.start(
        "answer", "--port", str(e2e.config.trunk_port), "--mode", mode, "--ring", "0.3",
        "--rtp-port", "20700", "--record", str(tmp_path / "relative.wav"),
    )
    try:
        yield agent
    finally:
        await agent.close()


async def new_card(store: RedisStore, facility: str, balance: int, *, suspect: bool = False,
                   named: bool = True) -> str:
    """A card of a new inmate; ``named``: who has recorded their name already (else the
    IVR asks for it at login, before the number)."""
    number = str(secrets.randbelow(9 * 10**9) + 10**9)
    inmate = Inmate(f"inmate-{number}", "Test Inmate", facility,
                    InmateStatus.SUSPECT if suspect else InmateStatus.CONVICTED)
    await store.put_inmate(inmate)
    if named:
        give_name(inmate.id)
    await store.create_card(number, inmate.id, facility, PIN, "en")
    if balance:
        await store.top_up(number, balance, f"pay-{number}")
    await store.allow_number(number, AllowedNumber(MOBILE, "Mother"))
    await store.allow_number(number, AllowedNumber(LAWYER, "Lawyer", privileged=True))
    return number


async def dial_through(store: RedisStore, call_in: object, number: str, facility: str = "open",
                       balance: int = 10_000) -> tuple[str, Terminal]:
    """A new card logs in at ``facility``'s terminal and dials ``number``."""
    card = await new_card(store, facility, balance)
    term: Terminal = await call_in(facility)  # type: ignore[operator]
    await term.login(card)
    await term.answer("enter-number", number[1:])
    return card, term


def _dials(ami: AmiWatch, uid: str) -> list[AmiMessage]:
    return [m for m in ami.events if m.event == "DialBegin" and m.get("Uniqueid") == uid]


def _callee_heard(ami: AmiWatch, term: Terminal) -> list[str]:
    """The files the relative's leg played before the bridge (kinline-callee's Playback)."""
    callee = _dials(ami, term.uid)[0].get("DestUniqueid")
    return [file for m in ami.events if m.event == "Newexten" and m.get("Uniqueid") == callee
            and m.get("Application") == "Playback" for file in m.get("AppData").split("&")]


async def write_format(e2e: E2E, channel: str) -> str:
    """The codec Asterisk writes to ``channel`` now (AMI Getvar, the status user's one right)."""
    secret = load_secrets(e2e.config)
    client = AmiClient(e2e.config.host, e2e.config.ami_port, secret.ami_status_user, secret.ami_status_secret,
                       action_timeout=5, events="off")
    await client.start()
    try:
        reply = await client.action("Getvar", Channel=channel, Variable="CHANNEL(audiowriteformat)")
        return reply.get("Value")
    finally:
        await client.close()


async def test_good_call_is_connected_recorded_and_billed_exactly(
    e2e: E2E, ami: AmiWatch, store: RedisStore, call_in: object, relative: SipAgent
) -> None:
    card = await new_card(store, "open", 10_000)
    term: Terminal = await call_in()  # type: ignore[operator]
    await term.login(card)
    await term.prompt("your-balance")
    await term.prompt("enter-number")
    # Prompts are stored in G.711 beside the WAV (tools/prompts.py): while one plays, the
    # terminal's channel is written in its own codec, without a translation from slin.
    assert await write_format(e2e, term.channel()) in ("ulaw", "alaw")
    await term.agent.send(f"dtmf {MOBILE[1:]}# info")
    incoming = await relative.wait_for("incoming", timeout=30)
    assert MOBILE in incoming["local"]
    await relative.wait_for("state", lambda e: e["state"] == "CONFIRMED")
    # The relative heard who calls and that the call is recorded, then the bridge.
    await term.bridged()
    await asyncio.sleep(4)
    await relative.send("hangup")
    assert await term.hangup_cause() == "16"
    await ami.drain(0.5)

    records = await store.call_records(card)
    assert len(records) == 1
    cdr = records[0]
    assert (cdr.dial_status, cdr.number, cdr.route_kind, cdr.payer) == ("ANSWER", MOBILE, "mobile", "caller")
    assert 3 <= cdr.answered_s <= 6  # ~4 s of talk: billing starts at the bridge
    assert cdr.billed_s == 60  # one real 60-second increment
    assert cdr.amount == 150 + 359  # fee + one started minute of mobile
    assert cdr.connected_at is not None and cdr.ended_at is not None
    assert cdr.started_at < cdr.connected_at < cdr.ended_at
    assert abs((cdr.ended_at - cdr.connected_at).total_seconds() - cdr.answered_s) <= 1
    # Before the bridge the relative heard the introduction: who calls (the facility,
    # the inmate's recorded name), and the recording notice.
    heard = _callee_heard(ami, term)
    assert len(heard) == 4
    assert heard[0] == "kinline/en/callee-intro" and heard[3] == "kinline/en/call-recorded"
    assert heard[1].startswith("kinline/en/facility/")
    inmate = (await store.card(card)).inmate_id  # type: ignore[union-attr]
    assert heard[2] == name_sound(inmate)
    assert (await store.card(card)).balance == 10_000 - 509  # type: ignore[union-attr]
    # One file per call, its hash in the record.
    host_file = e2e.config.path("recordings", Path(cdr.recording_path).name)
    assert host_file.exists() and host_file.stat().st_size > 1000
    assert hashlib.sha256(host_file.read_bytes()).hexdigest() == cdr.recording_sha256
    kinds = sorted(e.kind for e in await store.ledger(card))
    assert kinds == ["charge", "release", "reserve", "topup"]
    # The card is free again.
    assert await store.acquire_card(card, "probe", 5)
    await store.release_card(card, "probe")


def _played(ami: AmiWatch, uid: str, name: str) -> bool:
    return f"kinline/en/{name}" in ami.played(uid)


@pytest.fixture
async def clean_terminal(e2e: E2E, store: RedisStore) -> AsyncIterator[str]:
    """The open facility's terminal, its failed logins forgotten after the test
    (5 in 10 min would make it wait, and the other tests call from it)."""
    name = e2e.terminals["open"].name
    await store.clear_login_failures(name)
    yield name
    await store.clear_login_failures(name)


async def test_wrong_pin_three_times(e2e: E2E, ami: AmiWatch, store: RedisStore, call_in: object,
                                     clean_terminal: str) -> None:
    card = await new_card(store, "open", 10_000)
    term: Terminal = await call_in()  # type: ignore[operator]
    for _ in range(3):
        await term.login(card, "1357")
        await term.prompt("login-failed")
    await term.prompt("too-many-tries")
    assert await term.hangup_cause() == "16"
    assert not _dials(ami, term.uid)
    now = datetime.now(UTC)
    assert await store.pin_failures(card, now) == 3
    # Counted against the terminal too (its SIP endpoint name).
    assert len(await store.login_failures(clean_terminal, now - timedelta(minutes=10))) == 3
    assert (await store.card(card)).balance == 10_000  # type: ignore[union-attr]


async def test_locked_card_is_told_only_after_the_right_pin(e2e: E2E, ami: AmiWatch, store: RedisStore,
                                                           call_in: object, clean_terminal: str) -> None:
    card = await new_card(store, "open", 10_000)
    await store.set_card_status(card, CardStatus.LOCKED)
    term: Terminal = await call_in()  # type: ignore[operator]
    await term.login(card, "1357")
    await term.prompt("login-failed")  # a wrong PIN on a locked card sounds like any wrong entry
    assert not _played(ami, term.uid, "card-locked")
    await term.login(card, PIN)
    await term.prompt("card-locked")
    assert await term.hangup_cause() == "16"
    assert not _dials(ami, term.uid)


async def test_terminal_waits_after_five_failed_logins(e2e: E2E, ami: AmiWatch, store: RedisStore,
                                                       call_in: object, clean_terminal: str) -> None:
    card = await new_card(store, "open", 10_000)
    now = datetime.now(UTC)
    for i in range(4):  # four failed logins in the last minutes, on any cards
        await store.record_login_failure(clean_terminal, now - timedelta(minutes=4 - i), 24 * 3600)
    term: Terminal = await call_in()  # type: ignore[operator]
    await term.login("4242424242", PIN)  # an unknown card: the fifth failure
    await term.prompt("terminal-wait")
    assert await term.hangup_cause() == "16"
    assert not _played(ami, term.uid, "login-failed")
    await term.agent.close()  # frees its RTP port for the next call
    # The next call from that terminal is not even asked for a card, right PIN or not.
    again: Terminal = await call_in()  # type: ignore[operator]
    await again.prompt("terminal-wait")
    assert await again.hangup_cause() == "16"
    assert not _played(ami, again.uid, "enter-card")
    await again.agent.close()
    assert await store.pin_failures(card, datetime.now(UTC)) == 0
    # Once staff clear it, the terminal logs in again.
    await store.clear_login_failures(clean_terminal)
    third: Terminal = await call_in()  # type: ignore[operator]
    await third.login(card)
    await third.prompt("your-balance")
    await third.agent.send("hangup")
    await third.hangup_cause()


async def test_number_not_allowed(e2e: E2E, ami: AmiWatch, store: RedisStore, call_in: object) -> None:
    card = await new_card(store, "open", 10_000)
    term: Terminal = await call_in()  # type: ignore[operator]
    await term.login(card)
    await term.answer("enter-number", "79990001122")
    await term.prompt("number-not-allowed")
    await term.prompt("enter-number")  # asked again
    await term.agent.send("hangup")
    await term.hangup_cause()
    assert not _dials(ami, term.uid)
    assert (await store.card(card)).balance == 10_000  # type: ignore[union-attr]
    assert await store.call_records(card) == []


async def test_outside_the_schedule(e2e: E2E, ami: AmiWatch, store: RedisStore, call_in: object) -> None:
    card = await new_card(store, "closed", 10_000)
    term: Terminal = await call_in("closed")  # type: ignore[operator]
    await term.login(card)
    await term.prompt("outside-schedule")
    await term.prompt("goodbye")
    assert await term.hangup_cause() == "16"
    assert "kinline/en/enter-number" not in ami.played(term.uid)


async def test_not_enough_money(e2e: E2E, ami: AmiWatch, store: RedisStore, call_in: object) -> None:
    card = await new_card(store, "open", 300)
    term: Terminal = await call_in()  # type: ignore[operator]
    await term.login(card)
    await term.prompt("your-balance")
    await term.prompt("no-funds")
    assert await term.hangup_cause() == "16"
    assert not _dials(ami, term.uid)
    assert (await store.card(card)).balance == 300  # type: ignore[union-attr]


@pytest.mark.parametrize("relative", ["busy"], indirect=True)
async def test_busy_callee_is_not_billed_and_another_number_may_be_dialed(
    e2e: E2E, ami: AmiWatch, store: RedisStore, call_in: object, relative: SipAgent
) -> None:
    card, term = await dial_through(store, call_in, MOBILE)
    await relative.wait_for("incoming", timeout=30)
    await term.prompt("busy")
    await term.prompt("dial-another")
    await term.prompt("enter-number")
    await term.agent.send("hangup")
    await term.hangup_cause()
    await ami.drain(0.5)
    records = await store.call_records(card)
    assert [(r.dial_status, r.amount, r.billed_s) for r in records] == [("BUSY", 0, 0)]
    assert (await store.card(card)).balance == 10_000  # type: ignore[union-attr]


async def test_call_is_cut_at_its_limit_after_the_warning(
    e2e: E2E, ami: AmiWatch, store: RedisStore, call_in: object, relative: SipAgent, tmp_path: Path
) -> None:
    card = await new_card(store, "short", 10_000)
    term: Terminal = await call_in("short", record=tmp_path / "inmate.wav")  # type: ignore[operator]
    await term.login(card)
    await term.answer("enter-number", MOBILE[1:])
    await term.bridged()
    bridged = asyncio.get_running_loop().time()
    # Nobody hangs up: Asterisk cuts the call at 12 s, and the inmate hears goodbye.
    await term.prompt("goodbye", timeout=30)
    took = asyncio.get_running_loop().time() - bridged
    assert 11 <= took <= 16, took
    assert await term.hangup_cause() == "16"
    await relative.ended()
    records = await store.call_records(card)
    assert len(records) == 1
    assert records[0].answered_s == 12  # capped at the limit
    assert records[0].amount == 509
    # 12 s is under a minute: the warning is "the call will end soon", not "one minute left"...
    warning = [m.get("Value") for m in ami.events if m.event == "VarSet" and m.get("Uniqueid") == term.uid
               and m.get("Variable") == "KINLINE_WARNING_FILE"]
    assert warning == ["kinline/en/limit-warning-soon"]
    # ... and both sides hear it 6 s after the bridge, in the silence of the call (neither
    # agent sends sound): each one's recording, from its own start, is quiet, then speaks.
    connected = records[0].connected_at.timestamp()  # type: ignore[union-attr]
    for agent, heard in ((term.agent, tmp_path / "inmate.wav"), (relative, tmp_path / "relative.wav")):
        at = connected - (await agent.wait_for("media"))["t"]
        await agent.close()  # the recorder writes its WAV header at exit
        quiet, spoken = rms(heard, at + 1.5, at + 5.0), rms(heard, at + 6.0, at + 7.5)
        assert spoken > 300 and spoken > 5 * quiet, (heard.name, quiet, spoken)


async def test_privileged_number_is_not_recorded(
    e2e: E2E, ami: AmiWatch, store: RedisStore, call_in: object, relative: SipAgent
) -> None:
    card, term = await dial_through(store, call_in, LAWYER)
    await term.bridged()
    await asyncio.sleep(1)
    await relative.send("hangup")
    await term.hangup_cause()
    await ami.drain(0.5)
    records = await store.call_records(card)
    assert len(records) == 1
    assert records[0].recording_path == "" and records[0].recording_sha256 == ""
    # The lawyer is not told the call is recorded (it is not).
    played = _callee_heard(ami, term)
    assert played and played[0] == "kinline/en/callee-intro" and not any("call-recorded" in f for f in played)
    assert not any(m.event == "Newexten" and m.get("Application") == "MixMonitor"
                   and m.get("Uniqueid") == term.uid for m in ami.events)
    assert not list(e2e.config.path("recordings").glob(f"{records[0].call_id}*"))


async def test_caller_hanging_up_mid_call_is_billed_once_at_hangup(
    e2e: E2E, ami: AmiWatch, store: RedisStore, call_in: object, relative: SipAgent
) -> None:
    card, term = await dial_through(store, call_in, MOBILE)
    await term.bridged()
    await asyncio.sleep(4)  # over the 3 s free threshold, counted from the bridge
    await term.agent.send("hangup")  # the inmate hangs up: the hangup handler settles
    await term.hangup_cause()
    await relative.ended()
    await ami.drain(1.0)
    records = await store.call_records(card)
    assert [(r.dial_status, r.amount) for r in records] == [("ANSWER", 509)]
    assert 3 <= records[0].answered_s <= 6
    assert (await store.card(card)).balance == 10_000 - 509  # type: ignore[union-attr]
    assert await store.reservation(records[0].call_id) is None  # nothing left on hold
    ledger = [e.kind for e in await store.ledger(card)]
    assert ledger.count("charge") == 1 and ledger.count("reserve") == 1
    host_file = e2e.config.path("recordings", Path(records[0].recording_path).name)
    assert hashlib.sha256(host_file.read_bytes()).hexdigest() == records[0].recording_sha256


async def test_relative_hanging_up_during_the_intro_costs_nothing(
    e2e: E2E, ami: AmiWatch, store: RedisStore, call_in: object, relative: SipAgent
) -> None:
    card, term = await dial_through(store, call_in, MOBILE)
    await relative.wait_for("state", lambda e: e["state"] == "CONFIRMED", timeout=30)
    await asyncio.sleep(1.5)  # the intro is still playing
    await relative.send("hangup")
    await term.prompt("goodbye", timeout=30)
    assert await term.hangup_cause() == "16"
    await ami.drain(0.5)
    records = await store.call_records(card)
    assert [(r.dial_status, r.answered_s, r.amount) for r in records] == [("ANSWER", 0, 0)]
    assert (await store.card(card)).balance == 10_000  # type: ignore[union-attr]
