"""A CallPlan kept on the channel as variables between FastAGI routes."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime

from agi import variables as v
from agi.channel import AgiChannel
from ivr.inmate_call import CallPlan

_FIELDS = [f.name for f in fields(CallPlan)]


def plan_to_vars(plan: CallPlan) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in _FIELDS:
        value = getattr(plan, name)
        if isinstance(value, bool):
            text = "1" if value else "0"
        elif isinstance(value, datetime):
            text = str(int(value.timestamp() * 1000))
        else:
            text = str(value)
        out[v.PLAN_PREFIX + name.upper()] = text
    return out


def plan_from_vars(values: dict[str, str]) -> CallPlan:
    kwargs: dict[str, object] = {}
    for f in fields(CallPlan):
        text = values[v.PLAN_PREFIX + f.name.upper()]
        if f.type == "bool":
            kwargs[f.name] = text == "1"
        elif f.type == "int":
            kwargs[f.name] = int(text)
        elif f.type == "datetime":
            kwargs[f.name] = datetime.fromtimestamp(int(text) / 1000, UTC)
        else:
            kwargs[f.name] = text
    return CallPlan(**kwargs)  # type: ignore[arg-type]


async def save_plan(channel: AgiChannel, plan: CallPlan) -> None:
    for name, value in plan_to_vars(plan).items():
        await channel.set_variable(name, value)


async def load_plan(channel: AgiChannel) -> CallPlan | None:
    """The plan on the channel, or None when no number was planned."""
    values: dict[str, str] = {}
    for name in _FIELDS:
        key = v.PLAN_PREFIX + name.upper()
        value = await channel.get_variable(key)
        if value is None or value == "":
            return None
        values[key] = value
    return plan_from_vars(values)
