"""The reconciler process: reads Asterisk's event log, watches the switch, and
settles every attempt its hangup path left open (ivr/settlement.py has the rules).

    python -m reconciler.main --cel-log <state>/logs/asterisk/cel-custom/kinline.csv \
        --recordings <state>/recordings --ami-port 5038

Redis' URL comes from $KINLINE_REDIS_URL and the read-only AMI user from
$KINLINE_AMI_USER / $KINLINE_AMI_SECRET (never on a command line).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import logging
import os
import signal
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from ami.client import AmiClient
from ami.protocol import AmiError
from ivr.call_plan import CallPlan, plan_from_json
from ivr.clock import now_ms
from ivr.model import Evidence, OpenAttempt
from ivr.recordings import recording_name, switch_path
from ivr.relatives import INACTIVE_REFUND_DAYS
from ivr.settlement import Bridged, Ended, Fact, Reconciler, SwitchView
from metrics.endpoint import MetricsEndpoint
from metrics.series import ReconcilerMetrics
from reconciler.cel import channel_started_ms, parse_line
from store.redis_store import RedisStore, connect
from store.relatives import RelativeStore

log = logging.getLogger("reconciler")

INTERVAL_S = 1.0
BOOT_EVENT = "FullyBooted"  # its Uptime tells when Asterisk's current run began
# FullyBooted's Uptime is in whole seconds and a uniqueid's stamp too: a
# channel counts as lost with an earlier run of Asterisk only when it started
# this long before the current run.
BOOT_SLACK_MS = 3_000
MAX_READ = 4 * 1024 * 1024
REFUND_EVERY_S = 3600.0  # refunds after inactivity (store/relatives.py refund_inactive)
BRIDGED_KEEP_MS = 7200 * 1000  # the dial plan's TIMEOUT(absolute): no call is bridged longer


class LogTail:
    """Whole new lines of a growing file, from a byte offset."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self, offset: int) -> tuple[list[str], int]:
        try:
            with self.path.open("rb") as fh:
                size = fh.seek(0, os.SEEK_END)
                if size < offset:
                    log.warning("event log %s shrank (rotated?): reading it from the start", self.path)
                    offset = 0
                fh.seek(offset)
                data = fh.read(MAX_READ)
        except FileNotFoundError:
            return [], offset
        end = data.rfind(b"\n") + 1
        return [line.decode("utf-8", "replace") for line in data[:end].splitlines()], offset + end


class SwitchWatch:
    """Asterisk's current run (start time, from FullyBooted's Uptime at each
    login) and whether it answers now (AMI Ping)."""

    def __init__(self, client: AmiClient) -> None:
        self.client = client
        self.booted_ms: int | None = None
        self._events = client.subscribe()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="switch-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch(self) -> None:
        while True:
            message = await self._events.get()
            uptime = message.get("Uptime")
            if message.event == BOOT_EVENT and uptime.isdigit():
                booted = now_ms() - int(uptime) * 1000
                if self.booted_ms is None or abs(booted - self.booted_ms) > BOOT_SLACK_MS:
                    log.info("Asterisk running since %d (uptime %s s)", booted, uptime)
                self.booted_ms = booted

    async def view(self) -> SwitchView:
        sent = now_ms()
        try:
            await asyncio.wait_for(self.client.action("Ping"), 2.0)
        except (AmiError, TimeoutError, OSError):
            return SwitchView(alive_at_ms=None, lost=self.lost)
        return SwitchView(alive_at_ms=sent if self.booted_ms is not None else None, lost=self.lost)

    def lost(self, uniqueid: str) -> bool:
        started = channel_started_ms(uniqueid)
        return self.booted_ms is not None and started is not None and started < self.booted_ms - BOOT_SLACK_MS


class BridgedCalls:
    """Calls bridged and not ended yet, as the event log tells (the gauge of calls bridged).

    The log is read from the last position: after a restart, calls bridged before
    it are not counted. A call whose end is never logged (Asterisk died) is
    forgotten when the reconciler settles it, or after the longest possible call."""

    def __init__(self, keep_ms: int = BRIDGED_KEEP_MS) -> None:
        self.keep_ms = keep_ms
        self._since: dict[str, int] = {}

    def see(self, fact: Fact) -> None:
        if isinstance(fact, Bridged):
            self._since[fact.call_id] = fact.at_ms
        elif isinstance(fact, Ended):
            self._since.pop(fact.call_id, None)

    def forget(self, call_ids: list[str]) -> None:
        for call_id in call_ids:
            self._since.pop(call_id, None)

    def count(self, now: int) -> int:
        for call_id in [c for c, at in self._since.items() if now - at > self.keep_ms]:
            del self._since[call_id]
        return len(self._since)


