"""Benchmark: the relatives' API's latency for balance and top-up at N concurrent clients.

    .venv/bin/python -m bench.api_latency --url http://127.0.0.1:8080 --sms-log var/logs/sms.log

Each of ``--clients`` relatives (numbers +7999XXXXNNNN, one code each, each from
its own address in X-Forwarded-For) logs in,
then every client sends ``--requests`` GET /v1/me/balance one after the other,
all clients at once; then the same with POST /v1/me/topups (a payment opened
at the fake provider, each with its own Idempotency-Key). Reported: p50, p99
and max per request, and requests per second. Every request is bounded by a
10 s timeout; a non-2xx answer counts as a failure.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import httpx


async def _login(http: httpx.AsyncClient, phone: str, client: str, sms_log: Path) -> dict[str, str]:
    r = await http.post("/v1/auth/code", json={"phone": phone}, headers={"X-Forwarded-For": client})
    r.raise_for_status()
    code = [ln.split()[1] for ln in sms_log.read_text().splitlines() if ln.split()[0] == phone][-1]
    r = await http.post("/v1/auth/session", json={"phone": phone, "code": code})
    r.raise_for_status()
    return {"Authorization": f"Bearer {r.json()['token']}"}


async def _client(host: str, port: int, auth: dict[str, str], what: str, n: int, tag: str,
                  times: list[float], failures: list[int]) -> None:
    """One keep-alive HTTP/1.1 connection written by hand: httpx itself took more
    CPU than the server on this 2-core box and made the figures the client's."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for i in range(n):
            if what == "balance":
                head, body = "GET /v1/me/balance HTTP/1.1", b""
                extra = ""
            else:
                head, body = "POST /v1/me/topups HTTP/1.1", b'{"amount": 100}'
                extra = (f"Idempotency-Key: bench-{tag}-{i}-{time.time_ns()}\r\n"
                         f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n")
            request = (f"{head}\r\nHost: {host}\r\nAuthorization: {auth['Authorization']}\r\n{extra}\r\n").encode()
            start = time.perf_counter()
            writer.write(request + body)
            status_line = await asyncio.wait_for(reader.readline(), 10)
            length = 0
            while (line := await asyncio.wait_for(reader.readline(), 10)) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            await asyncio.wait_for(reader.readexactly(length), 10)
            times.append(time.perf_counter() - start)
            status = int(status_line.split()[1])
            if not 200 <= status < 300:
                failures.append(status)
    finally:
        writer.close()


def _report(what: str, times: list[float], failures: list[int], wall: float) -> None:
    ms = sorted(t * 1000 for t in times)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    sys.stdout.write(f"{what:<8} {len(ms)} requests, {len(failures)} failed, {len(ms) / wall:.0f}/s: "
                     f"p50 {statistics.median(ms):.1f} ms, p99 {p99:.1f} ms, max {ms[-1]:.1f} ms\n")


async def run(url: str, sms_log: Path, clients: int, requests: int) -> None:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=10, limits=limits) as http:
        # each client from its own address (RFC 2544's benchmarking range, named in
        # X-Forwarded-For as the TLS proxy would): the API allows 20 codes an hour per address
        auths = [await _login(http, f"+7999{time.time_ns() % 10**4:04d}{i:04d}", f"198.19.{i // 250}.{i % 250 + 1}",
                              sms_log) for i in range(clients)]
        for what in ("balance", "topup"):
            times: list[float] = []
            failures: list[int] = []
            start = time.perf_counter()
            await asyncio.gather(*(_client(http.base_url.host, http.base_url.port or 80, a, what, requests,
                                           str(k), times, failures) for k, a in enumerate(auths)))
            _report(what, times, failures, time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--sms-log", type=Path, default=Path("var/logs/sms.log"))
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--requests", type=int, default=20, help="per client and kind")
    args = parser.parse_args()
    asyncio.run(run(args.url, args.sms_log, args.clients, args.requests))


if __name__ == "__main__":
    main()
