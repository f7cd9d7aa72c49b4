"""Bill the attempt on the channel from what Dial() left there (shared by two routes)."""

from __future__ import annotations

from agi import variables as v
from agi.channel import AgiChannel
from agi.deps import CallDeps, recording_sha256
from ivr.inmate_call import CallPlan


async def settle_attempt(channel: AgiChannel, deps: CallDeps, plan: CallPlan) -> str:
    """Settle ``plan`` with Dial()'s outcome; return DIALSTATUS."""
    status = await channel.get_variable(v.DIALSTATUS) or ""
    answered_ms = int(await channel.get_variable(v.ANSWEREDTIME_MS) or 0)
    cause = await channel.get_variable(v.HANGUPCAUSE) or ""
    path, sha = "", ""
    if plan.record and status == "ANSWER":
        path, host_path = deps.recording(plan.call_id)
        sha = await recording_sha256(host_path)
    await deps.calls.settle(plan, status, answered_ms, cause, path, sha)
    await channel.set_variable(v.SETTLED, plan.call_id)
    return status
