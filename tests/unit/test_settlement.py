"""The reconciler's rules: every open attempt is settled once, from the best evidence, never overbilled."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.call_plan import CallPlan, plan_to_json
from ivr.model import CallRecord, Evidence, OpenAttempt, Reservation, Settlement
from ivr.settlement import (
    GRACE_MS,
    HEARTBEAT_MARGIN_MS,
    Bridged,
    ChannelEnded,
    Ended,
    Reconciler,
    SwitchView,
    decide,
)

T0 = 1_795_000_000_000  # ms
PLAN = CallPlan(
    call_id="1795000000.7-1", uniqueid="1795000000.7", card="1001", inmate_id="i-1", facility_id="open",
    e164="+79161234567", route_kind="mobile", payer="caller", rate=359, fee=150, free_threshold_s=3,
    increment_s=60, max_s=900, warn_s=60, record=True, reserved=150 + 15 * 359,
    started_at=datetime.fromtimestamp(T0 / 1000, UTC),
)
DEADLINE = T0 + 1_245_000


# --- decide -------------------------------------------------------------------


def test_waits_while_nothing_is_known_before_the_deadline() -> None:
    assert decide(Evidence(bridged_ms=T0 + 10_000), T0 + 60_000, DEADLINE) is None


def test_an_end_is_left_to_the_call_own_hangup_path_for_the_grace_period() -> None:
    ev = Evidence(bridged_ms=T0 + 10_000, ended_ms=T0 + 70_000, dial_status="ANSWER", hangup_cause="16")
    assert decide(ev, T0 + 70_000 + GRACE_MS - 1, DEADLINE) is None
    out = decide(ev, T0 + 70_000 + GRACE_MS, DEADLINE)
    assert out is not None
    assert (out.dial_status, out.talk_ms, out.connected_ms, out.ended_ms, out.evidence) == (
        "ANSWER", 60_000, T0 + 10_000, T0 + 70_000, "exact")


def test_an_unanswered_end_costs_nothing() -> None:
    out = decide(Evidence(ended_ms=T0, dial_status="BUSY", hangup_cause="17"), T0 + GRACE_MS, DEADLINE)
    assert out is not None and (out.dial_status, out.talk_ms, out.connected_ms) == ("BUSY", 0, None)


def test_answered_but_never_bridged_costs_nothing() -> None:
    # the relative hung up during the introduction: Dial says ANSWER, no bridge stamp
    out = decide(Evidence(ended_ms=T0, dial_status="ANSWER"), T0 + GRACE_MS, DEADLINE)
    assert out is not None and (out.talk_ms, out.connected_ms) == (0, None)


def test_a_lost_call_is_billed_to_its_last_heartbeat() -> None:
    ev = Evidence(bridged_ms=T0, heartbeat_ms=T0 + 42_000, caller_gone_ms=T0 + 50_000)
    assert decide(ev, T0 + 50_000 + GRACE_MS - 1, DEADLINE) is None
    out = decide(ev, T0 + 50_000 + GRACE_MS, DEADLINE)
    assert out is not None
    assert (out.dial_status, out.talk_ms, out.ended_ms, out.evidence) == ("ANSWER", 42_000, T0 + 42_000, "heartbeat")


def test_a_lost_call_without_heartbeat_or_bridge_costs_nothing() -> None:
    out = decide(Evidence(bridged_ms=T0, caller_gone_ms=T0), T0 + GRACE_MS, DEADLINE)
    assert out is not None and out.talk_ms == 0
    out = decide(Evidence(caller_gone_ms=T0), T0 + GRACE_MS, DEADLINE)
    assert out is not None and (out.dial_status, out.talk_ms) == ("NONE", 0)


def test_the_deadline_settles_with_what_is_known() -> None:
    out = decide(Evidence(bridged_ms=T0, heartbeat_ms=T0 + 5_000), DEADLINE, DEADLINE)
    assert out is not None and (out.talk_ms, out.evidence) == (5_000, "deadline")


@given(bridged=st.integers(0, 10**6), beat=st.integers(0, 2 * 10**6), gone=st.integers(0, 3 * 10**6),
       ended=st.none() | st.integers(0, 3 * 10**6))
def test_never_bills_past_the_last_proven_moment(bridged: int, beat: int, gone: int, ended: int | None) -> None:
    ev = Evidence(bridged_ms=T0 + bridged, heartbeat_ms=T0 + beat, caller_gone_ms=T0 + gone,
                  ended_ms=None if ended is None else T0 + ended, dial_status="ANSWER")
    out = decide(ev, T0 + 10**7, T0 + 10**7)
    assert out is not None
    proven = (T0 + ended) if ended is not None else max(T0 + bridged, T0 + beat)
    assert 0 <= out.talk_ms <= max(0, proven - (T0 + bridged))


# --- the service, over in-memory storage ---------------------------------------


class Memory:
    """Attempts + Wallet in memory: holds, evidence, channels gone, locks."""

    def __init__(self) -> None:
        self.holds: dict[str, tuple[str, int, int]] = {}  # call_id -> plan, amount, deadline
        self.ev: dict[str, dict[str, str | int]] = {}
        self.gone: dict[str, int] = {}
        self.locks: dict[str, str] = {}
        self.records: list[CallRecord] = []
        self.balance = 0
        self.offsets: dict[str, int] = {}

    def open(self, plan: CallPlan, deadline: int = DEADLINE) -> None:
        self.holds[plan.call_id] = (plan_to_json(plan), plan.reserved, deadline)

    async def open_attempts(self) -> list[OpenAttempt]:
        return [OpenAttempt(c, p, d) for c, (p, _, d) in self.holds.items()]

    async def evidences(self, call_ids: Sequence[str]) -> list[Evidence]:
        def one(e: dict[str, str | int]) -> Evidence:
            def num(k: str) -> int | None:
                return int(e[k]) if k in e else None

            return Evidence(num("bridged_ms"), num("ended_ms"), str(e.get("dial_status", "")),
                            str(e.get("hangup_cause", "")), num("heartbeat_ms"), num("caller_gone_ms"))

        return [one(self.ev.get(call_id, {})) for call_id in call_ids]

    async def add_evidence(self, call_id: str, **values: str | int) -> None:
        self.ev.setdefault(call_id, {}).update(values)

    async def add_evidences(self, values: Mapping[str, Mapping[str, str | int]]) -> None:
        for call_id, proven in values.items():
            self.ev.setdefault(call_id, {}).update(proven)

    async def mark_gone(self, uniqueid: str, at_ms: int) -> None:
        self.gone.setdefault(uniqueid, at_ms)

    async def gone_times(self, uniqueids: Sequence[str]) -> dict[str, int]:
        return {uniqueid: self.gone[uniqueid] for uniqueid in uniqueids if uniqueid in self.gone}

    async def card_locks(self) -> dict[str, str]:
        return dict(self.locks)

    async def release_card(self, card: str, uniqueid: str) -> None:
        if self.locks.get(card) == uniqueid:
            del self.locks[card]

    async def log_offset(self, node: str) -> int:
        return self.offsets.get(node, 0)

    async def set_log_offset(self, node: str, offset: int) -> None:
        self.offsets[node] = offset

    # Wallet (only what settling uses)
    async def settle(self, record: CallRecord) -> Settlement:
        if record.call_id not in self.holds:
            return Settlement(record.call_id, 0, 0, self.balance, duplicate=True)
        _, held, _ = self.holds.pop(record.call_id)
        charged = min(held, record.amount)
        self.balance += held - charged
        self.records.append(replace(record, amount=charged))
        return Settlement(record.call_id, charged, held - charged, self.balance, duplicate=False)

    async def acquire_card(self, card: str, uniqueid: str, ttl_s: int) -> bool:
        raise NotImplementedError

    async def reserve(self, call_id: str, card: str, amount: int, hold_s: int, plan: str) -> Reservation:
        raise NotImplementedError

    async def release_expired(self, now: datetime) -> list[str]:
        raise NotImplementedError

    async def top_up(self, card: str, amount: int, payment_id: str) -> int:
        raise NotImplementedError


async def _recording(plan: CallPlan) -> tuple[str, str]:
    return f"/rec/{plan.call_id}.wav", "ab" * 32


@pytest.fixture
def memory() -> Memory:
    return Memory()


@pytest.fixture
def reconciler(memory: Memory) -> Reconciler:
    return Reconciler(memory, memory, _recording)


async def test_settles_exactly_from_the_log_once(memory: Memory, reconciler: Reconciler) -> None:
    memory.open(PLAN)
    await reconciler.record(Bridged(PLAN.call_id, T0 + 10_000))
    await reconciler.record(Ended(PLAN.call_id, T0 + 75_500, "ANSWER", "16"))
    alive = SwitchView(alive_at_ms=T0 + 80_000)
    report = await reconciler.run_once(T0 + 75_500 + GRACE_MS, alive)
    assert report.settled == [PLAN.call_id]
    [record] = memory.records
    assert (record.answered_s, record.billed_s, record.amount) == (66, 120, 150 + 2 * 359)
    assert (record.evidence, record.recording_path, record.dial_status) == ("exact", f"/rec/{PLAN.call_id}.wav",
                                                                             "ANSWER")
    assert memory.balance == PLAN.reserved - record.amount
    assert (await reconciler.run_once(T0 + 100_000, alive)).settled == []
    assert len(memory.records) == 1


async def test_heartbeats_while_bridged_then_bills_up_to_the_last_one_when_asterisk_died(
    memory: Memory, reconciler: Reconciler
) -> None:
    memory.open(PLAN)
    await reconciler.record(Bridged(PLAN.call_id, T0))
    for second in (5, 10, 15):
        await reconciler.run_once(T0 + second * 1000, SwitchView(alive_at_ms=T0 + second * 1000))
    assert memory.ev[PLAN.call_id]["heartbeat_ms"] == T0 + 15_000 - HEARTBEAT_MARGIN_MS
    # Asterisk is killed at T0+17 s, restarts; the call's channel predates the new run
    restarted = SwitchView(alive_at_ms=T0 + 30_000, lost=lambda uid: uid == PLAN.uniqueid)
    assert (await reconciler.run_once(T0 + 30_000, restarted)).settled == []  # grace
    report = await reconciler.run_once(T0 + 30_000 + GRACE_MS, restarted)
    assert report.settled == [PLAN.call_id]
    [record] = memory.records
    assert record.answered_s == 14 and record.evidence == "heartbeat"
    # a platform fault drops the call: 14 s complete no 60 s increment, nothing is charged
    assert (record.billed_s, record.amount) == (0, 0)
    assert record.credit_reason == "dropped: platform fault, last increment credited"


async def test_no_heartbeat_when_the_switch_does_not_answer(memory: Memory, reconciler: Reconciler) -> None:
    memory.open(PLAN)
    await reconciler.record(Bridged(PLAN.call_id, T0))
    await reconciler.run_once(T0 + 5_000, SwitchView(alive_at_ms=None))
    assert "heartbeat_ms" not in memory.ev[PLAN.call_id]


async def test_a_channel_end_in_the_log_settles_an_attempt_never_dialed(
    memory: Memory, reconciler: Reconciler
) -> None:
    memory.open(PLAN)  # the AGI reserved, then died before Dial
    await reconciler.record(ChannelEnded(PLAN.uniqueid, T0 + 3_000))
    report = await reconciler.run_once(T0 + 3_000 + GRACE_MS, SwitchView(alive_at_ms=T0 + 9_000))
    assert report.settled == [PLAN.call_id]
    assert memory.records[0].amount == 0 and memory.balance == PLAN.reserved


async def test_frees_a_card_lock_only_when_its_call_is_gone(memory: Memory, reconciler: Reconciler) -> None:
    memory.locks = {"1001": "1795000000.7", "1002": "1795000000.9", "1003": "1794000000.1"}
    await reconciler.record(ChannelEnded("1795000000.7", T0))
    report = await reconciler.run_once(T0, SwitchView(alive_at_ms=T0, lost=lambda uid: uid.startswith("1794")))
    assert sorted(report.locks_released) == ["1001", "1003"]
    assert memory.locks == {"1002": "1795000000.9"}


async def test_heartbeats_are_stored_at_most_every_two_seconds(memory: Memory, reconciler: Reconciler) -> None:
    memory.open(PLAN)
    await reconciler.record(Bridged(PLAN.call_id, T0))
    beats = []
    for ms in range(1_000, 9_001, 1_000):
        report = await reconciler.run_once(T0 + ms, SwitchView(alive_at_ms=T0 + ms))
        if report.heartbeats:
            beats.append(memory.ev[PLAN.call_id]["heartbeat_ms"])
    assert beats == [T0 + 2_000, T0 + 4_000, T0 + 6_000, T0 + 8_000]


def _call(i: int) -> CallPlan:
    return replace(PLAN, call_id=f"1795000000.{i}-1", uniqueid=f"1795000000.{i}", card=f"{2000 + i}")


async def test_one_cycle_treats_each_of_many_attempts_by_its_own_evidence(
    memory: Memory, reconciler: Reconciler
) -> None:
    calls = [_call(i) for i in range(5)]
    for plan in calls:
        memory.open(plan)
    memory.locks = {plan.card: plan.uniqueid for plan in calls}
    await reconciler.record(Bridged(calls[0].call_id, T0))  # up: a heartbeat
    await reconciler.record(Bridged(calls[1].call_id, T0))
    await reconciler.record(Ended(calls[1].call_id, T0 + 20_000, "ANSWER", "16"))  # ended: settled exactly
    await reconciler.record(ChannelEnded(calls[2].uniqueid, T0 + 27_000))  # gone: stamped, card freed, in grace
    memory.ev[calls[3].call_id] = {"caller_gone_ms": T0 + 1_000}  # already stamped: settled from it
    now = T0 + 30_000
    report = await reconciler.run_once(now, SwitchView(alive_at_ms=now, lost=lambda uid: uid == calls[4].uniqueid))
    assert report.settled == [calls[1].call_id, calls[3].call_id]
    assert report.heartbeats == 1 and memory.ev[calls[0].call_id]["heartbeat_ms"] == now - HEARTBEAT_MARGIN_MS
    assert memory.ev[calls[2].call_id] == {"caller_gone_ms": T0 + 27_000}
    assert memory.ev[calls[4].call_id] == {"caller_gone_ms": now}  # lost with an earlier run of the switch
    assert [r.evidence for r in memory.records] == ["exact", "heartbeat"]
    assert sorted(report.locks_released) == [calls[2].card, calls[4].card]


class CountingStorage:
    """Memory, counting the calls the reconciler makes to it (each one round trip to Redis)."""

    def __init__(self, inner: Memory) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self.inner, name)

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return await method(*args, **kwargs)

        return counted


@pytest.mark.parametrize("count", [1, 50])
async def test_a_cycle_calls_storage_the_same_few_times_however_many_attempts_are_open(
    memory: Memory, count: int
) -> None:
    storage = CountingStorage(memory)
    reconciler = Reconciler(storage, memory, _recording)  # type: ignore[arg-type]
    for i in range(count):
        plan = _call(i)
        memory.open(plan)
        memory.locks[plan.card] = plan.uniqueid
        memory.ev[plan.call_id] = {"bridged_ms": T0}
    report = await reconciler.run_once(T0 + 10_000, SwitchView(alive_at_ms=T0 + 10_000))
    assert report.heartbeats == count
    assert storage.calls == ["open_attempts", "evidences", "gone_times", "add_evidences", "card_locks", "gone_times"]
