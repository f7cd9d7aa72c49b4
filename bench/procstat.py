"""What the benches read of a process and of the AGI server's log: CPU ticks and RSS from
/proc, percentiles, and the AGI server's per-route line. Shared by bench/make_bench.py and
bench/agi_calls.py (neither imports the other for these)."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
# agi/server.py's line at the end of each route: uniqueid, wall ms, own ms (waits excluded).
AGI_LINE = re.compile(r"\[([^\]\s]+)\] route \S+ (?:for \S+ )?done in (\d+) ms \(own ([\d.]+) ms\)")


def cpu_ticks(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15), every thread


def rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def pct(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]
