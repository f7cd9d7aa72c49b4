"""A call to the relative's app ("00"): dial the registered contacts, or wake the app and
ring each device as soon as its contact appears.

If any of the relative's devices has a registered contact, every contact is dialed at
once (no push). Otherwise the wait listens for the relative's new contacts *first*,
then asks for the push, and waits up to the window for the first contact the switch
lists. Then every active device is dialed as a *leg* of its own (``Contacts.leg``): a
leg rings its device's contacts at once if it has some, or else waits for that
device's contact until the window ends and rings it then, while the others ring
(``ring_leg``). The first answer wins and the other legs are cancelled (Dial). No
contact within the window, or the caller gone: the wake is cancelled and there is
nothing to dial. The bridge saying that no device could be woken (``Wake.unwakeable``:
every push refused or failed, nothing more to try) ends the wait and every leg at
once, as the window's end would, unless a contact is registered (then it is dialed).
The adapters (agi/routes/app_dial.py) give the contacts, the wake and the line behind
the Protocols below."""

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
POLL_S = 0.5  # how often a wait checks that its channel is still there (and looks at the contacts)
RECHECK_S = 0.1  # after a contact event: how often to look again until the switch lists it


class AppDevices(Protocol):
    async def active_devices(self, phone: str) -> list[str]:
        """The ids of the relative's active app devices (E.164 phone with its +)."""
        ...


class Contacts(Protocol):
    async def dial_string(self, device_id: str) -> str:
        """The switch's dial string of the device's registered contacts ('' if none)."""
        ...

    def leg(self, device_id: str) -> str:
        """A dial string that rings the device once it has a contact (a leg runs ``ring_leg``)."""
        ...


class Wake(Protocol):
    """A wake under way: already listening to the relative's new contacts (the call's
    wait: any device's; a leg: its own device's)."""

    async def push(self) -> None:
        """Ask for the push of every device (the bridge)."""
        ...

    async def next_contact(self, timeout_s: float) -> bool:
        """True when a new contact (of the device listened for) came within ``timeout_s``;
        False at once once ``unwakeable``."""
        ...

    @property
    def unwakeable(self) -> bool:
        """The bridge said this call's wake reached no device and nothing more will be tried."""
        ...

    async def cancel(self) -> None:
        """The call no longer waits: stop the pushes and any ringing."""
        ...


class Line(Protocol):
    async def still_there(self) -> bool:
        """False (or an exception) when the caller (a leg: its own channel) hung up."""
        ...


class CallerLine(Line, Protocol):
    """The waiting caller's line: it hears "connecting to the app", then ringback."""

    async def announce(self) -> None:
        """Say "connecting" and start ringback; returns when done, cut short by ``quiet``
        or the caller gone (no exception: ``still_there`` tells)."""
        ...

    async def quiet(self) -> None:
        """Cut the announcement short (no-op once it ended): the line is free after."""
        ...


@dataclass(frozen=True)
class Reach:
    target: str  # '&'-joined dial strings; '' = nothing to dial
    dialed: tuple[str, ...]  # the devices in target
    woke: bool  # a push was asked for
    outcome: str  # "registered" (no push, or nothing more to wait for), "woken", "timeout", "gone", "unwakeable"
    left_s: float = 0.0  # woken: how much of the window the legs still wait


async def contacts_of(devices: Sequence[str], contacts: Contacts) -> tuple[str, tuple[str, ...]]:
    """Every registered contact of ``devices``, as one Dial target, and the devices in it."""
    found = [(d, await contacts.dial_string(d)) for d in devices]
    found = [(d, s) for d, s in found if s]
    return "&".join(s for _, s in found), tuple(d for d, _ in found)


