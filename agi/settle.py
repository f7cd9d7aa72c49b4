"""Bill the attempt on the channel from what Dial() left there (shared by two routes)."""

from __future__ import annotations

from datetime import UTC, datetime

from agi import variables as v
from agi.channel import AgiChannel
from agi.deps import CallDeps, recording_sha256
from ivr.inmate_call import CallPlan


async def settle_attempt(channel: AgiChannel, deps: CallDeps, plan: CallPlan) -> str:
    """Settle ``plan`` with Dial()'s outcome; return DIALSTATUS.

    Billed time runs from the bridge (after the callee's intro) to the end of
    Dial. No bridge time means the two were never connected."""
    status = await channel.get_variable(v.DIALSTATUS) or ""
    bridged_at = await channel.get_variable(v.BRIDGED_AT) or ""
    dial_end = await channel.get_variable(v.DIAL_END) or ""
    talk_ms = 0
    if status == "ANSWER" and bridged_at.isdigit() and dial_end.isdigit():
        talk_ms = max(0, int(dial_end) - int(bridged_at))
    cause = await channel.get_variable(v.HANGUPCAUSE) or ""
    path, sha = "", ""
    if plan.record and status == "ANSWER":
        path, host_path = deps.recording(plan.call_id)
        sha = await recording_sha256(host_path)
    channel.log.info("dial %s: bridged %s, ended %s: %d ms to bill", status, bridged_at or "never",
                     dial_end or "-", talk_ms)
    await deps.calls.settle(plan, status, talk_ms, cause, path, sha,
                            connected_at=_epoch_ms(bridged_at) if status == "ANSWER" else None,
                            ended_at=_epoch_ms(dial_end))
    await channel.set_variable(v.SETTLED, plan.call_id)
    return status


def _epoch_ms(text: str) -> datetime | None:
    return datetime.fromtimestamp(int(text) / 1000, UTC) if text.isdigit() else None
