"""Overload control: the admission rule (levels, hysteresis, hold), the latency window,
the AGI process's monitor with a fake clock (the latency path trips and clears), the
channel timing only quick commands, and the inmate_call route refusing before it
reads anything."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agi.channel import QUICK_COMMANDS, AgiChannel
from agi.deps import CallDeps
from agi.overload import LoadMonitor
from agi.protocol import AgiEnvironment
from agi.routes.inmate_call import make_inmate_call
from agi.server import AgiServer
from ivr import prompts as p
from ivr.overload import HOLD_S, MIN_SAMPLES, WINDOW_S, Admission, Backlog, LatencyWindow, Levels
from metrics.series import AgiMetrics, refusal_reason
from tests.component.test_agi_server import STEP, UID, FakeAsterisk


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the rule -----------------------------------------------------------------

@given(st.integers(0, 10_000), st.floats(0, 1e6), st.floats(0, 1e6))
def test_levels_off_admit_everything(in_ivr: int, latency: float, now: float) -> None:
    assert Admission(Levels()).decide(Backlog(in_ivr, latency), now).admitted


@given(st.integers(1, 500), st.integers(0, 1000), st.floats(0, 1e5))
def test_a_call_past_the_ivr_level_is_never_admitted(level: int, in_ivr: int, now: float) -> None:
    verdict = Admission(Levels(max_in_ivr=level)).decide(Backlog(in_ivr, 0.0), now)
    assert verdict.admitted == (in_ivr < level)
    if not verdict.admitted:
        assert f"{in_ivr} calls in the IVR (level {level})" in verdict.reason


@given(st.floats(1, 10_000), st.floats(0, 20_000))
def test_a_call_past_the_latency_level_is_never_admitted(level: float, latency: float) -> None:
    verdict = Admission(Levels(max_agi_latency_ms=level)).decide(Backlog(0, latency), 0.0)
    assert verdict.admitted == (latency < level)


def test_hysteresis_holds_then_waits_for_the_low_water_mark() -> None:
    rule = Admission(Levels(max_in_ivr=10, hold_s=3))
    assert rule.decide(Backlog(9, 0), 0).admitted
    assert not rule.decide(Backlog(10, 0), 1).admitted  # tripped at t=1
    # Under the level again, but inside the hold: still refused.
    verdict = rule.decide(Backlog(5, 0), 3.9)
    assert not verdict.admitted and "holding" in verdict.reason
    # Past the hold, but 8 is not under 0.8 of 10: still refused.
    verdict = rule.decide(Backlog(8, 0), 4.1)
    assert not verdict.admitted and "not yet back under" in verdict.reason
    assert rule.decide(Backlog(7, 0), 4.2).admitted
    assert not rule.tripped
    assert rule.decide(Backlog(9, 0), 4.3).admitted  # cleared: the level itself again


@given(st.integers(1, 50), st.lists(st.tuples(st.floats(0, 2), st.integers(0, 60)), max_size=60))
def test_after_a_refusal_calls_come_back_only_past_the_hold_and_under_the_low_water_mark(
        level: int, steps: list[tuple[float, int]]) -> None:
    rule = Admission(Levels(max_in_ivr=level, hold_s=HOLD_S))
    now, tripped_at = 0.0, None
    for dt, in_ivr in steps:
        now += dt
        admitted = rule.decide(Backlog(in_ivr, 0.0), now).admitted
        if in_ivr >= level:
            assert not admitted
            tripped_at = now if tripped_at is None else tripped_at
        elif tripped_at is not None:
            back = now - tripped_at >= HOLD_S and in_ivr < max(1, int(level * 0.8))
            assert admitted == back
            tripped_at = None if back else tripped_at
        else:
            assert admitted


def test_a_level_of_one_admits_again_once_the_ivr_is_empty() -> None:
    rule = Admission(Levels(max_in_ivr=1, hold_s=0))
    assert rule.decide(Backlog(0, 0), 0).admitted
    assert not rule.decide(Backlog(1, 0), 1).admitted
    assert rule.decide(Backlog(0, 0), 2).admitted


def test_negative_levels_are_refused() -> None:
    with pytest.raises(ValueError):
        Levels(max_in_ivr=-1)


# -- the latency window -------------------------------------------------------

def test_latency_window_percentile_needs_enough_recent_samples() -> None:
    window = LatencyWindow(window_s=5, percentile=0.9, min_samples=10)
    for ms in range(1, 10):
        window.add(0, ms)
    assert window.value(0) == 0.0  # 9 samples: no evidence yet
    window.add(0, 100)
    assert window.value(0) == 9  # p90 of 1..9, 100
    assert window.value(4.9) == 9
    assert window.value(5.1) == 0.0  # all forgotten


@given(st.lists(st.floats(0, 1e4), min_size=MIN_SAMPLES, max_size=200))
def test_latency_window_value_is_one_of_the_samples_and_not_below_the_median(samples: list[float]) -> None:
    window = LatencyWindow()
    for ms in samples:
        window.add(0, ms)
    value = window.value(0)
    assert value in samples
    assert value >= sorted(samples)[len(samples) // 2 - 1]


# -- the monitor: the latency path trips with a fake clock ---------------------

def test_slow_quick_commands_trip_the_latency_level_and_it_clears_when_they_are_fast() -> None:
    clock = Clock()
    load = LoadMonitor(Levels(max_agi_latency_ms=200), clock=clock)
    for _ in range(MIN_SAMPLES * 3):
        load.round_trip(0.002)
    assert load.admit()[0].admitted
    for _ in range(MIN_SAMPLES * 3):  # the loop is behind: a quarter of a second per round trip
        clock.now += 0.01
        load.round_trip(0.25)
    verdict, backlog = load.admit()
    assert not verdict.admitted and backlog.agi_latency_ms == 250
    assert "AGI latency 250.0 ms (level 200 ms)" in verdict.reason
    clock.now += WINDOW_S + HOLD_S  # the slow samples age out; fast ones come in
    for _ in range(MIN_SAMPLES):
        load.round_trip(0.003)
    verdict, backlog = load.admit()
    assert verdict.admitted and backlog.agi_latency_ms == 3


def test_calls_in_the_ivr_count_while_the_block_runs() -> None:
    load = LoadMonitor(Levels(max_in_ivr=2, hold_s=0))
    with load.in_the_ivr():
        assert load.admit()[0].admitted
        with load.in_the_ivr():
            assert not load.admit()[0].admitted
        assert not load.admit()[0].admitted  # hysteresis: a level of 2 admits again at 0
    assert load.in_ivr == 0
    assert load.admit()[0].admitted


# -- the channel times quick commands only --------------------------------------

async def test_the_channel_reports_round_trips_of_quick_commands_only() -> None:
    seen: list[tuple[str, float]] = []

    async def route(channel: AgiChannel, env: AgiEnvironment) -> None:
        current: list[str] = []
        channel.on_round_trip = lambda s: seen.append((current[0], s))
        for name, run in (("GET VARIABLE", channel.get_variable("X")), ("STREAM FILE", channel.stream_file("f")),
                          ("SET VARIABLE", channel.set_variable("X", 1))):
            current[:] = [name]
            await run

    server = AgiServer({"t": route}, port=0)
    await server.start()
    try:
        fake = await FakeAsterisk.call(server.port, "t")
        for _ in range(3):
            await fake.command()
            await fake.reply("200 result=1 (x)")
        assert await fake.closed_by_server()
    finally:
        await server.stop()
    assert [name for name, _ in seen] == ["GET VARIABLE", "SET VARIABLE"]
    assert all(0 <= s < STEP for _, s in seen)
    assert "STREAM FILE" not in QUICK_COMMANDS and "GET DATA" not in QUICK_COMMANDS


# -- the route ----------------------------------------------------------------

class Untouchable:
    """Stands for the domain and the names: an overloaded call must not reach them (no Redis)."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"an overloaded call used {name}")


