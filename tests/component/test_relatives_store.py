"""RelativeStore against a real redis-server: accounts, payments, transfers, refunds, codes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from ivr.errors import InsufficientFunds, NotFound, StoreConflict
from ivr.model import AllowedNumber
from ivr.ports import Idempotency, LoginCodes, RelativeAccounts
from ivr.relatives import (
    CODES_PER_HOUR,
    INACTIVE_REFUND_DAYS,
    TRIES_PER_CODE,
    CardSettings,
    code_hash,
    token_hash,
)
from store.redis_store import RedisStore
from store.relatives import IDEMPOTENCY_TTL_S, PENDING_TTL_S, RelativeStore
from tests.component.test_redis_store import CARD, balance, provision

PHONE = "+79161234567"
OTHER = "+79031234567"


@pytest.fixture
def rel(store: RedisStore) -> RelativeStore:
    return RelativeStore(store.redis)


async def login(rel: RelativeStore, phone: str = PHONE) -> str:
    """Open an account the only way there is: a right code."""
    assert await rel.issue_code(phone, code_hash(phone, "123456"), datetime.now(UTC))
    assert await rel.check_code(phone, code_hash(phone, "123456"), token_hash("tok-" + phone)) == "ok"
    return "tok-" + phone


async def funded(rel: RelativeStore, amount: int, phone: str = PHONE) -> None:
    await login(rel, phone)
    await rel.create_payment(f"pay-{phone}-{amount}", phone, amount)
    assert await rel.credit_payment(f"pay-{phone}-{amount}", amount) == (True, amount)


def test_relative_store_satisfies_the_ports(rel: RelativeStore) -> None:
    ports: tuple[RelativeAccounts, LoginCodes, Idempotency] = (rel, rel, rel)
    assert all(p is rel for p in ports)


async def test_login_opens_an_account_and_a_session(rel: RelativeStore) -> None:
    assert await rel.balance(PHONE) is None
    token = await login(rel)
    assert await rel.balance(PHONE) == 0
    assert await rel.session_phone(token_hash(token)) == PHONE
    assert await rel.session_phone(token_hash("other")) is None
    # the code is used up
    assert await rel.check_code(PHONE, code_hash(PHONE, "123456"), token_hash("x")) == "expired"


async def test_wrong_codes_are_counted_then_exhausted(rel: RelativeStore) -> None:
    assert await rel.issue_code(PHONE, code_hash(PHONE, "111111"), datetime.now(UTC))
    for _ in range(TRIES_PER_CODE):
        assert await rel.check_code(PHONE, code_hash(PHONE, "222222"), token_hash("t")) == "wrong"
    assert await rel.check_code(PHONE, code_hash(PHONE, "111111"), token_hash("t")) == "exhausted"
    assert await rel.session_phone(token_hash("t")) is None
    assert await rel.balance(PHONE) is None


async def test_codes_per_hour_are_limited_per_number(rel: RelativeStore) -> None:
    now = datetime.now(UTC)
    for _ in range(CODES_PER_HOUR):
        assert await rel.issue_code(PHONE, code_hash(PHONE, "111111"), now)
    assert not await rel.issue_code(PHONE, code_hash(PHONE, "999999"), now)
    # the refused code did not replace the last one
    assert await rel.check_code(PHONE, code_hash(PHONE, "999999"), token_hash("t")) == "wrong"
    assert await rel.issue_code(OTHER, code_hash(OTHER, "111111"), now)


async def test_code_expires(rel: RelativeStore) -> None:
    assert await rel.issue_code(PHONE, code_hash(PHONE, "111111"), datetime.now(UTC))
    ttl = await rel.redis.pttl(f"kl:auth:code:{PHONE}")
    assert 0 < ttl <= 300_000
    await rel.redis.pexpire(f"kl:auth:code:{PHONE}", 1)
    await asyncio.sleep(0.05)
    assert await rel.check_code(PHONE, code_hash(PHONE, "111111"), token_hash("t")) == "expired"


async def test_payment_is_credited_once(rel: RelativeStore) -> None:
    await login(rel)
    await rel.create_payment("p1", PHONE, 5000)
    with pytest.raises(StoreConflict):
        await rel.create_payment("p1", PHONE, 7000)
    assert await rel.credit_payment("p1", 5000) == (True, 5000)
    assert await rel.credit_payment("p1", 5000) == (False, 5000)
    with pytest.raises(StoreConflict):
        await rel.credit_payment("p1", 6000)
    with pytest.raises(NotFound):
        await rel.credit_payment("nope", 5000)
    assert await rel.balance(PHONE) == 5000
    entries = await rel.entries(PHONE)
    assert [(e.kind, e.amount, e.balance_after, e.ref) for e in entries] == [("topup", 5000, 5000, "p1")]


async def test_transfer_moves_money_to_an_allowing_card_atomically(store: RedisStore, rel: RelativeStore) -> None:
    await provision(store, balance=100)
    await funded(rel, 5000)
    with pytest.raises(NotFound):  # the number is not on the card's list yet
        await rel.transfer("op1", PHONE, CARD, 1000)
    await store.allow_number(CARD, AllowedNumber(PHONE, "Mother", False))
    assert await rel.card_allows(PHONE, CARD)
    assert not await rel.card_allows(OTHER, CARD)
    assert not await rel.card_allows(PHONE, "9999")
    done = await rel.transfer("op1", PHONE, CARD, 1000)
    assert done.balance_after == 4000
    assert await rel.transfer("op1", PHONE, CARD, 1000) == done  # idempotent
    with pytest.raises(StoreConflict):
        await rel.transfer("op1", PHONE, CARD, 999)
    assert await rel.balance(PHONE) == 4000
    assert await balance(store) == 1100
    with pytest.raises(InsufficientFunds):
        await rel.transfer("op2", PHONE, CARD, 4001)
    assert await rel.balance(PHONE) == 4000
    card_entry = (await store.ledger(CARD))[0]
    assert (card_entry.kind, card_entry.amount, card_entry.balance_after) == ("topup", 1000, 1100)
    assert card_entry.ref == "transfer:op1"
    mine = (await rel.entries(PHONE))[0]
    assert (mine.kind, mine.amount, mine.balance_after, mine.card) == ("transfer", 1000, 4000, CARD)


async def test_concurrent_transfers_never_overdraw(store: RedisStore, rel: RelativeStore) -> None:
    await provision(store)
    await store.allow_number(CARD, AllowedNumber(PHONE, "Mother", False))
    await funded(rel, 1000)
    results = await asyncio.gather(*(rel.transfer(f"race{i}", PHONE, CARD, 300) for i in range(5)),
                                   return_exceptions=True)
    ok = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, InsufficientFunds)]
    assert len(ok) == 3 and len(refused) == 2
    assert await rel.balance(PHONE) == 100
    assert await balance(store) == 900


async def test_refund_makes_a_payout_staff_mark_paid(rel: RelativeStore) -> None:
    await funded(rel, 3000)
    with pytest.raises(InsufficientFunds):
        await rel.refund("r0", PHONE, 3001)
    payout = await rel.refund("r1", PHONE, 2000)
    assert (payout.id, payout.phone, payout.amount, payout.status) == ("r1", PHONE, 2000, "requested")
    assert await rel.refund("r1", PHONE, 2000) == payout
    assert await rel.balance(PHONE) == 1000
    assert [p.id for p in await rel.payouts()] == ["r1"]
    assert await rel.mark_payout_paid("r1") is True
    assert await rel.mark_payout_paid("r1") is False
    paid = await rel.payout("r1")
    assert paid is not None and paid.status == "paid" and paid.paid_at is not None
    with pytest.raises(NotFound):
        await rel.mark_payout_paid("nope")
    assert (await rel.entries(PHONE))[0].kind == "refund"


async def test_card_settings_round_trip(rel: RelativeStore) -> None:
    assert await rel.card_settings(PHONE, CARD) is None
    s = CardSettings(always_in_touch=True, cap_day=500, cap_month=None, blocked=False)
    await rel.put_card_settings(PHONE, CARD, s)
    assert await rel.card_settings(PHONE, CARD) == s


async def test_idempotency_records(rel: RelativeStore) -> None:
    assert await rel.begin("s1", "f1") == ("new", 0, "")
    assert 0 < await rel.redis.ttl("kl:idem:s1") <= PENDING_TTL_S  # a server that died frees the key
    assert await rel.begin("s1", "f1") == ("busy", 0, "")
    assert await rel.begin("s1", "f2") == ("mismatch", 0, "")
    await rel.finish("s1", 201, '{"a": 1}')
    assert PENDING_TTL_S < await rel.redis.ttl("kl:idem:s1") <= IDEMPOTENCY_TTL_S
    assert await rel.begin("s1", "f1") == ("done", 201, '{"a": 1}')
    assert await rel.begin("s2", "f1") == ("new", 0, "")
    await rel.abandon("s2")
    assert await rel.begin("s2", "f1") == ("new", 0, "")


# --- refund after inactivity (47 CFR 64.6130) -------------------------------------


async def test_inactive_accounts_are_refunded_whole_once(rel: RelativeStore) -> None:
    await funded(rel, 4200)  # PHONE: money, last moved now
    await login(rel, OTHER)  # OTHER: an account, no money
    later = datetime.now(UTC) + timedelta(days=INACTIVE_REFUND_DAYS)
    assert await rel.refund_inactive(later - timedelta(minutes=1), INACTIVE_REFUND_DAYS) == []  # not yet
    planned = await rel.refund_inactive(later + timedelta(minutes=1), INACTIVE_REFUND_DAYS, dry_run=True)
    assert [(r.phone, r.amount, r.payout_id) for r in planned] == [(PHONE, 4200, "")]
    assert await rel.balance(PHONE) == 4200 and await rel.payouts() == []  # a dry run moves nothing

    done = await rel.refund_inactive(later + timedelta(minutes=1), INACTIVE_REFUND_DAYS)
    assert [(r.phone, r.amount) for r in done] == [(PHONE, 4200)]
    assert await rel.balance(PHONE) == 0
    entry = (await rel.entries(PHONE))[0]
    assert (entry.kind, entry.amount, entry.balance_after, entry.note) == ("refund", 4200, 0, "inactivity")
    payout = await rel.payout(done[0].payout_id)
    assert payout is not None and (payout.phone, payout.amount, payout.status, payout.note) == (
        PHONE, 4200, "requested", "inactivity")
    # running again (or an hour later) makes no second payout
    assert await rel.refund_inactive(later + timedelta(minutes=1), INACTIVE_REFUND_DAYS) == []
    assert await rel.refund_inactive(later + timedelta(hours=1), INACTIVE_REFUND_DAYS) == []
    assert [p.id for p in await rel.payouts()] == [done[0].payout_id]
    global_refunds = [f for _, f in await rel.redis.xrange("kl:rel-ledger") if f["kind"] == "refund"]
    assert len(global_refunds) == 1 and global_refunds[0]["note"] == "inactivity"


async def test_any_movement_counts_as_activity(store: RedisStore, rel: RelativeStore) -> None:
    await provision(store)
    await store.allow_number(CARD, AllowedNumber(PHONE, "Mother", False))
    await funded(rel, 1000)
    await rel.transfer("x1", PHONE, CARD, 100)
    days = 30
    assert await rel.refund_inactive(datetime.now(UTC) + timedelta(days=days - 1), days) == []
    assert await rel.balance(PHONE) == 900


async def test_inactivity_refund_loses_to_a_movement_made_after_the_scan(
        rel: RelativeStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scan saw the account idle, then a movement came (a call's reservation, a
    transfer): the script checks again and leaves the account alone."""
    await funded(rel, 1000)
    idle_since = datetime.now(UTC) - timedelta(days=400)
    real = rel.last_activity

    async def stale_view(phone: str) -> datetime | None:
        await real(phone)
        await rel.refund("late", PHONE, 100)  # the movement lands between the scan and the script
        return idle_since

    monkeypatch.setattr(rel, "last_activity", stale_view)
    assert await rel.refund_inactive(datetime.now(UTC), INACTIVE_REFUND_DAYS) == []
    assert await rel.balance(PHONE) == 900
    assert [p.id for p in await rel.payouts()] == ["late"]


