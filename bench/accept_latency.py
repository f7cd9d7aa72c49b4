"""Benchmark: time from the relative's 1 (accept menu of a "01" call) to the bridge, on a running stack.

    make up && .venv/bin/kinline demo load && .venv/bin/python -m bench.accept_latency --calls 10

The demo terminal logs in with the bench's own card (made once in the demo facility:
card 900100, PIN 2468, an inmate "bench-inmate" whose recorded name is a short tone)
and dials 01 + the bench relative (+79169990001, an account topped up for the run,
always in touch with that card). A pjsua2 agent on the trunk answers, waits for the
menu (the start of accept-menu on its leg: the TestEvent PLAYBACK), keys 1 (RFC 4733,
160 ms) and hangs up a second after the bridge. Measured per call, on this machine's
clock: the agent sending the digit -> Asterisk taking it (AMI AGIExecEnd of the AGI
command playing the menu: the digit's 160 ms included, it is taken when it ends) -> AMI
BridgeEnter of the inmate's channel.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import statistics
import struct
import sys
import uuid
import wave
from dataclasses import replace
from datetime import UTC, datetime

from ami.client import AmiClient
from ivr.errors import StoreConflict
from ivr.model import AllowedNumber, Inmate, InmateStatus
from ivr.pin import PinHasher
from ivr.prompts import ACCEPT_MENU
from ivr.relatives import CardSettings, code_hash, token_hash
from store.redis_store import RedisStore
from store.relatives import RelativeStore
from tests.e2e.harness import AmiWatch, SipAgent
from tools.config import StackConfig, load_config, load_secrets
from tools.demo_data import FACILITY, PIN, TERMINAL, demo_sip_password

CARD = "900100"
LANGUAGE = "en"  # the bench card's
INMATE = Inmate(id="bench-inmate", name="Bench Inmate", facility_id=FACILITY.id, status=InmateStatus.CONVICTED)
PHONE = "+79169990001"
CALL_TIMEOUT_S = 90  # login, dial, the menu's first round: every wait is bounded


async def provision(config: StackConfig, calls: int, facility: str = FACILITY.id) -> None:
    """The bench's card, inmate (with a recorded name) and paying relative, in ``facility``;
    idempotent, except one top-up per run (enough for every call)."""
    store = RedisStore.from_url(config.redis_url, PinHasher.from_hex(load_secrets(config).pin_key))
    try:
        await store.put_inmate(replace(INMATE, facility_id=facility))
        with contextlib.suppress(StoreConflict):  # made by an earlier run
            await store.create_card(CARD, INMATE.id, facility, PIN, LANGUAGE)
        name = config.path("names", f"{INMATE.id}.wav")
        if not name.exists():  # else the inmate is asked to record it at login
            with wave.open(str(name), "wb") as wav:
                wav.setnchannels(1)
                wav.setsampwidth(2)
                wav.setframerate(8000)
                wav.writeframes(b"".join(struct.pack("<h", int(3000 * math.sin(2 * math.pi * 440 * i / 8000)))
                                         for i in range(4000)))
            name.chmod(0o644)
        rel = RelativeStore(store.redis)
        if await rel.balance(PHONE) is None:  # an account opens with a right code
            assert await rel.issue_code(PHONE, code_hash(PHONE, "123456"), datetime.now(UTC))
            assert await rel.check_code(PHONE, code_hash(PHONE, "123456"), token_hash(uuid.uuid4().hex)) == "ok"
        payment = f"bench-{uuid.uuid4().hex}"
        await rel.create_payment(payment, PHONE, 1_000 * calls)
        await rel.credit_payment(payment, 1_000 * calls)
        await store.allow_number(CARD, AllowedNumber(PHONE, "Bench relative"))
        await rel.put_card_settings(PHONE, CARD, CardSettings(always_in_touch=True))
    finally:
        await store.aclose()


async def one_call(config: StackConfig, password: str, ami: AmiWatch, relative: SipAgent,
                   terminal: str = TERMINAL, facility_language: str = FACILITY.language) -> tuple[float, float]:
    """One "01" call from ``terminal`` (whose facility speaks ``facility_language``) with the
    bench's card, accepted by ``relative`` with a 1. Returns, in seconds from the 1 sent, the
    digit taken and the bridge."""
    agent = await SipAgent.start("call", "--target", f"sip:100@{config.host}:{config.sip_port}",
                                 "--user", terminal, "--password", password, "--rtp-port", "21600")
    try:
        channel = await ami.wait_new("Newchannel", lambda m: m.get("Channel").startswith(f"PJSIP/{terminal}-"))
        uid = channel.get("Uniqueid")

        async def answer(language: str, prompt: str, digits: str) -> None:
            # The prompt's start on the channel, whichever AGI command plays it (the card and
            # the PIN are one GOSUB, each entry a Read).
            await ami.wait_played(uid, f"kinline/{language}/{prompt}", timeout=30)
            await agent.send(f"dtmf {digits}# info")

        # Until the card is known the terminal's facility speaks; then the card's language.
        await answer(facility_language, "enter-card", CARD)
        await answer(facility_language, "enter-pin", PIN)
        await answer(LANGUAGE, "enter-number", "01" + PHONE[1:])
        dial = await ami.wait_new("DialBegin", lambda m: m.get("Uniqueid") == uid, timeout=30)
        leg = dial.get("DestUniqueid")
        await ami.wait_new("TestEvent", lambda m: m.get("State") == "PLAYBACK"
                           and m.get("Channel") == dial.get("DestChannel")
                           and m.get("Message", "").endswith(f"/{ACCEPT_MENU}"), timeout=60)
        relative.events.clear()
        await relative.send("dtmf 1 rfc2833")
        sent = await relative.wait_for("dtmf_sent", timeout=5)
        got = await ami.wait_new("AGIExecEnd", lambda m: m.get("Uniqueid") == leg
                                 and f"/{ACCEPT_MENU}" in m.get("Command"), timeout=10)
        bridged = await ami.wait_new("BridgeEnter", lambda m: m.get("Uniqueid") == uid, timeout=10)
        await asyncio.sleep(1)
        await relative.send("hangup")
        await ami.wait_new("Hangup", lambda m: m.get("Uniqueid") == uid, timeout=30)
        return float(got.get("Timestamp")) - float(sent["t"]), float(bridged.get("Timestamp")) - float(sent["t"])
    finally:
        await agent.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--config", default=None)
    opts = parser.parse_args()
    if not 1 <= opts.calls <= 50:
        parser.error("--calls must be 1..50")
    config = load_config(opts.config)
    password = demo_sip_password(config)
    if password is None:
        parser.error("no demo terminal password: run `kinline demo load` first")
    await provision(config, opts.calls)
    secrets = load_secrets(config)
    client = AmiClient(config.host, config.ami_port, secrets.ami_user, secrets.ami_secret)
    await client.start()
    ami = AmiWatch(client)
    relative = await SipAgent.start("answer", "--port", str(config.trunk_port), "--rtp-port", "21700",
                                    "--max-seconds", "3600")
    results: list[tuple[float, float]] = []
    try:
        for i in range(opts.calls):
            results.append(await asyncio.wait_for(one_call(config, password, ami, relative), CALL_TIMEOUT_S))
            got, bridged = results[-1]
            sys.stdout.write(f"call {i + 1}: 1 -> digit taken {got * 1000:.0f} ms, -> bridge {bridged * 1000:.0f} ms\n")
    finally:
        await relative.close()
        ami.close()
        await client.close()
    for name, values in (("relative's 1 -> digit taken (AMI AGIExecEnd of the menu)", [r[0] for r in results]),
                         ("relative's 1 -> bridge (AMI BridgeEnter of the inmate)", [r[1] for r in results])):
        ms = sorted(x * 1000 for x in values)
        sys.stdout.write(f"{name}: p50 {statistics.median(ms):.0f} ms, max {max(ms):.0f} ms (n={len(ms)})\n")


if __name__ == "__main__":
    asyncio.run(main())
