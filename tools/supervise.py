"""Keep the stack's services alive under `make run`: reap a service that dies and
restart it with exponential backoff (capped), logging each death with its exit status.

The supervisor is generic over service names: ``start(name)`` starts one (by default
``tools.stack.start_service``) and ``tools.stack.service_state`` says whether it lives.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Sequence

from tools import stack
from tools.config import StackConfig

log = logging.getLogger(__name__)


def describe_exit(code: int | None) -> str:
    """Popen-style exit code -> words."""
    if code is None:
        return "exit status unknown (not our child, or already collected)"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


class Supervisor:
    """Restart dead services; call ``poll()`` every fraction of a second.

    A service that dies n times in a row waits ``min(base_s * 2**(n-1), cap_s)``
    before its restart; staying up ``stable_s`` resets the count.
    """

    def __init__(
        self,
        config: StackConfig,
        names: Sequence[str],
        start: Callable[[str], None] | None = None,
        *,
        base_s: float = 1.0,
        cap_s: float = 60.0,
        stable_s: float = 60.0,
    ) -> None:
        if not 0 < base_s <= cap_s:
            raise ValueError("want 0 < base_s <= cap_s")
        self.config = config
        self.names = tuple(names)
        self._start = start or (lambda name: stack.start_service(config, name))
        self.base_s, self.cap_s, self.stable_s = base_s, cap_s, stable_s
        self.failures = {name: 0 for name in self.names}
        self.restarts = {name: 0 for name in self.names}
        self._started_at = {name: time.monotonic() for name in self.names}
        self._due: dict[str, float] = {}  # service -> when to restart it

    def delay(self, failures: int) -> float:
        return float(min(self.base_s * 2 ** (failures - 1), self.cap_s))

    def poll(self) -> None:
        """Notice deaths, schedule restarts, run the ones that are due."""
        now = time.monotonic()
        for name in self.names:
            if name in self._due:
                if now >= self._due[name]:
                    self._restart(name)
                continue
            state = stack.service_state(self.config, name)
            if state.alive:
                if self.failures[name] and now - self._started_at[name] >= self.stable_s:
                    self.failures[name] = 0
                continue
            code = stack.reap(state.pid) if state.pid is not None else None
            self._schedule(name, f"{state.detail}; {describe_exit(code)}")

    def _schedule(self, name: str, why: str) -> None:
        self.failures[name] += 1
        wait = self.delay(self.failures[name])
        self._due[name] = time.monotonic() + wait
        log.warning("%s is down: %s; restart in %.1f s (failure %d in a row)", name, why, wait, self.failures[name])

    def _restart(self, name: str) -> None:
        del self._due[name]
        try:
            self._start(name)
        except (stack.StackError, OSError) as err:
            self._schedule(name, f"restart failed: {err}")
            return
        self.restarts[name] += 1
        self._started_at[name] = time.monotonic()
        state = stack.service_state(self.config, name)
        log.warning("%s restarted (pid %s, restart %d)", name, state.pid, self.restarts[name])
