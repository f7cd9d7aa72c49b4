"""Copy Redis' history streams into PostgreSQL exactly once, then let Redis forget.

Streams copied (store/redis_store.py, store/relatives.py list their fields)::

    kl:cdr-log      every settled call: call_id cdr (CallRecord JSON)  -> calls
    kl:ledger       every card ledger entry                           -> card_ledger
    kl:rel-ledger   every relative ledger entry                       -> relative_ledger

Exactly once: one PostgreSQL transaction locks the stream's copy position
(``SELECT ... FOR UPDATE``: a second copier waits), reads the entries after it
from Redis, inserts them and moves the position. A crash before the commit
copies nothing; a crash after it re-reads from the committed position. The
entry id is each row's key too (ON CONFLICT DO NOTHING), a second guard.

Then Redis shrinks. Only entries that are both copied (at or before the
committed position, read back from PostgreSQL) and older than the retention are
trimmed, from the global streams and from the per-card / per-relative streams
they were written beside (same Lua script); a settled call's ``kl:cdr:<id>`` is
deleted and its id taken out of the card's list. The newest entry of a
per-card or per-relative stream is always kept: it tells when the account
last moved (store/relatives.py, refunds after inactivity). Nothing is trimmed
while PostgreSQL cannot be read.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from store.redis_store import CDR_LOG, LEDGER, PREFIX, REL_LEDGER

log = logging.getLogger(__name__)

__all__ = ["CDR_LOG", "LEDGER", "REL_LEDGER", "Copier", "Report", "Stream", "StreamId"]

RETENTION_S = 2 * 24 * 3600
BATCH = 500  # entries per transaction
MAX_BATCHES = 20  # per stream and cycle: a long backlog is copied over several cycles
# A per-card (per-relative) entry and its twin in the global stream are written by
# the same script, so their ids are a few ms apart at most; per-card streams are
# trimmed this far behind the global copy position, never closer.
TWIN_MARGIN_MS = 60_000

Fields = Mapping[str, str]
Row = tuple[Any, ...]
Entry = tuple[str, dict[str, str]]


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


def entries(raw: Iterable[tuple[bytes | str | None, Mapping[bytes | str, bytes | str] | None]] | None) -> list[Entry]:
    """XRANGE's answer as (id, fields) strings, whatever the client decodes."""
    return [(_text(i), {_text(k): _text(v) for k, v in (f or {}).items()}) for i, f in raw or []]


@dataclass(frozen=True, order=True)
class StreamId:
    """A Redis stream entry id, ``<ms>-<seq>``, ordered as Redis orders them."""

    ms: int
    seq: int

    @classmethod
    def parse(cls, text: str) -> StreamId:
        ms, _, seq = text.partition("-")
        if not (ms.isdigit() and seq.isdigit()):
            raise ValueError(f"not a stream id: {text!r}")
        return cls(int(ms), int(seq))

    def next(self) -> StreamId:
        return StreamId(self.ms, self.seq + 1)

    def __str__(self) -> str:
        return f"{self.ms}-{self.seq}"


ZERO = StreamId(0, 0)


def _ts(ms: str) -> datetime:
    return datetime.fromtimestamp(int(ms) / 1000, UTC)


def _time(value: object) -> datetime | None:
    return datetime.fromisoformat(str(value)) if value else None


def card_row(sid: StreamId, f: Fields) -> Row:
    return (sid.ms, sid.seq, _ts(f["ts"]), f["card"], f["ref"], f["kind"], int(f["amount"]),
            int(f["balance_after"]), f.get("note", ""))


def relative_row(sid: StreamId, f: Fields) -> Row:
    return (sid.ms, sid.seq, _ts(f["ts"]), f["phone"], f["ref"], f["kind"], int(f["amount"]),
            int(f["balance_after"]), f.get("card", ""), f.get("note", ""))


def call_row(sid: StreamId, f: Fields) -> Row:
    raw: dict[str, Any] = json.loads(f["cdr"])
    if raw["call_id"] != f["call_id"]:
        raise ValueError(f"call_id {f['call_id']!r} but the record says {raw['call_id']!r}")
    started = _time(raw["started_at"])
    if started is None:
        raise ValueError("record without started_at")
    return (raw["call_id"], sid.ms, sid.seq, str(raw.get("uniqueid", "")), str(raw["card"]),
            str(raw.get("inmate_id", "")), str(raw.get("facility_id", "")), str(raw["number"]),
            str(raw.get("route_kind", "")), str(raw["payer"]), started, _time(raw.get("connected_at")),
            _time(raw.get("ended_at")), int(raw.get("answered_s", 0)), int(raw.get("billed_s", 0)),
            int(raw["amount"]), str(raw.get("dial_status", "")), str(raw.get("hangup_cause", "")),
            str(raw.get("evidence", "")), str(raw.get("credit_reason", "")), str(raw.get("recording_path", "")),
            str(raw.get("recording_sha256", "")), f["cdr"])


@dataclass(frozen=True)
class Stream:
    key: str
    insert: str  # SQL taking one row
    row: Callable[[StreamId, Fields], Row]


