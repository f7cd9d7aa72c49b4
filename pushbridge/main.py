"""The push bridge process. Waking the app (FCM, APNs, HMS) comes with a later issue:
for now it only checks that Redis answers and waits to be stopped."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal

import redis.asyncio as aioredis

log = logging.getLogger("pushbridge")


async def serve(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        await client.ping()
        log.info("push bridge up; no push provider configured yet")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description="Kinline push bridge")
    parser.add_argument(
        "--redis-url", default=os.environ.get("KINLINE_REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="default $KINLINE_REDIS_URL: pass the URL (it holds the password) in the environment",
    )
    args = parser.parse_args()
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(serve(args.redis_url))


if __name__ == "__main__":
    main()
