"""Which app devices have a reachable SIP contact now, asked of Asterisk over AMI.

The AMI user ``kinline-status`` has the ``reporting`` write class only (no event
class): ``Getvar`` of ``PJSIP_AOR(app-<id>,contact)`` then
``PJSIP_CONTACT(<contact>,status)`` ("Reachable" after a qualify OPTIONS was
answered). It cannot originate, reload, load modules or run commands. Every
question is bounded in time; when Asterisk does not answer, the light is worked
out without it (yellow or red, never a green that was not seen).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from ami.client import AmiClient
from ami.protocol import AmiError

log = logging.getLogger(__name__)

STATUS_TIMEOUT_S = 1.5  # the whole question, all of a relative's devices


class Reachability(Protocol):
    async def reachable(self, endpoints: list[str]) -> set[str] | None:
        """The endpoints with a reachable contact now; None if Asterisk could not be asked."""


class AmiReachability:
    def __init__(self, host: str, port: int, user: str, secret: str, timeout: float = STATUS_TIMEOUT_S) -> None:
        self._client = AmiClient(host, port, user, secret, action_timeout=timeout, events="off")
        self._started = False
        self.timeout = timeout

    async def _connected(self) -> bool:
        if not self._started:
            self._started = True
            try:
                await self._client.start(self.timeout)  # keeps reconnecting by itself if this times out
            except TimeoutError:
                return False
        return self._client.connected.is_set()

    async def _get(self, expression: str) -> str:
        try:
            return (await self._client.action("Getvar", Variable=expression)).get("Value")
        except AmiError as err:  # no such AOR (device deleted meanwhile), ...
            log.debug("Getvar %s: %s", expression, err)
            return ""

    async def _endpoint_reachable(self, endpoint: str) -> bool:
        contacts = [c for c in (await self._get(f"PJSIP_AOR({endpoint},contact)")).split(",") if c]
        for contact in contacts:
            if await self._get(f"PJSIP_CONTACT({contact},status)") == "Reachable":
                return True
        return False

    async def reachable(self, endpoints: list[str]) -> set[str] | None:
        try:
            async with asyncio.timeout(self.timeout):
                if not await self._connected():
                    return None
                found = await asyncio.gather(*(self._endpoint_reachable(e) for e in endpoints))
        except (TimeoutError, AmiError) as err:
            log.warning("contact status not known (Asterisk did not answer: %s)", err or "timeout")
            return None
        return {e for e, ok in zip(endpoints, found, strict=True) if ok}

    async def aclose(self) -> None:
        if self._started:
            await self._client.close()
