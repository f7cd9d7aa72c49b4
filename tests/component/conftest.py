"""A real redis-server for component tests: one per session, on 127.0.0.1.

No persistence (``--save "" --appendonly no``), its own temporary folder and a
free port. ``store`` gives each test a fresh RedisStore on an empty database.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from ivr.pin import PinHasher
from store.redis_store import RedisStore, connect

HOST = "127.0.0.1"
TEST_PINS = PinHasher(bytes(range(32)))  # the tests' PIN key (a stack's is in its secrets file)
START_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class RedisServer:
    host: str
    port: int
    folder: Path

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _start(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Start redis-server on a free port; retry if another process took it."""
    for _ in range(5):
        port = _free_port()
        log = (folder / "redis.log").open("ab")
        proc = subprocess.Popen(
            [
                "redis-server", "--bind", HOST, "--port", str(port), "--dir", str(folder),
                "--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes",
                "--logfile", "",
            ],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        client = redis.Redis(host=HOST, port=port, socket_timeout=1, socket_connect_timeout=1)
        try:
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    if client.ping():
                        return proc, port
                except redis.ConnectionError:
                    time.sleep(0.05)
        finally:
            client.close()
        _stop(proc)
    raise RuntimeError(f"redis-server did not start; see {folder / 'redis.log'}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed")
    folder = tmp_path_factory.mktemp("redis")
    proc, port = _start(folder)
    try:
        yield RedisServer(HOST, port, folder)
    finally:
        _stop(proc)


@pytest.fixture
def flushed(redis_server: RedisServer) -> RedisServer:
    """The server with an empty database (sync: usable from sync tests)."""
    with contextlib.closing(redis.Redis(host=redis_server.host, port=redis_server.port)) as client:
        client.flushdb()
    return redis_server


@pytest.fixture
async def store(flushed: RedisServer) -> AsyncIterator[RedisStore]:
    s = RedisStore(connect(flushed.url), TEST_PINS)
    try:
        yield s
    finally:
        await s.aclose()
