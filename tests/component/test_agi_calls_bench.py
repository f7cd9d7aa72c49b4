"""bench/agi_calls.py keeps working: 30 calls through the real AGI server process, on a
redis-server of the bench's own, all good, with the server's RSS reported."""

from __future__ import annotations

import re
import shutil

import pytest

from bench.agi_calls import main


def test_thirty_calls_are_all_good(capsys: pytest.CaptureFixture[str]) -> None:
    for tool in ("redis-server", "espeak-ng", "sox"):  # the facility's spoken name is made once, beforehand
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed")

    status = main(["--calls", "30", "--max-seconds", "40"])

    table = capsys.readouterr().out
    assert "| calls (good / run / asked) | 30 / 30 / 30 |" in table, table
    assert "| failures | 0 |" in table, table
    assert "| unknown commands | 0 |" in table, table
    assert status == 0
    assert re.search(r"\| AGI RSS MB start / every 1000 calls / end \| [1-9][\d.]* / - / [1-9][\d.]* \|", table), table
    cpu = re.search(r"\| AGI CPU ms per call \| ([\d.]+) \|", table)
    assert cpu is not None and float(cpu.group(1)) > 0, table
    assert re.search(r"\| route wall ms p50 / p99 \| inmate_call [\d.]+ / [\d.]+; after_dial ", table), table
