"""Benchmark: call set-up time and Kinline's own time per call, on a running stack.

    make up && .venv/bin/kinline demo load && .venv/bin/python -m bench.call_setup --calls 10

For each call the demo terminal logs in with the demo card and dials the demo mobile
number; a pjsua2 agent on the trunk answers and hangs up after a second. Reported:
- '#' to decision: to the route's next move (a prompt, or telling the dial plan
  to dial), i.e. number checks, tariff and reservation done;
- '#' to INVITE: from Asterisk finishing the Read of the number (AMI AGIExecEnd of the
  AGI command that played its prompt, i.e. the '#' arrived) to the INVITE leaving on
  the trunk (AMI DialBegin), and to the relative's agent receiving it;
- AGI own time: time spent in Kinline's routes (decisions, Redis, PIN hash) for the
  whole call, not counting time waiting for Asterisk (prompts), from the AGI log.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys

from ami.client import AmiClient
from tests.e2e.harness import AmiWatch, SipAgent
from tools.config import load_config, load_secrets
from tools.demo_data import CARD, FACILITY, PIN, TERMINAL, demo_sip_password

NUMBER = "79161234567"


async def one_call(cfg_target: str, user: str, password: str, ami: AmiWatch, relative: SipAgent,
                   rtp_port: int, language: str, card: str = CARD, pin: str = PIN,
                   number: str = NUMBER) -> tuple[str, float, float, float]:
    """One call: the terminal ``user`` logs in with ``card`` and ``pin`` (its prompts in
    ``language``) and dials ``number``; ``relative`` (on the trunk) answers. Returns the
    channel's uniqueid and, in seconds from the number's '#', the INVITE sent, the INVITE
    received and the decision made."""
    agent = await SipAgent.start("call", "--target", cfg_target, "--user", user, "--password", password,
                                 "--rtp-port", str(rtp_port))
    try:
        channel = await ami.wait_new("Newchannel", lambda m: m.get("Channel").startswith(f"PJSIP/{user}-"))
        uid = channel.get("Uniqueid")

        async def answer(prompt: str, digits: str) -> None:
            # The prompt's start on the channel, whichever AGI command plays it (the card and
            # the PIN are one GOSUB, each entry a Read).
            await ami.wait_played(uid, f"kinline/{language}/{prompt}", timeout=30)
            await agent.send(f"dtmf {digits}# info")

        await answer("enter-card", card)
        await answer("enter-pin", pin)
        await answer("enter-number", number)
        got = await ami.wait_new("AGIExecEnd", lambda m: m.get("Uniqueid") == uid
                                 and f"kinline/{language}/enter-number" in m.get("Command"), timeout=30)
        # The route's next move after reading the entry (GET FULL VARIABLE): the MSet telling
        # the dial plan to dial (or a refusal's prompt), i.e. the decision is made.
        spoken = await ami.wait_new("AGIExecStart", lambda m: m.get("Uniqueid") == uid
                                    and float(m.get("Timestamp")) >= float(got.get("Timestamp"))
                                    and not m.get("Command").startswith("GET "), timeout=30)
        dial = await ami.wait_new("DialBegin", lambda m: m.get("Uniqueid") == uid, timeout=60)
        incoming = await relative.wait_for("incoming", lambda e: e["t"] > float(got.get("Timestamp")), timeout=30)
        await asyncio.sleep(1)
        await relative.send("hangup")
        await ami.wait_new("Hangup", lambda m: m.get("Uniqueid") == uid, timeout=30)
        t0 = float(got.get("Timestamp"))
        return uid, float(dial.get("Timestamp")) - t0, incoming["t"] - t0, float(spoken.get("Timestamp")) - t0
    finally:
        await agent.close()


def own_times(log_text: str, uid: str) -> float:
    pattern = re.compile(rf"\[{re.escape(uid)}\] route \S+ (?:for \S+ )?done in \d+ ms \(own ([\d.]+) ms\)")
    return sum(float(m.group(1)) for m in pattern.finditer(log_text))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--config", default=None)
    opts = parser.parse_args()
    if not 1 <= opts.calls <= 100:
        parser.error("--calls must be 1..100")
    config = load_config(opts.config)
    password = demo_sip_password(config)  # terminals.json holds only its digest
    if password is None:
        parser.error("no demo terminal password: run `kinline demo load` first")
    secrets = load_secrets(config)
    client = AmiClient(config.host, config.ami_port, secrets.ami_user, secrets.ami_secret)
    await client.start()
    ami = AmiWatch(client)
    relative = await SipAgent.start("answer", "--port", str(config.trunk_port), "--rtp-port", "21700",
                                    "--max-seconds", "3600")
    results = []
    try:
        for i in range(opts.calls):
            target = f"sip:100@{config.host}:{config.sip_port}"
            try:
                results.append(await one_call(target, TERMINAL, password, ami, relative, 21600,
                                              FACILITY.language))
            except TimeoutError:
                sys.stderr.write(f"call {i + 1} timed out; the relative's last events: {relative.events[-4:]}\n")
                raise
            relative.events.clear()
            sys.stdout.write(f"call {i + 1}: # -> INVITE {results[-1][1] * 1000:.0f} ms\n")
    finally:
        await relative.close()
        ami.close()
        await client.close()
    await asyncio.sleep(1)
    log_text = config.path("logs", "agi.log").read_text()
    dial = sorted(r[1] * 1000 for r in results)
    seen = sorted(r[2] * 1000 for r in results)
    own = sorted(own_times(log_text, r[0]) for r in results)
    decided = sorted(r[3] * 1000 for r in results)
    for name, values in (("'#' -> decision made (number checked, money reserved)", decided),
                         ("'#' -> INVITE sent (AMI DialBegin)", dial),
                         ("'#' -> INVITE received by the relative", seen),
                         ("AGI own time per call (all routes)", own)):
        sys.stdout.write(f"{name}: p50 {statistics.median(values):.1f} ms, max {max(values):.1f} ms "
                         f"(n={len(values)})\n")


if __name__ == "__main__":
    asyncio.run(main())
