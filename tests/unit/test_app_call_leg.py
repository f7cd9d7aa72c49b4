"""The woken app call's legs in the adapter (agi/routes/app_dial.py): the wait passed down
to each leg's channel, and a leg's subscription waking only on its own device's contact."""

from __future__ import annotations

import json
from typing import Any

from agi.routes.app_dial import LEG, LegWait, RedisWake


def test_the_legs_wait_goes_down_as_one_variable_and_back() -> None:
    wait = LegWait("1732350000.17-2", "+79161234567", 1_732_350_030_000)
    assert LegWait.decode(wait.encode()) == wait


def test_a_garbled_wait_is_none() -> None:
    for text in ("", "call +7916 soon", "call 79161234567 1732350030000", "a b c d", "call +7916"):
        assert LegWait.decode(text) is None, text


def test_a_leg_is_a_local_channel_per_device() -> None:
    assert LEG.format(device_id="0123456789abcdef") == "Local/0123456789abcdef@kinline-app-leg/n"


class PubSub:
    def __init__(self, *messages: dict[str, Any] | None) -> None:
        self.messages = list(messages)

    async def get_message(self, ignore_subscribe_messages: bool, timeout: float) -> dict[str, Any] | None:
        return self.messages.pop(0) if self.messages else None


def published(device_id: str) -> dict[str, Any]:
    return {"type": "message", "data": json.dumps({"device_id": device_id, "uri": "", "status": "Authenticated"})}


async def test_a_legs_wake_ends_only_on_its_own_devices_contact() -> None:
    pubsub = PubSub(published("d2"), {"type": "message", "data": "not json"}, published("d1"))
    wake = RedisWake(None, pubsub, "call-1", "+79161234567", "", 8, "d1")  # type: ignore[arg-type]
    assert await wake.next_contact(5.0)
    assert pubsub.messages == []  # d2's and the garbled one were skipped


async def test_a_legs_wake_ignores_other_devices_until_its_timeout() -> None:
    wake = RedisWake(None, PubSub(published("d2")), "call-1", "+79161234567", "", 8, "d1")  # type: ignore[arg-type]
    assert not await wake.next_contact(0.05)


async def test_the_calls_wait_ends_on_any_device() -> None:
    wake = RedisWake(None, PubSub(published("d2")), "call-1", "+79161234567", "", 8)  # type: ignore[arg-type]
    assert await wake.next_contact(5.0)
