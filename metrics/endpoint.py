"""``GET /metrics`` on a port of its own, in the process's event loop.

Served by asyncio rather than prometheus_client's thread, so gauges read from
Redis at scrape time (``refresh``) use the process's own async client. Every read
is bounded; anything but ``GET``/``HEAD /metrics`` gets a 404. As prometheus_client's own
server, ``/metrics?name[]=a&name[]=b`` serves only those series (their collectors alone
are collected: a watcher that polls a few gauges every second costs little); the refresh runs only
when the request may show a series it sets (``refreshes``), so such a watcher costs no Redis read."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection
from urllib.parse import parse_qs

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 5.0
REFRESH_TIMEOUT_S = 2.0
MAX_HEADER_LINES = 100

Refresh = Callable[[], Awaitable[None]]


class MetricsEndpoint:
    def __init__(self, registry: CollectorRegistry, host: str = "127.0.0.1", port: int = 0,
                 refresh: Refresh | None = None, refreshes: Collection[str] | None = None) -> None:
        """``refreshes``: the series ``refresh`` sets (None: any may be), so a request
        naming none of them (``name[]``) is served without it."""
        self.registry = registry
        self.host = host
        self.port = port
        self.refresh = refresh
        self.refreshes = frozenset(refreshes) if refreshes is not None else None
        self._server: asyncio.Server | None = None

    async def start(self) -> bool:
        """Listen; False when the port cannot be bound. Fail open: the process goes on
        serving calls without metrics (the error is logged; the stack checks the port
        is free before it starts a service)."""
        try:
            self._server = await asyncio.start_server(self._handle, self.host, self.port, reuse_address=True)
        except OSError as err:
            log.error("metrics NOT served: cannot listen on %s:%s: %s", self.host, self.port, err)
            return False
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("metrics on http://%s:%d/metrics", self.host, self.port)
        return True

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    async def render(self, names: list[str] | None = None) -> bytes:
        """The exposition text (of the series ``names`` only, when given), after refreshing
        the gauges read at scrape (a failed refresh is logged and the last values are served)."""
        wanted = self.refreshes is None or not names or not self.refreshes.isdisjoint(names)
        if self.refresh is not None and wanted:
            try:
                await asyncio.wait_for(self.refresh(), REFRESH_TIMEOUT_S)
            except Exception as err:
                log.warning("metrics refresh failed: %s: %s", type(err).__name__, err)
        return generate_latest(self.registry.restricted_registry(names) if names else self.registry)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), READ_TIMEOUT_S)
            for _ in range(MAX_HEADER_LINES):
                line = await asyncio.wait_for(reader.readline(), READ_TIMEOUT_S)
                if line in (b"\r\n", b"\n", b""):
                    break
            method, _, rest = request.decode("latin-1").partition(" ")
            path, _, query = rest.split(" ", 1)[0].partition("?")
            if method in ("GET", "HEAD") and path == "/metrics":
                body = await self.render(parse_qs(query).get("name[]"))
                head = f"HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPE_LATEST}\r\n"
            else:
                body = b"not found\n"
                head = "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n"
            writer.write(f"{head}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode("latin-1"))
            if method != "HEAD":
                writer.write(body)
            await asyncio.wait_for(writer.drain(), READ_TIMEOUT_S)
        except (TimeoutError, ConnectionError, UnicodeError) as err:
            log.debug("metrics request dropped: %s", err)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
