"""`make run`: the stack in the foreground with demo data."""

from __future__ import annotations

import signal
import sys
import time

from tools.config import StackConfig


def run_foreground(config: StackConfig) -> None:
    from tools import stack

    stack.up(config)
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    sys.stdout.write("Kinline is running; Ctrl-C stops it.\n")
    while not stop:
        time.sleep(0.5)
    stack.down(config)