async def test_inactivity_refund_bad_days(rel: RelativeStore) -> None:
    with pytest.raises(ValueError):
        await rel.refund_inactive(datetime.now(UTC), 0)


# --- codes per client address ------------------------------------------------------


async def test_code_slots_per_client_address(rel: RelativeStore) -> None:
    now = datetime.now(UTC)
    for _ in range(3):
        assert await rel.take_code_slot("192.0.2.1", now, 3) == 0
    wait = await rel.take_code_slot("192.0.2.1", now, 3)
    assert 3590 <= wait <= 3600  # the first slot frees an hour after it was taken
    assert await rel.take_code_slot("192.0.2.2", now, 3) == 0  # another address
    assert await rel.take_code_slot("192.0.2.1", now + timedelta(seconds=3601), 3) == 0
    assert await rel.redis.zcard("kl:auth:client:192.0.2.1") == 1  # the old ones left the window


async def test_reconciler_refunds_inactive_accounts_hourly(rel: RelativeStore) -> None:
    """The reconciler's periodic pass (reconciler/main.py) on a real Redis: it refunds an
    idle account at once, then waits its hour; stopping it ends it."""
    from reconciler.main import refund_inactive_every

    old_ms = int((datetime.now(UTC) - timedelta(days=INACTIVE_REFUND_DAYS + 1)).timestamp() * 1000)
    await rel.redis.hset(f"kl:rel:{PHONE}", mapping={"phone": PHONE, "balance": "900", "created": str(old_ms)})
    stop = asyncio.Event()
    task = asyncio.create_task(refund_inactive_every(rel, INACTIVE_REFUND_DAYS, 3600, stop))
    try:
        async with asyncio.timeout(5):
            while await rel.balance(PHONE) != 0:
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        async with asyncio.timeout(5):
            await task
    payouts = await rel.payouts()
    assert [(p.phone, p.amount, p.note) for p in payouts] == [(PHONE, 900, "inactivity")]


