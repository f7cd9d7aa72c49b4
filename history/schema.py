"""The history database's tables, made by the copier when it starts.

Every copied row keeps the Redis stream entry id it came from (``*_ms``,
``*_seq``) as its key: a row copied twice is refused by the key (ON CONFLICT DO
NOTHING), a second guard behind the copy position committed with the rows.
"""

from __future__ import annotations

import asyncpg
import asyncpg.pool

SCHEMA_VERSION = 1
_LOCK = 7_202_611  # advisory lock: two copiers starting at once make the schema once

DDL = (
    """CREATE TABLE IF NOT EXISTS schema_version (
        version integer PRIMARY KEY,
        applied_at timestamptz NOT NULL DEFAULT now())""",
    # How far each Redis stream is copied: updated in the transaction that inserts the rows.
    """CREATE TABLE IF NOT EXISTS stream_positions (
        stream text PRIMARY KEY,
        last_id text NOT NULL,
        copied_at timestamptz NOT NULL DEFAULT now())""",
    """CREATE TABLE IF NOT EXISTS calls (
        call_id text PRIMARY KEY,
        log_ms bigint NOT NULL,
        log_seq bigint NOT NULL,
        uniqueid text NOT NULL,
        card text NOT NULL,
        inmate_id text NOT NULL,
        facility_id text NOT NULL,
        number text NOT NULL,
        route_kind text NOT NULL,
        payer text NOT NULL,
        started_at timestamptz NOT NULL,
        connected_at timestamptz,
        ended_at timestamptz,
        answered_s integer NOT NULL,
        billed_s integer NOT NULL,
        amount bigint NOT NULL,
        dial_status text NOT NULL,
        hangup_cause text NOT NULL,
        evidence text NOT NULL,
        credit_reason text NOT NULL,
        recording_path text NOT NULL,
        recording_sha256 text NOT NULL,
        record jsonb NOT NULL,
        UNIQUE (log_ms, log_seq))""",
    "CREATE INDEX IF NOT EXISTS calls_by_card ON calls (card, started_at DESC)",
    "CREATE INDEX IF NOT EXISTS calls_by_number ON calls (number, started_at DESC)",
    "CREATE INDEX IF NOT EXISTS calls_by_start ON calls (started_at DESC)",
    """CREATE TABLE IF NOT EXISTS card_ledger (
        entry_ms bigint NOT NULL,
        entry_seq bigint NOT NULL,
        ts timestamptz NOT NULL,
        card text NOT NULL,
        ref text NOT NULL,
        kind text NOT NULL,
        amount bigint NOT NULL,
        balance_after bigint NOT NULL,
        note text NOT NULL,
        PRIMARY KEY (entry_ms, entry_seq))""",
    "CREATE INDEX IF NOT EXISTS card_ledger_by_card ON card_ledger (card, entry_ms DESC, entry_seq DESC)",
    """CREATE TABLE IF NOT EXISTS relative_ledger (
        entry_ms bigint NOT NULL,
        entry_seq bigint NOT NULL,
        ts timestamptz NOT NULL,
        phone text NOT NULL,
        ref text NOT NULL,
        kind text NOT NULL,
        amount bigint NOT NULL,
        balance_after bigint NOT NULL,
        card text NOT NULL,
        note text NOT NULL,
        PRIMARY KEY (entry_ms, entry_seq))""",
    "CREATE INDEX IF NOT EXISTS relative_ledger_by_phone ON relative_ledger (phone, entry_ms DESC, entry_seq DESC)",
    # An entry the copier could not read (kept whole, so nothing is lost and the copy goes on).
    """CREATE TABLE IF NOT EXISTS copy_rejects (
        stream text NOT NULL,
        entry_id text NOT NULL,
        fields jsonb NOT NULL,
        error text NOT NULL,
        PRIMARY KEY (stream, entry_id))""",
)


class SchemaTooNew(Exception):
    """The database was made by a newer copier than this one."""


async def ensure_schema(conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy) -> None:
    """Make what is missing; refuse a database of a newer schema version."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
        for statement in DDL:
            await conn.execute(statement)
        version = await conn.fetchval("SELECT max(version) FROM schema_version")
        if version is None:
            await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", SCHEMA_VERSION)
        elif version > SCHEMA_VERSION:
            raise SchemaTooNew(f"history database is at schema {version}, this copier knows {SCHEMA_VERSION}")