class NodeAttempts:
    """The attempts of one node of a cluster: those whose caller's uniqueid carries this
    Asterisk's systemname ("<systemname>-<epoch>.<seq>"). Each node's reconciler reads its
    own event log and knows only its own Asterisk's run: it must neither heartbeat
    another node's call from its own Asterisk being up, nor free another node's card
    locks because its own Asterisk restarted. Everything else passes through."""

    def __init__(self, store: RedisStore, systemname: str) -> None:
        self.store = store
        self.prefix = f"{systemname}-"

    def owns(self, uniqueid: str) -> bool:
        return uniqueid.startswith(self.prefix)

    async def open_attempts(self) -> list[OpenAttempt]:
        mine = []
        for attempt in await self.store.open_attempts():
            try:
                if self.owns(plan_from_json(attempt.plan).uniqueid):
                    mine.append(attempt)
            except (ValueError, KeyError, TypeError):
                continue  # the node that made it reports it (ivr.settlement)
        return mine

    async def card_locks(self) -> dict[str, str]:
        return {card: uid for card, uid in (await self.store.card_locks()).items() if self.owns(uid)}

    async def evidences(self, call_ids: Sequence[str]) -> list[Evidence]:
        return await self.store.evidences(call_ids)

    async def add_evidence(self, call_id: str, **values: str | int) -> None:
        await self.store.add_evidence(call_id, **values)

    async def add_evidences(self, values: Mapping[str, Mapping[str, str | int]]) -> None:
        await self.store.add_evidences(values)

    async def mark_gone(self, uniqueid: str, at_ms: int) -> None:
        await self.store.mark_gone(uniqueid, at_ms)

    async def gone_times(self, uniqueids: Sequence[str]) -> dict[str, int]:
        return await self.store.gone_times(uniqueids)

    async def release_card(self, card: str, uniqueid: str) -> None:
        await self.store.release_card(card, uniqueid)

    async def log_offset(self, node: str) -> int:
        return await self.store.log_offset(node)

    async def set_log_offset(self, node: str, offset: int) -> None:
        await self.store.set_log_offset(node, offset)


class Recordings:
    """A recording as (path for the switch, SHA-256), read from this host's copy of the folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def __call__(self, plan: CallPlan) -> tuple[str, str]:
        path = self.folder / recording_name(plan.call_id)

        def digest() -> str:
            try:
                with path.open("rb") as fh:  # in chunks, not the whole recording in memory
                    return hashlib.file_digest(fh, "sha256").hexdigest()
            except FileNotFoundError:
                return ""

        sha = await asyncio.to_thread(digest)
        if not sha:
            log.error("[%s] recording %s missing", plan.uniqueid, path.name)
            return "", ""
        return switch_path(plan.call_id), sha


async def cycle(reconciler: Reconciler, store: RedisStore, tail: LogTail, watch: SwitchWatch, node: str,
                metrics: ReconcilerMetrics, bridged: BridgedCalls) -> None:
    switch = await watch.view()  # before reading the log: see ivr.settlement.HEARTBEAT_MARGIN_MS
    offset = await store.log_offset(node)
    lines, new_offset = tail.read(offset)
    for line in lines:
        try:
            fact = parse_line(line)
        except ValueError as err:
            log.error("event log: %s", err)
            metrics.log_errors.inc()
            continue
        if fact is not None:
            await reconciler.record(fact)
            bridged.see(fact)
    if new_offset != offset:
        await store.set_log_offset(node, new_offset)
    report = await reconciler.run_once(now_ms(), switch)
    metrics.settled.inc(len(report.settled))
    metrics.locks_released.inc(len(report.locks_released))
    metrics.heartbeats.inc(report.heartbeats)
    bridged.forget(report.settled)
    metrics.bridged.set(bridged.count(now_ms()))
    if report.settled or report.locks_released:
        log.info("settled %s; freed cards %s", report.settled, report.locks_released)


async def refund_inactive_every(relatives: RelativeStore, days: int, every_s: float, stop: asyncio.Event,
                                metrics: ReconcilerMetrics | None = None) -> None:
    """Relatives' money unused for ``days`` goes back to them (47 CFR 64.6130), once an hour."""
    while not stop.is_set():
        try:
            done = await relatives.refund_inactive(datetime.now(UTC), days)
            if metrics is not None:
                metrics.refunds.inc(len(done))
            if done:
                log.info("refunded after %d idle days: %s", days, [(r.phone, r.amount, r.payout_id) for r in done])
        except Exception as err:  # Redis down...: next hour
            log.warning("refunds after inactivity failed: %s: %s", type(err).__name__, err)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)


