"""The guard process: Asterisk's security events in, nftables blocks out (as fail2ban does).

    python -m guard.main --ami-host 127.0.0.1 --ami-port 5038 --sip-port 5060 --app-sip-port 5070

It logs in to AMI as the read-only user ($KINLINE_AMI_USER / $KINLINE_AMI_SECRET,
never on the command line) and counts SIP authentication failures per source
address; ``--threshold`` of them within ``--window`` seconds block the address's
packets to the SIP ports (the terminals' and, with ``--app-sip-port``, the apps' door:
failures on either count together) for ``--block`` seconds. Failures from a ``--trust``
address are never counted: a cluster node's guard trusts Kamailio, which relays every
terminal's requests (it applies the rule to the terminals itself, kamailio/kamailio.cfg).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import time

from ami.client import AmiClient
from ami.protocol import AmiMessage
from guard.events import auth_failure
from guard.firewall import Firewall, FirewallError, NftFirewall
from guard.policy import BLOCK_S, THRESHOLD, WINDOW_S, FailureCounter

log = logging.getLogger("guard")


async def handle(message: AmiMessage, counter: FailureCounter, firewall: Firewall, now: float,
                 trusted: frozenset[str] = frozenset()) -> None:
    failure = auth_failure(message)
    if failure is None:
        return
    if failure.address in trusted:
        log.debug("[%s] %s (account %r) from a trusted relay: not counted",
                  failure.address, failure.kind, failure.account)
        return
    if counter.is_blocked(failure.address, now):
        log.debug("[%s] %s while blocked (a packet already on its way)", failure.address, failure.kind)
        return
    block = counter.failure(failure.address, now)
    if block is None:
        log.info("[%s] %s (account %r): %d failure(s) in the window",
                 failure.address, failure.kind, failure.account, counter.counted(failure.address))
        return
    try:
        await firewall.block(block.address, block.seconds)
    except (FirewallError, TimeoutError) as exc:
        counter.lift(block.address)  # the next failure tries again
        log.error("[%s] could not block after %d failures: %s", block.address, block.failures, exc)
        return
    log.warning("[%s] blocked for %d s after %d SIP authentication failures",
                block.address, block.seconds, block.failures)


async def serve(args: argparse.Namespace, user: str, secret: str) -> None:
    counter = FailureCounter(args.threshold, args.window, args.block)
    trusted = frozenset(args.trust or ())
    firewall = NftFirewall(args.sip_port, tuple(args.app_sip_port or ()))
    client = AmiClient(args.ami_host, args.ami_port, user, secret, events="security")
    events = client.subscribe()
    await client.start(timeout=30)
    await firewall.setup()
    log.info("guarding SIP ports %s: %d failures in %.0f s block an address for %d s%s",
             ", ".join(map(str, [args.sip_port, *(args.app_sip_port or ())])), args.threshold, args.window, args.block,
             f" (trusted: {', '.join(sorted(trusted))})" if trusted else "")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    stopping = asyncio.create_task(stop.wait())
    try:
        while not stop.is_set():
            getting = asyncio.create_task(events.get())
            done, _ = await asyncio.wait({getting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if getting in done:
                await handle(getting.result(), counter, firewall, time.monotonic(), trusted)
            else:
                getting.cancel()
    finally:
        stopping.cancel()
        with contextlib.suppress(FirewallError, TimeoutError):
            await firewall.teardown()
        await client.close()
        log.info("guard stopped; blocks lifted")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Kinline SIP guard")
    parser.add_argument("--ami-host", default="127.0.0.1")
    parser.add_argument("--ami-port", type=int, default=5038)
    parser.add_argument("--sip-port", type=int, default=5060, help="the terminals' SIP port (names the nft table)")
    parser.add_argument("--app-sip-port", type=int, action="append",
                        help="another SIP port to close to blocked addresses: the apps' door (may repeat)")
    parser.add_argument("--threshold", type=int, default=THRESHOLD, help="failures that block an address")
    parser.add_argument("--window", type=float, default=WINDOW_S, help="seconds the failures are counted over")
    parser.add_argument("--block", type=int, default=BLOCK_S, help="seconds an address stays blocked")
    parser.add_argument("--trust", action="append", metavar="ADDRESS",
                        help="a relay whose failures are never counted (a cluster node: Kamailio; may repeat)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    user, secret = os.environ.get("KINLINE_AMI_USER"), os.environ.get("KINLINE_AMI_SECRET")
    if not user or not secret:
        parser.error("set KINLINE_AMI_USER and KINLINE_AMI_SECRET (the read-only AMI user)")
    asyncio.run(serve(args, user, secret))


if __name__ == "__main__":
    main()
