"""The free audio test call's AGI routes (dialplan/app_test.conf; the rules: ivr/app_test.py).

- ``app_test_dial``: on the ;2 side of the API's ``Local/s@kinline-app-test-dial/n``:
  reads the call's record (``KINLINE_TEST_ID`` -> store/app_test.py: the relative, the
  language), reaches the app as a "00" call does (``AppRouting.reach_app``: the contacts
  now, or a push through the bridge and the wait) and leaves the Dial target. Nothing to
  dial, an unknown id, Redis or the AGI down: no ``KINLINE_ACTION``, no call (fail closed).
- ``app_test_answered``: on the app's channel when it answers (Dial's U()): the step
  ``answered`` in the call's wake records, and the cancel push for the other devices.
- ``app_test_ended``: after Dial: the cancel push if the answer did not send it.

Never billed: no call plan, no hold, no call record."""

from __future__ import annotations

import re

from agi import variables as v
from agi.caller import AgiCaller
from agi.channel import AgiChannel
from agi.protocol import AgiEnvironment
from agi.routes.app_dial import AppRouting, cancel_wake
from agi.server import Route
from ivr.app_test import CALLER_NAME, RING_S, is_call_id
from ivr.clock import now_ms
from ivr.devices import device_of_endpoint, is_device_id
from store import wake_records as records
from store.app_test import RedisTestCalls, TestCallRecord

_LEG = re.compile(r"^Local/([0-9a-f]+)@kinline-app-leg-")
# Set by the API's Originate on the Local channel, copied to its ;2 side (dialplan/app_test.conf).
TEST_ID = "KINLINE_TEST_ID"


async def _record(channel: AgiChannel, tests: RedisTestCalls, call_id: str) -> TestCallRecord | None:
    if not is_call_id(call_id):
        channel.log.error("test call: no valid id (%r): nothing done", call_id[:40])
        return None
    found = await tests.get(call_id)
    if found is None:
        channel.log.error("test call %s: no record (expired or never admitted): nothing done", call_id)
    return found


def answering_device(endpoint: str, channel_name: str) -> str | None:
    """The device that answered, seen from the channel U() runs on: the app's own
    (endpoint ``app-<id>``: it was registered, dialed directly) or a woken device's leg
    (``Local/<id>@kinline-app-leg-...``, whose Dial answered)."""
    found = _LEG.match(channel_name)
    return device_of_endpoint(endpoint) or (found.group(1) if found and is_device_id(found.group(1)) else None)


def make_app_test_routes(app: AppRouting, tests: RedisTestCalls) -> dict[str, Route]:
    async def app_test_dial(channel: AgiChannel, env: AgiEnvironment) -> None:
        call_id = await channel.get_variable(TEST_ID) or ""
        call = await _record(channel, tests, call_id)
        if call is None:
            return
        await channel.set_variable(v.RING_S, RING_S)  # reach_app may set its own (the rest of the window)
        found = await app.reach_app(channel, AgiCaller(channel, call.language), call_id, call.phone, CALLER_NAME)
        if not found.target:
            channel.log.info("test call %s: the app was not reached (%s): no call", call_id, found.outcome)
            return
        await channel.set_variable(v.DIAL_TARGET, found.target)
        await channel.set_variable(v.ACTION, v.ACTION_DIAL)

    async def app_test_answered(channel: AgiChannel, env: AgiEnvironment) -> None:
        call = await _record(channel, tests, env.arguments[0] if env.arguments else "")
        if call is None:
            return
        device_id = answering_device(await channel.get_variable(v.ENDPOINT) or "", env.channel)
        await records.record(app.redis, call.call_id, records.AttemptEvent(
            records.ANSWERED, now_ms(), device_id=device_id or ""))
        await cancel_wake(app.redis, call.call_id, call.phone, "", app.window_s)
        channel.log.info("test call %s: the app answered (device %s)", call.call_id, device_id or "unknown")

    async def app_test_ended(channel: AgiChannel, env: AgiEnvironment) -> None:
        call = await _record(channel, tests, env.arguments[0] if env.arguments else "")
        if call is not None:
            await cancel_wake(app.redis, call.call_id, call.phone, "", app.window_s)

    return {"app_test_dial": app_test_dial, "app_test_answered": app_test_answered,
            "app_test_ended": app_test_ended}
