"""A small asyncio AMI client that reconnects by itself.

    client = AmiClient(host, port, user, secret)
    await client.start()                 # waits for the first login
    events = client.subscribe()          # an asyncio.Queue of every event
    reply = await client.action("Ping")
    await client.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging

from ami.protocol import (
    AmiActionError,
    AmiDisconnected,
    AmiError,
    AmiMessage,
    format_action,
    parse_message,
)

log = logging.getLogger(__name__)


class AmiClient:
    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        secret: str,
        reconnect_delay: float = 1.0,
        action_timeout: float = 10.0,
        events: str = "on",
    ) -> None:
        self.host, self.port = host, port
        self._username, self._secret = username, secret
        self.reconnect_delay = reconnect_delay
        self.action_timeout = action_timeout
        self.events = events  # the Login's "Events": "on", "off" or a class list
        self.connected = asyncio.Event()
        self.connections = 0
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[str, asyncio.Future[AmiMessage]] = {}
        self._subscribers: list[asyncio.Queue[AmiMessage]] = []
        self._ids = itertools.count(1)
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self, timeout: float = 10.0) -> None:
        self._task = asyncio.create_task(self._run(), name="ami-client")
        await asyncio.wait_for(self.connected.wait(), timeout)

    async def ready(self, timeout: float) -> bool:
        """Connected now? The first call starts the client (which then keeps reconnecting by
        itself) and waits up to ``timeout`` for its login; later calls do not wait."""
        if self._task is None:
            with contextlib.suppress(TimeoutError):
                await self.start(timeout)
        return self.connected.is_set()

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._drop_connection("client closed")

    def subscribe(self) -> asyncio.Queue[AmiMessage]:
        queue: asyncio.Queue[AmiMessage] = asyncio.Queue(maxsize=10_000)
        self._subscribers.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[AmiMessage]) -> None:
        with contextlib.suppress(ValueError):
            self._subscribers.remove(queue)

    async def action(self, name: str, /, *, action_id: str | None = None, **fields: str) -> AmiMessage:
        """Send an action, return its response; raise AmiActionError on ``Error``. ``action_id``:
        the caller's own ActionID (unique), to match the events the action brings later."""
        if not self.connected.is_set() or self._writer is None:
            raise AmiDisconnected("not connected to Asterisk")
        reply = await self._send(name, fields, action_id)
        if reply.response.lower() == "error":
            raise AmiActionError(f"{name}: {reply.get('Message')}")
        return reply

    async def _send(self, name: str, fields: dict[str, str], action_id: str | None = None) -> AmiMessage:
        assert self._writer is not None
        action_id = action_id or f"kinline-{next(self._ids)}"
        future: asyncio.Future[AmiMessage] = asyncio.get_running_loop().create_future()
        self._pending[action_id] = future
        try:
            self._writer.write(format_action(name, action_id, fields))
            await self._writer.drain()
            return await asyncio.wait_for(future, self.action_timeout)
        except (ConnectionError, OSError) as exc:
            raise AmiDisconnected(str(exc)) from exc
        finally:
            self._pending.pop(action_id, None)

    async def _run(self) -> None:
        while not self._closing:
            try:
                await self._session()
            except (TimeoutError, OSError, AmiError, asyncio.IncompleteReadError,
                    asyncio.LimitOverrunError) as exc:
                log.warning("AMI %s:%s: %s; reconnecting in %.1f s",
                            self.host, self.port, exc, self.reconnect_delay)
            except Exception:
                # Never let a surprise end the reconnect loop for good.
                log.exception("AMI %s:%s: unexpected error; reconnecting in %.1f s",
                              self.host, self.port, self.reconnect_delay)
            self._drop_connection("connection lost")
            await asyncio.sleep(self.reconnect_delay)

    async def _session(self) -> None:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port), self.action_timeout
        )
        self._writer = writer
        banner = await asyncio.wait_for(reader.readline(), self.action_timeout)
        if not banner.startswith(b"Asterisk Call Manager"):
            raise AmiError(f"not AMI: {banner[:40]!r}")
        reading = asyncio.create_task(self._read(reader), name="ami-reader")
        try:
            reply = await self._send(
                "Login", {"Username": self._username, "Secret": self._secret, "Events": self.events}
            )
            if reply.response.lower() != "success":
                raise AmiError(f"AMI login refused: {reply.get('Message')}")
            self.connections += 1
            self.connected.set()
            log.info("AMI connected to %s:%s", self.host, self.port)
            await reading
        finally:
            reading.cancel()
            # Never raises the reader's error; reading it marks it as retrieved.
            await asyncio.wait({reading})
            if not reading.cancelled():
                reading.exception()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                block = await reader.readuntil(b"\r\n\r\n")
                message = parse_message(block.decode("utf-8", "replace"))
                action_id = message.get("ActionID")
                # An event is never a reply, though some carry Response and the ActionID
                # of the action that caused them (OriginateResponse).
                if message.response and not message.event and action_id in self._pending:
                    future = self._pending[action_id]
                    if not future.done():
                        future.set_result(message)
                    continue
                if message.event:
                    for queue in self._subscribers:
                        if queue.full():
                            queue.get_nowait()
                        queue.put_nowait(message)
        finally:
            # No reply can come any more: fail waiting actions (the Login too) now,
            # not after action_timeout.
            self._fail_pending("connection lost")

    def _fail_pending(self, why: str) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(AmiDisconnected(why))
        self._pending.clear()

    def _drop_connection(self, why: str) -> None:
        self.connected.clear()
        self._fail_pending(why)
        if self._writer is not None:
            self._writer.close()
            self._writer = None
