"""Benchmark: what the push bridge itself adds, with P's fake providers and a fake AMI.

    .venv/bin/python -m bench.pushbridge_overhead --wakes 100

Starts its own redis-server (a free port, a temporary folder), the three fake push
services over HTTP and a fake AMI, and runs the bridge's own wiring (pushbridge.main
.run_bridge) in this process with an in-memory device directory (PostgreSQL's lookup
is not counted). One wake at a time, one FCM device each, then for each wake one
registrar contact event (res_pjsip_registrar's TestEvent AOR_CONTACT_ADDED, what the bridge
follows: pushbridge/contacts.py). Measured on this process's monotonic clock:

- wake: XADD to kl:wake -> the fake FCM receives the push (the stream read, the
  OAuth token cached after the first, the HTTP request on loopback); and from the
  bridge's records, request read -> push started (ms resolution);
- contact: the fake AMI writes the event -> a subscriber of kl:contact:<phone>
  gets the publish (AMI parsing, the Redis pipeline, pub/sub delivery).

    .venv/bin/python -m bench.pushbridge_overhead --simulate --wakes 100 --loss 0.1

simulates wakes instead: one relative per wake with one device (FCM, APNs, HMS in turn),
a wake every --every seconds; each push is lost with probability --loss (the provider
accepts it, the app never wakes), otherwise the app registers after a random delay
(log-normal, median 0.8 s, p95 about 2 s: PushKit's published request-to-ring figures)
and the fake AMI reports its contact. Success = contact_registered recorded inside the
window; reported with push sent -> contact registered p50/p99 from the bridge's records.
The bridge pushes an FCM/HMS device once more when its contact has not come 5 s after the
push (--repush-after): a lost data push costs 5 s, a lost APNs VoIP push the call.
A repeated push is lost with the same probability.

Measured 2026-11-23 (2-core box shared with other helpers' e2e stacks, load average 10-75:
the earlier quiet-box figures in README's history were 3.5-4.6 ms and 1.5-2.3 ms p50):
    --wakes 100, two runs: XADD -> push p50 7.5-9.1 ms, p99 19-31 ms; request read ->
    push started p50 1 ms; registrar event -> publish p50 3.6-6.5 ms, p99 13-22 ms.
    --simulate --wakes 100 --loss 0.1, seeds 1, 2, 8: success 96 %, 96 %, 98 %;
    push sent -> contact registered p50 0.81-1.25 s, p99 6.0-6.4 s (the repeated ones).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from ami.client import AmiClient
from pushbridge.devices import MemoryDirectory
from pushbridge.main import AMI_EVENTS, run_bridge
from pushbridge.providers import Device, build_providers, load_push_config
from store import wake_records as records
from store.app_wake import WAKE_STREAM, contact_channel, wake_fields
from store.redis_store import connect
from tests.component.conftest import _start, _stop
from tests.component.test_ami_client import SECRET, USER, FakeAmi
from tests.fakes.push_providers import FakePushServices, Push

PHONE = "+79160000000"
STEP_S = 5.0


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def registrar_event(device: str, port: int, state: str = "AOR_CONTACT_ADDED") -> dict[str, str]:
    """res_pjsip_registrar's TestEvent for an app's new contact (what the bridge follows)."""
    return {"Event": "TestEvent", "Privilege": "reporting,all", "Type": "StateChange", "State": state,
            "AppFile": "res_pjsip_registrar.c", "Contact": f"sip:app-{device}@127.0.0.1:{port}",
            "AOR": f"app-{device}", "Expiration": "300", "UserAgent": ""}


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
            client = AmiClient("127.0.0.1", ami.port, USER, SECRET, reconnect_delay=0.05, events=AMI_EVENTS)
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
                await ami.event(**registrar_event("1", 5999, "AOR_CONTACT_REFRESHED" if i % 2 else "AOR_CONTACT_ADDED"))
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
                summary("registrar TestEvent written by AMI -> publish received", contact_ms)]
    finally:
        await ami.stop()
        await redis.aclose()
        _stop(proc)


async def simulate(wakes: int, loss: float, every: float, window: float, seed: int, folder: Path) -> list[str]:
    proc, port = _start(folder)
    redis = connect(f"redis://127.0.0.1:{port}/0")
    ami = FakeAmi()
    await ami.start()
    stop = asyncio.Event()
    rng = random.Random(seed)
    lost: set[str] = set()
    try:
        async with FakePushServices() as fakes:
            directory = MemoryDirectory()
            platforms = ("fcm", "apns-voip", "hms")
            by_token: dict[str, str] = {}
            for i in range(wakes):
                platform = platforms[i % 3]
                token = f"{i:04d}" * 16 if platform == "apns-voip" else f"tok-sim-{i:04d}"
                app = "104567890" if platform == "hms" else "org.kinline.app"
                directory.add(f"+7916{i:07d}", Device(platform, token, app, f"{i:04d}"))  # type: ignore[arg-type]
                by_token[token] = f"{i:04d}"

            async def app_wakes(push: Push) -> None:
                if push.data.get("kind") != "wake":
                    return
                if rng.random() < loss:
                    lost.add(push.data["call_id"])
                    return
                await asyncio.sleep(rng.lognormvariate(math.log(0.8), 0.5))
                device = by_token[push.token]
                await ami.event(**registrar_event(device, 6000))
            fakes.on_push(app_wakes)
            providers = build_providers(load_push_config(fakes.write_config(folder / "push")))
            client = AmiClient("127.0.0.1", ami.port, USER, SECRET, reconnect_delay=0.05, events=AMI_EVENTS)
            bridge = asyncio.create_task(run_bridge(redis, directory, providers, client, stop, consumer="sim"))
            deadline = time.monotonic() + STEP_S
            while not ami.logged_in:
                if time.monotonic() > deadline:
                    raise RuntimeError("the bridge did not log in to the fake AMI")
                await asyncio.sleep(0.01)
            deadlines: dict[str, int] = {}
            for i in range(wakes):
                fields = wake_fields(f"sim-{i}", f"+7916{i:07d}", "Sim", window)
                deadlines[f"sim-{i}"] = int(fields["ts"]) + int(window * 1000)
                await redis.xadd(WAKE_STREAM, fields)  # type: ignore[arg-type]
                await asyncio.sleep(every)
            await asyncio.sleep(min(window, 10.0))  # the slowest simulated app: well under 10 s
            stop.set()
            await asyncio.wait_for(bridge, STEP_S)
            for provider in providers.values():
                await provider.aclose()
        woken: list[float] = []
        failed = 0
        for call_id, call_deadline in deadlines.items():
            attempts = records.per_device(await records.read_attempts(redis, call_id))
            ok = [a for a in attempts if a.contact_ms is not None and a.contact_ms <= call_deadline]
            if ok and ok[0].push_to_contact_ms is not None:
                woken.append(float(ok[0].push_to_contact_ms))
            failed += not attempts or attempts[0].push_result != "delivered"
        return [f"wakes {wakes}, {len(lost)} with a push lost (simulated), {failed} first pushes refused: "
                f"success {len(woken)}/{wakes} = {100 * len(woken) / wakes:.0f} %",
                summary("push sent -> contact registered (successes)", woken)]
    finally:
        await ami.stop()
        await redis.aclose()
        _stop(proc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wakes", type=int, default=100)
    parser.add_argument("--simulate", action="store_true", help="success rate with lost pushes and random delays")
    parser.add_argument("--loss", type=float, default=0.1)
    parser.add_argument("--every", type=float, default=0.05, help="seconds between wakes (simulate)")
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        if args.simulate:
            lines = asyncio.run(simulate(args.wakes, args.loss, args.every, args.window, args.seed, Path(folder)))
        else:
            lines = asyncio.run(run(args.wakes, Path(folder)))
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
