"""Overload control: admit a new inmate call or answer "all lines are busy".

Past the knee every caller's entry degrades (prompts start late, digits are lost,
numbers typed right are heard wrong). So the switch measures its own backlog and,
past a configured level, refuses new calls at once instead:

- calls in the IVR: calls of this AGI process between their login and their dial
  decision, not counting the new one;
- AGI latency: a recent percentile of the round trips of quick AGI commands
  (SET/GET VARIABLE...: nothing that waits on the caller), over a short window.

Hysteresis: once tripped, new calls are refused for at least ``hold_s`` and until
both values are back under their low-water marks (a fraction of the levels), so
admission does not flap at the edge. A level of 0 is off. Pure: no clock, no I/O;
the adapter gives the time.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

# The levels when none are configured: well past normal use, so only real overload trips
# them; config/*.toml and the AGI server's flags set them. On the 2-core box (make bench,
# 2026-12-06): 10 calls/s all served with at most 101 calls in the IVR and quick AGI round
# trips at 4 ms (p90); at 12 calls/s entries degrade (AGI p90 26 ms, post-dial p99 0.3 s):
# config/dev.toml and test.toml set 120.
DEFAULT_MAX_IN_IVR = 100
DEFAULT_MAX_AGI_LATENCY_MS = 500
# Back under this share of a level (and past the hold) before calls are admitted again.
LOW_WATER = 0.8
HOLD_S = 3.0
WINDOW_S = 5.0  # latency samples older than this are forgotten
PERCENTILE = 0.9
MIN_SAMPLES = 10  # fewer samples in the window: no evidence, latency counts as 0


@dataclass(frozen=True)
class Levels:
    """Where refusing starts; 0 turns a level off."""

    max_in_ivr: int = 0
    max_agi_latency_ms: float = 0.0
    hold_s: float = HOLD_S

    def __post_init__(self) -> None:
        if self.max_in_ivr < 0 or self.max_agi_latency_ms < 0 or self.hold_s < 0:
            raise ValueError(f"overload levels must be >= 0: {self}")

    @property
    def off(self) -> bool:
        return self.max_in_ivr == 0 and self.max_agi_latency_ms == 0


@dataclass(frozen=True)
class Backlog:
    in_ivr: int  # calls in the IVR now, the new one not counted
    agi_latency_ms: float  # recent percentile of quick AGI round trips (0: no evidence)


@dataclass(frozen=True)
class Verdict:
    admitted: bool
    reason: str  # why refused ("" when admitted): which level, for the log


class LatencyWindow:
    """Round trips of quick AGI commands over the last ``window_s``; ``value`` is
    their ``percentile`` (0.0 with fewer than ``min_samples``)."""

    def __init__(self, window_s: float = WINDOW_S, percentile: float = PERCENTILE,
                 min_samples: int = MIN_SAMPLES, max_samples: int = 4096) -> None:
        if not 0 < percentile <= 1 or window_s <= 0 or min_samples < 1:
            raise ValueError("bad latency window")
        self.window_s = window_s
        self.percentile = percentile
        self.min_samples = min_samples
        self._samples: deque[tuple[float, float]] = deque(maxlen=max_samples)  # (when, ms)

    def add(self, now: float, ms: float) -> None:
        self._samples.append((now, max(0.0, ms)))

    def value(self, now: float) -> float:
        while self._samples and self._samples[0][0] < now - self.window_s:
            self._samples.popleft()
        if len(self._samples) < self.min_samples:
            return 0.0
        ordered = sorted(ms for _, ms in self._samples)
        return ordered[min(len(ordered) - 1, math.ceil(self.percentile * len(ordered)) - 1)]


class Admission:
    """The rule: admit while the backlog is under the levels; once over, refuse for
    ``hold_s`` at least and until it is back under the low-water marks."""

    def __init__(self, levels: Levels) -> None:
        self.levels = levels
        self._tripped_at: float | None = None

    @property
    def tripped(self) -> bool:
        return self._tripped_at is not None

    def decide(self, backlog: Backlog, now: float) -> Verdict:
        if self.levels.off:
            return Verdict(True, "")
        over = self._over(backlog, 1.0)
        if over:
            self._tripped_at = now if self._tripped_at is None else self._tripped_at
            return Verdict(False, over)
        if self._tripped_at is not None:
            if now - self._tripped_at < self.levels.hold_s:
                return Verdict(False, f"holding {self.levels.hold_s:g} s after tripping")
            still = self._over(backlog, LOW_WATER)
            if still:
                return Verdict(False, f"not yet back under {LOW_WATER:g} of the level: {still}")
            self._tripped_at = None
        return Verdict(True, "")

    def _over(self, backlog: Backlog, share: float) -> str:
        levels = self.levels
        if levels.max_in_ivr and backlog.in_ivr >= _mark(levels.max_in_ivr, share):
            return f"{backlog.in_ivr} calls in the IVR (level {levels.max_in_ivr})"
        if levels.max_agi_latency_ms and backlog.agi_latency_ms >= levels.max_agi_latency_ms * share:
            return f"AGI latency {backlog.agi_latency_ms:.1f} ms (level {levels.max_agi_latency_ms:g} ms)"
        return ""


def _mark(level: int, share: float) -> int:
    """Calls in the IVR at which ``share`` of ``level`` is reached (1 at least: with a
    level of 1 or 2, calls are admitted again once the IVR is empty)."""
    return level if share >= 1.0 else max(1, math.floor(level * share))
