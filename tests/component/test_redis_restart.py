"""After Redis restarts, the services' pooled connections are stale: the first
command on each must not fail (a call arriving then would be refused)."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import redis

from store.redis_store import connect
from tests.component.conftest import HOST, _stop


def _redis(folder: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        ["redis-server", "--bind", HOST, "--port", str(port), "--dir", str(folder), "--save", "",
         "--appendonly", "no", "--daemonize", "no", "--logfile", ""],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    probe = redis.Redis(host=HOST, port=port, socket_timeout=1, socket_connect_timeout=1)
    try:
        while time.monotonic() < deadline:
            try:
                if probe.ping():
                    return proc
            except redis.ConnectionError:
                time.sleep(0.05)
    finally:
        probe.close()
    _stop(proc)
    raise RuntimeError("redis-server did not start")


async def test_pooled_connections_survive_a_restart(tmp_path: Path) -> None:
    from tests.component.conftest import _free_port

    port = _free_port()
    proc = _redis(tmp_path, port)
    client = connect(f"redis://{HOST}:{port}/0")
    try:
        # several connections in the pool, all of them open
        await asyncio.gather(*(client.blpop(["nothing"], timeout=0.2) for _ in range(5)))
        _stop(proc)
        proc = _redis(tmp_path, port)
        results = await asyncio.gather(*(client.set(f"k{i}", "v") for i in range(5)), return_exceptions=True)
        assert results == [True] * 5
        assert await client.get("k0") == "v"
    finally:
        await client.aclose()
        _stop(proc)