async def test_inmate_call_over_the_level_hears_lines_busy_and_nothing_else(tmp_path: Path) -> None:
    metrics = AgiMetrics()
    load = LoadMonitor(Levels(max_in_ivr=1))
    deps = CallDeps(Untouchable(), tmp_path, tmp_path, Untouchable(), metrics, load)  # type: ignore[arg-type]
    server = AgiServer({"inmate_call": make_inmate_call(deps)}, port=0, metrics=metrics)
    await server.start()
    try:
        with load.in_the_ivr():  # one call in the IVR already
            fake = await FakeAsterisk.call(server.port, "inmate_call", args=("f1", "term-1"))
            # One command: the dial plan says "all lines are busy" once the session is over.
            await fake.expect('EXEC "MSet" "KINLINE_FINAL_PROMPT=kinline/en/lines-busy,KINLINE_ACTION=done"')
            await fake.reply("200 result=0")
            assert await fake.closed_by_server()
    finally:
        await server.stop()
    assert load.in_ivr == 0
    assert metrics.registry.get_sample_value("kinline_call_refusals_total", {"reason": "overload"}) == 1
    assert metrics.registry.get_sample_value("kinline_calls_total", {"outcome": "refused"}) == 1
    assert refusal_reason(p.LINES_BUSY, "overload: 1 calls in the IVR (level 1)") == "overload"


async def test_inmate_call_under_the_level_goes_on_to_the_login(tmp_path: Path) -> None:
    """Admitted: the route goes on (here into the Untouchable domain: that is the proof)
    and counts the call in the IVR while it runs."""
    load = LoadMonitor(Levels(max_in_ivr=1))
    during: list[int] = []

    logins: list[tuple[object, ...]] = []

    class Calls:
        async def login(self, *args: object) -> None:
            during.append(load.in_ivr)
            logins.append(args[1:])
            raise asyncio.CancelledError  # stop here: the rest is the usual call

    deps = CallDeps(Calls(), tmp_path, tmp_path, Untouchable(), AgiMetrics(), load)  # type: ignore[arg-type]
    server = AgiServer({"inmate_call": make_inmate_call(deps)}, port=0)
    await server.start()
    try:
        # The dial plan answered and passes the facility and the terminal: no command first.
        fake = await FakeAsterisk.call(server.port, "inmate_call", args=("f1", "term-1"))
        assert await fake.closed_by_server()
    finally:
        await server.stop()
    assert during == [1] and load.in_ivr == 0
    assert logins == [("f1", UID, "term-1")]
