"""Reading `kl:wake` with a consumer group: at least once. An entry is acknowledged only
when it is served (pushed and recorded, or dropped); after a crash the bridge first
serves its own pending entries again (those past their window are then dropped).

Every entry runs in a task of its own (a slow provider never holds up the next call's
wake), at most `max_tasks` at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from pushbridge.errors import BadRequest
from pushbridge.requests import parse_request
from pushbridge.wakes import WakeService
from store import wake_records as records
from store.app_wake import WAKE_GROUP, WAKE_STREAM
from store.wake_records import AttemptEvent

log = logging.getLogger(__name__)

Entry = tuple[str, dict[str, str]]


async def ensure_group(redis: aioredis.Redis, stream: str = WAKE_STREAM, group: str = WAKE_GROUP) -> None:
    """The group, from the stream's start (old entries are dropped by their window)."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


class WakeConsumer:
    def __init__(self, redis: aioredis.Redis, service: WakeService, consumer: str, *,
                 stream: str = WAKE_STREAM, group: str = WAKE_GROUP, count: int = 100, block_ms: int = 1000,
                 max_tasks: int = 500, clock: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self.service = service
        self.consumer = consumer
        self.stream, self.group = stream, group
        self.count, self.block_ms = count, block_ms
        self.clock = clock
        self._slots = asyncio.Semaphore(max_tasks)
        self._tasks: set[asyncio.Task[None]] = set()
        self.served = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`; Redis failures are logged and retried with a pause."""
        pending_first = True
        failing = False
        while not stop.is_set():
            try:
                if pending_first:
                    await ensure_group(self.redis, self.stream, self.group)
                entries = await self._read("0" if pending_first else ">")
                if failing:
                    log.info("Redis reachable again: reading wake requests")
                    failing = False
            except RedisError as exc:
                if not failing:
                    log.error("reading %s failed: %s; retrying", self.stream, exc)
                    failing = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
                continue
            if pending_first and not entries:
                pending_first = False  # our own unacknowledged entries are all served again
            for entry in entries:
                await self._slots.acquire()
                task = asyncio.create_task(self._serve(entry))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if pending_first:
                await self.drain()  # then read the pending list again, past what was served

    async def _read(self, start: str) -> list[Entry]:
        reply: Any = await self.redis.xreadgroup(self.group, self.consumer, {self.stream: start}, count=self.count,
                                            block=None if start == "0" else self.block_ms)
        out: list[Entry] = []
        for _stream, entries in reply or []:
            out.extend((entry_id, fields) for entry_id, fields in entries if fields)
        return out

    async def _serve(self, entry: Entry) -> None:
        entry_id, fields = entry
        read_at = self.clock()
        try:
            try:
                request = parse_request(fields)
            except BadRequest as exc:
                log.error("wake request %s refused: %s (%s)", entry_id, exc, dict(list(fields.items())[:8]))
                if (call_id := fields.get("call_id", "")) and len(call_id) <= 128:
                    await records.record(self.redis, call_id, AttemptEvent(
                        "rejected", int(read_at * 1000), detail=f"{entry_id}: {exc}"[:200]))
            else:
                await self.service.start(request, read_at)
            await self.redis.xack(self.stream, self.group, entry_id)
            self.served += 1
        except RedisError as exc:  # not acknowledged: served again after a restart
            log.error("wake request %s: Redis failed: %s", entry_id, exc)
        except Exception:
            log.exception("wake request %s failed", entry_id)
            with contextlib.suppress(RedisError):
                await self.redis.xack(self.stream, self.group, entry_id)  # never retried for ever
        finally:
            self._slots.release()

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for the requests being served."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