STREAMS = (
    Stream(CDR_LOG, "INSERT INTO calls VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,"
                    " $15, $16, $17, $18, $19, $20, $21, $22, $23::jsonb) ON CONFLICT DO NOTHING", call_row),
    Stream(LEDGER, "INSERT INTO card_ledger VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
           card_row),
    Stream(REL_LEDGER, "INSERT INTO relative_ledger VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                       " ON CONFLICT DO NOTHING", relative_row),
)
_REJECT = "INSERT INTO copy_rejects VALUES ($1, $2, $3::jsonb, $4) ON CONFLICT DO NOTHING"


@dataclass
class Report:
    copied: dict[str, int] = field(default_factory=dict)
    trimmed: dict[str, int] = field(default_factory=dict)
    rejected: int = 0


class Copier:
    """One Redis, one PostgreSQL connection (the schema made: history.schema)."""

    def __init__(self, redis: aioredis.Redis, conn: asyncpg.Connection, retention_s: int = RETENTION_S,
                 batch: int = BATCH, streams: Iterable[Stream] = STREAMS) -> None:
        self.redis = redis
        self.conn = conn
        self.retention_ms = retention_s * 1000
        self.batch = batch
        self.streams = tuple(streams)

    async def cycle(self, now_ms: int) -> Report:
        """Copy what is new, then trim what is copied and past the retention."""
        report = Report()
        for stream in self.streams:
            for _ in range(MAX_BATCHES):
                copied = await self.copy_batch(stream, report)
                report.copied[stream.key] = report.copied.get(stream.key, 0) + copied
                if copied < self.batch:
                    break
        await self.trim(now_ms, report)
        return report

    async def copy_batch(self, stream: Stream, report: Report | None = None) -> int:
        """The next entries of ``stream`` and its new position, in one transaction."""
        calls: list[str] = []
        async with self.conn.transaction():
            await self.conn.execute("INSERT INTO stream_positions (stream, last_id) VALUES ($1, $2)"
                                    " ON CONFLICT DO NOTHING", stream.key, str(ZERO))
            last = await self.conn.fetchval("SELECT last_id FROM stream_positions WHERE stream = $1 FOR UPDATE",
                                            stream.key)
            got = entries(await self.redis.xrange(stream.key, min=f"({last}", count=self.batch))
            if not got:
                return 0
            rows, rejects = [], []
            for entry_id, fields in got:
                sid = StreamId.parse(entry_id)
                try:
                    rows.append(stream.row(sid, fields))
                except (KeyError, ValueError, TypeError) as err:
                    log.error("%s entry %s unreadable (%s: %s): kept in copy_rejects", stream.key, entry_id,
                              type(err).__name__, err)
                    rejects.append((stream.key, entry_id, json.dumps(fields), f"{type(err).__name__}: {err}"))
                else:
                    if stream.key == CDR_LOG:
                        calls.append(fields["call_id"])
            if rows:
                await self.conn.executemany(stream.insert, rows)
            if rejects:
                await self.conn.executemany(_REJECT, rejects)
            await self.conn.execute("UPDATE stream_positions SET last_id = $2, copied_at = now() WHERE stream = $1",
                                    stream.key, got[-1][0])
        if report is not None:
            report.rejected += len(rejects)
        if calls:  # committed: Redis may forget these records after the retention
            async with self.redis.pipeline(transaction=False) as pipe:
                for call_id in calls:
                    pipe.expire(f"{PREFIX}cdr:{call_id}", self.retention_ms // 1000)
                await pipe.execute()
        return len(got)

    async def positions(self) -> dict[str, StreamId]:
        """What PostgreSQL holds (committed), per stream."""
        rows = await self.conn.fetch("SELECT stream, last_id FROM stream_positions")
        return {row["stream"]: StreamId.parse(row["last_id"]) for row in rows}

    async def trim(self, now_ms: int, report: Report | None = None) -> int:
        positions = await self.positions()
        cutoff = StreamId(now_ms - self.retention_ms, 0)
        total = 0
        for stream in self.streams:
            copied = positions.get(stream.key)
            if copied is None or copied == ZERO:
                continue
            below = min(cutoff, copied.next())  # every entry before this id is copied and old
            own_below = StreamId(min(cutoff.ms, copied.ms - TWIN_MARGIN_MS), 0)
            n = await self._trim_stream(stream.key, below, own_below)
            if report is not None and n:
                report.trimmed[stream.key] = n
            total += n
        return total

    async def _trim_stream(self, key: str, below: StreamId, own_below: StreamId) -> int:
        trimmed = 0
        while True:
            old = entries(await self.redis.xrange(key, min="-", max=f"({below}", count=self.batch))
            if not old:
                return trimmed
            # The per-card / per-relative streams and records first: a crash here
            # leaves the global entries, and the next cycle does it again.
            await self._forget_beside(key, [f for _, f in old], own_below)
            last = StreamId.parse(old[-1][0])
            await self.redis.xtrim(key, minid=str(last.next()), approximate=False)
            trimmed += len(old)

    async def _forget_beside(self, key: str, gone: list[Fields], own_below: StreamId) -> None:
        if key == CDR_LOG:
            async with self.redis.pipeline(transaction=False) as pipe:
                for f in gone:
                    try:
                        card = str(json.loads(f["cdr"])["card"])
                    except (KeyError, ValueError, TypeError):
                        card = ""
                    if card:
                        pipe.lrem(f"{PREFIX}card:{card}:cdrs", 0, f.get("call_id", ""))
                    pipe.unlink(f"{PREFIX}cdr:{f.get('call_id', '')}")
                await pipe.execute()
            return
        if key == LEDGER:
            owners = {f"{PREFIX}card:{f['card']}:ledger" for f in gone if f.get("card")}
        else:
            owners = {f"{PREFIX}rel:{f['phone']}:ledger" for f in gone if f.get("phone")}
        for own in sorted(owners):
            newest = entries(await self.redis.xrevrange(own, count=1))
            if not newest:
                continue
            keep_from = min(own_below, StreamId.parse(newest[0][0]))  # the newest entry stays
            await self.redis.xtrim(own, minid=str(keep_from), approximate=False)
