"""The history copier and its queries against a real Redis and a real PostgreSQL.

Card ledger entries come from the store's own top-up script; settled calls and
relatives' entries are written here as the settle and relatives' scripts write
them (kl:cdr:<id>, the card's list, kl:cdr-log; kl:rel-ledger beside the
relative's own stream), with explicit ids where a test needs entries of days ago.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import redis.asyncio as aioredis

from history.copier import CDR_LOG, REL_LEDGER, STREAMS, Copier, StreamId
from history.main import run
from history.queries import History, HistoryUnavailable, newest_first
from history.schema import SCHEMA_VERSION, ensure_schema
from ivr.model import CallRecord
from ivr.relatives import RelativeEntry
from store.redis_store import LEDGER, PREFIX, RedisStore, _cdr_json_prefix, connect
from store.relatives import RelativeStore
from tests.component.conftest import RedisServer
from tests.component.pgserver import PostgresServer, pg_url, postgres  # noqa: F401
from tests.component.test_redis_store import CARD, provision, record
from tests.component.test_relatives_store import funded

PHONE = "+79161234567"
DAY_MS = 24 * 3600 * 1000
WAIT_S = 20.0

pytestmark = pytest.mark.usefixtures("flushed")


@pytest.fixture
async def redis(flushed: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = connect(flushed.url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def db(pg_url: str) -> AsyncIterator[asyncpg.Connection]:  # noqa: F811
    conn = await asyncpg.connect(pg_url)
    await ensure_schema(conn)
    try:
        yield conn
    finally:
        await conn.close()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def settle_call(redis: aioredis.Redis, rec: CallRecord, entry_id: str = "*") -> str:
    """What the settle script leaves of a call: its record, its card's list, the cdr log."""
    cdr = _cdr_json_prefix(rec) + str(rec.amount) + "}"
    await redis.set(f"{PREFIX}cdr:{rec.call_id}", cdr)
    await redis.lpush(f"{PREFIX}card:{rec.card}:cdrs", rec.call_id)
    return str(await redis.xadd(CDR_LOG, {"call_id": rec.call_id, "cdr": cdr}, id=entry_id))


async def card_entry(redis: aioredis.Redis, card: str, ms: int, ref: str, amount: int, after: int) -> str:
    """A card ledger entry written as the cards' scripts write it (global + own stream), at ``ms``."""
    fields = {"ts": str(ms), "card": card, "ref": ref, "kind": "topup", "amount": str(amount),
              "balance_after": str(after)}
    own = await redis.xadd(f"{PREFIX}card:{card}:ledger", fields, id=f"{ms}-*")
    await redis.xadd(LEDGER, fields, id=f"{ms}-*")
    return str(own)


async def rel_entry(redis: aioredis.Redis, phone: str, ref: str, kind: str, amount: int, after: int,
                    card: str = "", note: str = "", ms: int | None = None) -> None:
    fields = {"ts": str(ms or now_ms()), "phone": phone, "ref": ref, "kind": kind, "amount": str(amount),
              "balance_after": str(after), "card": card}
    if note:
        fields["note"] = note
    entry_id = f"{ms}-*" if ms else "*"
    await redis.xadd(REL_LEDGER, fields, id=entry_id)
    await redis.xadd(f"{PREFIX}rel:{phone}:ledger", fields, id=entry_id)


async def count(db: asyncpg.Connection, table: str) -> int:
    value = await db.fetchval(f"SELECT count(*) FROM {table}")
    assert isinstance(value, int)
    return value


async def some_history(store: RedisStore, redis: aioredis.Redis) -> None:
    """Two top-ups, two calls (the card paid one, the relative the other), three relative entries."""
    await provision(store)
    await store.top_up(CARD, 50_000, "pay-1")
    await store.top_up(CARD, 7_000, "pay-2")
    await settle_call(redis, record("call-1", 718))
    await settle_call(redis, dataclasses.replace(record("call-2", 359), payer="callee", credit_reason="dropped"))
    await rel_entry(redis, PHONE, "prov-1", "topup", 10_000, 10_000)
    await rel_entry(redis, PHONE, "call-2", "reserve", 1_000, 9_000, CARD)
    await rel_entry(redis, PHONE, "call-2", "charge", 359, 9_000, CARD, note="dropped")


