"""RedisStore against a real redis-server: provisioning, money, races, crashes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.errors import InsufficientFunds, NotFound, PinHashError, StoreConflict
from ivr.model import (
    AllowedNumber,
    CallRecord,
    Card,
    CardStatus,
    Facility,
    Inmate,
    InmateStatus,
)
from ivr.pin import hash_scrypt
from ivr.ports import Directory, Wallet
from ivr.tariffs import Rate, RouteKind, Tariff, demo_tariff
from store.redis_store import RedisStore, connect
from tests.component.conftest import TEST_PINS, RedisServer, _free_port

CARD = "1001"
STEP = 10.0  # upper bound for any single wait on a subprocess
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


async def provision(store: RedisStore, balance: int = 0, card: str = CARD) -> None:
    await store.put_facility(Facility("f1", "Facility One", "Europe/Moscow", "RUB", "ru", "mon-sun 08:00-21:00"))
    await store.put_inmate(Inmate("i1", "Ivan Petrov", "f1", InmateStatus.CONVICTED))
    await store.put_card(Card(card, "i1", "f1", "scrypt$unused", "ru", CardStatus.ACTIVE, 0))
    if balance:
        await store.top_up(card, balance, f"seed-{card}")


def record(call_id: str, amount: int, card: str = CARD, answered_s: int = 61) -> CallRecord:
    return CallRecord(
        call_id=call_id,
        uniqueid=call_id,
        card=card,
        inmate_id="i1",
        facility_id="f1",
        number="+79161234567",
        route_kind="mobile",
        payer="caller",
        started_at=T0,
        answered_s=answered_s,
        billed_s=120,
        amount=amount,
        dial_status="ANSWER",
        hangup_cause="16",
        recording_path="/var/lib/kinline/recordings/x.wav",
        recording_sha256="ab" * 32,
    )


async def balance(store: RedisStore, card: str = CARD) -> int:
    c = await store.card(card)
    assert c is not None
    return c.balance


def test_redis_store_satisfies_the_ports() -> None:
    assert isinstance(RedisStore, type)
    # structural check at run time too (mypy checks it in store/redis_store.py)
    for proto in (Directory, Wallet):
        for name in (n for n in vars(proto) if not n.startswith("_")):
            assert callable(getattr(RedisStore, name)), name


# --- provisioning ------------------------------------------------------------


async def test_facility_inmate_tariff_round_trip(store: RedisStore) -> None:
    facility = Facility("f1", "Facility One", "Europe/Paris", "EUR", "fr", "mon-fri 08:00-20:00", 1200)
    await store.put_facility(facility)
    assert await store.facility("f1") == facility
    assert await store.facility("nope") is None

    until = datetime(2025, 12, 31, 21, 0, tzinfo=UTC)
    inmate = Inmate("i1", "Jean Dupont", "f1", InmateStatus.SUSPECT, permission_until=until)
    await store.put_inmate(inmate)
    assert await store.inmate("i1") == inmate
    suspended = Inmate("i1", "Jean Dupont", "f1", InmateStatus.SUSPECT, until, until + timedelta(days=1))
    await store.put_inmate(suspended)
    assert await store.inmate("i1") == suspended
    await store.put_inmate(inmate)  # un-suspend clears the field
    assert (await store.inmate("i1")) == inmate
    assert await store.inmate("nope") is None
    with pytest.raises(NotFound):
        await store.put_inmate(Inmate("i2", "X", "no-facility", InmateStatus.CONVICTED))

    tariff = Tariff(
        rates=(*demo_tariff().rates, Rate("3375", RouteKind.INTERNATIONAL, 999)),
        connection_fee=150, free_threshold_s=5, increment_s=30,
    )
    await store.put_tariff("f1", tariff)
    assert await store.tariff("f1") == tariff
    assert await store.tariff("nope") is None
    with pytest.raises(NotFound):
        await store.put_tariff("nope", tariff)


async def test_card_round_trip_pin_and_status(store: RedisStore) -> None:
    await provision(store)
    created = await store.create_card("2002", "i1", "f1", "2468", "en")
    got = await store.card("2002")
    assert got == created
    assert got is not None and got.status is CardStatus.ACTIVE and got.balance == 0
    assert got.pin_hash.startswith(f"hmac-sha256${TEST_PINS.key_id}$") and "2468" not in got.pin_hash
    assert TEST_PINS.verify("2468", got.pin_hash)
    with pytest.raises(StoreConflict):
        await store.create_card("2002", "i1", "f1", "1111", "en")
    with pytest.raises(NotFound):
        await store.create_card("3003", "nobody", "f1", "1111", "en")
    assert await store.cards_of("i1") == [CARD, "2002"]
    assert await store.card("9999") is None

    await store.set_pin("2002", "13579")
    got = await store.card("2002")
    assert got is not None and TEST_PINS.verify("13579", got.pin_hash) and not TEST_PINS.verify("2468", got.pin_hash)

    await store.set_card_status("2002", CardStatus.BLOCKED)
    assert (await store.card("2002")).status is CardStatus.BLOCKED  # type: ignore[union-attr]
    await store.unlock_card("2002")
    assert (await store.card("2002")).status is CardStatus.ACTIVE  # type: ignore[union-attr]
    with pytest.raises(NotFound):
        await store.set_card_status("9999", CardStatus.BLOCKED)
    with pytest.raises(NotFound):
        await store.unlock_card("9999")


async def test_put_card_opening_balance_goes_to_the_ledger_once(store: RedisStore) -> None:
    await provision(store)
    card = Card("3003", "i1", "f1", "scrypt$x", "ru", CardStatus.ACTIVE, 1234)
    await store.put_card(card)
    assert await balance(store, "3003") == 1234
    await store.put_card(Card("3003", "i1", "f1", "scrypt$y", "fr", CardStatus.ACTIVE, 99999))
    got = await store.card("3003")
    assert got is not None and got.balance == 1234 and got.language == "fr" and got.pin_hash == "scrypt$y"
    entries = await store.ledger("3003")
    assert [(e.kind, e.amount, e.balance_after) for e in entries] == [("adjust", 1234, 1234)]
    await store.put_inmate(Inmate("i9", "Other", "f1", InmateStatus.CONVICTED))
    with pytest.raises(StoreConflict):
        await store.put_card(Card("3003", "i9", "f1", "scrypt$x", "ru", CardStatus.ACTIVE, 0))


async def test_allowed_numbers(store: RedisStore) -> None:
    await provision(store)
    mother = AllowedNumber("+79161234567", "Мама")
    lawyer = AllowedNumber("+79031234567", "Lawyer", privileged=True)
    await store.allow_number(CARD, mother)
    await store.allow_number(CARD, lawyer)
    assert await store.allowed_number(CARD, "+79161234567") == mother
    assert await store.allowed_number(CARD, "+79031234567") == lawyer
    assert await store.allowed_number(CARD, "+70000000000") is None
    assert await store.list_numbers(CARD) == [lawyer, mother]
    assert await store.remove_number(CARD, "+79161234567") is True
    assert await store.remove_number(CARD, "+79161234567") is False
    assert await store.list_numbers(CARD) == [lawyer]
    with pytest.raises(ValueError):
        await store.allow_number(CARD, AllowedNumber("89161234567", "no plus"))
    with pytest.raises(NotFound):
        await store.allow_number("9999", mother)


# --- the one-call lock ---------------------------------------------------------


async def test_acquire_and_release_card(store: RedisStore) -> None:
    assert await store.acquire_card(CARD, "call-a", 60)
    assert await store.acquire_card(CARD, "call-a", 60)  # the holder again: still its own
    assert not await store.acquire_card(CARD, "call-b", 60)
    await store.release_card(CARD, "call-b")  # not the holder: nothing happens
    assert not await store.acquire_card(CARD, "call-b", 60)
    await store.release_card(CARD, "call-a")
    assert await store.acquire_card(CARD, "call-b", 60)
    ttl = await store.redis.ttl(f"kl:card:{CARD}:active")
    assert 0 < ttl <= 60


async def test_two_simultaneous_calls_in_one_process(store: RedisStore) -> None:
    await provision(store, balance=1000)

    async def call(uid: str) -> str:
        if not await store.acquire_card(CARD, uid, 60):
            return "busy"
        await store.reserve(uid, CARD, 600, 60)
        return "ok"

    results = await asyncio.gather(call("u1"), call("u2"))
    assert sorted(results) == ["busy", "ok"]
    assert await balance(store) == 400


RACE_SCRIPT = """
import asyncio, sys, time
from ivr.errors import InsufficientFunds
from store.redis_store import RedisStore, connect

