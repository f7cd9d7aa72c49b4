"""Read the history database (made by history.copier): calls by card, by called
number and by date; ledgers by card and by relative's phone. Used by the API and
the CLI.

What PostgreSQL does not hold yet (at most about a second of entries, more while
it was down) is still in Redis: :func:`newest_first` joins the two without
duplicates.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

import asyncpg

from history.copier import StreamId
from history.schema import ensure_schema
from ivr.relatives import RelativeEntry
from store.pg import DOWN, LazyPool
from store.redis_store import LedgerEntry

MAX_LIMIT = 1000


class HistoryUnavailable(Exception):
    """The history database cannot be reached (the caller answers 'try again later')."""


@dataclass(frozen=True)
class CallRow:
    call_id: str
    card: str
    number: str
    payer: str  # "caller" (the card paid) or "callee" (the relative whose phone is number)
    route_kind: str
    started_at: datetime
    connected_at: datetime | None
    ended_at: datetime | None
    answered_s: int
    billed_s: int
    amount: int
    dial_status: str
    hangup_cause: str
    credit_reason: str

    @classmethod
    def from_record(cls, row: asyncpg.Record) -> CallRow:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


_CALL_COLUMNS = ", ".join(CallRow.__dataclass_fields__)


class History:
    """Queries over a small connection pool, opened on first use (the API starts without it)."""

    def __init__(self, url: str, max_size: int = 4) -> None:
        # the copier may not have run yet: the schema is ensured on opening
        self._pool = LazyPool(url, ensure_schema, max_size)

    async def aclose(self) -> None:
        await self._pool.aclose()

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        try:
            pool = await self._pool.get()
            return await pool.fetch(sql, *args)
        except DOWN as err:
            raise HistoryUnavailable(f"{type(err).__name__}: {err}") from err

    async def calls(self, *, card: str | None = None, number: str | None = None, since: datetime | None = None,
                    until: datetime | None = None, limit: int = 50) -> list[CallRow]:
        """Calls of a card and/or to a number, started in [since, until), newest first."""
        if card is None and number is None:
            raise ValueError("give a card or a number")
        rows = await self._fetch(
            f"SELECT {_CALL_COLUMNS} FROM calls WHERE ($1::text IS NULL OR card = $1)"
            " AND ($2::text IS NULL OR number = $2) AND ($3::timestamptz IS NULL OR started_at >= $3)"
            " AND ($4::timestamptz IS NULL OR started_at < $4) ORDER BY started_at DESC, call_id DESC LIMIT $5",
            card, number, since, until, _limit(limit))
        return [CallRow.from_record(r) for r in rows]

    async def card_ledger(self, card: str, limit: int = 50) -> list[LedgerEntry]:
        """The card's copied ledger entries, newest first."""
        rows = await self._fetch(
            "SELECT * FROM card_ledger WHERE card = $1 ORDER BY entry_ms DESC, entry_seq DESC LIMIT $2",
            card, _limit(limit))
        return [LedgerEntry(id=str(StreamId(r["entry_ms"], r["entry_seq"])), ts=r["ts"], card=r["card"], ref=r["ref"],
                            kind=r["kind"], amount=r["amount"], balance_after=r["balance_after"], note=r["note"])
                for r in rows]

    async def relative_ledger(self, phone: str, limit: int = 50) -> list[RelativeEntry]:
        """The relative's copied ledger entries, newest first."""
        rows = await self._fetch(
            "SELECT * FROM relative_ledger WHERE phone = $1 ORDER BY entry_ms DESC, entry_seq DESC LIMIT $2",
            phone, _limit(limit))
        return [RelativeEntry(id=str(StreamId(r["entry_ms"], r["entry_seq"])), ts=r["ts"], ref=r["ref"],
                              kind=r["kind"], amount=r["amount"], balance_after=r["balance_after"], card=r["card"],
                              note=r["note"])
                for r in rows]


def _limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be 1-{MAX_LIMIT}, not {limit}")
    return limit


class _Entry(Protocol):
    @property
    def ts(self) -> datetime: ...
    @property
    def ref(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def amount(self) -> int: ...
    @property
    def balance_after(self) -> int: ...


E = TypeVar("E", bound=_Entry)


def _same(entry: _Entry) -> str:
    """What one movement is, whichever stream it was read from (the per-account
    stream and the global one give the same entry different ids)."""
    return json.dumps([entry.ts.isoformat(), entry.ref, entry.kind, entry.amount, entry.balance_after])


def newest_first(recent: Sequence[E], copied: Sequence[E], limit: int) -> list[E]:
    """An account's newest ``limit`` entries from Redis' recent ones and the history's
    copied ones, each newest first, without duplicates.

    Entries not copied yet are newer than every copied one (the copy follows the
    global stream in order, and an account's own stream has its entries in the same
    order), so: those of ``recent`` that ``copied`` lacks, then ``copied``. A recent
    entry that is copied but older than ``copied``'s window cannot be among the
    newest ``limit``: ``copied`` holds ``limit`` newer ones."""
    have = {_same(e) for e in copied}
    pending = [e for e in recent if _same(e) not in have]
    return [*pending, *copied][:limit]
