# ruff: noqa: F811 (the fixtures imported from test_inmate_calls are parameters here)
"""Faults mid-call: each ends with exactly one call record, exactly one charge,
the balance conserved in the ledger, the card usable again and the recording
referenced. The stack's components are killed for real (SIGKILL / SIGTERM) and
restarted; the reconciler settles from Asterisk's event log."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import pytest

from ivr.model import CallRecord
from store.redis_store import RedisStore
from tests.e2e.conftest import E2E
from tests.e2e.harness import AmiWatch, SipAgent
from tests.e2e.test_inmate_calls import (  # noqa: F401 (fixtures)
    MOBILE,
    Terminal,
    call_in,
    dial_through,
    new_card,
    relative,
)
from tools import stack

pytestmark = pytest.mark.e2e

T = TypeVar("T")
BALANCE = 10_000
FEE_AND_ONE_MINUTE = 150 + 359


def _report(what: str, seconds: float) -> None:
    """Measured figures, for the README (visible with pytest -s)."""
    sys.stderr.write(f"\nMEASURED {what}: {seconds:.1f} s\n")


async def _eventually(probe: Callable[[], Awaitable[T | None]], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = await probe()
        except Exception:  # Redis restarting...
            value = None
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.25)


def _kill(e2e: E2E, name: str, sig: signal.Signals = signal.SIGKILL) -> int:
    pid = stack._pid(e2e.config, name)
    assert pid is not None, f"{name} is not running"
    os.kill(pid, sig)
    return pid


async def _dead(e2e: E2E, name: str, timeout: float = 15) -> None:
    async def gone() -> bool:
        stack.service_state(e2e.config, name)  # reaps it if it was our child
        return stack._pid(e2e.config, name) is None
    await _eventually(gone, timeout, f"{name} to die")


@pytest.fixture
async def restore(e2e: E2E) -> AsyncIterator[None]:
    """Whatever a test killed is running again afterwards, for the next tests."""
    yield
    for name in stack.SERVICES:
        if stack._pid(e2e.config, name) is None:
            await asyncio.to_thread(stack.start_service, e2e.config, name)


async def _settled_once(e2e: E2E, store: RedisStore, card: str, timeout: float = 45) -> CallRecord:
    """Wait for the card's one record; check money, ledger, lock and recording."""
    async def record() -> CallRecord | None:
        records = await store.call_records(card)
        return records[0] if records else None

    cdr = await _eventually(record, timeout, "the call record")
    await _eventually(lambda: _unlocked(store, card), 30, "the card to be free again")
    await asyncio.sleep(2.5)  # two more reconciler cycles: nothing more may happen
    records = await store.call_records(card)
    assert [r.call_id for r in records] == [cdr.call_id], "exactly one call record"
    ledger = list(reversed(await store.ledger(card, limit=100)))
    charges = [e for e in ledger if e.kind == "charge"]
    assert [(e.ref, e.amount) for e in charges] == [(cdr.call_id, cdr.amount)], "exactly one charge"
    balance = (await store.card(card)).balance  # type: ignore[union-attr]
    moved = {"topup": 1, "release": 1, "reserve": -1, "charge": 0}
    assert sum(moved[e.kind] * e.amount for e in ledger) == balance == BALANCE - cdr.amount
    assert ledger[-1].balance_after == balance
    assert await store.reservation(cdr.call_id) is None, "no hold left open"
    assert await store.acquire_card(card, "probe", 5), "the card is usable again"
    await store.release_card(card, "probe")
    return cdr


async def _unlocked(store: RedisStore, card: str) -> bool:
    return await store.card_lock(card) is None


async def _bridged_call(store: RedisStore, call_in: object, relative: SipAgent) -> tuple[str, Terminal]:
    """A new card calls the relative, who answers and hears the introduction: now bridged."""
    card, term = await dial_through(store, call_in, MOBILE, balance=BALANCE)
    await relative.wait_for("incoming", timeout=30)
    await term.bridged()
    return card, term


def _check_recording(e2e: E2E, cdr: CallRecord) -> None:
    assert cdr.recording_path.endswith(f"/{cdr.call_id}.wav")
    data = e2e.config.path("recordings", f"{cdr.call_id}.wav").read_bytes()
    assert len(data) > 1000 and hashlib.sha256(data).hexdigest() == cdr.recording_sha256