async def main(url, mode, card, uid, start):
    store = RedisStore(connect(url))
    try:
        await store.redis.ping()
        while time.time() < start:
            await asyncio.sleep(0.0005)
        if mode == "lock" and not await store.acquire_card(card, uid, 60):
            print("busy")
            return
        try:
            r = await store.reserve(uid, card, 600, 60)
        except InsufficientFunds:
            print("insufficient")
            return
        print("ok", r.balance_after)
    finally:
        await store.aclose()

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])))
"""


async def _python(*args: str) -> asyncio.subprocess.Process:
    env = dict(os.environ, PYTHONPATH=REPO)
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=REPO
    )


@pytest.mark.parametrize(("mode", "loser"), [("lock", "busy"), ("money", "insufficient")])
async def test_two_processes_race_for_one_card(
    store: RedisStore, redis_server: RedisServer, mode: str, loser: str
) -> None:
    """Two OS processes start the same instant: only one proceeds."""
    await provision(store, balance=1000)
    start = time.time() + 1.0  # both are connected by then
    procs = [await _python(RACE_SCRIPT, redis_server.url, mode, CARD, f"proc-{i}", str(start)) for i in range(2)]
    outs = []
    for proc in procs:
        out, err = await asyncio.wait_for(proc.communicate(), STEP)
        assert proc.returncode == 0, err.decode()
        outs.append(out.decode().split()[0])
    assert sorted(outs) == sorted(["ok", loser])
    assert await balance(store) == 400
    kinds = [e.kind for e in await store.ledger(CARD)]
    assert kinds.count("reserve") == 1


# --- reserve / settle ----------------------------------------------------------


async def test_reserve_more_than_balance_is_refused_and_moves_nothing(store: RedisStore) -> None:
    await provision(store, balance=500)
    before = len(await store.ledger(CARD))
    with pytest.raises(InsufficientFunds):
        await store.reserve("c1", CARD, 501, 60)
    assert await balance(store) == 500
    assert len(await store.ledger(CARD)) == before
    assert await store.reservation("c1") is None
    with pytest.raises(NotFound):
        await store.reserve("c2", "9999", 1, 60)


async def test_reserve_is_idempotent_by_call_id(store: RedisStore) -> None:
    await provision(store, balance=1000)
    first = await store.reserve("c1", CARD, 300, 60)
    again = await store.reserve("c1", CARD, 300, 60)
    assert first == again
    assert first.amount == 300 and first.balance_after == 700
    assert await balance(store) == 700
    ledger = await store.ledger(CARD)
    assert [e.kind for e in ledger].count("reserve") == 1
    assert (ledger[0].kind, ledger[0].ref, ledger[0].amount, ledger[0].balance_after) == ("reserve", "c1", 300, 700)


async def test_settle_twice_equals_once(store: RedisStore) -> None:
    await provision(store, balance=1000)
    await store.reserve("c1", CARD, 600, 60)
    first = await store.settle(record("c1", 509))
    assert (first.charged, first.released, first.balance_after, first.duplicate) == (509, 91, 491, False)
    ledger_len = len(await store.ledger(CARD))
    cdrs = await store.call_records(CARD)

    second = await store.settle(record("c1", 509))
    assert second.duplicate
    assert (second.charged, second.released, second.balance_after) == (509, 91, 491)
    assert await balance(store) == 491
    assert len(await store.ledger(CARD)) == ledger_len
    assert await store.call_records(CARD) == cdrs
    assert len(cdrs) == 1 and cdrs[0] == record("c1", 509)
    # a settled call cannot reserve again
    with pytest.raises(StoreConflict):
        await store.reserve("c1", CARD, 100, 60)


async def test_settle_charges_at_most_the_hold_and_returns_the_rest(store: RedisStore) -> None:
    await provision(store, balance=1000)
    await store.reserve("c1", CARD, 400, 60)
    over = await store.settle(record("c1", 900))  # asked more than held
    assert (over.charged, over.released, over.balance_after) == (400, 0, 600)
    cdr = await store.call_record("c1")
    assert cdr is not None and cdr.amount == 400  # the amount really charged

    await store.reserve("c2", CARD, 400, 60)
    under = await store.settle(record("c2", 150))
    assert (under.charged, under.released, under.balance_after) == (150, 250, 450)
    assert await balance(store) == 450
    assert await store.reservation("c2") is None
    assert await store.redis.zcard("kl:holds") == 0

    free = await store.reserve("c3", CARD, 400, 60)
    assert free.balance_after == 50
    nothing = await store.settle(record("c3", 0, answered_s=2))
    assert (nothing.charged, nothing.released, nothing.balance_after) == (0, 400, 450)

    ledger = await store.ledger(CARD, 6)
    assert [(e.kind, e.ref, e.amount, e.balance_after) for e in ledger] == [
        ("release", "c3", 400, 450),
        ("charge", "c3", 0, 50),
        ("reserve", "c3", 400, 50),
        ("release", "c2", 250, 450),
        ("charge", "c2", 150, 200),
        ("reserve", "c2", 400, 200),
    ]
    assert [r.call_id for r in await store.call_records(CARD)] == ["c3", "c2", "c1"]
    assert [r.call_id for r in await store.call_records(CARD, 2)] == ["c3", "c2"]


async def test_settle_without_hold_charges_the_balance_but_never_below_zero(store: RedisStore) -> None:
    await provision(store, balance=300)
    s = await store.settle(record("c1", 500))
    assert (s.charged, s.released, s.balance_after) == (300, 0, 0)
    assert await balance(store) == 0
    cdr = await store.call_record("c1")
    assert cdr is not None and cdr.amount == 300


async def test_settle_checks_its_input(store: RedisStore) -> None:
    await provision(store, balance=300)
    with pytest.raises(ValueError):
        await store.settle(record("c1", -1))
    with pytest.raises(NotFound):
        await store.settle(record("c1", 10, card="9999"))
    assert await balance(store) == 300


# --- the reaper ----------------------------------------------------------------


async def test_release_expired_returns_only_due_holds(store: RedisStore) -> None:
    await provision(store, balance=1000)
    await store.reserve("short", CARD, 100, 1)
    await store.reserve("long", CARD, 200, 3600)
    await store.reserve("settled", CARD, 300, 1)
    await store.settle(record("settled", 100))
    assert await balance(store) == 1000 - 100 - 200 - 100
    now = datetime.now(UTC)
    assert await store.release_expired(now - timedelta(seconds=10)) == []
    assert await store.release_expired(now + timedelta(seconds=5)) == ["short"]
    assert await store.release_expired(now + timedelta(seconds=5)) == []
    assert await balance(store) == 700
    assert await store.reservation("long") is not None
    # settling after the reaper: charged from the balance
    late = await store.settle(record("short", 50))
    assert (late.charged, late.released, late.balance_after) == (50, 0, 650)


async def test_reaper_works_in_batches(store: RedisStore) -> None:
    await provision(store, balance=100_000)
    ids = [f"c{i:03d}" for i in range(250)]
    await asyncio.gather(*(store.reserve(i, CARD, 100, 1) for i in ids[:150]))
    await asyncio.gather(*(store.reserve(i, CARD, 100, 3600) for i in ids[150:]))
    # a hold whose zset score says due but whose reservation says later stays
    await store.redis.zadd("kl:holds", {"c200": 0})
    assert await balance(store) == 75_000
    released = await store.release_expired(datetime.now(UTC) + timedelta(seconds=5))
    assert sorted(released) == ids[:150]
    assert await balance(store) == 90_000
    assert await store.reservation("c200") is not None


@pytest.mark.parametrize("repeat", range(5))
async def test_settle_racing_the_reaper_conserves_money(store: RedisStore, repeat: int) -> None:
    await provision(store, balance=1000)
    await store.reserve("c1", CARD, 400, 1)
    settled, _ = await asyncio.gather(
        store.settle(record("c1", 150)), store.release_expired(datetime.now(UTC) + timedelta(seconds=5))
    )
    assert settled.charged == 150
    assert await balance(store) == 850
    assert (await store.ledger(CARD, 1))[0].balance_after == 850
    assert await store.redis.zcard("kl:holds") == 0


KILLED_SCRIPT = """
import asyncio, sys
from store.redis_store import RedisStore, connect

