"""A PostgreSQL connection pool opened on first use, its schema made then.

The API and the AGI server start without PostgreSQL; they open the pool when a
request first needs it, and a pool that failed to open is tried again next time.
``DOWN`` lists the errors that mean "PostgreSQL is unreachable" (callers turn
them into their own typed error)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

CONNECT_TIMEOUT_S = 2.0
QUERY_TIMEOUT_S = 5.0

DOWN: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidPasswordError, OSError, TimeoutError,
)

Schema = Callable[[Any], Awaitable[None]]


class LazyPool:
    """A small asyncpg pool, opened (and ``schema`` ensured) on first use."""

    def __init__(self, url: str, schema: Schema, max_size: int = 4) -> None:
        self.url = url
        self.max_size = max_size
        self._schema = schema
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> asyncpg.Pool:
        async with self._lock:
            if self._pool is None:
                pool = await asyncpg.create_pool(self.url, min_size=0, max_size=self.max_size,
                                                 timeout=CONNECT_TIMEOUT_S, command_timeout=QUERY_TIMEOUT_S)
                try:
                    async with pool.acquire() as conn:
                        await self._schema(conn)
                except BaseException:
                    await pool.close()
                    raise
                self._pool = pool
            return self._pool

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
