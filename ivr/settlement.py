"""Settlement that cannot be skipped: the reconciler's rules.

A call is normally settled by its own hangup path (the AGI). When that path
never runs (the AGI server was down, Redis blinked, Asterisk died), the
reconciler settles every attempt still holding money, exactly once, from the
best evidence there is:

- ``exact``: the dial plan's own stamps (bridge, end of Dial, status), which
  Asterisk writes to its event log on disk whatever else is down. Billed
  exactly as the hangup path would have billed it.
- ``heartbeat``: the caller's channel is gone with no end stamp (Asterisk was
  killed). Billed from the bridge to the last moment the call was proven up,
  never more.
- ``deadline``: nothing is known past the hold's deadline; billed as
  ``heartbeat`` (a call never proven bridged costs nothing).

It also frees card locks whose call is gone. This module knows nothing of
Asterisk or Redis: facts come in as plain values, storage is ``Attempts``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from ivr.call_plan import CallPlan, call_record, plan_from_json, settle_record
from ivr.model import Evidence
from ivr.ports import Attempts, Wallet

log = logging.getLogger(__name__)

# After an end is known, the call's own hangup path has this long to settle
# (it also hashes the recording) before the reconciler does it instead.
GRACE_MS = 5_000
# A heartbeat proves the call was up when the switch answered; events reach
# the log a few ms late, so the proven moment is taken this much earlier.
HEARTBEAT_MARGIN_MS = 1_000
# A heartbeat is stored at most this often per call (each one is a fsynced
# Redis write): a call lost with its switch is billed up to ~3 s short, never long.
HEARTBEAT_EVERY_MS = 2_000


@dataclass(frozen=True)
class Bridged:
    """The called party was connected (after hearing the introduction)."""

    call_id: str
    at_ms: int


@dataclass(frozen=True)
class Ended:
    """Dial() returned (or the caller hung up): the end of billed time."""

    call_id: str
    at_ms: int
    dial_status: str
    hangup_cause: str


@dataclass(frozen=True)
class ChannelEnded:
    """The switch logged the end of a channel (by its uniqueid)."""

    uniqueid: str
    at_ms: int


Fact = Bridged | Ended | ChannelEnded


@dataclass(frozen=True)
class SwitchView:
    """What the reconciler knows of the switch right now.

    ``alive_at_ms``: when the switch last answered (None: not reachable now).
    ``lost``: True for a channel that predates the switch's current start
    (it died with an earlier run of the switch)."""

    alive_at_ms: int | None
    lost: Callable[[str], bool] = field(default=lambda uniqueid: False)


@dataclass(frozen=True)
class Outcome:
    dial_status: str
    talk_ms: int
    connected_ms: int | None
    ended_ms: int | None
    hangup_cause: str
    evidence: str


@dataclass
class Report:
    settled: list[str] = field(default_factory=list)
    heartbeats: int = 0
    locks_released: list[str] = field(default_factory=list)


def decide(ev: Evidence, now_ms: int, deadline_ms: int, grace_ms: int = GRACE_MS) -> Outcome | None:
    """How to settle an open attempt now, or None to wait."""
    if ev.ended_ms is not None:
        if now_ms - ev.ended_ms < grace_ms:
            return None
        answered = ev.dial_status == "ANSWER" and ev.bridged_ms is not None
        talk = max(0, ev.ended_ms - ev.bridged_ms) if answered and ev.bridged_ms is not None else 0
        return Outcome(ev.dial_status or "NONE", talk, ev.bridged_ms if answered else None, ev.ended_ms,
                       ev.hangup_cause, "exact")
    gone = ev.caller_gone_ms is not None and now_ms - ev.caller_gone_ms >= grace_ms
    if not gone and now_ms < deadline_ms:
        return None
    how = "heartbeat" if gone else "deadline"
    if ev.bridged_ms is None:
        return Outcome("NONE", 0, None, ev.caller_gone_ms, "lost", how)
    last = max(ev.bridged_ms, ev.heartbeat_ms or 0)
    return Outcome("ANSWER", last - ev.bridged_ms, ev.bridged_ms, last, "lost", how)


def _at(ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, UTC) if ms is not None else None


RecordingOf = Callable[[CallPlan], Awaitable[tuple[str, str]]]


class Reconciler:
    def __init__(self, attempts: Attempts, wallet: Wallet, recording: RecordingOf,
                 grace_ms: int = GRACE_MS, heartbeat_every_ms: int = HEARTBEAT_EVERY_MS) -> None:
        self.attempts = attempts
        self.wallet = wallet
        self.recording = recording
        self.grace_ms = grace_ms
        self.heartbeat_every_ms = heartbeat_every_ms

    async def record(self, fact: Fact) -> None:
        """Keep a fact from the switch's log (idempotent: the same fact twice changes nothing)."""
        if isinstance(fact, Bridged):
            await self.attempts.add_evidence(fact.call_id, bridged_ms=fact.at_ms)
        elif isinstance(fact, Ended):
            await self.attempts.add_evidence(fact.call_id, ended_ms=fact.at_ms, dial_status=fact.dial_status,
                                             hangup_cause=fact.hangup_cause)
        else:
            await self.attempts.mark_gone(fact.uniqueid, fact.at_ms)

    async def run_once(self, now_ms: int, switch: SwitchView) -> Report:
        """One pass over every open attempt and card lock. Storage is read and written
        in batches: the round trips do not grow with the number of open attempts."""
        report = Report()
        attempts = await self.attempts.open_attempts()
        plans = [plan_from_json(attempt.plan) for attempt in attempts]
        seen = await self._observe(plans, now_ms, switch, report)
        for attempt, plan, ev in zip(attempts, plans, seen, strict=True):
            outcome = decide(ev, now_ms, attempt.deadline_ms, self.grace_ms)
            if outcome is not None:
                await self._settle(plan, outcome)
                report.settled.append(plan.call_id)
        await self._free_cards(switch, report)
        return report

    async def _observe(self, plans: list[CallPlan], now_ms: int, switch: SwitchView, report: Report) -> list[Evidence]:
        """Each attempt's evidence, after adding what the switch shows now."""
        stored = await self.attempts.evidences([plan.call_id for plan in plans])
        gone = await self.attempts.gone_times([p.uniqueid for p, ev in zip(plans, stored, strict=True)
                                               if ev.caller_gone_ms is None])
        seen: list[Evidence] = []
        new: dict[str, dict[str, str | int]] = {}
        for plan, ev in zip(plans, stored, strict=True):
            now_seen, proven = self._add_switch_view(plan, ev, gone.get(plan.uniqueid), now_ms, switch)
            seen.append(now_seen)
            if proven:
                new[plan.call_id] = proven
        if new:
            await self.attempts.add_evidences(new)
        report.heartbeats += sum(1 for proven in new.values() if "heartbeat_ms" in proven)
        return seen

    def _add_switch_view(self, plan: CallPlan, ev: Evidence, gone: int | None, now_ms: int,
                         switch: SwitchView) -> tuple[Evidence, dict[str, str | int]]:
        """The attempt's evidence with what the switch shows now (``gone``: when its log
        showed the caller's channel end), and what of it is new (to store)."""
        if ev.caller_gone_ms is None:
            if gone is None and switch.lost(plan.uniqueid):
                gone = now_ms
            if gone is not None:
                return replace(ev, caller_gone_ms=gone), {"caller_gone_ms": gone}
        up = (ev.bridged_ms is not None and ev.ended_ms is None and ev.caller_gone_ms is None
              and switch.alive_at_ms is not None and not switch.lost(plan.uniqueid))
        if up and switch.alive_at_ms is not None:
            beat = switch.alive_at_ms - HEARTBEAT_MARGIN_MS
            if beat - max(ev.heartbeat_ms or 0, ev.bridged_ms or 0) >= self.heartbeat_every_ms:
                return replace(ev, heartbeat_ms=beat), {"heartbeat_ms": beat}
        return ev, {}

    async def _free_cards(self, switch: SwitchView, report: Report) -> None:
        """Free the card locks whose call is gone (lost with the switch, or its end logged)."""
        locks = await self.attempts.card_locks()
        gone = await self.attempts.gone_times([uniqueid for uniqueid in locks.values() if not switch.lost(uniqueid)])
        for card, uniqueid in locks.items():
            if switch.lost(uniqueid) or uniqueid in gone:
                await self.attempts.release_card(card, uniqueid)
                log.info("[%s] card %s freed: its call is gone", uniqueid, card)
                report.locks_released.append(card)

    async def _settle(self, plan: CallPlan, outcome: Outcome) -> None:
        path, sha = "", ""
        if plan.record and outcome.connected_ms is not None:
            path, sha = await self.recording(plan)
        log.warning("[%s] reconciling %s from %s evidence: %s, %d ms talk", plan.uniqueid, plan.call_id,
                    outcome.evidence, outcome.dial_status, outcome.talk_ms)
        record = call_record(plan, outcome.dial_status, outcome.talk_ms, outcome.hangup_cause, path, sha,
                             connected_at=_at(outcome.connected_ms), ended_at=_at(outcome.ended_ms),
                             evidence=outcome.evidence)
        await settle_record(self.wallet, plan, record)
