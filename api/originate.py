"""The free audio test call, started over AMI by the originate-only user.

``Originate`` (async) of ``Local/s@kinline-app-test-dial/n``: its ;2 side runs the AGI
route ``app_test_dial`` (wake the app through the push bridge, then Dial its contacts);
its ;1 side, answered when the app answers, runs ``kinline-app-test`` (the guide, a
beep, the echo, goodbye). Both are in dialplan/app_test.conf. The user
``kinline-originate`` has the ``originate`` write class only.

Fail closed: if Asterisk cannot be asked (not connected, refused, no answer within the
bound), ``SwitchUnavailable``: the API answers 503 and the call is not counted. What
happens after the switch queued the call is in the call's wake records (GET
/v1/app/test-call/{id}); its end is Asterisk's ``OriginateResponse`` (the only event this
user receives: its eventfilter, tools/asterisk_conf.py), matched by the ActionID, which is
the call id: ``ended`` says ANSWERED or FAILED (the AGI server down: failed at once, with
no wake step, and ``ivr.app_test.TestCalls.settle`` gives the call back)."""

from __future__ import annotations

import asyncio
import logging

from ami.client import AmiClient
from ami.protocol import AmiError, AmiMessage
from ivr.app_call import WINDOW_S
from ivr.app_test import ANSWERED, CALLER_NAME, ECHO_S, FAILED, RING_S, SwitchUnavailable, TestCall

log = logging.getLogger(__name__)

ASK_TIMEOUT_S = 3.0  # connecting (once) and the Originate's answer
CHANNEL = "Local/s@kinline-app-test-dial/n"  # /n: the Local pair stays (the ;1 side plays the test)
CONTEXT = "kinline-app-test"
SLACK_S = 15  # beyond the wake window and the ring: the AGI's own steps
# The dial plan's variables (dialplan/app_test.conf).
TEST_ID = "KINLINE_TEST_ID"
TEST_LANG = "KINLINE_TEST_LANG"
TEST_ECHO_S = "KINLINE_TEST_ECHO_S"


def originate_timeout_s(wake_window_s: float = WINDOW_S) -> float:
    """How long the switch may take to reach the app (the Originate's own Timeout)."""
    return wake_window_s + RING_S + SLACK_S


def originate_fields(call: TestCall, wake_window_s: float = WINDOW_S) -> dict[str, str]:
    """The Originate action's fields (all validated values: an id of hex, a known language)."""
    timeout_ms = int(originate_timeout_s(wake_window_s) * 1000)
    return {"Channel": CHANNEL, "Context": CONTEXT, "Exten": "s", "Priority": "1", "Async": "true",
            "Timeout": str(timeout_ms), "CallerID": f'"{CALLER_NAME}" <kinline>',
            "Variable": f"{TEST_ID}={call.call_id},{TEST_LANG}={call.language},{TEST_ECHO_S}={ECHO_S}"}


def call_end(message: AmiMessage) -> str:
    """An ``OriginateResponse``'s verdict: ANSWERED (the ;1 side was answered) or FAILED."""
    return ANSWERED if message.get("Response").lower() == "success" else FAILED


class AmiDialer:
    """``ivr.app_test.Dialer`` over AMI (the originate-only user)."""

    def __init__(self, host: str, port: int, user: str, secret: str, timeout: float = ASK_TIMEOUT_S,
                 end_bound_s: float | None = None) -> None:
        self._client = AmiClient(host, port, user, secret, action_timeout=timeout, events="call")
        self.timeout = timeout
        # How long ``ended`` waits: the Originate's own bound and a margin.
        self.end_bound_s = originate_timeout_s() + SLACK_S if end_bound_s is None else end_bound_s
        self._ends: dict[str, asyncio.Future[str]] = {}  # ActionID (the call id) -> its end
        self._events = self._client.subscribe()
        self._listener: asyncio.Task[None] | None = None

    async def call_app(self, call: TestCall) -> None:
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="test call ends")
        end: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._ends[call.call_id] = end  # before the action: its end may come right after the reply
        try:
            async with asyncio.timeout(self.timeout * 2):
                if not await self._client.ready(self.timeout):
                    raise SwitchUnavailable("Asterisk's AMI is not connected")
                await self._client.action("Originate", action_id=call.call_id, **originate_fields(call))
        except (TimeoutError, AmiError) as err:
            self._ends.pop(call.call_id, None)
            log.warning("test call %s: Originate not queued: %s", call.call_id, err or "timeout")
            raise SwitchUnavailable(f"the switch did not take the call: {err or 'timeout'}") from err
        except BaseException:
            self._ends.pop(call.call_id, None)
            raise
        log.info("test call %s: Originate queued (%s)", call.call_id, call.language)

    async def ended(self, call: TestCall) -> str | None:
        end = self._ends.get(call.call_id)
        if end is None:
            return None
        try:
            async with asyncio.timeout(self.end_bound_s):
                return await end
        except TimeoutError:
            log.warning("test call %s: no end from the switch within %.0f s", call.call_id, self.end_bound_s)
            return None
        finally:
            self._ends.pop(call.call_id, None)

    async def _listen(self) -> None:
        while True:
            message = await self._events.get()
            if message.event != "OriginateResponse":
                continue
            end = self._ends.get(message.get("ActionID"))
            if end is not None and not end.done():
                end.set_result(call_end(message))
                log.info("test call %s: the switch ended it: %s (reason %s)", message.get("ActionID"),
                         message.get("Response"), message.get("Reason"))

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
        await self._client.close()
