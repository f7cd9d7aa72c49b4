"""Which app devices have a reachable SIP contact now, asked of Asterisk over AMI.

The AMI user ``kinline-status`` has the ``reporting`` write class only (no event
class): ``Getvar`` of ``PJSIP_AOR(app-<id>,contact)`` then
``PJSIP_CONTACT(<contact>,status)`` ("Reachable" after a qualify OPTIONS was
answered). A contact registered but not qualified yet is qualified at once
(``PJSIPQualify``, same class) and read again until the bound. It cannot
originate, reload, load modules or run commands. Every
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
# A contact registered but not qualified yet (res_pjsip's first OPTIONS comes at a random
# moment within qualify_frequency): asked to qualify it now, and read again meanwhile.
PENDING = frozenset({"NonQualified", "Unknown", "Created", "Updated"})
RECHECK_S = 0.1


class Reachability(Protocol):
    async def reachable(self, endpoints: list[str]) -> set[str] | None:
        """The endpoints with a reachable contact now; None if Asterisk could not be asked."""


class AmiReachability:
    def __init__(self, host: str, port: int, user: str, secret: str, timeout: float = STATUS_TIMEOUT_S) -> None:
        self._client = AmiClient(host, port, user, secret, action_timeout=timeout, events="off")
        self.timeout = timeout

    async def _get(self, expression: str) -> str:
        try:
            return (await self._client.action("Getvar", Variable=expression)).get("Value")
        except AmiError as err:  # no such AOR (device deleted meanwhile), ...
            log.debug("Getvar %s: %s", expression, err)
            return ""

    async def _statuses(self, contacts: list[str]) -> list[str]:
        return [await self._get(f"PJSIP_CONTACT({contact},status)") for contact in contacts]

    async def _endpoint_reachable(self, endpoint: str, answered: set[str]) -> bool:
        """Until the caller's bound: a qualify not yet run is asked for and awaited."""
        contacts = [c for c in (await self._get(f"PJSIP_AOR({endpoint},contact)")).split(",") if c]
        statuses = await self._statuses(contacts)
        answered.add(endpoint)
        if "Reachable" in statuses:
            return True
        pending = [c for c, status in zip(contacts, statuses, strict=True) if status in PENDING]
        if not pending:
            return False
        try:
            await self._client.action("PJSIPQualify", Endpoint=endpoint)
        except AmiError as err:
            log.debug("PJSIPQualify %s: %s", endpoint, err)
            return False
        while True:
            await asyncio.sleep(RECHECK_S)
            statuses = await self._statuses(pending)
            if "Reachable" in statuses:
                return True
            if not any(status in PENDING for status in statuses):
                return False

    async def reachable(self, endpoints: list[str]) -> set[str] | None:
        try:
            async with asyncio.timeout(self.timeout):
                if not await self._client.ready(self.timeout):
                    return None
        except (TimeoutError, AmiError) as err:
            log.warning("contact status not known (Asterisk did not answer: %s)", err or "timeout")
            return None
        answered: set[str] = set()
        tasks = [asyncio.create_task(self._endpoint_reachable(e, answered)) for e in endpoints]
        # Every endpoint within the bound; one still qualifying when it ends is not reachable (yet).
        done, waiting = await asyncio.wait(tasks, timeout=self.timeout) if tasks else (set(), set())
        for task in waiting:
            task.cancel()
        if any(e not in answered for e in endpoints):
            log.warning("contact status not known (Asterisk did not answer within %.1f s)", self.timeout)
            return None
        found: set[str] = set()
        for endpoint, task in zip(endpoints, tasks, strict=True):
            if task in done:
                if task.exception() is not None:
                    log.warning("contact status of %s not known: %s", endpoint, task.exception())
                    return None
                if task.result():
                    found.add(endpoint)
        return found

    async def aclose(self) -> None:
        await self._client.close()
