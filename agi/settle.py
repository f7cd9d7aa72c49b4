"""Bill the attempt on the channel from what Dial() left there (shared by two routes)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import TypeVar

from agi import variables as v
from agi.channel import AgiChannel
from agi.deps import CallDeps, recording_sha256
from ivr.call_plan import CallPlan
from ivr.drops import end_cause
from ivr.errors import KinlineError

T = TypeVar("T")

# The hangup path retries a failed store (Redis restarting...) this long; what
# is still unsettled then is settled by the reconciler from Asterisk's event log.
RETRY_FOR_S = 10.0


async def retrying(step: Callable[[], Awaitable[T]], what: str, log: logging.LoggerAdapter[logging.Logger],
                   retry_for_s: float = RETRY_FOR_S, on_retry: Callable[[], None] | None = None) -> T:
    """Run ``step``, again after a failure of the store (not after a domain error);
    ``on_retry`` is called before each new try (a metric)."""
    deadline = time.monotonic() + retry_for_s
    delay = 0.2
    while True:
        try:
            return await step()
        except KinlineError:
            raise
        except Exception as err:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("%s failed (%s: %s); retrying in %.1f s", what, type(err).__name__, err, delay)
            if on_retry is not None:
                on_retry()
            await asyncio.sleep(delay)
            delay = min(2.0, delay * 2)


# What Dial() and the dial plan left on the caller's channel: read with the plan, in one
# round trip (AgiChannel.get_variables), by the routes that settle.
DIAL_OUTCOME = (v.DIALSTATUS, v.BRIDGED_AT, v.DIAL_END, v.HANGUPCAUSE, v.FAR_CAUSE)


async def settle_attempt(channel: AgiChannel, deps: CallDeps, plan: CallPlan, seen: Mapping[str, str]) -> str:
    """Settle ``plan`` with Dial()'s outcome (``seen``: the DIAL_OUTCOME variables); return DIALSTATUS.
    The caller marks the channel (SETTLED) if it goes on; settling again is harmless (by call id).

    Billed time runs from the bridge (after the callee's intro) to the end of
    Dial. No bridge time means the two were never connected."""
    status = seen.get(v.DIALSTATUS, "")
    bridged_at = seen.get(v.BRIDGED_AT, "")
    dial_end = seen.get(v.DIAL_END, "")
    talk_ms = 0
    if status == "ANSWER" and bridged_at.isdigit() and dial_end.isdigit():
        talk_ms = max(0, int(dial_end) - int(bridged_at))
    cause = end_cause(seen.get(v.HANGUPCAUSE, ""), seen.get(v.FAR_CAUSE, ""))
    path, sha = "", ""
    if plan.record and status == "ANSWER":
        path, host_path = deps.recording(plan.call_id)
        sha = await recording_sha256(host_path)
    channel.log.info("dial %s: bridged %s, ended %s (cause %s): %d ms to bill", status, bridged_at or "never",
                     dial_end or "-", cause or "-", talk_ms)
    await retrying(lambda: deps.calls.settle(plan, status, talk_ms, cause, path, sha,
                                             connected_at=_epoch_ms(bridged_at) if status == "ANSWER" else None,
                                             ended_at=_epoch_ms(dial_end)),
                   f"settling {plan.call_id}", channel.log, on_retry=deps.metrics.settlement_retry)
    deps.metrics.settled(status)
    return status


def _epoch_ms(text: str) -> datetime | None:
    return datetime.fromtimestamp(int(text) / 1000, UTC) if text.isdigit() else None