async def test_copies_calls_and_ledgers_exactly_once(store: RedisStore, redis: aioredis.Redis,
                                                     db: asyncpg.Connection) -> None:
    await some_history(store, redis)
    copier = Copier(redis, db)
    report = await copier.cycle(now_ms())
    assert report.copied == {CDR_LOG: 2, LEDGER: 2, REL_LEDGER: 3} and not report.trimmed
    calls = await db.fetch("SELECT call_id, payer, number, amount, credit_reason, started_at FROM calls"
                           " ORDER BY call_id")
    assert [tuple(r) for r in calls] == [("call-1", "caller", PHONE, 718, "", record("x", 0).started_at),
                                         ("call-2", "callee", PHONE, 359, "dropped", record("x", 0).started_at)]
    ledger = await db.fetch("SELECT card, ref, kind, amount, balance_after FROM card_ledger"
                            " ORDER BY entry_ms, entry_seq")
    assert [tuple(r) for r in ledger] == [(CARD, "pay-1", "topup", 50_000, 50_000),
                                          (CARD, "pay-2", "topup", 7_000, 57_000)]
    rel = await db.fetch("SELECT phone, ref, kind, amount, balance_after, card, note FROM relative_ledger"
                         " ORDER BY entry_ms, entry_seq")
    assert [tuple(r) for r in rel] == [(PHONE, "prov-1", "topup", 10_000, 10_000, "", ""),
                                       (PHONE, "call-2", "reserve", 1_000, 9_000, CARD, ""),
                                       (PHONE, "call-2", "charge", 359, 9_000, CARD, "dropped")]
    # Again, and with new entries: only these are added.
    assert (await copier.cycle(now_ms())).copied == {CDR_LOG: 0, LEDGER: 0, REL_LEDGER: 0}
    await store.top_up(CARD, 1_000, "pay-3")
    assert (await Copier(redis, db).cycle(now_ms())).copied == {CDR_LOG: 0, LEDGER: 1, REL_LEDGER: 0}
    assert (await count(db, "calls"), await count(db, "card_ledger"), await count(db, "relative_ledger")) == (2, 3, 3)
    # Nothing is trimmed within the retention; the records are given its TTL.
    assert (await redis.xlen(LEDGER), await redis.xlen(CDR_LOG), await redis.xlen(REL_LEDGER)) == (3, 2, 3)
    assert 0 < await redis.ttl(f"{PREFIX}cdr:call-1") <= 2 * 24 * 3600
    assert await db.fetchval("SELECT max(version) FROM schema_version") == SCHEMA_VERSION


async def test_the_stores_own_scripts_are_copied_as_they_wrote(store: RedisStore, redis: aioredis.Redis,
                                                               db: asyncpg.Connection, pg_url: str) -> None:  # noqa: F811
    """Real money scripts: a call the card pays and one the relative pays (01), settled by
    the store; the copy holds both calls and each account's ledger exactly as Redis has it."""
    rel = RelativeStore(store.redis)
    await provision(store, balance=10_000)
    await funded(rel, 5_000, PHONE)
    await store.reserve("call-a", CARD, 1_000, 60)
    await store.settle(record("call-a", 509))
    await store.reserve("call-b", CARD, 1_000, 60, payer_phone=PHONE)
    await store.settle(dataclasses.replace(record("call-b", 359), payer="callee"))
    await Copier(redis, db).cycle(now_ms())
    calls = await db.fetch("SELECT call_id, payer, amount FROM calls ORDER BY call_id")
    assert [tuple(r) for r in calls] == [("call-a", "caller", 509), ("call-b", "callee", 359)]
    history = History(pg_url)
    try:
        assert ([(e.ref, e.kind, e.amount, e.balance_after) for e in await history.card_ledger(CARD)]
                == [(e.ref, e.kind, e.amount, e.balance_after) for e in await store.ledger(CARD)])
        assert ([(e.ref, e.kind, e.amount, e.balance_after, e.card) for e in await history.relative_ledger(PHONE)]
                == [(e.ref, e.kind, e.amount, e.balance_after, e.card) for e in await rel.entries(PHONE)])
        kinds = [e.kind for e in await history.relative_ledger(PHONE)]
        assert kinds == ["release", "charge", "reserve", "topup"]
    finally:
        await history.aclose()


