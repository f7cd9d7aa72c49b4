"""`make bench QUICK=1` (its Python entry) in the suite, so the bench cannot rot.

It starts its own Kinline stack (offset 9) and bare Asterisk (its own call, then
Kinline's call from a static dial plan), places one small step of SIPp calls on
each, and writes the table. One call per step dials a number the SIPp relative
refuses (486): it must be counted as failed, so this test fails if the bench
counted calls that never connected (or were not bridged, or not billed).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
STACKS = ("Kinline", "bare Asterisk + MixMonitor", "bare Asterisk, Kinline's call")


def step_rows(table: str) -> dict[str, list[str]]:
    """The per-step table's rows by switch: [calls/s, placed, good, failures, ...]."""
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] in STACKS and len(cells) == 11:
            rows[cells[0]] = cells[1:]
    return rows


def test_bench_quick_counts_good_calls_and_a_refused_one_as_failed(tmp_path: Path) -> None:
    out = tmp_path / "latest.md"
    run = subprocess.run([sys.executable, "-m", "bench.make_bench", "--quick", "--reject", "1", "--out", str(out)],
                         cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    table = out.read_text()
    assert table in run.stdout  # printed and written: the same table
    rows = step_rows(table)
    assert set(rows) == set(STACKS), table
    for stack in STACKS:
        rate, placed, good, failures = rows[stack][:4]
        assert (rate, placed) == ("1", "5"), table
        assert good == "4", table  # every call but the refused one bridged (and, Kinline, was billed once)
        assert failures == "not answered: 1", table
    summary = next(line for line in table.splitlines() if line.startswith("| zero-failure knee"))
    assert summary.split("|")[2:7] == [" 1.0 ", " 1.0 ", " 1.00 ", " 1.0 ", " 1.00 "], table
    # Kinline's call on bare dialed the numbers its terminals typed (good == 4 above); its comparison:
    assert "Against Kinline's call on the bare Asterisk" in table, table
    # The AGI server alone: 30 calls through a fake Asterisk, all good, its memory read.
    alone = next(line for line in table.splitlines() if line.startswith("| AGI server alone"))
    assert re.search(r"\| \d+\.\d / \d+\.\d MB after 30 calls \|", alone), table