async def reach(devices: Sequence[str], contacts: Contacts, wake: Callable[[], AbstractAsyncContextManager[Wake]],
                line: CallerLine, *, window_s: float = WINDOW_S, poll_s: float = POLL_S, recheck_s: float = RECHECK_S,
                clock: Callable[[], float] = time.monotonic) -> Reach:
    """What to dial for the relative's app: the contacts registered now, or, once the
    first woken device's contact is listed within ``window_s``, one leg per device
    (those not registered yet ring when they register, until the window ends). The
    wake is cancelled whenever the wait ends without a target (timeout, the caller
    gone, an error).

    The caller hears "connecting" while the wait listens; a contact event cuts it short
    (the switch is asked on the caller's line), so a fast app is not kept waiting for
    the end of the prompt."""
    target, dialed = await contacts_of(devices, contacts)
    if target:
        return Reach(target, dialed, False, "registered")
    deadline = clock() + window_s
    async with wake() as waking:
        announcing: asyncio.Future[None] | None = None
        try:
            await waking.push()
            announcing = asyncio.ensure_future(line.announce())
            announced = False  # a contact came that the switch did not list yet
            while (left := deadline - clock()) > 0:
                if await waking.next_contact(min(recheck_s if announced else poll_s, left)):
                    announced = True
                if waking.unwakeable:
                    # No device took the push and none will be pushed again: what is
                    # registered now is all there will be.
                    await line.quiet()
                    target, dialed = await contacts_of(devices, contacts)
                    if target:
                        return Reach(target, dialed, True, "registered")
                    await waking.cancel()
                    return Reach("", (), True, "unwakeable")
                if announced:
                    # The switch may list a just-registered contact a moment after its event
                    # (or it left again): look again until it does.
                    await line.quiet()
                    _, listed = await contacts_of(devices, contacts)
                    if listed:
                        legs = "&".join(contacts.leg(d) for d in devices)
                        return Reach(legs, tuple(devices), True, "woken", max(0.0, deadline - clock()))
                if announcing.done() and not await line.still_there():
                    await waking.cancel()
                    return Reach("", (), True, "gone")
        except BaseException:
            await asyncio.shield(waking.cancel())
            raise
        finally:
            if announcing is not None:
                await asyncio.shield(_ended(line, announcing))
        await waking.cancel()
        return Reach("", (), True, "timeout")


async def _ended(line: CallerLine, announcing: asyncio.Future[None]) -> None:
    """The announcement over (cut short if need be) before the line is used again."""
    if not announcing.done():
        await line.quiet()
    await asyncio.wait({announcing})
    if not announcing.cancelled() and announcing.exception() is not None:
        log.error("the app wait's announcement failed: %r", announcing.exception())


async def ring_leg(device_id: str, contacts: Contacts, listen: Callable[[], AbstractAsyncContextManager[Wake]],
                   line: Line, *, left_s: float, poll_s: float = POLL_S, recheck_s: float = RECHECK_S,
                   clock: Callable[[], float] = time.monotonic) -> Reach:
    """One device's leg of a woken call: its contacts as soon as the switch lists them,
    within ``left_s`` (the rest of the window). It looks at once, then listens for the
    device's contact events and looks again at each (and at every poll: an event may
    have come before it listened). Its channel hung up (another device answered, or the
    caller left): the wake is cancelled (once per call, whoever asks first). The call's
    wake unwakeable (no device woken, nothing more tried): the leg ends at once."""
    target = await contacts.dial_string(device_id)
    if target:
        return Reach(target, (device_id,), True, "registered")
    if left_s <= 0:
        return Reach("", (), True, "timeout")
    deadline = clock() + left_s
    async with listen() as events:
        announced = False
        target = await contacts.dial_string(device_id)  # registered while we subscribed
        while not target and not events.unwakeable and (left := deadline - clock()) > 0:
            if await events.next_contact(min(recheck_s if announced else poll_s, left)):
                announced = True
            target = await contacts.dial_string(device_id)
            if not target and not await line.still_there():
                await events.cancel()
                return Reach("", (), True, "gone")
        if target:
            return Reach(target, (device_id,), True, "woken")
        return Reach("", (), True, "unwakeable" if events.unwakeable else "timeout")
