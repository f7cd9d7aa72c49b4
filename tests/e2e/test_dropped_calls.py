# ruff: noqa: F811 (the fixtures imported from test_inmate_calls are parameters here)
"""Dropped calls end to end: the relative's line goes silent without a BYE (its
pjsua2 agent is frozen with SIGSTOP), Asterisk cuts the trunk leg for lack of
RTP, and the call is settled as dropped: the increment in which it dropped is
not billed, and the ledger's charge entry says why. A call that someone hangs
up is billed as before."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from ivr.model import CallRecord
from ivr.settlement import Ended
from reconciler.cel import parse_line
from store.redis_store import RedisStore
from tests.e2e.conftest import E2E
from tests.e2e.harness import AmiWatch, SipAgent
from tests.e2e.test_inmate_calls import (  # noqa: F401 (fixtures)
    MOBILE,
    Terminal,
    call_in,
    dial_through,
    relative,
)
from tools.asterisk_conf import TRUNK_RTP_TIMEOUT_S

pytestmark = pytest.mark.e2e

BALANCE = 10_000
FEE_AND_ONE_MINUTE = 150 + 359  # demo tariff: mobile 3.59/min, 60 s increments, fee 1.50


async def _record(store: RedisStore, card: str, timeout: float = 20) -> CallRecord:
    deadline = time.monotonic() + timeout
    while not (records := await store.call_records(card)):
        assert time.monotonic() < deadline, "no call record"
        await asyncio.sleep(0.25)
    assert len(records) == 1
    return records[0]


async def _connected(store: RedisStore, call_in: object, relative: SipAgent) -> tuple[str, Terminal]:
    card, term = await dial_through(store, call_in, MOBILE, balance=BALANCE)
    await relative.wait_for("state", lambda e: e["state"] == "CONFIRMED", timeout=30)
    await term.bridged()
    return card, term


async def test_dropped_call_gets_its_last_increment_credited(
    e2e: E2E, ami: AmiWatch, store: RedisStore, call_in: object, relative: SipAgent
) -> None:
    card, term = await _connected(store, call_in, relative)
    await asyncio.sleep(3)
    os.kill(relative.proc.pid, signal.SIGSTOP)  # no more RTP, and no BYE
    stopped = time.monotonic()
    try:
        # Asterisk cuts the trunk leg after the RTP timeout; the inmate is hung up after it.
        trunk = await ami.wait_for("Hangup", lambda m: m.get("Channel").startswith("PJSIP/trunk-"),
                                   timeout=TRUNK_RTP_TIMEOUT_S + 15)
        cut_after = time.monotonic() - stopped
        await term.hangup_cause(timeout=15)
    finally:
        os.kill(relative.proc.pid, signal.SIGCONT)
    assert trunk.get("Cause") == "44"  # requested channel unavailable: Asterisk's RTP timeout
    assert TRUNK_RTP_TIMEOUT_S - 1 <= cut_after <= TRUNK_RTP_TIMEOUT_S + 5
    cdr = await _record(store, card)
    assert (cdr.dial_status, cdr.hangup_cause, cdr.evidence) == ("ANSWER", "44", "call")
    # ~3 s of talk and ~10 s of silence: under one 60 s increment, all of it credited.
    assert 3 + TRUNK_RTP_TIMEOUT_S - 1 <= cdr.answered_s <= 3 + TRUNK_RTP_TIMEOUT_S + 5
    assert (cdr.billed_s, cdr.amount) == (0, 0)
    assert cdr.credit_reason == "dropped: network cause 44, last increment credited"
    assert (await store.card(card)).balance == BALANCE  # type: ignore[union-attr]
    charges = [e for e in await store.ledger(card) if e.kind == "charge"]
    assert [(e.ref, e.amount, e.note) for e in charges] == [(cdr.call_id, 0, cdr.credit_reason)]
    # The event log on disk (the reconciler's evidence) carries the far leg's cause too.
    log = e2e.config.path("logs", "asterisk", "cel-custom", "kinline.csv").read_text().splitlines()
    ends = [line for line in log if f"kl2 {cdr.call_id} " in line]
    assert len(ends) == 1 and ends[0].endswith(' ANSWER 16 44""}"')
    fact = parse_line(ends[0])
    assert isinstance(fact, Ended) and (fact.dial_status, fact.hangup_cause) == ("ANSWER", "44")


@pytest.mark.parametrize("who", ["relative", "inmate"])
async def test_a_call_someone_hangs_up_is_billed_as_before(
    e2e: E2E, ami: AmiWatch, store: RedisStore, call_in: object, relative: SipAgent, who: str
) -> None:
    card, term = await _connected(store, call_in, relative)
    await asyncio.sleep(3)
    await (relative if who == "relative" else term.agent).send("hangup")
    assert await term.hangup_cause() == "16"
    cdr = await _record(store, card)
    assert (cdr.dial_status, cdr.hangup_cause, cdr.credit_reason) == ("ANSWER", "16", "")
    assert 2 <= cdr.answered_s <= 6
    assert (cdr.billed_s, cdr.amount) == (60, FEE_AND_ONE_MINUTE)
    assert (await store.card(card)).balance == BALANCE - FEE_AND_ONE_MINUTE  # type: ignore[union-attr]
    charges = [e for e in await store.ledger(card) if e.kind == "charge"]
    assert [(e.amount, e.note) for e in charges] == [(FEE_AND_ONE_MINUTE, "")]
