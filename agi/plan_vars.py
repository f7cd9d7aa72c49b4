"""A CallPlan kept on the channel, as one JSON variable, between FastAGI routes."""

from __future__ import annotations

import json
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

from agi import variables as v
from agi.channel import AgiChannel
from ivr.inmate_call import CallPlan

# res_agi answers GET VARIABLE from a 1024-byte buffer: stay well inside it.
MAX_TEXT = 1000


def plan_to_text(plan: CallPlan) -> str:
    data: dict[str, Any] = {}
    for f in fields(CallPlan):
        value = getattr(plan, f.name)
        data[f.name] = int(value.timestamp() * 1000) if isinstance(value, datetime) else value
    text = json.dumps(data, separators=(",", ":"))
    if len(text) > MAX_TEXT:
        raise ValueError(f"call plan too long for a channel variable ({len(text)} bytes)")
    return text


def plan_from_text(text: str) -> CallPlan:
    data: dict[str, Any] = json.loads(text)
    for f in fields(CallPlan):
        if f.type == "datetime":
            data[f.name] = datetime.fromtimestamp(data[f.name] / 1000, UTC)
    return CallPlan(**data)


async def save_plan(channel: AgiChannel, plan: CallPlan) -> None:
    await channel.set_variable(v.PLAN, plan_to_text(plan))


async def load_plan(channel: AgiChannel) -> CallPlan | None:
    """The plan on the channel, or None when no number was planned."""
    text = await channel.get_variable(v.PLAN)
    return plan_from_text(text) if text else None
