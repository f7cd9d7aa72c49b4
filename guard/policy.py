"""How many failures block an address, and for how long (pure: the clock is passed in)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

# The rule's numbers: the guard's defaults (guard/main.py), and Kamailio's in a cluster
# (kamailio/kamailio.cfg, where the nodes see only Kamailio's address).
THRESHOLD = 10  # failures that block an address ...
WINDOW_S = 60  # ... within this many seconds
BLOCK_S = 300  # seconds it stays blocked


@dataclass(frozen=True)
class Block:
    address: str
    seconds: int
    failures: int


@dataclass
class FailureCounter:
    """``threshold`` failures from one address within ``window_s`` block it for ``block_s``.

    While an address is blocked its failures are not counted (none should arrive);
    when the block ends, counting starts again from zero. At most ``max_addresses``
    addresses are tracked: the one with the oldest last failure is forgotten first.
    """

    threshold: int = THRESHOLD
    window_s: float = WINDOW_S
    block_s: int = BLOCK_S
    max_addresses: int = 10_000
    _failures: dict[str, deque[float]] = field(default_factory=dict)
    _blocked_until: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.threshold < 1 or self.window_s <= 0 or self.block_s < 1 or self.max_addresses < 1:
            raise ValueError("threshold, window, block time and max addresses must be positive")

    def failure(self, address: str, now: float) -> Block | None:
        """Count one failure; return the Block to apply when this one crosses the threshold."""
        self.expire(now)
        if address in self._blocked_until:
            return None
        times = self._failures.pop(address, None) or deque()
        times.append(now)
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if len(times) >= self.threshold:
            self._blocked_until[address] = now + self.block_s
            return Block(address, self.block_s, len(times))
        self._failures[address] = times  # re-inserted: dict order is "least recently failed" first
        if len(self._failures) > self.max_addresses:
            del self._failures[next(iter(self._failures))]
        return None

    def lift(self, address: str) -> None:
        """Forget ``address``'s block (it could not be applied): its next failure blocks again."""
        self._blocked_until.pop(address, None)

    def is_blocked(self, address: str, now: float) -> bool:
        self.expire(now)
        return address in self._blocked_until

    def expire(self, now: float) -> None:
        """Forget ended blocks and failures older than the window."""
        for address in [a for a, until in self._blocked_until.items() if until <= now]:
            del self._blocked_until[address]
        stale = [a for a, times in self._failures.items() if times[-1] <= now - self.window_s]
        for address in stale:
            del self._failures[address]

    def counted(self, address: str) -> int:
        """Failures of ``address`` in the current window (as of the last call)."""
        return len(self._failures.get(address, ()))
