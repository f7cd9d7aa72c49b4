"""Start the FastAGI server: the one place that wires the objects together.

Attempts whose hangup path never ran are settled by the reconciler, its own
process (reconciler/main.py), not here."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import tomllib
from pathlib import Path

from agi.deps import CallDeps
from agi.name_files import NameFolder
from agi.routes.accept import make_accept
from agi.routes.after_dial import make_after_dial
from agi.routes.greeting import greeting
from agi.routes.hangup import make_hangup
from agi.routes.inmate_call import make_inmate_call
from agi.server import AgiServer, Route
from ivr.inmate_call import InmateCalls
from ivr.names import InmateNames
from ivr.pin import PinHasher
from store.redis_store import RedisStore, connect
from store.relatives import RelativeStore

log = logging.getLogger("agi")

def build_routes(deps: CallDeps) -> dict[str, Route]:
    return {
        "greeting": greeting,
        "inmate_call": make_inmate_call(deps),
        "after_dial": make_after_dial(deps),
        "accept": make_accept(deps),
        "hangup": make_hangup(deps),
    }


def load_pin_key(secrets_file: Path) -> PinHasher:
    """The PIN key (``pin_key``, hex) from the stack's secrets file: it is
    never in Redis nor on a command line. Missing or bad: the server does not
    start (calls get the dial plan's apology)."""
    with secrets_file.open("rb") as fh:
        return PinHasher.from_hex(str(tomllib.load(fh)["pin_key"]))


async def serve(host: str, port: int, redis_url: str, recordings: Path, names_dir: Path, prompts: Path,
                pins: PinHasher) -> None:
    client = connect(redis_url)
    store = RedisStore(client, pins)
    names = InmateNames(NameFolder(names_dir))
    calls = InmateCalls(store, store, pins=pins, relatives=RelativeStore(client), names=names)
    deps = CallDeps(calls, recordings, prompts, names)
    server = AgiServer(build_routes(deps), host=host, port=port)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await server.stop()
    await client.aclose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Kinline FastAGI server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4573)
    parser.add_argument(
        "--redis-url", default=os.environ.get("KINLINE_REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="default $KINLINE_REDIS_URL: pass the URL (it holds the password) in the environment",
    )
    parser.add_argument("--recordings", type=Path, default=Path("var/recordings"))
    parser.add_argument("--names", type=Path, default=Path("var/names"),
                        help="the inmates' recorded names (Asterisk's /var/lib/kinline/names)")
    parser.add_argument("--prompts", type=Path, default=Path("var/prompts"))
    parser.add_argument("--secrets", type=Path, default=Path("var/secrets.toml"),
                        help="the stack's secrets file (its pin_key hashes PINs)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    pins = load_pin_key(args.secrets)
    asyncio.run(serve(args.host, args.port, args.redis_url, args.recordings, args.names, args.prompts, pins))


if __name__ == "__main__":
    main()