async def test_a_crash_before_the_commit_copies_nothing(store: RedisStore, redis: aioredis.Redis,
                                                        db: asyncpg.Connection) -> None:
    await some_history(store, redis)
    seen: list[str] = []

    def dies_on_the_second(sid: StreamId, fields: dict[str, str]) -> tuple[object, ...]:
        seen.append(str(sid))
        if len(seen) == 2:
            raise RuntimeError("killed mid-batch")
        return STREAMS[1].row(sid, fields)

    crashing = Copier(redis, db, streams=[dataclasses.replace(STREAMS[1], row=dies_on_the_second)])
    with pytest.raises(RuntimeError):
        await crashing.cycle(now_ms())
    assert await count(db, "card_ledger") == 0
    assert await db.fetchval("SELECT last_id FROM stream_positions WHERE stream = $1", LEDGER) is None
    await Copier(redis, db).cycle(now_ms())
    assert await count(db, "card_ledger") == 2


async def test_a_crash_after_the_commit_before_the_trim(store: RedisStore, redis: aioredis.Redis,
                                                        db: asyncpg.Connection) -> None:
    """Copied and committed, then the process dies before trimming: the next run copies
    nothing again, misses nothing, and trims. Even with the position lost the key refuses
    a second copy."""
    await some_history(store, redis)
    first = Copier(redis, db, retention_s=0)
    for stream in STREAMS:
        await first.copy_batch(stream)  # committed; the process "dies" here
    await store.top_up(CARD, 1_000, "pay-3")  # meanwhile
    report = await Copier(redis, db, retention_s=0).cycle(now_ms() + 1)
    assert report.copied == {CDR_LOG: 0, LEDGER: 1, REL_LEDGER: 0}
    assert report.trimmed == {CDR_LOG: 2, LEDGER: 3, REL_LEDGER: 3}
    assert (await count(db, "calls"), await count(db, "card_ledger"), await count(db, "relative_ledger")) == (2, 3, 3)
    assert (await redis.xlen(LEDGER), await redis.xlen(CDR_LOG), await redis.xlen(REL_LEDGER)) == (0, 0, 0)


async def test_two_copiers_at_once_copy_each_entry_once(store: RedisStore, redis: aioredis.Redis,
                                                        db: asyncpg.Connection, pg_url: str) -> None:  # noqa: F811
    """The position row is locked for the batch: a second copier waits, then reads on
    from the first one's committed position (e.g. two nodes' copiers)."""
    await provision(store)
    for i in range(300):
        await store.top_up(CARD, 1, f"pay-{i}")
    others = [await asyncpg.connect(pg_url) for _ in range(2)]
    try:
        copiers = [Copier(redis, conn, batch=7) for conn in (db, *others)]
        reports = await asyncio.gather(*(c.cycle(now_ms()) for c in copiers))
    finally:
        for conn in others:
            await conn.close()
    assert sum(r.copied[LEDGER] for r in reports) == 300
    assert await count(db, "card_ledger") == 300
    assert await db.fetchval("SELECT count(DISTINCT ref) FROM card_ledger") == 300


async def test_the_entry_id_refuses_a_second_copy(store: RedisStore, redis: aioredis.Redis,
                                                  db: asyncpg.Connection) -> None:
    """The second guard: with the committed position lost, every entry is read again
    and none is stored twice."""
    await some_history(store, redis)
    await Copier(redis, db).cycle(now_ms())
    await db.execute("UPDATE stream_positions SET last_id = '0-0'")
    report = await Copier(redis, db).cycle(now_ms())
    assert report.copied == {CDR_LOG: 2, LEDGER: 2, REL_LEDGER: 3}
    assert (await count(db, "calls"), await count(db, "card_ledger"), await count(db, "relative_ledger")) == (2, 2, 3)