async def serve(redis_url: str, cel_log: Path, recordings: Path, ami_host: str, ami_port: int,
                ami_user: str, ami_secret: str, node: str, interval: float = INTERVAL_S,
                inactive_days: int = INACTIVE_REFUND_DAYS, metrics_port: int | None = None,
                metrics_host: str = "127.0.0.1", systemname: str = "") -> None:
    client = connect(redis_url)
    metrics, bridged = ReconcilerMetrics(), BridgedCalls()
    endpoint = MetricsEndpoint(metrics.registry, metrics_host, metrics_port) if metrics_port else None
    if endpoint is not None:
        await endpoint.start()
    store = RedisStore(client)
    ami = AmiClient(ami_host, ami_port, ami_user, ami_secret, events="system")  # FullyBooted: the start time
    watch = SwitchWatch(ami)
    watch.start()
    ami_task = asyncio.create_task(ami.start(timeout=365 * 24 * 3600), name="ami-start")
    attempts = NodeAttempts(store, systemname) if systemname else store
    reconciler = Reconciler(attempts, store, Recordings(recordings))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("reconciling from %s every %.1f s%s", cel_log, interval,
             f" (calls of node {systemname} only)" if systemname else "")
    refunds = asyncio.create_task(refund_inactive_every(RelativeStore(client), inactive_days, REFUND_EVERY_S, stop,
                                                        metrics), name="refund-inactive")
    tail = LogTail(cel_log)
    while not stop.is_set():
        try:
            await cycle(reconciler, store, tail, watch, node, metrics, bridged)
            metrics.cycles.labels("ok").inc()
        except Exception as err:  # Redis down, a bad record...: try again next time
            metrics.cycles.labels("failed").inc()
            log.warning("reconcile cycle failed: %s: %s", type(err).__name__, err)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
    log.info("shutting down")
    await refunds
    ami_task.cancel()
    with contextlib.suppress(asyncio.CancelledError, TimeoutError):
        await ami_task
    await watch.stop()
    await ami.close()
    if endpoint is not None:
        await endpoint.stop()
    await client.aclose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Kinline reconciler")
    parser.add_argument("--cel-log", type=Path, required=True)
    parser.add_argument("--recordings", type=Path, required=True)
    parser.add_argument("--ami-host", default="127.0.0.1")
    parser.add_argument("--ami-port", type=int, default=5038)
    parser.add_argument("--node", default="asterisk", help="names this Asterisk's log in Redis")
    parser.add_argument("--systemname", default="",
                        help="a cluster node's Asterisk systemname: settle only the calls of that node")
    parser.add_argument("--interval", type=float, default=INTERVAL_S)
    parser.add_argument("--inactive-days", type=int, default=INACTIVE_REFUND_DAYS,
                        help="relatives' money with no movement for this long is refunded (hourly)")
    parser.add_argument("--metrics-host", default="127.0.0.1")
    parser.add_argument("--metrics-port", type=int, default=None,
                        help="serve Prometheus' /metrics at this port (none: no endpoint)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    redis_url = os.environ.get("KINLINE_REDIS_URL", "redis://127.0.0.1:6379/0")
    asyncio.run(serve(redis_url, args.cel_log, args.recordings, args.ami_host, args.ami_port,
                      os.environ.get("KINLINE_AMI_USER", ""), os.environ.get("KINLINE_AMI_SECRET", ""),
                      args.node, args.interval, args.inactive_days, args.metrics_port, args.metrics_host,
                      args.systemname))


if __name__ == "__main__":
    main()
