"""The reconciler's storage against a real redis-server: plans kept with holds,
evidence, channels gone, the lock index; and a whole reconcile over real Redis."""

from __future__ import annotations

from dataclasses import replace

from ivr.call_plan import plan_from_json, plan_to_json
from ivr.model import Evidence
from ivr.settlement import Bridged, ChannelEnded, Ended, Reconciler, SwitchView
from store.redis_store import RedisStore
from tests.component.test_redis_store import CARD, provision
from tests.unit.test_settlement import PLAN, T0


async def _recording(plan: object) -> tuple[str, str]:
    return "", ""


async def test_the_hold_keeps_its_plan_until_settled(store: RedisStore) -> None:
    await provision(store, balance=10_000)
    plan = replace(PLAN, card=CARD, reserved=600)
    await store.reserve(plan.call_id, CARD, 600, 60, plan_to_json(plan))
    [attempt] = await store.open_attempts()
    assert attempt.call_id == plan.call_id and plan_from_json(attempt.plan) == plan
    assert attempt.deadline_ms > 0


async def test_evidence_gone_and_offsets(store: RedisStore) -> None:
    assert await store.evidence("c1") == Evidence()
    await store.add_evidence("c1", bridged_ms=5, dial_status="ANSWER")
    await store.add_evidence("c1", ended_ms=9)
    assert await store.evidence("c1") == Evidence(bridged_ms=5, ended_ms=9, dial_status="ANSWER")
    assert await store.gone_at("u1") is None
    await store.mark_gone("u1", 7)
    await store.mark_gone("u1", 8)  # the first end logged stays
    assert await store.gone_at("u1") == 7
    assert await store.log_offset("node-a") == 0
    await store.set_log_offset("node-a", 1234)
    assert await store.log_offset("node-a") == 1234


async def test_the_lock_index_follows_acquire_and_release(store: RedisStore) -> None:
    assert await store.acquire_card("1001", "u1", 60)
    assert not await store.acquire_card("1001", "u2", 60)
    assert await store.card_locks() == {"1001": "u1"}
    await store.release_card("1001", "u2")  # not the holder: nothing changes
    assert await store.card_locks() == {"1001": "u1"}
    await store.release_card("1001", "u1")
    assert await store.card_locks() == {}
    assert await store.card_lock("1001") is None


async def test_reconcile_over_real_redis_settles_once_and_conserves_money(store: RedisStore) -> None:
    await provision(store, balance=10_000)
    plan = replace(PLAN, card=CARD, reserved=150 + 15 * 359, record=False)
    await store.reserve(plan.call_id, CARD, plan.reserved, 1200, plan_to_json(plan))
    assert await store.acquire_card(CARD, plan.uniqueid, 3600)
    reconciler = Reconciler(store, store, _recording)
    await reconciler.record(Bridged(plan.call_id, T0))
    await reconciler.record(Ended(plan.call_id, T0 + 61_000, "ANSWER", "16"))
    await reconciler.record(ChannelEnded(plan.uniqueid, T0 + 61_500))
    report = await reconciler.run_once(T0 + 70_000, SwitchView(alive_at_ms=T0 + 70_000))
    assert report.settled == [plan.call_id] and report.locks_released == [CARD]
    assert await reconciler.run_once(T0 + 80_000, SwitchView(alive_at_ms=T0 + 80_000)) == type(report)()
    [cdr] = await store.call_records(CARD)
    assert (cdr.answered_s, cdr.amount, cdr.evidence) == (61, 150 + 2 * 359, "exact")
    card = await store.card(CARD)
    assert card is not None and card.balance == 10_000 - cdr.amount
    kinds = [e.kind for e in reversed(await store.ledger(CARD))]
    assert kinds[-3:] == ["reserve", "charge", "release"]
    assert await store.open_attempts() == [] and await store.card_locks() == {}
