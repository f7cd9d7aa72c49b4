"""store/redis_wire.py against a real redis-server (and, for what Redis will not do on
demand, a server of our own that answers late or never)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from store.redis_store import connect
from store.redis_wire import WireRedis
from tests.component.conftest import HOST, RedisServer


@pytest.fixture
async def client(flushed: RedisServer) -> AsyncIterator[aioredis.Redis]:
    c = connect(flushed.url)
    try:
        yield c
    finally:
        await c.aclose()


async def _connections_made(probe: aioredis.Redis) -> int:
    """Connections the server has accepted since it started."""
    return int((await probe.info("stats"))["total_connections_received"])


async def test_replies_are_redis_pys(client: aioredis.Redis) -> None:
    assert isinstance(client, WireRedis)
    assert await client.hset("h", mapping={"a": "1", "b": "é"}) == 2
    assert await client.hgetall("h") == {"a": "1", "b": "é"}
    assert await client.hgetall("nothing") == {}
    assert await client.get("nothing") is None
    assert await client.exists("h", "nothing") == 1
    assert await client.set("n", 5) is True
    assert await client.incrby("n", 2) == 7
    assert await client.zadd("z", {"x": 1.5}) == 1
    assert await client.zrangebyscore("z", "-inf", "+inf", withscores=True) == [("x", 1.5)]
    entry = await client.xadd("s", {"k": "v"})
    assert (await client.xrange("s"))[0] == (entry, {"k": "v"})


async def test_an_error_reply_raises_its_exception(client: aioredis.Redis) -> None:
    await client.set("text", "abc")
    with pytest.raises(ResponseError, match="not an integer"):
        await client.incr("text")
    with pytest.raises(NoScriptError):
        await client.evalsha("0" * 40, 0)
    assert await client.get("text") == "abc"  # the connection goes on


async def test_a_script_reloads_after_a_flush(client: aioredis.Redis) -> None:
    script = client.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    assert await script(keys=["c"], args=[3]) == 3
    await client.script_flush()
    assert await script(keys=["c"], args=[4]) == 7  # NOSCRIPT, then EVAL: once


async def test_concurrent_commands_share_one_connection_in_order(client: aioredis.Redis,
                                                                 flushed: RedisServer) -> None:
    probe = aioredis.Redis(host=flushed.host, port=flushed.port, decode_responses=True)
    try:
        before = await _connections_made(probe)
        await asyncio.gather(*(client.set(f"k{i}", i) for i in range(500)))
        values = await asyncio.gather(*(client.get(f"k{i}") for i in range(500)))
        assert values == [str(i) for i in range(500)]
        assert await _connections_made(probe) - before == 1
    finally:
        await probe.aclose()


async def test_blocking_commands_take_a_pooled_connection(client: aioredis.Redis) -> None:
    waiting = asyncio.create_task(client.blpop(["queue"], timeout=5))
    await asyncio.sleep(0.1)
    assert await client.rpush("queue", "x") == 1  # not stuck behind the BLPOP
    assert await asyncio.wait_for(waiting, 5) == ("queue", "x")


async def test_a_killed_connection_is_replaced_and_the_command_sent_once_more(client: aioredis.Redis,
                                                                              flushed: RedisServer) -> None:
    await client.set("a", "1")
    probe = aioredis.Redis(host=flushed.host, port=flushed.port)
    try:
        await probe.client_kill_filter(skipme=True)  # every connection but the probe's
    finally:
        await probe.aclose()
    assert await client.get("a") == "1"


# -- a server that answers when told -------------------------------------------------


class LateServer:
    """Reads RESP requests; answers the n-th (over all connections) "Rn", once ``released`` is set."""

    def __init__(self) -> None:
        self.requests = 0
        self.connections = 0
        self.released = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(ConnectionError):
            while line := await reader.readline():
                if line.startswith(b"*"):
                    for _ in range(int(line[1:]) * 2):
                        await reader.readline()
                    self.requests += 1
                    reply = f"R{self.requests}".encode()
                    await self.released.wait()
                    writer.write(b"$%d\r\n%s\r\n" % (len(reply), reply))
                    await writer.drain()
        writer.close()


@pytest.fixture
async def late() -> AsyncIterator[tuple[LateServer, int]]:
    server = LateServer()
    listener = await asyncio.start_server(server.handle, HOST, 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield server, port
    finally:
        listener.close()


def _client(port: int, timeout: float) -> WireRedis:
    pool = aioredis.BlockingConnectionPool.from_url(f"redis://{HOST}:{port}/0", socket_timeout=timeout,
                                                    socket_connect_timeout=1, decode_responses=True, protocol=2)
    return WireRedis.from_pool(pool)


async def test_no_reply_in_time_raises_and_the_next_command_gets_a_new_connection(
        late: tuple[LateServer, int]) -> None:
    server, port = late
    c = _client(port, 0.3)
    try:
        with pytest.raises(RedisTimeoutError):
            await c.get("a")
        server.released.set()
        assert await c.get("b") == "R2"
        assert server.connections == 2  # the late connection was closed: replies would mismatch
    finally:
        await c.aclose()


async def test_a_cancelled_caller_does_not_shift_the_replies(late: tuple[LateServer, int]) -> None:
    server, port = late
    c = _client(port, 5)
    try:
        first = asyncio.create_task(c.set("a", "1"))
        second = asyncio.create_task(c.get("b"))
        while server.requests < 1:
            await asyncio.sleep(0.01)
        first.cancel()
        server.released.set()
        assert await second == "R2"  # the second reply, not the first's
        assert first.cancelled()
    finally:
        await c.aclose()


async def test_nothing_listening_is_a_connection_error() -> None:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]  # bound, not listening: refused
        c = _client(port, 1)
        try:
            with pytest.raises(RedisConnectionError):
                await c.get("a")
        finally:
            await c.aclose()
