"""The asyncio FastAGI server: accept Asterisk's connections, run routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from agi.channel import AgiChannel
from agi.protocol import AgiEnvironment, AgiError, AgiHangup, AgiTimeout, parse_environment
from metrics.series import AgiMetrics

log = logging.getLogger(__name__)

Route = Callable[[AgiChannel, AgiEnvironment], Awaitable[None]]

MAX_ENV_LINES = 200


class CallLog(logging.LoggerAdapter[logging.Logger]):
    """A logger that puts the call's uniqueid on every line."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(self.extra or {})
        # Also on the record itself (``%(uniqueid)s``), for formatters and filters.
        kwargs["extra"] = {**extra, **kwargs.get("extra", {})}
        return f"[{extra.get('uniqueid', '-')}] {msg}", kwargs


class AgiServer:
    """Serve ``routes`` (script name -> coroutine) over FastAGI."""

    def __init__(
        self,
        routes: Mapping[str, Route],
        host: str = "127.0.0.1",
        port: int = 4573,
        read_timeout: float = 10.0,
        metrics: AgiMetrics | None = None,
    ) -> None:
        self.routes = dict(routes)
        self.metrics = metrics if metrics is not None else AgiMetrics()
        self.metrics.know_routes(self.routes)
        self.host = host
        self.port = port
        self.read_timeout = read_timeout
        self._server: asyncio.Server | None = None
        self._calls: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, self.host, self.port, limit=16384, reuse_address=True
        )
        sock = self._server.sockets[0].getsockname()
        self.port = sock[1]
        log.info("FastAGI listening on %s:%s (routes: %s)", sock[0], sock[1], ", ".join(sorted(self.routes)))

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, let calls in progress finish for ``grace`` s, then cancel."""
        server, self._server = self._server, None
        if server is not None:
            # close() only stops listening. wait_closed() is NOT awaited here: from
            # Python 3.12 it waits for every connection to end, i.e. for the calls,
            # without the grace limit below.
            server.close()
        pending = set(self._calls)
        if pending:
            log.info("waiting for %d call(s) to finish", len(pending))
            _, late = await asyncio.wait(pending, timeout=grace)
            for task in late:
                task.cancel()
            if late:
                log.warning("cancelled %d call(s) still running after %.1f s", len(late), grace)
                await asyncio.wait(late, timeout=1.0)
        if server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        log.info("FastAGI stopped")

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._calls.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._calls.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        call_log = CallLog(log, {"uniqueid": "-"})
        channel = AgiChannel(reader, writer, call_log, self.read_timeout)
        try:
            env = await self._read_environment(channel)
        except AgiError as exc:
            call_log.warning("bad FastAGI connection: %s", exc)
            return
        call_log.extra = {"uniqueid": env.uniqueid}
        route = self.routes.get(env.script)
        if route is None:
            call_log.error("unknown route %r: call refused", env.script)
            await _say_failure(channel, f"Kinline: unknown AGI route {env.script}")
            return
        call_log.debug("route %s for %s", env.script, env.channel)
        result = "error"
        started = time.perf_counter()
        self.metrics.route_started(env.script)
        try:
            await route(channel, env)
            result = "ok"
        except AgiHangup as exc:
            result = "hangup"
            call_log.info("caller hung up during %s (%s)", env.script, exc)
        except AgiTimeout as exc:
            result = "timeout"
            call_log.error("route %s: Asterisk stopped answering: %s", env.script, exc)
        except asyncio.CancelledError:
            result = "cancelled"
            call_log.warning("route %s cancelled at shutdown", env.script)
            raise
        except Exception:
            call_log.exception("route %s failed: call refused", env.script)
            await _say_failure(channel, f"Kinline: route {env.script} failed")
        else:
            wall = time.perf_counter() - started
            # "own" is the time spent in Kinline (decisions, Redis), not waiting for Asterisk.
            call_log.info("route %s for %s done in %.0f ms (own %.1f ms)", env.script, env.channel, wall * 1000,
                          (wall - channel.waited) * 1000)
        finally:
            wall = time.perf_counter() - started
            self.metrics.route_done(env.script, result, wall, wall - channel.waited)

    async def _read_environment(self, channel: AgiChannel) -> AgiEnvironment:
        return parse_environment(await channel.read_block(self.read_timeout, MAX_ENV_LINES))


async def _say_failure(channel: AgiChannel, message: str) -> None:
    """Tell Asterisk's log; the dial plan plays the apology (it is fail-closed)."""
    with contextlib.suppress(AgiError):
        await channel.verbose(message, 1)