async def test_inactivity_refund_racing_a_call_hold(store: RedisStore, rel: RelativeStore) -> None:
    """An idle account whose relative is called ("01") just as the hourly pass runs:
    either the hold wins (the account is active again, nothing refunded) or the refund
    does (the hold finds no money); never both, never below zero."""
    await provision(store)
    for i in range(20):
        phone = f"+7916555{i:04d}"
        old_ms = int((datetime.now(UTC) - timedelta(days=INACTIVE_REFUND_DAYS + 1)).timestamp() * 1000)
        await rel.redis.hset(f"kl:rel:{phone}", mapping={"phone": phone, "balance": "1000", "created": str(old_ms)})
        hold, refunds = await asyncio.gather(
            store.reserve(f"call-{i}", CARD, 600, 600, "{}", payer_phone=phone),
            rel.refund_inactive(datetime.now(UTC), INACTIVE_REFUND_DAYS), return_exceptions=True)
        assert not isinstance(refunds, BaseException)
        mine = [r for r in refunds if r.phone == phone]
        if isinstance(hold, InsufficientFunds):
            assert [r.amount for r in mine] == [1000] and await rel.balance(phone) == 0
        else:
            assert not isinstance(hold, BaseException), hold
            assert mine == [] and await rel.balance(phone) == 400
