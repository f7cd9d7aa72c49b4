"""Wall-clock time in the unit Kinline stores and compares moments in: epoch milliseconds."""

from __future__ import annotations

import time


def now_ms() -> int:
    """Now, in whole epoch milliseconds."""
    return time.time_ns() // 1_000_000
