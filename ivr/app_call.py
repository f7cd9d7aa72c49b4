"""A call to the relative's app ("00"): dial the registered contacts, or wake the app and wait.

If any of the relative's devices has a registered contact, every contact is dialed at
once (no push). Otherwise the wait listens for the relative's new contacts *first*,
then asks for the push, and waits up to the window: on the first new contact a short
grace lets devices woken together register too, then every contact is dialed at once
(Dial's first answer wins). No contact within the window, or the caller gone: the wake
is cancelled and there is nothing to dial. The adapters (agi/routes/app_dial.py) give
the contacts, the wake and the line behind the Protocols below."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)

WINDOW_S = 30.0  # how long the inmate waits for the app (the push's ring window)
GRACE_S = 0.3  # after the first new contact: others woken together register too
POLL_S = 0.5  # how often the wait checks that the caller is still there


class AppDevices(Protocol):
    async def active_devices(self, phone: str) -> list[str]:
        """The ids of the relative's active app devices (E.164 phone with its +)."""
        ...


class Contacts(Protocol):
    async def dial_string(self, device_id: str) -> str:
        """The switch's dial string of the device's registered contacts ('' if none)."""
        ...


class Wake(Protocol):
    """A wake under way: already listening to the relative's new contacts."""

    async def push(self) -> None:
        """Ask for the push of every device (the bridge)."""
        ...

    async def next_contact(self, timeout_s: float) -> bool:
        """True when a new contact of the relative came within ``timeout_s``."""
        ...

    async def cancel(self) -> None:
        """The call no longer waits: stop the pushes and any ringing."""
        ...


class Line(Protocol):
    async def still_there(self) -> bool:
        """False (or an exception) when the caller hung up."""
        ...


@dataclass(frozen=True)
class Reach:
    target: str  # '&'-joined dial strings; '' = nothing to dial
    dialed: tuple[str, ...]  # the devices whose contacts are in target
    woke: bool  # a push was asked for
    outcome: str  # "registered" (no push), "woken", "timeout", "gone"


async def contacts_of(devices: Sequence[str], contacts: Contacts) -> tuple[str, tuple[str, ...]]:
    """Every registered contact of ``devices``, as one Dial target, and the devices in it."""
    found = [(d, await contacts.dial_string(d)) for d in devices]
    found = [(d, s) for d, s in found if s]
    return "&".join(s for _, s in found), tuple(d for d, _ in found)


async def reach(devices: Sequence[str], contacts: Contacts, wake: Callable[[], AbstractAsyncContextManager[Wake]],
                line: Line, *, window_s: float = WINDOW_S, grace_s: float = GRACE_S, poll_s: float = POLL_S,
                clock: Callable[[], float] = time.monotonic) -> Reach:
    """What to dial for the relative's app: the contacts registered now, or those that
    register after a push within ``window_s``. The wake is cancelled whenever the wait
    ends without a target (timeout, the caller gone, an error)."""
    target, dialed = await contacts_of(devices, contacts)
    if target:
        return Reach(target, dialed, False, "registered")
    deadline = clock() + window_s
    async with wake() as waking:
        try:
            await waking.push()
            announced = False  # a contact came that the switch did not show yet
            while (left := deadline - clock()) > 0:
                if await waking.next_contact(min(poll_s, left)):
                    announced = True
                    await asyncio.sleep(grace_s)
                if announced:
                    # The switch may list a just-registered contact a moment after its event
                    # (or it left again): look again at every poll until it does.
                    target, dialed = await contacts_of(devices, contacts)
                    if target:
                        return Reach(target, dialed, True, "woken")
                if not await line.still_there():
                    await waking.cancel()
                    return Reach("", (), True, "gone")
        except BaseException:
            await asyncio.shield(waking.cancel())
            raise
        await waking.cancel()
        return Reach("", (), True, "timeout")
