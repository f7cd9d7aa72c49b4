"""Failed logins per terminal: when a terminal must wait before it may try again.

One person at one terminal must not be able to lock many cards (a card locks
after PIN_FAILURES_TO_LOCK wrong PINs in 24 h). Every failed login (a wrong
card number or a wrong PIN) counts against the terminal. At 5 failures in
10 minutes the terminal waits until the oldest of them is 10 minutes old;
at 20 in 24 hours, until the oldest of those is a day old. A waiting terminal
is not asked for a card or a PIN at all, so its attempts never reach a card:
one terminal can add at most 20 wrong PINs a day to all cards together, two
cards' worth of locks, where without the throttle it could lock a card every
four calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

# (failures, window in seconds): reaching ``failures`` inside ``window`` makes the terminal wait.
LOGIN_LIMITS: tuple[tuple[int, int], ...] = ((5, 10 * 60), (20, 24 * 3600))
KEEP_S = max(window for _, window in LOGIN_LIMITS)


def wait_s(failures: Sequence[datetime], now: datetime) -> int:
    """Whole seconds the terminal must still wait (0: it may try now)."""
    wait = 0
    for limit, window in LOGIN_LIMITS:
        recent = sorted(t for t in failures if t > now - timedelta(seconds=window))
        if len(recent) >= limit:
            # Below the limit again once all but limit - 1 of them have left the window.
            until = recent[len(recent) - limit] + timedelta(seconds=window)
            wait = max(wait, -(-(until - now) // timedelta(seconds=1)))
    return wait
