"""Calls the relative pays ("01") against a real redis-server: the hold, the
charge and the release move the relative's balance, never the card's; the
relative's ledger, the spending per card (caps) and the call log follow."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from ivr.errors import InsufficientFunds, NotFound, StoreConflict
from ivr.model import AllowedNumber
from ivr.relatives import CardSettings
from store.redis_store import CDR_LOG, RedisStore, _hash
from store.relatives import RelativeStore
from tests.component.test_redis_store import CARD, balance, provision, record
from tests.component.test_relatives_store import funded

PHONE = "+79161234567"  # the number record() calls


@pytest.fixture
def rel(store: RedisStore) -> RelativeStore:
    return RelativeStore(store.redis)


def paid_by_relative(call_id: str, amount: int) -> object:
    return replace(record(call_id, amount), payer="callee")


async def test_hold_charge_and_release_move_only_the_relatives_money(store: RedisStore, rel: RelativeStore) -> None:
    await provision(store, 5_000)
    await funded(rel, 3_000)
    res = await store.reserve("c1", CARD, 2_000, 600, "{}", payer_phone=PHONE)
    assert (res.amount, res.balance_after) == (2_000, 1_000)
    assert await rel.balance(PHONE) == 1_000
    assert await balance(store) == 5_000
    done = await store.settle(paid_by_relative("c1", 509))  # type: ignore[arg-type]
    assert (done.charged, done.released, done.balance_after) == (509, 1_491, 2_491)
    assert await rel.balance(PHONE) == 2_491
    assert await balance(store) == 5_000
    kinds = [(e.kind, e.amount, e.card, e.ref) for e in reversed(await rel.entries(PHONE, 10))]
    assert kinds[-3:] == [("reserve", 2_000, CARD, "c1"), ("charge", 509, CARD, "c1"), ("release", 1_491, CARD, "c1")]
    assert [e.kind for e in await store.ledger(CARD)] == ["topup"]  # the card's own money only
    assert await rel.spent_since(PHONE, CARD, datetime.now(UTC) - timedelta(minutes=1)) == 509
    assert await rel.spent_since(PHONE, "other", datetime.now(UTC) - timedelta(minutes=1)) == 0
    # settling again moves nothing, counts nothing twice
    again = await store.settle(paid_by_relative("c1", 509))  # type: ignore[arg-type]
    assert again.duplicate and await rel.balance(PHONE) == 2_491
    assert await rel.spent_since(PHONE, CARD, datetime.now(UTC) - timedelta(minutes=1)) == 509
    log = [_hash(fields) for _, fields in await store.redis.xrange(CDR_LOG)]
    assert [f["call_id"] for f in log] == ["c1"]
    assert '"payer": "callee"' in log[0]["cdr"] and log[0]["cdr"].endswith('"amount": 509}')


async def test_relative_without_account_or_money_is_refused(store: RedisStore, rel: RelativeStore) -> None:
    await provision(store, 5_000)
    with pytest.raises(NotFound):
        await store.reserve("c1", CARD, 500, 600, "{}", payer_phone=PHONE)
    await funded(rel, 400)
    with pytest.raises(InsufficientFunds):
        await store.reserve("c1", CARD, 500, 600, "{}", payer_phone=PHONE)
    assert await rel.balance(PHONE) == 400 and await balance(store) == 5_000


async def test_a_record_naming_another_payer_than_the_hold_is_refused(store: RedisStore, rel: RelativeStore) -> None:
    await provision(store, 5_000)
    await funded(rel, 3_000)
    await store.reserve("c1", CARD, 2_000, 600, "{}", payer_phone=PHONE)
    with pytest.raises(StoreConflict):
        await store.settle(record("c1", 509))  # says the card pays
    with pytest.raises(StoreConflict):
        await store.reserve("c1", CARD, 2_000, 600, "{}")
    assert await rel.balance(PHONE) == 1_000 and await balance(store) == 5_000


async def test_an_expired_relative_hold_goes_back_to_the_relative(store: RedisStore, rel: RelativeStore) -> None:
    await provision(store, 5_000)
    await funded(rel, 3_000)
    await store.reserve("c1", CARD, 2_000, 1, "{}", payer_phone=PHONE)
    assert await store.release_expired(datetime.now(UTC) + timedelta(seconds=5)) == ["c1"]
    assert await rel.balance(PHONE) == 3_000 and await balance(store) == 5_000
    assert [e.kind for e in await rel.entries(PHONE, 2)] == ["release", "reserve"]


async def test_paying_relatives_are_those_on_the_list_who_pay_and_did_not_block(
    store: RedisStore, rel: RelativeStore
) -> None:
    await provision(store, 0)
    other, stranger = "+79031234567", "+79051234567"
    await store.allow_number(CARD, AllowedNumber(PHONE, "Mother"))
    await store.allow_number(CARD, AllowedNumber(other, "Brother"))
    assert await rel.paying_relatives(CARD) == []
    await rel.put_card_settings(PHONE, CARD, CardSettings(always_in_touch=True))
    await rel.put_card_settings(other, CARD, CardSettings(always_in_touch=True, blocked=True))
    await rel.put_card_settings(stranger, CARD, CardSettings(always_in_touch=True))  # not on the list
    assert await rel.paying_relatives(CARD) == [PHONE]
