"""``hangup`` (hangup handler): settle an attempt still open, free the card."""

from __future__ import annotations

from agi import variables as v
from agi.channel import AgiChannel
from agi.deps import CallDeps
from agi.plan_vars import plan_in
from agi.protocol import AgiEnvironment
from agi.server import Route
from agi.settle import DIAL_OUTCOME, retrying, settle_attempt


def make_hangup(deps: CallDeps) -> Route:
    async def hangup(channel: AgiChannel, env: AgiEnvironment) -> None:
        seen = await channel.get_variables((v.PLAN, v.SETTLED, v.CARD, *DIAL_OUTCOME))
        plan = plan_in(seen)
        if plan is not None and seen[v.SETTLED] != plan.call_id:
            await settle_attempt(channel, deps, plan, seen)
        card = seen[v.CARD]
        if card:
            await retrying(lambda: deps.calls.end(card, env.uniqueid), f"freeing card {card}", channel.log)

    return hangup
