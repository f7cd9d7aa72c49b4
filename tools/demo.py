"""`make run`: the stack in the foreground with demo data, and how to call in."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from typing import Any

from ivr.pin import PinHasher
from store.redis_store import RedisStore
from tools import stack
from tools.config import StackConfig, load_secrets
from tools.demo_data import load_demo
from tools.supervise import Supervisor


async def _load(config: StackConfig) -> dict[str, Any]:
    store = RedisStore.from_url(config.redis_url, PinHasher.from_hex(load_secrets(config).pin_key))
    try:
        return await load_demo(store, config)
    finally:
        await store.aclose()


def instructions(config: StackConfig, demo: dict[str, Any]) -> str:
    numbers = ", ".join(demo["numbers"])
    return f"""
Kinline is running (Ctrl-C stops it). Logs: {config.path('logs')}

Call in as a prison terminal with any SIP softphone (e.g. baresip, Linphone):
  SIP server   {demo['sip_server']} (UDP)
  user         {demo['terminal']}
  password     {demo['sip_password']}
  then dial    100

The IVR (Russian, the demo facility's language) asks for:
  card number  {demo['card']}#
  PIN          {demo['pin']}#
  the number   e.g. 79161234567#   (allowed: {numbers})

The relative's phone is whatever answers SIP at {config.host}:{config.trunk_port}, e.g.
  .venv/bin/python tests/agents/sipagent.py answer --port {config.trunk_port}
Card and calls:  .venv/bin/kinline card show {demo['card']}
"""


def run_foreground(config: StackConfig) -> None:
    """Start the stack, load the demo, then supervise: a service that dies is
    reaped and restarted with backoff (logged on stderr) until Ctrl-C."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stack.up(config)
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        demo = asyncio.run(_load(config))
        stack.apply_terminals(config)
        sys.stdout.write(instructions(config, demo))
        sys.stdout.flush()
        supervisor = Supervisor(config, stack.SERVICES)
        while not stop:
            supervisor.poll()
            time.sleep(0.5)
    finally:
        stack.down(config)
