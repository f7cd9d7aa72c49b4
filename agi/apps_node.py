"""A cluster's apps' node, seen from another node's AGI server: which app devices have a
contact registered there, asked of that node's Asterisk over AMI.

Apps register with the apps' node only (node 1: its apps' door), whose Asterisk keeps their
contacts (astdb, per node). A call to the app ("00") taken by another node asks this, then
dials the device through the apps' node (agi/routes/app_dial.py ``RelayedContacts``,
dialplan ``kinline-from-node``). The AMI user is the status user (``reporting``: Getvar
only, no events, no Originate); every question is bounded in time, and an unanswered one
raises ``AppsNodeUnavailable``: the call is refused, never dialed on a guess."""

from __future__ import annotations

import asyncio
import logging

from ami.client import AmiClient
from ami.protocol import AmiActionError, AmiError
from ivr.errors import KinlineError

log = logging.getLogger(__name__)

ASK_TIMEOUT_S = 2.0


class AppsNodeUnavailable(KinlineError):
    """The apps' node's Asterisk did not answer: whether the app is registered is not known."""


class AppsNodeContacts:
    def __init__(self, host: str, port: int, user: str, secret: str, timeout: float = ASK_TIMEOUT_S) -> None:
        self._client = AmiClient(host, port, user, secret, action_timeout=timeout, events="off")
        self.timeout = timeout

    async def registered(self, endpoint: str) -> bool:
        """Whether the app endpoint ``endpoint`` (app-<device>) has a contact on the apps' node now."""
        try:
            async with asyncio.timeout(self.timeout):
                if not await self._client.ready(self.timeout):
                    raise AppsNodeUnavailable("the apps' node's AMI is not connected")
                reply = await self._client.action("Getvar", Variable=f"PJSIP_AOR({endpoint},contact)")
        except AmiActionError as err:  # no such AOR: a device deleted meanwhile
            log.info("app endpoint %s: %s", endpoint, err)
            return False
        except (TimeoutError, AmiError) as err:
            raise AppsNodeUnavailable(f"the apps' node did not answer: {err or 'timeout'}") from err
        return bool(reply.get("Value").strip())

    async def aclose(self) -> None:
        await self._client.close()
