"""The free audio test call, started over AMI by the originate-only user.

``Originate`` (async) of ``Local/s@kinline-app-test-dial/n``: its ;2 side runs the AGI
route ``app_test_dial`` (wake the app through the push bridge, then Dial its contacts);
its ;1 side, answered when the app answers, runs ``kinline-app-test`` (the guide, a
beep, the echo, goodbye). Both are in dialplan/app_test.conf. The user
``kinline-originate`` has the ``originate`` write class only.

Fail closed: if Asterisk cannot be asked (not connected, refused, no answer within the
bound), ``SwitchUnavailable``: the API answers 503 and the call is not counted. What
happens after the switch queued the call (AGI down: no call at all) is in the call's
wake records (GET /v1/app/test-call/{id})."""

from __future__ import annotations

import asyncio
import logging

from ami.client import AmiClient
from ami.protocol import AmiError
from ivr.app_call import WINDOW_S
from ivr.app_test import CALLER_NAME, ECHO_S, RING_S, SwitchUnavailable, TestCall

log = logging.getLogger(__name__)

ASK_TIMEOUT_S = 3.0  # connecting (once) and the Originate's answer
CHANNEL = "Local/s@kinline-app-test-dial/n"  # /n: the Local pair stays (the ;1 side plays the test)
CONTEXT = "kinline-app-test"
SLACK_S = 15  # beyond the wake window and the ring: the AGI's own steps
# The dial plan's variables (dialplan/app_test.conf).
TEST_ID = "KINLINE_TEST_ID"
TEST_LANG = "KINLINE_TEST_LANG"
TEST_ECHO_S = "KINLINE_TEST_ECHO_S"


def originate_fields(call: TestCall, wake_window_s: float = WINDOW_S) -> dict[str, str]:
    """The Originate action's fields (all validated values: an id of hex, a known language)."""
    timeout_ms = int((wake_window_s + RING_S + SLACK_S) * 1000)
    return {"Channel": CHANNEL, "Context": CONTEXT, "Exten": "s", "Priority": "1", "Async": "true",
            "Timeout": str(timeout_ms), "CallerID": f'"{CALLER_NAME}" <kinline>',
            "Variable": f"{TEST_ID}={call.call_id},{TEST_LANG}={call.language},{TEST_ECHO_S}={ECHO_S}"}


class AmiDialer:
    """``ivr.app_test.Dialer`` over AMI (the originate-only user)."""

    def __init__(self, host: str, port: int, user: str, secret: str, timeout: float = ASK_TIMEOUT_S) -> None:
        self._client = AmiClient(host, port, user, secret, action_timeout=timeout, events="off")
        self.timeout = timeout

    async def call_app(self, call: TestCall) -> None:
        try:
            async with asyncio.timeout(self.timeout * 2):
                if not await self._client.ready(self.timeout):
                    raise SwitchUnavailable("Asterisk's AMI is not connected")
                await self._client.action("Originate", **originate_fields(call))
        except (TimeoutError, AmiError) as err:
            log.warning("test call %s: Originate not queued: %s", call.call_id, err or "timeout")
            raise SwitchUnavailable(f"the switch did not take the call: {err or 'timeout'}") from err
        log.info("test call %s: Originate queued (%s)", call.call_id, call.language)

    async def aclose(self) -> None:
        await self._client.close()