async def main(url, card, call_id):
    store = RedisStore(connect(url))
    r = await store.reserve(call_id, card, 700, 1)
    print("reserved", r.balance_after, flush=True)
    await asyncio.sleep(60)

asyncio.run(main(*sys.argv[1:4]))
"""


async def test_reservation_of_a_killed_process_is_released(store: RedisStore, redis_server: RedisServer) -> None:
    await provision(store, balance=1000)
    proc = await _python(KILLED_SCRIPT, redis_server.url, CARD, "crashed-call")
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), STEP)
        assert line.decode().split() == ["reserved", "300"]
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), STEP)
    assert proc.returncode == -signal.SIGKILL
    assert await balance(store) == 300

    deadline_ms = int(await store.redis.hget("kl:res:crashed-call", "deadline"))  # type: ignore[arg-type]
    deadline = datetime.fromtimestamp(deadline_ms / 1000, UTC)
    assert await store.release_expired(deadline - timedelta(milliseconds=1)) == []
    assert await balance(store) == 300
    while datetime.now(UTC) <= deadline:
        await asyncio.sleep(0.05)
    assert await store.release_expired(datetime.now(UTC)) == ["crashed-call"]
    assert await balance(store) == 1000
    last = (await store.ledger(CARD, 1))[0]
    assert (last.kind, last.ref, last.amount, last.balance_after) == ("release", "crashed-call", 700, 1000)
    assert await store.release_expired(datetime.now(UTC)) == []


# --- payments ------------------------------------------------------------------


async def test_top_up_is_idempotent_by_payment_id(store: RedisStore) -> None:
    await provision(store)
    assert await store.top_up(CARD, 50000, "pay-1") == 50000
    assert await store.top_up(CARD, 50000, "pay-1") == 50000
    assert await store.top_up(CARD, 250, "pay-2") == 50250
    await store.reserve("c1", CARD, 250, 60)
    assert await store.top_up(CARD, 50000, "pay-1") == 50000  # current balance, nothing moved
    ledger = await store.ledger(CARD)
    assert [(e.kind, e.ref, e.amount) for e in ledger if e.kind == "topup"] == [("topup", "pay-2", 250),
                                                                               ("topup", "pay-1", 50000)]
    with pytest.raises(ValueError):
        await store.top_up(CARD, 0, "pay-3")
    with pytest.raises(ValueError):
        await store.top_up(CARD, -5, "pay-3")
    with pytest.raises(NotFound):
        await store.top_up("9999", 5, "pay-3")
    with pytest.raises(StoreConflict):
        await store.refund(CARD, 5, "pay-1")  # a payment id is used once


async def test_refund_only_of_unspent_money(store: RedisStore) -> None:
    await provision(store, balance=1000)
    await store.reserve("c1", CARD, 600, 60)
    with pytest.raises(InsufficientFunds):
        await store.refund(CARD, 401, "ref-1")
    assert await store.refund(CARD, 400, "ref-1") == 0
    assert await store.refund(CARD, 400, "ref-1") == 0
    last = (await store.ledger(CARD, 1))[0]
    assert (last.kind, last.ref, last.amount, last.balance_after) == ("refund", "ref-1", 400, 0)


# --- wrong PINs ----------------------------------------------------------------


async def test_ten_wrong_pins_within_24h_lock_the_card(store: RedisStore) -> None:
    await provision(store)
    for i in range(1, 10):
        assert await store.record_pin_failure(CARD, T0 + timedelta(hours=2 * i)) == i
    assert (await store.card(CARD)).status is CardStatus.ACTIVE  # type: ignore[union-attr]
    assert await store.record_pin_failure(CARD, T0 + timedelta(hours=23, minutes=59)) == 10
    assert (await store.card(CARD)).status is CardStatus.LOCKED  # type: ignore[union-attr]
    await store.unlock_card(CARD)
    assert (await store.card(CARD)).status is CardStatus.ACTIVE  # type: ignore[union-attr]
    assert await store.pin_failures(CARD, T0 + timedelta(hours=24)) == 0
    assert await store.record_pin_failure(CARD, T0 + timedelta(hours=24)) == 1


async def test_wrong_pins_spread_over_more_than_24h_do_not_lock(store: RedisStore) -> None:
    await provision(store)
    counts = [await store.record_pin_failure(CARD, T0 + timedelta(hours=3 * i)) for i in range(20)]
    assert max(counts) == 8  # (24 h / 3 h) failures at most inside any window
    assert (await store.card(CARD)).status is CardStatus.ACTIVE  # type: ignore[union-attr]


async def test_same_instant_failures_all_count_and_blocked_stays_blocked(store: RedisStore) -> None:
    await provision(store)
    await store.set_card_status(CARD, CardStatus.BLOCKED)
    counts = await asyncio.gather(*(store.record_pin_failure(CARD, T0) for _ in range(12)))
    assert sorted(counts) == list(range(1, 13))
    assert (await store.card(CARD)).status is CardStatus.BLOCKED  # type: ignore[union-attr]
    assert await store.record_pin_failure("9999", T0) == 0
    assert await store.redis.exists("kl:card:9999", "kl:card:9999:pinfail") == 0


async def test_a_store_without_the_pin_key_cannot_set_pins(store: RedisStore) -> None:
    await provision(store)
    keyless = RedisStore(store.redis)
    with pytest.raises(PinHashError):
        await keyless.create_card("2002", "i1", "f1", "2468", "en")
    with pytest.raises(PinHashError):
        await keyless.set_pin(CARD, "2468")
    assert await store.card("2002") is None


async def test_pin_hash_upgrade_is_compare_and_set(store: RedisStore) -> None:
    await provision(store)
    legacy = hash_scrypt("2468", n=2**10)
    await store.redis.hset("kl:card:1001", "pin_hash", legacy)
    keyed = TEST_PINS.hash("2468")
    assert await store.upgrade_pin_hash(CARD, legacy, keyed) is True
    assert (await store.card(CARD)).pin_hash == keyed  # type: ignore[union-attr]
    # A second upgrade from the old hash (a racing call) changes nothing.
    assert await store.upgrade_pin_hash(CARD, legacy, TEST_PINS.hash("2468")) is False
    assert (await store.card(CARD)).pin_hash == keyed  # type: ignore[union-attr]
    # Nor does one after staff set a new PIN.
    await store.set_pin(CARD, "97531")
    assert await store.upgrade_pin_hash(CARD, keyed, TEST_PINS.hash("2468")) is False
    assert TEST_PINS.verify("97531", (await store.card(CARD)).pin_hash)  # type: ignore[union-attr]
    assert await store.upgrade_pin_hash("9999", legacy, keyed) is False
    assert await store.redis.exists("kl:card:9999") == 0


async def test_login_failures_per_terminal_are_kept_for_a_window(store: RedisStore) -> None:
    keep_s = 600
    times = [T0 + timedelta(seconds=100 * i) for i in range(8)]  # 0..700 s
    kept = [await store.record_login_failure("term-1", t, keep_s) for t in times]
    assert kept[2] == times[:3]
    # At 700 s the ones at 0 and 100 s (older than 600 s) are forgotten.
    assert kept[-1] == times[2:]
    assert await store.login_failures("term-1", T0 + timedelta(seconds=250)) == times[3:]
    assert await store.login_failures("term-2", T0) == []
    ttl_ms = await store.redis.pttl("kl:terminal:term-1:loginfail")
    assert 0 < ttl_ms <= keep_s * 1000
    await store.clear_login_failures("term-1")
    assert await store.login_failures("term-1", T0) == []


async def test_simultaneous_login_failures_all_count(store: RedisStore) -> None:
    results = await asyncio.gather(*(store.record_login_failure("term-1", T0, 600) for _ in range(7)))
    assert sorted(len(r) for r in results) == list(range(1, 8))
    assert len(await store.login_failures("term-1", T0 - timedelta(seconds=1))) == 7
    with pytest.raises(ValueError):
        await store.record_login_failure("term 1", T0, 600)
    with pytest.raises(ValueError):
        await store.record_login_failure("term-1", T0, 0)


# --- failing closed --------------------------------------------------------------


async def test_redis_down_raises() -> None:
    store = RedisStore(connect(f"redis://127.0.0.1:{_free_port()}/0"))
    try:
        with pytest.raises(redis.ConnectionError):
            await store.reserve("c1", CARD, 1, 60)
        with pytest.raises(redis.ConnectionError):
            await store.card(CARD)
    finally:
        await store.aclose()


# --- property: money is conserved and never negative ---------------------------------

operation = st.one_of(
    st.tuples(st.just("reserve"), st.integers(0, 5), st.integers(0, 3000)),
    st.tuples(st.just("settle"), st.integers(0, 5), st.integers(0, 3000)),
    st.tuples(st.just("top_up"), st.integers(0, 5), st.integers(1, 3000)),
    st.tuples(st.just("refund"), st.integers(0, 5), st.integers(1, 3000)),
    st.tuples(st.just("reap"), st.just(0), st.just(0)),
)


async def _run_operations(url: str, ops: list[tuple[str, int, int]]) -> None:
    store = RedisStore(connect(url))
    try:
        await store.redis.flushdb()
        await provision(store)
        topped = 0
        refunded = 0
        for kind, n, amount in ops:
            try:
                if kind == "reserve":
                    await store.reserve(f"call-{n}", CARD, amount, 3600)
                elif kind == "settle":
                    await store.settle(record(f"call-{n}", amount))
                elif kind == "top_up":
                    before = len(await store.ledger(CARD))
                    await store.top_up(CARD, amount, f"pay-{n}")
                    topped += amount if len(await store.ledger(CARD)) > before else 0
                elif kind == "refund":
                    before = len(await store.ledger(CARD))
                    await store.refund(CARD, amount, f"ref-{n}")
                    refunded += amount if len(await store.ledger(CARD)) > before else 0
                else:
                    await store.release_expired(datetime.now(UTC) + timedelta(days=1))
            except (InsufficientFunds, StoreConflict):
                pass
            bal = await balance(store)
            assert bal >= 0
            held = 0
            for i in range(6):
                res = await store.reservation(f"call-{i}")
                held += res.amount if res else 0
            charged = sum(r.amount for r in await store.call_records(CARD, 100))
            assert bal + held + charged + refunded == topped
            ledger = await store.ledger(CARD, 1)
            if ledger:
                assert ledger[0].balance_after == bal
    finally:
        await store.aclose()


@settings(max_examples=50, deadline=None)
@given(ops=st.lists(operation, max_size=25))
def test_balance_never_negative_and_money_conserved(redis_server: RedisServer, ops: list[tuple[str, int, int]]) -> None:
    asyncio.run(_run_operations(redis_server.url, ops))
