"""Benchmark: what the push bridge itself adds, with P's fake providers and a fake AMI.

    .venv/bin/python -m bench.pushbridge_overhead --wakes 100

Starts its own redis-server (a free port, a temporary folder), the three fake push
services over HTTP and a fake AMI, and runs the bridge's own wiring (pushbridge.main
.run_bridge) in this process with an in-memory device directory (PostgreSQL's lookup
is not counted). One wake at a time, one FCM device each, then for each wake one
ContactStatus event. Measured on this process's monotonic clock:

- wake: XADD to kl:wake -> the fake FCM receives the push (the stream read, the
  OAuth token cached after the first, the HTTP request on loopback); and from the
  bridge's records, request read -> push started (ms resolution);
- contact: the fake AMI writes ContactStatus -> a subscriber of kl:contact:<phone>
  gets the publish (AMI parsing, the Redis pipeline, pub/sub delivery).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from ami.client import AmiClient
from pushbridge import records
from pushbridge.contacts import contact_channel
from pushbridge.devices import MemoryDirectory
from pushbridge.main import run_bridge
from pushbridge.providers import Device, build_providers, load_push_config
from pushbridge.requests import WAKE_STREAM, wake_fields
from store.redis_store import connect
from tests.component.conftest import _start, _stop
from tests.component.test_ami_client import SECRET, USER, FakeAmi
from tests.fakes.push_providers import FakePushServices, Push

PHONE = "+79160000000"
STEP_S = 5.0


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary(name: str, values: list[float]) -> str:
    return (f"{name}: n={len(values)} p50 {statistics.median(values):.2f} ms, p99 {pct(values, 99):.2f} ms, "
            f"max {max(values):.2f} ms")


async def run(wakes: int, folder: Path) -> list[str]:
    proc, port = _start(folder)
    redis = connect(f"redis://127.0.0.1:{port}/0")
    ami = FakeAmi()
    await ami.start()
    stop = asyncio.Event()
    received: dict[str, float] = {}
    try:
        async with FakePushServices() as fakes:
            fakes.on_push(lambda push: received.setdefault(push.data["call_id"], time.monotonic())
                          if isinstance(push, Push) else None)
            providers = build_providers(load_push_config(fakes.write_config(folder / "push")))
            directory = MemoryDirectory()
            directory.add(PHONE, Device("fcm", "tok-bench", "org.kinline.app", "1"))
            client = AmiClient("127.0.0.1", ami.port, USER, SECRET, reconnect_delay=0.05, events="system")
            bridge = asyncio.create_task(run_bridge(redis, directory, providers, client, stop, consumer="bench"))
            deadline = time.monotonic() + STEP_S
            while not ami.logged_in:
                if time.monotonic() > deadline:
                    raise RuntimeError("the bridge did not log in to the fake AMI")
                await asyncio.sleep(0.01)
            sub = redis.pubsub()
            await sub.subscribe(contact_channel(PHONE))
            wake_ms: list[float] = []
            split_ms: list[float] = []
            contact_ms: list[float] = []
            for i in range(wakes + 1):  # the first one fetches the OAuth token: not counted
                call_id = f"bench-{i}"
                sent = time.monotonic()
                await redis.xadd(WAKE_STREAM, wake_fields(call_id, PHONE, "Bench", 30))  # type: ignore[arg-type]
                while call_id not in received:
                    if time.monotonic() - sent > STEP_S:
                        raise RuntimeError(f"{call_id}: no push")
                    await asyncio.sleep(0.0005)
                event_sent = time.monotonic()
                await ami.event(Event="ContactStatus", Privilege="system,all", URI="sip:app-1@127.0.0.1:5999",
                                ContactStatus="Reachable" if i % 2 else "Created", AOR="app-1", EndpointName="app-1")
                message = None
                while message is None:  # None also for the subscription's own confirmation
                    if time.monotonic() - event_sent > STEP_S:
                        raise RuntimeError(f"{call_id}: no publish")
                    message = await sub.get_message(ignore_subscribe_messages=True, timeout=STEP_S)
                got = time.monotonic()
                if i:
                    wake_ms.append((received[call_id] - sent) * 1000)
                    contact_ms.append((got - event_sent) * 1000)
                    events = await records.read_attempts(redis, call_id)
                    read = next(e for e in events if e.event == records.REQUEST_READ)
                    push = next((e for e in events if e.event == records.PUSH_SENT), None)
                    if push is not None:
                        split_ms.append(push.ms - read.ms)
                await asyncio.sleep(0.01)
            await sub.aclose()
            stop.set()
            await asyncio.wait_for(bridge, STEP_S)
            for provider in providers.values():
                await provider.aclose()
        return [summary("XADD -> push at the fake FCM", wake_ms),
                summary("request read -> push started (records, 1 ms resolution)", split_ms),
                summary("ContactStatus written by AMI -> publish received", contact_ms)]
    finally:
        await ami.stop()
        await redis.aclose()
        _stop(proc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wakes", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        lines = asyncio.run(run(args.wakes, Path(folder)))
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
