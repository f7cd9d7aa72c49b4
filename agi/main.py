"""Start the FastAGI server: the one place that wires the objects together."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from agi.routes.greeting import greeting
from agi.server import AgiServer, Route

log = logging.getLogger("agi")


def build_routes() -> dict[str, Route]:
    return {"greeting": greeting}


async def serve(host: str, port: int) -> None:
    server = AgiServer(build_routes(), host=host, port=port)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Kinline FastAGI server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4573)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
