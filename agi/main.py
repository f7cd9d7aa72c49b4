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

from agi.apps_node import AppsNodeContacts
from agi.deps import CallDeps
from agi.name_files import NameFolder
from agi.overload import LoadMonitor
from agi.routes.accept import make_accept
from agi.routes.after_dial import make_after_dial
from agi.routes.app_dial import (
    AppRouting,
    StoreDevices,
    make_app_answered,
    make_app_invite,
    make_app_leg,
    make_app_relay_answered,
)
from agi.routes.app_test import make_app_test_routes
from agi.routes.greeting import greeting
from agi.routes.hangup import make_hangup
from agi.routes.inmate_call import make_inmate_call
from agi.server import AgiServer, Route
from ivr.app_call import WINDOW_S
from ivr.inmate_call import InmateCalls
from ivr.names import InmateNames
from ivr.overload import DEFAULT_MAX_AGI_LATENCY_MS, DEFAULT_MAX_IN_IVR, Levels
from ivr.pin import PinHasher
from metrics.endpoint import MetricsEndpoint
from metrics.series import AgiMetrics
from store import redis_store
from store.app_test import RedisTestCalls
from store.devices import DeviceStore
from store.redis_store import RedisStore, connect
from store.relatives import RelativeStore

log = logging.getLogger("agi")

def build_routes(deps: CallDeps, app: AppRouting | None = None) -> dict[str, Route]:
    routes = {
        "greeting": greeting,
        "inmate_call": make_inmate_call(deps, app),
        "after_dial": make_after_dial(deps, app),
        "accept": make_accept(deps),
        "hangup": make_hangup(deps),
    }
    if app is not None:
        routes["app_answered"] = make_app_answered(app)
        routes.update(make_app_test_routes(app, RedisTestCalls(app.redis)))  # the free audio test call
        routes["app_leg"] = make_app_leg(app)
        routes["app_invite"] = make_app_invite(app)
        routes["app_relay_answered"] = make_app_relay_answered(app)
    return routes


def load_pin_key(secrets_file: Path) -> PinHasher:
    """The PIN key (``pin_key``, hex) from the stack's secrets file: it is
    never in Redis nor on a command line. Missing or bad: the server does not
    start (calls get the dial plan's apology)."""
    with secrets_file.open("rb") as fh:
        return PinHasher.from_hex(str(tomllib.load(fh)["pin_key"]))


async def serve(host: str, port: int, redis_url: str, recordings: Path, names_dir: Path, prompts: Path,
                pins: PinHasher, postgres_url: str = "", app_window_s: float = WINDOW_S,
                metrics_port: int | None = None, overload: Levels | None = None,
                apps_node: AppsNodeContacts | None = None, relay_endpoint: str = "") -> None:
    """``apps_node``, ``relay_endpoint``: a cluster's node other than the apps' node (calls
    to the app go through it, agi/apps_node.py)."""
    client = connect(redis_url)
    metrics = AgiMetrics()
    load = LoadMonitor(overload if overload is not None else Levels())

    # Read when collected (in memory): a scrape of it alone reads nothing from Redis.
    metrics.agi_latency.set_function(lambda: load.backlog().agi_latency_ms / 1000)

    async def scrape_time_gauges() -> None:
        metrics.open_holds.set(await client.zcard(redis_store.HOLDS))
        metrics.cards_in_call.set(await client.hlen(redis_store.LOCKS))

    endpoint = MetricsEndpoint(metrics.registry, host, metrics_port, scrape_time_gauges,
                               ("kinline_open_holds", "kinline_cards_in_call")) if metrics_port else None
    store = RedisStore(client, pins)
    names = InmateNames(NameFolder(names_dir))
    # Calls to the app ("00") need the device registry (PostgreSQL); without it "00" is refused.
    device_store = DeviceStore(postgres_url) if postgres_url else None
    apps = StoreDevices(device_store) if device_store else None
    app = AppRouting(client, apps, window_s=app_window_s, apps_node=apps_node,
                     relay_endpoint=relay_endpoint) if apps else None
    calls = InmateCalls(store, store, pins=pins, relatives=RelativeStore(client), names=names, apps=apps)
    log.info("overload control: %s", load.describe())
    deps = CallDeps(calls, recordings, prompts, names, metrics, load)
    server = AgiServer(build_routes(deps, app), host=host, port=port, metrics=metrics)
    await server.start()
    if endpoint is not None:
        await endpoint.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await server.stop()
    if endpoint is not None:
        await endpoint.stop()
    if device_store is not None:
        await device_store.aclose()
    if apps_node is not None:
        await apps_node.aclose()
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
    parser.add_argument(
        "--postgres-url", default=os.environ.get("KINLINE_POSTGRES_URL", ""),
        help="default $KINLINE_POSTGRES_URL: the app devices' registry (none: calls to the app are refused)",
    )
    parser.add_argument("--app-window-s", type=float, default=float(os.environ.get("KINLINE_APP_WINDOW_S", WINDOW_S)),
                        help="how long a call waits for the woken app (default $KINLINE_APP_WINDOW_S or 30)")
    parser.add_argument("--metrics-port", type=int, default=None,
                        help="serve Prometheus' /metrics on --host at this port (none: no endpoint)")
    parser.add_argument("--max-in-ivr", type=int, default=DEFAULT_MAX_IN_IVR,
                        help="overload control: refuse new calls ('all lines are busy') while this many are in "
                             f"the IVR (default {DEFAULT_MAX_IN_IVR}; 0: off)")
    parser.add_argument("--max-agi-latency-ms", type=float, default=DEFAULT_MAX_AGI_LATENCY_MS,
                        help="overload control: refuse new calls while quick AGI commands take this long (p90, "
                             f"default {DEFAULT_MAX_AGI_LATENCY_MS}; 0: off)")
    parser.add_argument("--apps-node", default="", metavar="AMI_HOST:PORT,ENDPOINT",
                        help="a cluster's node other than the apps' node: that node's AMI (the status user from "
                             "$KINLINE_AMI_STATUS_USER / _SECRET) and this Asterisk's endpoint to it: calls to "
                             "the app go through it")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    # No thread, process or multiprocessing names on the records (the format shows none):
    # less work per log line in the one thread that serves every call.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        overload = Levels(args.max_in_ivr, args.max_agi_latency_ms)
    except ValueError as exc:
        parser.error(str(exc))
    pins = load_pin_key(args.secrets)
    apps_node, relay_endpoint = None, ""
    if args.apps_node:
        address, _, relay_endpoint = args.apps_node.partition(",")
        ami_host, _, ami_port = address.rpartition(":")
        if not ami_host or not ami_port.isdigit() or not relay_endpoint:
            parser.error("--apps-node wants AMI_HOST:PORT,ENDPOINT")
        apps_node = AppsNodeContacts(ami_host, int(ami_port), os.environ.get("KINLINE_AMI_STATUS_USER", ""),
                                     os.environ.get("KINLINE_AMI_STATUS_SECRET", ""))
    asyncio.run(serve(args.host, args.port, args.redis_url, args.recordings, args.names, args.prompts, pins,
                      args.postgres_url, args.app_window_s, args.metrics_port,
                      overload, apps_node, relay_endpoint))


if __name__ == "__main__":
    main()
