"""A CallPlan kept on the channel, as one JSON variable, between FastAGI routes."""

from __future__ import annotations

from collections.abc import Mapping

from agi import variables as v
from agi.channel import AgiChannel
from ivr.call_plan import CallPlan, plan_from_json, plan_to_json

# res_agi answers GET VARIABLE from a 1024-byte buffer: stay well inside it.
MAX_TEXT = 1000


def plan_to_text(plan: CallPlan) -> str:
    text = plan_to_json(plan)
    if len(text) > MAX_TEXT:
        raise ValueError(f"call plan too long for a channel variable ({len(text)} bytes)")
    return text


async def save_plan(channel: AgiChannel, plan: CallPlan) -> None:
    await channel.set_variable(v.PLAN, plan_to_text(plan))


def plan_in(values: Mapping[str, str]) -> CallPlan | None:
    """The plan among variables read at once (``AgiChannel.get_variables`` with ``PLAN``)."""
    text = values.get(v.PLAN, "")
    return plan_from_json(text) if text else None
