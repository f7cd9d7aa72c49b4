"""A CallPlan kept on the channel between FastAGI routes, as one variable: its JSON,
base64url-encoded without padding, so it is a plain value that goes in the same MSet as
Dial's settings (MSet misreads JSON's ',', '=' and quotes): no command of its own between
the '#' and Dial."""

from __future__ import annotations

import base64
from collections.abc import Mapping

from agi import variables as v
from agi.channel import AgiChannel
from ivr.call_plan import CallPlan, plan_from_json, plan_to_json

# One AGI command line holds at most 2048 bytes (res_agi's AGI_BUF_LEN), Dial's settings too
# when the plan goes with them (AgiChannel.set_variables splits an MSet that would not fit).
MAX_TEXT = 1400


def plan_to_text(plan: CallPlan) -> str:
    text = base64.urlsafe_b64encode(plan_to_json(plan).encode()).decode().rstrip("=")
    if len(text) > MAX_TEXT:
        raise ValueError(f"call plan too long for a channel variable ({len(text)} bytes)")
    return text


def plan_from_text(text: str) -> CallPlan:
    """The plan back from its variable; ValueError if it is not one."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return plan_from_json(raw.decode())
    except (ValueError, KeyError, TypeError) as exc:  # bad base64, UTF-8 or JSON: ValueError
        raise ValueError(f"not a call plan: {text[:40]!r}") from exc


async def save_plan(channel: AgiChannel, plan: CallPlan) -> None:
    await channel.set_variable(v.PLAN, plan_to_text(plan))


def plan_in(values: Mapping[str, str]) -> CallPlan | None:
    """The plan among variables read at once (``AgiChannel.get_variables`` with ``PLAN``)."""
    text = values.get(v.PLAN, "")
    return plan_from_text(text) if text else None