async def test_trims_only_what_is_copied_and_old(redis: aioredis.Redis, db: asyncpg.Connection) -> None:
    t = now_ms() - 3 * DAY_MS  # older than the retention (2 days)
    minute = 60_000
    a1 = await card_entry(redis, "1001", t - 10 * minute, "a1", 100, 100)
    await card_entry(redis, "1001", t - 9 * minute, "a2", 100, 200)
    a3 = await card_entry(redis, "1002", t - minute, "a3", 100, 100)
    old_call = await settle_call(redis, record("old-call", 10), entry_id=f"{t - minute}-*")
    copier = Copier(redis, db)
    for stream in STREAMS:
        await copier.copy_batch(stream)
    # Old too, but not copied yet; and a recent one that is copied.
    b1 = await card_entry(redis, "1001", t, "b1", 100, 300)
    new_call = await settle_call(redis, record("new-call", 20), entry_id=f"{t}-*")
    assert a1 and a3 and old_call and new_call
    trimmed = await copier.trim(now_ms())
    assert trimmed == 4  # a1 a2 a3 and old-call from the global streams
    assert [i for i, _ in await redis.xrange(LEDGER)] == [await _global_id(redis, b1)]
    assert [f["call_id"] for _, f in await redis.xrange(CDR_LOG)] == ["new-call"]
    # Card 1001's own stream: a1, a2 gone, b1 (not copied) kept; card 1002 keeps its newest entry.
    assert [f["ref"] for _, f in await redis.xrange(f"{PREFIX}card:1001:ledger")] == ["b1"]
    assert [f["ref"] for _, f in await redis.xrange(f"{PREFIX}card:1002:ledger")] == ["a3"]
    assert await redis.get(f"{PREFIX}cdr:old-call") is None
    assert await redis.get(f"{PREFIX}cdr:new-call") is not None
    assert await redis.lrange(f"{PREFIX}card:{CARD}:cdrs", 0, -1) == ["new-call"]
    # Copied now, and recent entries copied: these stay for the retention.
    await card_entry(redis, "1001", now_ms(), "c1", 100, 400)
    await copier.cycle(now_ms())
    assert [f["ref"] for _, f in await redis.xrange(LEDGER)] == ["c1"]
    assert [f["ref"] for _, f in await redis.xrange(f"{PREFIX}card:1001:ledger")] == ["c1"]
    assert await count(db, "card_ledger") == 5


async def _global_id(redis: aioredis.Redis, own_id: str) -> str:
    """The global twin of a hand-written entry: same ms (card_entry gives both the same ms)."""
    ms = own_id.split("-")[0]
    rows = await redis.xrange(LEDGER, min=f"{ms}-0", max=f"{ms}-{2**63 - 1}")
    return str(rows[-1][0])


async def test_relatives_streams_are_trimmed_keeping_the_newest(redis: aioredis.Redis,
                                                                 db: asyncpg.Connection) -> None:
    t = now_ms() - 3 * DAY_MS
    await rel_entry(redis, PHONE, "p1", "topup", 500, 500, ms=t - 600_000)
    await rel_entry(redis, PHONE, "p2", "topup", 500, 1_000, ms=t - 300_000)
    await Copier(redis, db, retention_s=2 * 24 * 3600).cycle(now_ms())
    assert await redis.xlen(REL_LEDGER) == 0
    # The account's last movement is still readable (refund after inactivity reads it).
    assert [f["ref"] for _, f in await redis.xrange(f"{PREFIX}rel:{PHONE}:ledger")] == ["p2"]
    assert await count(db, "relative_ledger") == 2


