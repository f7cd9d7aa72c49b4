"""History on the real stack: after a real call, the stack's copier has put the call
and its ledger entries into the stack's PostgreSQL, and the CLI and the relatives'
API show them from there."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time

import asyncpg
import httpx
import pytest

from store.redis_store import RedisStore
from tests.e2e.conftest import E2E
from tests.e2e.harness import AmiWatch, SipAgent
from tests.e2e.test_inmate_calls import MOBILE, Terminal, call_in, dial_through, relative  # noqa: F401
from tools.config import REPO

pytestmark = pytest.mark.e2e

COPY_WAIT_S = 15.0  # the copier runs every second


async def _copied(conn: asyncpg.Connection, card: str) -> list[asyncpg.Record]:
    deadline = time.monotonic() + COPY_WAIT_S
    while True:
        rows = await conn.fetch("SELECT call_id, number, payer, amount, billed_s FROM calls WHERE card = $1", card)
        kinds = await conn.fetchval("SELECT count(*) FROM card_ledger WHERE card = $1", card)
        if rows and kinds >= 4:
            return rows
        assert time.monotonic() < deadline, "the call did not reach PostgreSQL"
        await asyncio.sleep(0.2)


def _cli(e2e: E2E, *args: str) -> str:
    env = dict(os.environ, KINLINE_STATE=str(e2e.config.state))
    done = subprocess.run([sys.executable, "-m", "tools.cli", "--config", "config/test.toml", *args],
                          capture_output=True, text=True, timeout=30, cwd=REPO, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_a_real_call_reaches_the_history_and_is_shown(
    e2e: E2E, ami: AmiWatch, store: RedisStore, call_in: object, relative: SipAgent  # noqa: F811
) -> None:
    card, term = await dial_through(store, call_in, MOBILE)
    await relative.wait_for("state", lambda e: e["state"] == "CONFIRMED", timeout=30)
    await term.bridged()
    await asyncio.sleep(4)  # talk long enough to be billed
    await relative.send("hangup")
    assert await term.hangup_cause() == "16"
    [cdr] = await store.call_records(card)
    assert cdr.amount > 0
    conn = await asyncpg.connect(e2e.config.postgres_url)
    try:
        rows = await _copied(conn, card)
        assert [tuple(r) for r in rows] == [(cdr.call_id, MOBILE, "caller", cdr.amount, cdr.billed_s)]
        ledger = await conn.fetch("SELECT kind, amount, balance_after FROM card_ledger WHERE card = $1"
                                  " ORDER BY entry_ms, entry_seq", card)
        redis_ledger = [(e.kind, e.amount, e.balance_after) for e in reversed(await store.ledger(card))]
        assert [tuple(r) for r in ledger] == redis_ledger
        assert [k for k, _, _ in redis_ledger] == ["topup", "reserve", "charge", "release"]
    finally:
        await conn.close()
    out = _cli(e2e, "history", "calls", "--card", card)
    assert cdr.call_id in out and MOBILE in out and "paid by card" in out
    out = _cli(e2e, "history", "ledger", "--card", card)
    assert out.count(cdr.call_id) == 3  # reserve, charge, release: once each
    # The relative sees it among the calls to their number.
    async with httpx.AsyncClient(base_url=f"http://{e2e.config.host}:{e2e.config.api_port}", timeout=10) as http:
        client = f"203.0.113.{secrets.randbelow(250) + 1}"
        assert (await http.post("/v1/auth/code", json={"phone": MOBILE},
                                headers={"X-Forwarded-For": client})).status_code == 202
        lines = [ln.split() for ln in e2e.config.path("logs", "sms.log").read_text().splitlines()]
        code = [c for p, c in lines if p == MOBILE][-1]
        r = await http.post("/v1/auth/session", json={"phone": MOBILE, "code": code})
        assert r.status_code == 200, r.text
        r = await http.get("/v1/calls", headers={"Authorization": f"Bearer {r.json()['token']}"},
                           params={"limit": 200})
        assert r.status_code == 200, r.text
        mine = [c for c in r.json() if c["call_id"] == cdr.call_id]
        assert [(c["card"], c["payer"], c["amount"]) for c in mine] == [(card, "caller", cdr.amount)]
