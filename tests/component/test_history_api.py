"""The relatives' API over the history: a real uvicorn, a real Redis, a real PostgreSQL
(copied by the real copier), and the CLI's history commands on the same data."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from api.main import build_from
from history.copier import Copier
from history.schema import ensure_schema
from store.redis_store import connect
from tests.component.conftest import RedisServer, _free_port
from tests.component.pgserver import PostgresServer, pg_url, postgres  # noqa: F401
from tests.component.test_api import SECRET, Api, login, serving
from tests.component.test_history import PHONE, rel_entry, settle_call
from tests.component.test_redis_store import CARD, record

DAY = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def history_api(redis_server: RedisServer, postgres: PostgresServer, tmp_path: Path) -> Iterator[Api]:  # noqa: F811
    sms_log = tmp_path / "sms.log"
    with serving(build_from(redis_server.url, sms_log, SECRET, postgres_url=postgres.url)) as url:
        yield Api(url, sms_log)


@pytest.fixture
async def redis(flushed: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = connect(flushed.url)
    try:
        yield client
    finally:
        await client.aclose()


async def copy(redis: aioredis.Redis, url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await ensure_schema(conn)
        await Copier(redis, conn).cycle(time.time_ns() // 1_000_000)
    finally:
        await conn.close()


async def test_calls_to_my_number_both_payers_and_ledger_without_gaps(
        history_api: Api, redis: aioredis.Redis, pg_url: str) -> None:  # noqa: F811
    for i, (number, payer) in enumerate([(PHONE, "caller"), (PHONE, "callee"), ("+74951234567", "caller")]):
        rec = dataclasses.replace(record(f"call-{i}", 100 + i), number=number, payer=payer,
                                  started_at=DAY + timedelta(days=i))
        await settle_call(redis, rec)
    await rel_entry(redis, PHONE, "prov-1", "topup", 5_000, 5_000)
    await copy(redis, pg_url)
    # Not copied yet: the API must still show it, once.
    await rel_entry(redis, PHONE, "call-9", "reserve", 1_000, 4_000, CARD)
    async with httpx.AsyncClient(base_url=history_api.url, timeout=10) as http:
        assert (await http.get("/v1/calls")).status_code == 401
        auth = await login(http, history_api)
        r = await http.get("/v1/calls", headers=auth)
        assert r.status_code == 200, r.text
        assert [(c["call_id"], c["payer"], c["amount"]) for c in r.json()] == [("call-1", "callee", 101),
                                                                               ("call-0", "caller", 100)]
        r = await http.get("/v1/calls", headers=auth, params={"from": "2026-03-02", "to": "2026-03-02"})
        assert [c["call_id"] for c in r.json()] == ["call-1"]
        assert (await http.get("/v1/calls", headers=auth, params={"from": "2026-03-03", "to": "2026-03-01"})
                ).status_code == 422
        ledger = (await http.get("/v1/me/ledger", headers=auth)).json()
        assert [(e["ref"], e["kind"]) for e in ledger] == [("call-9", "reserve"), ("prov-1", "topup")]
        await copy(redis, pg_url)  # copied now: still once each
        ledger = (await http.get("/v1/me/ledger", headers=auth)).json()
        assert [(e["ref"], e["kind"]) for e in ledger] == [("call-9", "reserve"), ("prov-1", "topup")]


async def test_history_database_down_answers_503(redis_server: RedisServer, tmp_path: Path,
                                                 flushed: RedisServer) -> None:
    down = f"postgresql://kinline:x@127.0.0.1:{_free_port()}/kinline"
    with serving(build_from(redis_server.url, tmp_path / "sms.log", SECRET, postgres_url=down)) as url:
        api = Api(url, tmp_path / "sms.log")
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            auth = await login(http, api)
            for path in ("/v1/calls", "/v1/me/ledger"):
                r = await http.get(path, headers=auth)
                assert r.status_code == 503 and r.headers["Retry-After"], (path, r.text)
            assert (await http.get("/v1/me/balance", headers=auth)).status_code == 200  # the rest works
