"""The history copier process: every second, copy Redis' call records and ledgers
into PostgreSQL (exactly once) and trim what Redis no longer needs (history.copier).

    python -m history.main [--retention-s 172800] [--interval 1]

Redis' URL comes from $KINLINE_REDIS_URL and PostgreSQL's from
$KINLINE_POSTGRES_URL (both hold passwords: never on a command line). While
either is unreachable it retries with backoff, logging once per change of state;
Redis keeps everything meanwhile (nothing is trimmed that PostgreSQL does not hold).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys

import asyncpg
from redis.exceptions import RedisError

from history.copier import RETENTION_S, Copier
from history.schema import SchemaTooNew, ensure_schema
from ivr.clock import now_ms
from store.redis_store import connect

log = logging.getLogger("history")

INTERVAL_S = 1.0
MAX_BACKOFF_S = 30.0
CONNECT_TIMEOUT_S = 5.0


def _problem(err: BaseException) -> str:
    """Which side failed, for logging once per change."""
    return "Redis" if isinstance(err, RedisError) else "the history database (PostgreSQL)"


async def serve(redis_url: str, postgres_url: str, retention_s: int, interval: float = INTERVAL_S) -> int:
    """Until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return await run(redis_url, postgres_url, retention_s, interval, stop)


async def run(redis_url: str, postgres_url: str, retention_s: int, interval: float, stop: asyncio.Event) -> int:
    """Copy every ``interval`` seconds until ``stop`` is set; 1 if the database is too new for us."""
    redis = connect(redis_url)
    log.info("copying history every %.1f s, keeping %d s in Redis", interval, retention_s)
    conn: asyncpg.Connection | None = None
    failing: str | None = None
    wait = interval
    code = 0
    while not stop.is_set():
        try:
            if conn is None or conn.is_closed():
                conn = await asyncpg.connect(postgres_url, timeout=CONNECT_TIMEOUT_S, command_timeout=30)
                await ensure_schema(conn)
            report = await Copier(redis, conn, retention_s).cycle(now_ms())
            if failing is not None:
                log.info("%s reachable again: copying", failing)
                failing = None
            if any(report.copied.values()) or report.trimmed:
                log.info("copied %s; trimmed %s", report.copied, report.trimmed)
            wait = interval
        except SchemaTooNew as err:
            log.error("%s: stopping", err)
            code = 1
            break
        except (RedisError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as err:
            if _problem(err) != failing:
                failing = _problem(err)
                log.warning("%s unreachable (%s: %s): retrying with backoff; Redis keeps everything meanwhile",
                            failing, type(err).__name__, err)
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close(timeout=1)
                conn = None
            wait = min(max(wait * 2, interval), MAX_BACKOFF_S)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), wait)
    log.info("shutting down")
    if conn is not None:
        with contextlib.suppress(Exception):
            await conn.close(timeout=2)
    await redis.aclose()
    return code


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Kinline history copier (Redis -> PostgreSQL)")
    parser.add_argument("--retention-s", type=int, default=RETENTION_S,
                        help="copied records older than this leave Redis (default 2 days)")
    parser.add_argument("--interval", type=float, default=INTERVAL_S)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    redis_url = os.environ.get("KINLINE_REDIS_URL", "redis://127.0.0.1:6379/0")
    postgres_url = os.environ.get("KINLINE_POSTGRES_URL", "")
    if not postgres_url:
        log.error("$KINLINE_POSTGRES_URL is not set")
        sys.exit(2)
    sys.exit(asyncio.run(serve(redis_url, postgres_url, args.retention_s, args.interval)))


if __name__ == "__main__":
    main()
