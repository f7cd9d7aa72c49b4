"""The reconciler's storage against a real redis-server: plans kept with holds,
evidence, channels gone, the lock index; a whole reconcile over real Redis; and
a cycle's round trips to Redis, which must not grow with the calls open."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from ivr.call_plan import CallPlan, plan_from_json, plan_to_json
from ivr.model import Evidence
from ivr.settlement import Bridged, ChannelEnded, Ended, Reconciler, SwitchView
from metrics.series import ReconcilerMetrics
from reconciler.main import BridgedCalls, LogTail, NodeAttempts, cycle, now_ms
from store.redis_store import EVIDENCE_TTL_S, RedisStore
from tests.component.conftest import RedisServer
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
    assert await store.evidences(["c1"]) == [Evidence()]
    await store.add_evidence("c1", bridged_ms=5, dial_status="ANSWER")
    await store.add_evidence("c1", ended_ms=9)
    assert await store.evidences(["c1"]) == [Evidence(bridged_ms=5, ended_ms=9, dial_status="ANSWER")]
    assert await store.gone_times(["u1"]) == {}
    await store.mark_gone("u1", 7)
    await store.mark_gone("u1", 8)  # the first end logged stays
    assert await store.gone_times(["u1"]) == {"u1": 7}
    assert await store.log_offset("node-a") == 0
    await store.set_log_offset("node-a", 1234)
    assert await store.log_offset("node-a") == 1234


async def test_batch_reads_return_each_attempt_s_own_evidence_in_order(store: RedisStore) -> None:
    await store.add_evidence("c1", bridged_ms=5, heartbeat_ms=7000)
    await store.add_evidences({"c2": {"ended_ms": 9, "dial_status": "BUSY", "hangup_cause": "17"},
                               "c3": {"caller_gone_ms": 11}})
    await store.redis.hset("kl:ev:c4", mapping={"bridged_ms": "soon", "dial_status": "ANSWER"})  # not a number
    ids = ["c3", "none", "c1", "c4", "c2"]
    expected = [Evidence(caller_gone_ms=11), Evidence(), Evidence(bridged_ms=5, heartbeat_ms=7000),
                Evidence(dial_status="ANSWER"), Evidence(ended_ms=9, dial_status="BUSY", hangup_cause="17")]
    assert await store.evidences(ids) == expected
    assert [(await store.evidences([i]))[0] for i in ids] == expected  # one by one: the same
    assert await store.evidences([]) == []
    assert 0 < await store.redis.ttl("kl:ev:c2") <= EVIDENCE_TTL_S
    await store.mark_gone("u1", 7)
    await store.mark_gone("u3", 8)
    assert await store.gone_times(["u3", "u2", "u1", "u3"]) == {"u1": 7, "u3": 8}
    assert await store.gone_times([]) == {}


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


# --- a cycle's round trips to Redis ---------------------------------------------

MAX_ROUND_TRIPS = 8  # the log offset, open attempts (2), evidence, gone stamps, new evidence, locks, their stamps


class CountingConnection(aioredis.Connection):
    """A connection that counts its round trips: one per command or pipeline sent."""

    sent = 0

    async def send_packed_command(self, command: bytes | str | Iterable[bytes], check_health: bool = True) -> None:
        CountingConnection.sent += 1
        await super().send_packed_command(command, check_health)


class AliveSwitch:
    """SwitchWatch's view of an Asterisk that answers and has run for an hour."""

    async def view(self) -> SwitchView:
        return SwitchView(alive_at_ms=now_ms())


async def _open_calls(store: RedisStore, count: int, systemname: str) -> list[CallPlan]:
    """``count`` open attempts: a third bridged (a heartbeat is due), a third whose
    caller's channel end was just logged (no card lock), a third still ringing."""
    plans = []
    for i in range(count):
        card = f"{2000 + i}"
        uniqueid = f"{systemname}-{T0 // 1000}.{i}" if systemname else f"{T0 // 1000}.{i}"
        plan = replace(PLAN, call_id=f"{uniqueid}-1", uniqueid=uniqueid, card=card, reserved=600, record=False)
        await provision(store, balance=1_000, card=card)
        await store.reserve(plan.call_id, card, 600, 1200, plan_to_json(plan))
        if i % 3 == 1:
            await store.mark_gone(uniqueid, now_ms() - 1_000)
        else:
            assert await store.acquire_card(card, uniqueid, 3600)
        if i % 3 == 0:
            await store.add_evidence(plan.call_id, bridged_ms=now_ms() - 60_000)
        plans.append(plan)
    return plans


@pytest.mark.parametrize(("count", "systemname"), [(3, ""), (60, ""), (30, "kinline-n1")])
async def test_a_cycle_makes_the_same_few_round_trips_however_many_calls_are_open(
    flushed: RedisServer, tmp_path: Path, count: int, systemname: str
) -> None:
    pool = aioredis.ConnectionPool.from_url(flushed.url, connection_class=CountingConnection, decode_responses=True)
    store = RedisStore(aioredis.Redis(connection_pool=pool))
    try:
        plans = await _open_calls(store, count, systemname)
        attempts = NodeAttempts(store, systemname) if systemname else store
        tail = LogTail(tmp_path / "kinline.csv")  # no new events: what the cycle reads is Redis
        metrics = ReconcilerMetrics()
        CountingConnection.sent = 0
        await cycle(Reconciler(attempts, store, _recording), store, tail, AliveSwitch(),  # type: ignore[arg-type]
                    "node", metrics, BridgedCalls())
        assert CountingConnection.sent <= MAX_ROUND_TRIPS
        # ...and it did the whole job: heartbeats and channel ends stored, nothing settled or freed yet
        seen = await store.evidences([plan.call_id for plan in plans])
        assert [ev.heartbeat_ms is not None for ev in seen] == [i % 3 == 0 for i in range(count)]
        assert [ev.caller_gone_ms is not None for ev in seen] == [i % 3 == 1 for i in range(count)]
        assert metrics.registry.get_sample_value("kinline_reconciler_heartbeats_total") == len(range(0, count, 3))
        assert len(await store.open_attempts()) == count
        assert len(await store.card_locks()) == count - len(range(1, count, 3))
    finally:
        await store.aclose()
