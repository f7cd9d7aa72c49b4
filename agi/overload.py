"""This AGI process's backlog, measured for overload control (ivr/overload.py).

The inmate_call route asks ``admit()`` first (before any Redis read), counts its
call in the IVR while it runs, and hands its channel's quick-command round trips
to ``round_trip``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ivr.overload import Admission, Backlog, LatencyWindow, Levels, Verdict


class LoadMonitor:
    def __init__(self, levels: Levels | None = None, clock: Callable[[], float] = time.monotonic,
                 latency: LatencyWindow | None = None) -> None:
        self.levels = levels if levels is not None else Levels()
        self.admission = Admission(self.levels)
        self.latency = latency if latency is not None else LatencyWindow()
        self.in_ivr = 0
        self._clock = clock

    def round_trip(self, seconds: float) -> None:
        """One quick AGI command's round trip (AgiChannel.on_round_trip)."""
        self.latency.add(self._clock(), seconds * 1000)

    def backlog(self) -> Backlog:
        return Backlog(self.in_ivr, self.latency.value(self._clock()))

    def admit(self) -> tuple[Verdict, Backlog]:
        backlog = self.backlog()
        return self.admission.decide(backlog, self._clock()), backlog

    @contextmanager
    def in_the_ivr(self) -> Iterator[None]:
        """Count one call in the IVR for the block's duration."""
        self.in_ivr += 1
        try:
            yield
        finally:
            self.in_ivr -= 1

    def describe(self) -> str:
        """The levels, for log lines."""
        latency = self.levels.max_agi_latency_ms
        return (f"levels: max in IVR {self.levels.max_in_ivr or 'off'}, "
                f"max AGI latency {f'{latency:g} ms' if latency else 'off'}")
