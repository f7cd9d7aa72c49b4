"""The push bridge process: wake requests in (Redis stream kl:wake), pushes out (FCM, APNs,
HMS), new app contacts from AMI published to the relative's Redis channel.

    python -m pushbridge.main --ami-host 127.0.0.1 --ami-port 5038 [--push-config push.toml]

Redis' URL ($KINLINE_REDIS_URL), PostgreSQL's ($KINLINE_POSTGRES_URL) and the read-only
AMI user ($KINLINE_AMI_USER, $KINLINE_AMI_SECRET) come from the environment, never the
command line. The [push] table comes from --push-config or $KINLINE_PUSH_CONFIG; with
neither the bridge runs with pushes disabled: every wake is recorded as no_provider at
once, and contacts are still published. A bad push config stops it at start.

While it runs it keeps `kl:pushbridge:alive` (TTL 15 s): its pid, whether AMI is
connected and the platforms it can push."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ami.client import AmiClient
from ami.protocol import AmiMessage
from metrics.endpoint import MetricsEndpoint
from metrics.series import PushMetrics
from pushbridge.contacts import ContactHandler, contact_event
from pushbridge.devices import DeviceDirectory, PgDirectory
from pushbridge.inflight import InFlight
from pushbridge.providers import (
    Device,
    Platform,
    PushConfigError,
    PushProvider,
    PushResult,
    Wake,
    build_providers,
    load_push_config,
)
from pushbridge.stream import WakeConsumer
from pushbridge.wakes import WakeService
from store.redis_store import connect

log = logging.getLogger("pushbridge")

ALIVE_KEY = "kl:pushbridge:alive"
ALIVE_EVERY_S = 5.0
AMI_EVENTS = "system,security,reporting"
REPUSH_AFTER_S = 5.0  # PushKit's published request-to-ring p95 is ~2 s: a contact not there at 5 s is late


def load_providers(path: str) -> dict[Platform, PushProvider]:
    if not path:
        log.warning("no push config (--push-config / $KINLINE_PUSH_CONFIG): pushes are disabled, "
                    "every wake fails at once (recorded as no_provider)")
        return {}
    providers = build_providers(load_push_config(Path(path)))
    if providers:
        log.info("push providers: %s (config %s)", ", ".join(sorted(providers)), path)
    else:
        log.warning("push config %s configures no provider: pushes are disabled", path)
    return providers


class CountedProvider:
    """A provider whose every push is counted by platform, kind and result (and timed)."""

    def __init__(self, inner: PushProvider, metrics: PushMetrics) -> None:
        self.inner = inner
        self.metrics = metrics

    @property
    def platform(self) -> Platform:
        return self.inner.platform

    async def send(self, device: Device, wake: Wake) -> PushResult:
        started = time.monotonic()
        try:
            result = await self.inner.send(device, wake)
        except BaseException:
            self.metrics.pushed(self.platform, str(wake.kind), "error", time.monotonic() - started)
            raise
        self.metrics.pushed(self.platform, str(wake.kind), str(result.outcome), result.elapsed)
        return result

    async def aclose(self) -> None:
        await self.inner.aclose()


def counted(providers: Mapping[Platform, PushProvider], metrics: PushMetrics) -> dict[Platform, PushProvider]:
    metrics.know_platforms(providers)
    return {platform: CountedProvider(provider, metrics) for platform, provider in providers.items()}


async def follow_contacts(events: asyncio.Queue[AmiMessage], handler: ContactHandler) -> None:
    while True:
        event = contact_event(await events.get())
        if event is None:
            continue
        try:
            await handler.handle(event)
        except Exception:  # one bad event must not stop the contacts for good
            log.exception("device %s: contact event %s not handled", event.device_id, event.status)


async def keep_alive(redis: aioredis.Redis, ami: AmiClient, platforms: list[str]) -> None:
    while True:
        with contextlib.suppress(RedisError):
            await redis.set(ALIVE_KEY, json.dumps({"pid": os.getpid(), "ami": ami.connected.is_set(),
                                                   "platforms": platforms}), ex=3 * int(ALIVE_EVERY_S))
        await asyncio.sleep(ALIVE_EVERY_S)


async def run_bridge(redis: aioredis.Redis, directory: DeviceDirectory, providers: Mapping[Platform, PushProvider],
                     ami: AmiClient, stop: asyncio.Event, *, consumer: str,
                     repush_after: float = REPUSH_AFTER_S) -> None:
    """Serve wake requests and follow contacts until `stop`; the AMI client is started here
    (it keeps reconnecting by itself) and closed at the end."""
    inflight = InFlight(clock=time.time)
    wakes = WakeConsumer(redis, WakeService(redis, directory, providers, inflight, repush_after=repush_after),
                         consumer)
    contacts = ContactHandler(redis, directory, inflight)
    events = ami.subscribe()
    with contextlib.suppress(TimeoutError):
        await ami.start(timeout=10)
    if not ami.connected.is_set():
        log.warning("AMI %s:%d not reachable yet: contacts are published once it is", ami.host, ami.port)
    helpers = [asyncio.create_task(follow_contacts(events, contacts), name="contacts"),
               asyncio.create_task(keep_alive(redis, ami, sorted(providers)), name="alive")]
    log.info("push bridge up: consumer %s of kl:wake", consumer)
    try:
        await wakes.run(stop)
        await wakes.drain(timeout=5)
    finally:
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        with contextlib.suppress(RedisError):
            await redis.delete(ALIVE_KEY)
        await ami.close()


async def serve(args: argparse.Namespace, providers: dict[Platform, PushProvider], redis_url: str,
                postgres_url: str, ami_user: str, ami_secret: str) -> None:
    redis = connect(redis_url)
    directory = PgDirectory(postgres_url)
    # The registrar's TestEvents are of class reporting, ContactStatus of system, SuccessfulAuth
    # of security (pushbridge/contacts.py); call events would be noise here.
    ami = AmiClient(args.ami_host, args.ami_port, ami_user, ami_secret, events=AMI_EVENTS)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    metrics = PushMetrics()
    endpoint = MetricsEndpoint(metrics.registry, args.metrics_host, args.metrics_port) if args.metrics_port else None
    try:
        if endpoint is not None:
            await endpoint.start()
        await run_bridge(redis, directory, counted(providers, metrics), ami, stop, consumer=args.consumer,
                         repush_after=args.repush_after)
    finally:
        if endpoint is not None:
            await endpoint.stop()
        for provider in providers.values():
            await provider.aclose()
        await directory.aclose()
        await redis.aclose()
        log.info("push bridge stopped")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Kinline push bridge")
    parser.add_argument("--ami-host", default="127.0.0.1")
    parser.add_argument("--ami-port", type=int, default=5038)
    parser.add_argument("--push-config", default=os.environ.get("KINLINE_PUSH_CONFIG", ""),
                        help="a TOML file with a [push] table (default $KINLINE_PUSH_CONFIG; none: pushes disabled)")
    parser.add_argument("--consumer", default=f"bridge-{socket.gethostname()}",
                        help="this bridge's name in the kl:wake consumer group (keep it across restarts)")
    parser.add_argument("--repush-after", type=float, default=REPUSH_AFTER_S,
                        help="seconds without a contact after which an FCM/HMS device is pushed once more (0: never)")
    parser.add_argument("--metrics-host", default="127.0.0.1")
    parser.add_argument("--metrics-port", type=int, default=None,
                        help="serve Prometheus' /metrics at this port (none: no endpoint)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    redis_url, postgres_url = os.environ.get("KINLINE_REDIS_URL"), os.environ.get("KINLINE_POSTGRES_URL")
    user, secret = os.environ.get("KINLINE_AMI_USER"), os.environ.get("KINLINE_AMI_SECRET")
    if not redis_url or not postgres_url:
        parser.error("set KINLINE_REDIS_URL and KINLINE_POSTGRES_URL")
    if not user or not secret:
        parser.error("set KINLINE_AMI_USER and KINLINE_AMI_SECRET (the read-only AMI user)")
    try:
        providers = load_providers(args.push_config)
    except PushConfigError as exc:
        log.error("push config: %s", exc)
        sys.exit(2)
    asyncio.run(serve(args, providers, redis_url, postgres_url, user, secret))


if __name__ == "__main__":
    main()