async def test_postgres_down_then_up(store: RedisStore, redis: aioredis.Redis, postgres: PostgresServer,  # noqa: F811
                                     pg_url: str, flushed: RedisServer,  # noqa: F811
                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="history")
    postgres.stop()
    await some_history(store, redis)
    stop = asyncio.Event()
    task = asyncio.create_task(run(flushed.url, pg_url, 0, 0.05, stop))
    try:
        deadline = time.monotonic() + WAIT_S
        while not any("unreachable" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "no warning while PostgreSQL is down"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # several more tries while it is down
        assert (await redis.xlen(LEDGER), await redis.xlen(CDR_LOG), await redis.xlen(REL_LEDGER)) == (2, 2, 3)
        postgres.start()
        conn = await asyncpg.connect(pg_url)
        try:
            while await redis.xlen(LEDGER) or await redis.xlen(REL_LEDGER) or await redis.xlen(CDR_LOG):
                assert time.monotonic() < deadline + WAIT_S, "not copied after PostgreSQL came back"
                await asyncio.sleep(0.05)
            assert (await count(conn, "calls"), await count(conn, "card_ledger"),
                    await count(conn, "relative_ledger")) == (2, 2, 3)
        finally:
            await conn.close()
    finally:
        stop.set()
        assert await asyncio.wait_for(task, WAIT_S) == 0
    warnings = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(warnings) == 1, warnings  # once per change of state, not once per try
    assert any("reachable again" in r.getMessage() for r in caplog.records)


async def test_queries_by_card_number_and_date(store: RedisStore, redis: aioredis.Redis,
                                               db: asyncpg.Connection, pg_url: str) -> None:  # noqa: F811
    await provision(store)
    await provision(store, card="1002")
    day = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    for i in range(5):
        rec = dataclasses.replace(record(f"c{i}", 100 + i, card=CARD if i % 2 == 0 else "1002"),
                                  started_at=day + timedelta(days=i), number=PHONE if i < 4 else "+74951234567")
        await settle_call(redis, rec)
    await store.top_up(CARD, 500, "p1")
    await store.top_up("1002", 700, "p2")
    await rel_entry(redis, PHONE, "prov-1", "topup", 900, 900)
    await Copier(redis, db).cycle(now_ms())
    history = History(pg_url)
    try:
        assert [c.call_id for c in await history.calls(card=CARD)] == ["c4", "c2", "c0"]
        assert [c.call_id for c in await history.calls(number=PHONE)] == ["c3", "c2", "c1", "c0"]
        assert [c.call_id for c in await history.calls(number=PHONE, limit=2)] == ["c3", "c2"]
        got = await history.calls(number=PHONE, since=day + timedelta(days=1), until=day + timedelta(days=3))
        assert [c.call_id for c in got] == ["c2", "c1"]
        assert [c.call_id for c in await history.calls(card="1002", number=PHONE)] == ["c3", "c1"]
        assert got[0].amount == 102 and got[0].payer == "caller" and got[0].started_at == day + timedelta(days=2)
        assert [(e.ref, e.amount, e.balance_after) for e in await history.card_ledger(CARD)] == [("p1", 500, 500)]
        assert [(e.ref, e.card) for e in await history.relative_ledger(PHONE)] == [("prov-1", "")]
        with pytest.raises(ValueError):
            await history.calls()
    finally:
        await history.aclose()


async def test_history_unreachable_is_a_typed_error() -> None:
    from tests.component.conftest import _free_port

    history = History(f"postgresql://kinline:x@127.0.0.1:{_free_port()}/kinline")
    try:
        with pytest.raises(HistoryUnavailable):
            await history.calls(card=CARD)
    finally:
        await history.aclose()


def _entry(n: int, ref: str = "r") -> RelativeEntry:
    return RelativeEntry(id=f"{n}-0", ts=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=n), ref=f"{ref}{n}",
                         kind="topup", amount=n, balance_after=n)


def test_newest_first_joins_redis_tail_and_history_without_duplicates() -> None:
    copied = [_entry(n) for n in (5, 4, 3, 2, 1)]
    # Redis' own stream: two not copied yet, three copied (other ids, same movements).
    recent = [dataclasses.replace(_entry(n), id=f"9{n}-0") for n in (7, 6, 5, 4, 3)]
    assert [e.amount for e in newest_first(recent, copied, 4)] == [7, 6, 5, 4]
    assert [e.amount for e in newest_first(recent, copied, 50)] == [7, 6, 5, 4, 3, 2, 1]
    assert [e.amount for e in newest_first([], copied, 2)] == [5, 4]
    assert [e.amount for e in newest_first(recent, [], 3)] == [7, 6, 5]
