"""Benchmark: does a big device table slow the apps' REGISTER? On a running stack.

    KINLINE_PORT_OFFSET=5 .venv/bin/python -m bench.app_registrations --config config/test.toml \\
        --state /tmp/stack-state --devices 10000 --agents 5 --registers 200

App SIP accounts are PostgreSQL rows that Asterisk reads on every request (PJSIP
realtime, no cache). The bench makes its own devices (phone +70000000000, one
password for all; direct SQL inserts), then REGISTERs a few of them from raw UDP
sockets, each answering the digest challenge, first with only the agents' rows in
the tables, then with ``--devices`` rows. Measured on this machine's clock:
REGISTER sent -> 401 (endpoint looked up, challenge) and authenticated REGISTER sent
-> 200 OK (endpoint, auth and aor looked up, contact stored in astdb). Its rows are
deleted at the end.

Measured here (test stack, offset 5, 2-core box, 5 agents x 200 REGISTERs per phase):

    5 endpoints:      REGISTER -> 401 p50 0.76-0.79 ms, p99 2.1-2.2 ms; auth'd -> 200 p50 1.07-1.29 ms, p99 2.9-3.3 ms
    10 000 endpoints: REGISTER -> 401 p50 0.76-0.81 ms, p99 1.8-2.9 ms; auth'd -> 200 p50 1.12-1.32 ms, p99 3.1-4.1 ms

Asterisk's boot with 10 000 devices: 0.41 s (as with none) thanks to
allow_unqualified_fetch=no in sorcery.conf; without it 9.7 s (res_pjsip's qualify
set-up read every app AOR, one query per endpoint).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import statistics
import sys
import time

import asyncpg

from store.devices import ensure_schema
from tests.e2e.rawsip import digest
from tools.config import load_config

PHONE = "+70000000000"  # the bench's own relative: its rows are the bench's
PASSWORD = "bench-password-" + "x" * 16


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def fill(conn: asyncpg.Connection, first: int, last: int) -> None:
    """Devices ``first``..``last`` (ids are their numbers in hex) with their ps_* rows."""
    ids = f"SELECT lpad(to_hex(g), 16, '0') AS id FROM generate_series({first}, {last}) g"
    async with conn.transaction():
        await conn.execute(f"INSERT INTO devices (id, phone, platform, token, app_id) SELECT id, '{PHONE}', 'fcm',"
                           f" 'bench-token-' || id, 'ru.kinline.bench' FROM ({ids}) d ON CONFLICT DO NOTHING")
        await conn.execute(f"INSERT INTO ps_auths (id, username, md5_cred) SELECT 'app-' || id, 'app-' || id,"
                           f" md5('app-' || id || ':kinline:{PASSWORD}') FROM ({ids}) d ON CONFLICT DO NOTHING")
        await conn.execute(f"INSERT INTO ps_aors (id) SELECT 'app-' || id FROM ({ids}) d ON CONFLICT DO NOTHING")
        await conn.execute(f"INSERT INTO ps_endpoints (id, aors, auth) SELECT 'app-' || id, 'app-' || id,"
                           f" 'app-' || id FROM ({ids}) d ON CONFLICT DO NOTHING")


async def clean(conn: asyncpg.Connection) -> None:
    async with conn.transaction():
        for table in ("ps_endpoints", "ps_auths", "ps_aors"):
            await conn.execute(f"DELETE FROM {table} WHERE id IN (SELECT 'app-' || id FROM devices WHERE phone = $1)",
                               PHONE)
        await conn.execute("DELETE FROM devices WHERE phone = $1", PHONE)
    await conn.execute("VACUUM ANALYZE devices")
    for table in ("ps_endpoints", "ps_auths", "ps_aors"):
        await conn.execute(f"VACUUM ANALYZE {table}")


class Registrar:
    """One app's UDP socket towards the apps' door."""

    def __init__(self, user: str, door: tuple[str, int]) -> None:
        self.user, self.door = user, door
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(2.0)
        self.port = self.sock.getsockname()[1]
        self.cseq = 0
        self.call_id = secrets.token_hex(8)

    def _send(self, auth: str = "") -> None:
        self.cseq += 1
        host, port = self.door
        uri = f"sip:{host}:{port}"
        lines = [f"REGISTER {uri} SIP/2.0",
                 f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};rport;branch=z9hG4bK{secrets.token_hex(8)}",
                 "Max-Forwards: 70", f"From: <sip:{self.user}@{host}>;tag={secrets.token_hex(4)}",
                 f"To: <sip:{self.user}@{host}>", f"Call-ID: {self.call_id}", f"CSeq: {self.cseq} REGISTER",
                 f"Contact: <sip:{self.user}@127.0.0.1:{self.port}>", "Expires: 120"]
        if auth:
            lines.append(f"Authorization: {auth}")
        self.sock.sendto(("\r\n".join([*lines, "Content-Length: 0", "", ""])).encode(), self.door)

    def _final(self) -> str:
        while True:
            data = self.sock.recv(65535).decode(errors="replace")
            if data.startswith("SIP/2.0 ") and not data.startswith("SIP/2.0 1"):
                if f"CSeq: {self.cseq} REGISTER" in data:
                    return data
            elif data.startswith("OPTIONS "):  # Asterisk's qualify: answer it
                self._answer_options(data)

    def _answer_options(self, request: str) -> None:
        heads = [ln for ln in request.split("\r\n") if ln.split(":", 1)[0].lower() in ("via", "from", "to", "call-id",
                                                                                       "cseq")]
        self.sock.sendto(("\r\n".join(["SIP/2.0 200 OK", *heads, "Content-Length: 0", "", ""])).encode(), self.door)

    def register(self) -> tuple[float, float]:
        """(REGISTER -> 401, authenticated REGISTER -> 200) in ms."""
        t0 = time.perf_counter()
        self._send()
        challenge = self._final()
        t1 = time.perf_counter()
        if not challenge.startswith("SIP/2.0 401"):
            raise RuntimeError(f"{self.user}: expected 401, got {challenge.splitlines()[0]}")
        header = next(ln.split(":", 1)[1].strip() for ln in challenge.split("\r\n")
                      if ln.lower().startswith("www-authenticate:"))
        host, port = self.door
        self._send(digest("REGISTER", f"sip:{host}:{port}", self.user, PASSWORD, header, secrets.token_hex(4)))
        answer = self._final()
        t2 = time.perf_counter()
        if not answer.startswith("SIP/2.0 200"):
            raise RuntimeError(f"{self.user}: expected 200, got {answer.splitlines()[0]}")
        return (t1 - t0) * 1000, (t2 - t1) * 1000


def measure(agents: list[Registrar], rounds: int) -> tuple[list[float], list[float]]:
    challenge, ok = [], []
    for _ in range(rounds):
        for agent in agents:
            a, b = agent.register()
            challenge.append(a)
            ok.append(b)
    return challenge, ok


def summary(what: str, values: list[float]) -> str:
    values = sorted(values)
    p99 = values[min(len(values) - 1, round(0.99 * (len(values) - 1)))]
    return f"{what}: n={len(values)} p50 {statistics.median(values):.2f} ms, p99 {p99:.2f} ms, max {values[-1]:.2f} ms"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None)
    parser.add_argument("--state", default=None, help="the stack's state folder (default: the config's)")
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--agents", type=int, default=5)
    parser.add_argument("--registers", type=int, default=200, help="REGISTERs per agent and phase")
    opts = parser.parse_args()
    if opts.state:
        os.environ["KINLINE_STATE"] = opts.state
    config = load_config(opts.config)
    door = (config.app_sip_host, config.app_sip_port)
    conn = await asyncpg.connect(config.postgres_url)
    try:
        await ensure_schema(conn)
        await clean(conn)
        await fill(conn, 1, opts.agents)
        agents = [Registrar(f"app-{n:016x}", door) for n in range(1, opts.agents + 1)]
        total = await conn.fetchval("SELECT count(*) FROM ps_endpoints")
        measure(agents, 2)  # warm-up
        small = measure(agents, opts.registers)
        _out(f"without the bench's devices ({total} endpoints in PostgreSQL):")
        _out("  " + summary("REGISTER -> 401", small[0]))
        _out("  " + summary("authenticated REGISTER -> 200", small[1]))
        started = time.perf_counter()
        await fill(conn, opts.agents + 1, opts.devices)
        total = await conn.fetchval("SELECT count(*) FROM ps_endpoints")
        _out(f"inserted {opts.devices - opts.agents} devices in {time.perf_counter() - started:.1f} s")
        measure(agents, 2)
        big = measure(agents, opts.registers)
        _out(f"with {total} endpoints in PostgreSQL:")
        _out("  " + summary("REGISTER -> 401", big[0]))
        _out("  " + summary("authenticated REGISTER -> 200", big[1]))
    finally:
        await clean(conn)
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