async def test_agi_killed_mid_bridge_and_down_until_after_hangup(
    e2e: E2E, ami: AmiWatch, store: RedisStore, call_in: object, relative: SipAgent, restore: None
) -> None:
    card, term = await _bridged_call(store, call_in, relative)
    bridged = time.monotonic()
    _kill(e2e, "agi")
    await asyncio.sleep(4)
    await relative.send("hangup")
    ended = time.monotonic()
    await term.hangup_cause()
    assert stack._pid(e2e.config, "agi") is None, "the AGI server stayed down through the hangup"
    cdr = await _settled_once(e2e, store, card)
    _report("AGI killed: hangup -> settled record", time.monotonic() - ended)
    assert cdr.evidence == "exact" and cdr.dial_status == "ANSWER"
    assert 3 <= cdr.answered_s <= ended - bridged + 1
    assert cdr.amount == FEE_AND_ONE_MINUTE
    _check_recording(e2e, cdr)


async def test_redis_killed_mid_bridge_and_restarted(
    e2e: E2E, ami: AmiWatch, store: RedisStore, call_in: object, relative: SipAgent, restore: None
) -> None:
    card, term = await _bridged_call(store, call_in, relative)
    _kill(e2e, "redis")
    await _dead(e2e, "redis")
    await asyncio.sleep(4)
    await relative.send("hangup")  # settling now fails: the hangup path retries
    ended = time.monotonic()
    await asyncio.sleep(2)
    await asyncio.to_thread(stack.start_service, e2e.config, "redis")
    await term.hangup_cause()
    cdr = await _settled_once(e2e, store, card)
    _report("Redis killed: hangup -> settled record", time.monotonic() - ended)
    assert cdr.dial_status == "ANSWER" and cdr.amount == FEE_AND_ONE_MINUTE
    assert 4 <= cdr.answered_s <= 8
    _check_recording(e2e, cdr)


async def test_asterisk_killed_mid_bridge_is_billed_up_to_the_last_proven_moment(
    e2e: E2E, ami: AmiWatch, store: RedisStore, call_in: object, relative: SipAgent, restore: None
) -> None:
    card, _ = await _bridged_call(store, call_in, relative)
    bridged = time.monotonic()
    await asyncio.sleep(6)
    _kill(e2e, "asterisk")
    killed = time.monotonic()
    await _dead(e2e, "asterisk")
    await asyncio.to_thread(stack.start_service, e2e.config, "asterisk")
    cdr = await _settled_once(e2e, store, card)
    _report("Asterisk killed: kill -> settled record", time.monotonic() - killed)
    talked = killed - bridged
    assert cdr.evidence == "heartbeat" and cdr.dial_status == "ANSWER"
    # never more than the call really lasted; at most ~4 s less (a beat stored every 2 s,
    # checked every 1 s, 1 s margin)
    assert talked - 5 <= cdr.answered_s <= talked + 0.5
    # a platform fault drops the call (ivr.drops): ~6 s complete no 60 s increment
    assert cdr.amount == 0 and cdr.credit_reason == "dropped: platform fault, last increment credited"
    assert cdr.connected_at is not None and cdr.ended_at is not None
    _check_recording(e2e, cdr)


async def test_agi_stopped_while_callers_are_in_the_ivr_leaks_no_lock(
    e2e: E2E, ami: AmiWatch, store: RedisStore, call_in: object, restore: None
) -> None:
    cards = [await new_card(store, facility, BALANCE) for facility in ("open", "short")]
    terms: list[Terminal] = []
    for card, facility in zip(cards, ("open", "short"), strict=True):
        term: Terminal = await call_in(facility)  # type: ignore[operator]
        await term.login(card)
        await term.prompt("enter-number")
        terms.append(term)
    for card in cards:
        assert await store.card_lock(card) is not None
    _kill(e2e, "agi", signal.SIGTERM)
    stopped = time.monotonic()
    for term in terms:
        await term.hangup_cause()
    await _dead(e2e, "agi")
    for card in cards:
        await _eventually(lambda c=card: _unlocked(store, c), 30, f"card {card} to be freed")  # type: ignore[misc]
    _report("AGI SIGTERM: stop -> cards free", time.monotonic() - stopped)
    for card in cards:
        assert await store.call_records(card) == []
        assert (await store.card(card)).balance == BALANCE  # type: ignore[union-attr]
