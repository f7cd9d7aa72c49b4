"""``hangup`` (hangup handler): settle an attempt still open, free the card."""

from __future__ import annotations

from agi import variables as v
from agi.channel import AgiChannel
from agi.deps import CallDeps
from agi.plan_vars import load_plan
from agi.protocol import AgiEnvironment
from agi.server import Route
from agi.settle import retrying, settle_attempt


def make_hangup(deps: CallDeps) -> Route:
    async def hangup(channel: AgiChannel, env: AgiEnvironment) -> None:
        plan = await load_plan(channel)
        if plan is not None and await channel.get_variable(v.SETTLED) != plan.call_id:
            await settle_attempt(channel, deps, plan)
        card = await channel.get_variable(v.CARD)
        if card:
            await retrying(lambda: deps.calls.end(card, env.uniqueid), f"freeing card {card}", channel.log)

    return hangup
