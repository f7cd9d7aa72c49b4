"""``hangup`` (hangup handler): settle an attempt still open, free the card."""

from __future__ import annotations

from agi import variables as v
from agi.channel import AgiChannel
from agi.deps import CallDeps, recording_sha256
from agi.plan_vars import load_plan
from agi.protocol import AgiEnvironment
from agi.server import Route


def make_hangup(deps: CallDeps) -> Route:
    async def hangup(channel: AgiChannel, env: AgiEnvironment) -> None:
        plan = await load_plan(channel)
        if plan is not None and await channel.get_variable(v.SETTLED) != plan.call_id:
            status = await channel.get_variable(v.DIALSTATUS) or ""
            answered_ms = int(await channel.get_variable(v.ANSWEREDTIME_MS) or 0)
            cause = await channel.get_variable(v.HANGUPCAUSE) or ""
            path, sha = "", ""
            if plan.record and status == "ANSWER":
                path, host_path = deps.recording(plan.call_id)
                sha = await recording_sha256(host_path)
            await deps.calls.settle(plan, status, answered_ms, cause, path, sha)
            await channel.set_variable(v.SETTLED, plan.call_id)
        card = await channel.get_variable(v.CARD)
        if card:
            await deps.calls.end(card, env.uniqueid)

    return hangup
