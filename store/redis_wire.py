"""A Redis client whose plain commands share one connection, written once per loop turn.

redis-py's asyncio client checks a connection out of its pool for every command (a
lock, a health check, retry and observability wrappers): ~90-110 us of CPU a command
against ~35 us for the protocol itself, and a gather of three reads is three sockets,
three writes and three wake-ups. The AGI server sends ~12 commands a call.

``WireRedis`` is redis-py's ``Redis`` (every command method, its reply callbacks,
scripts, pipelines, pub/sub) with ``execute_command`` sending plain commands down one
connection: commands issued in the same turn of the event loop leave in one write,
replies come back in order (RESP2, parsed by hiredis). Commands that hold or change a
connection's state (blocking reads, MULTI/WATCH, SUBSCRIBE, SELECT, AUTH, CLIENT ...)
and replies read undecoded go through the pool as before; so do pipelines and pub/sub.

Failures are redis-py's: an error reply raises its ``ResponseError`` subclass (so
``NOSCRIPT`` reloads a script), a dropped connection ``ConnectionError``, a reply not
there within ``timeout`` ``TimeoutError`` (the connection is then closed: later replies
could not be matched). A command that meets a dropped connection is sent once more on a
new one, as the pool's client did (a money script run twice moves nothing: each is
idempotent by its id). After Redis restarts the old connection has been closed by the
kernel; the next command opens a new one.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any, cast

import hiredis
import redis.asyncio as aioredis
from redis._parsers.base import BaseParser
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

# Commands that block, keep state on their connection, or need it alone: the pool's.
POOLED = frozenset({
    "BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BLMPOP", "BZPOPMIN", "BZPOPMAX", "BZMPOP", "WAIT", "WAITAOF",
    "XREAD", "XREADGROUP", "MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH", "SUBSCRIBE", "PSUBSCRIBE",
    "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE", "MONITOR", "SELECT", "AUTH", "HELLO", "CLIENT",
    "RESET", "QUIT", "SHUTDOWN", "SYNC", "PSYNC", "DEBUG",
})
# redis-py's option names (redis.client): replies read as bytes; a reply for an error.
_NEVER_DECODE = "NEVER_DECODE"
_EMPTY_RESPONSE = "EMPTY_RESPONSE"


_parse_error: Any = BaseParser.parse_error  # an error reply's text -> redis-py's exception


class _Wire(asyncio.Protocol):
    """One connection: requests written in order, replies handed to their futures in order."""

    def __init__(self, encoding: str | None) -> None:
        self.reader = hiredis.Reader(encoding=encoding) if encoding else hiredis.Reader()
        self.waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.outgoing: list[bytes] = []
        self.transport: asyncio.Transport | None = None
        self.lost: Exception | None = None
        self.loop = asyncio.get_running_loop()

    def serves(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Usable from ``loop``: still connected, and made in it."""
        return self.lost is None and self.loop is loop

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self, packed: bytes) -> asyncio.Future[Any]:
        """Queue a request; it leaves with the others of this loop turn."""
        reply: asyncio.Future[Any] = self.loop.create_future()
        if self.lost is not None:
            reply.set_exception(RedisConnectionError(f"Redis connection lost: {self.lost}"))
            return reply
        if not self.outgoing:
            self.loop.call_soon(self._flush)
        self.outgoing.append(packed)
        self.waiting.append(reply)
        return reply

    def _flush(self) -> None:
        if self.transport is not None and self.outgoing and self.lost is None:
            self.transport.write(b"".join(self.outgoing))
        self.outgoing.clear()

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        try:
            while (reply := self.reader.gets()) is not False:
                future = self.waiting.popleft()
                if future.done():  # its caller gave up (cancelled): the order still holds
                    continue
                if isinstance(reply, hiredis.ReplyError):
                    future.set_exception(_parse_error(str(reply)))
                else:
                    future.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as exc:  # garbage, or a reply nobody asked for
            self.close(RedisConnectionError(f"Redis protocol error: {exc!r}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.close(exc or RedisConnectionError("Redis closed the connection"))

    def close(self, why: Exception) -> None:
        if self.lost is None:
            self.lost = why
        if self.transport is not None:
            self.transport.close()
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(RedisConnectionError(f"Redis connection lost: {why}"))


class WireRedis(aioredis.Redis):
    """redis-py's client with its plain commands on one pipelined connection (module doc).
    Build it with ``WireRedis.from_pool(pool)``; the pool must speak RESP2 (``protocol=2``)."""

    _wire: _Wire | None = None
    _connecting: asyncio.Lock | None = None
    _connecting_loop: asyncio.AbstractEventLoop | None = None

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        name = str(args[0]).upper()
        if name in POOLED or " " in name or _NEVER_DECODE in options:
            pooled: Any = super()
            return await pooled.execute_command(*args, **options)
        packed = self._packed(args)
        try:
            try:
                reply = await self._call(packed)
            except RedisConnectionError:
                reply = await self._call(packed)  # once more on a new connection (module doc)
        except ResponseError:
            if _EMPTY_RESPONSE in options:
                return options[_EMPTY_RESPONSE]
            raise
        options.pop(_EMPTY_RESPONSE, None)
        options.pop("keys", None)
        callback = self.response_callbacks.get(args[0]) or self.response_callbacks.get(name)
        return callback(reply, **options) if callback is not None else reply

    def _packed(self, args: tuple[Any, ...]) -> bytes:
        encoder = cast(Any, self).get_encoder()  # redis-py's: str, bytes, int, float (else DataError)
        pack: Any = hiredis.pack_command
        return bytes(pack(tuple(encoder.encode(arg) for arg in args)))

    def _settings(self) -> dict[str, Any]:
        return self.connection_pool.connection_kwargs

    async def _call(self, packed: bytes) -> Any:
        timeout = self._settings().get("socket_timeout") or None
        wire = await self._connected()
        reply = wire.send(packed)
        try:
            async with asyncio.timeout(timeout):
                return await reply  # cancelled, it stays queued: its reply is dropped in order
        except TimeoutError:
            wire.close(RedisTimeoutError("no reply in time"))
            raise RedisTimeoutError(f"Redis gave no reply in {timeout} s") from None

    async def _connected(self) -> _Wire:
        loop = asyncio.get_running_loop()
        if (wire := self._wire) is not None and wire.serves(loop):
            return wire
        if self._connecting is None or self._connecting_loop is not loop:
            self._connecting, self._connecting_loop = asyncio.Lock(), loop
        async with self._connecting:
            if (wire := self._wire) is not None and wire.serves(loop):
                return wire
            self._wire = await self._connect()
            return self._wire

    async def _connect(self) -> _Wire:
        settings = self._settings()
        if settings.get("path"):
            raise RedisConnectionError("WireRedis speaks TCP only")
        encoding = settings.get("encoding", "utf-8") if settings.get("decode_responses") else None
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(settings.get("socket_connect_timeout") or None):
                _, wire = await loop.create_connection(lambda: _Wire(encoding), settings.get("host", "localhost"),
                                                       settings.get("port", 6379))
        except (OSError, TimeoutError) as exc:
            raise RedisConnectionError(f"cannot connect to Redis: {exc!r}") from exc
        hello: list[tuple[Any, ...]] = []
        if settings.get("password"):
            hello.append(("AUTH", *([settings["username"]] if settings.get("username") else []),
                          settings["password"]))
        if settings.get("db"):
            hello.append(("SELECT", settings["db"]))
        for command in hello:
            reply = wire.send(self._packed(command))
            try:
                async with asyncio.timeout(settings.get("socket_connect_timeout") or None):
                    await reply
            except BaseException:
                wire.close(RedisConnectionError("set-up failed"))
                raise
        return wire

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        if self._wire is not None:
            self._wire.close(RedisConnectionError("client closed"))
            self._wire = None
        await super().aclose(close_connection_pool)
