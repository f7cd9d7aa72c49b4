"""Calls to the relative's app ("00"): choose_number's checks, the call's wait and each
device's leg (ivr/app_call.py) over scripted contacts, wake and line."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from ivr import prompts as p
from ivr.app_call import reach, ring_leg
from ivr.inmate_call import InmateCalls
from tests.unit.test_inmate_call import NOW, PINS, TERMINAL, FakeCaller, Store

PHONE = "+79161234567"


class Devices:
    def __init__(self, **by_phone: list[str]) -> None:
        self.by_phone = {"+" + k.removeprefix("p"): v for k, v in by_phone.items()}

    async def active_devices(self, phone: str) -> list[str]:
        return self.by_phone.get(phone, [])


@pytest.fixture
def store() -> Store:
    return Store()


async def _choose(store: Store, devices: Devices, *entries: str) -> tuple[object, FakeCaller]:
    calls = InmateCalls(store, store, now=lambda: NOW, pins=PINS, apps=devices)  # type: ignore[arg-type]
    session = await calls.login(FakeCaller("1001", "2468"), "f1", "u1", TERMINAL)
    caller = FakeCaller(*entries)
    return await calls.choose_number(caller, session, "u1", 1), caller


async def test_00_with_an_app_device_is_planned_at_the_app_tariff(store: Store) -> None:
    plan, caller = await _choose(store, Devices(p79161234567=["d1"]), "0079161234567")
    assert caller.played == []
    assert plan.e164 == PHONE  # type: ignore[attr-defined]
    assert plan.route_kind == "app_audio"  # type: ignore[attr-defined]
    assert plan.rate == 205  # type: ignore[attr-defined]
    assert plan.payer == "caller"  # type: ignore[attr-defined]


async def test_00_without_any_device_is_refused_with_its_reason_then_another_number(store: Store) -> None:
    plan, caller = await _choose(store, Devices(), "0079161234567", "79161234567")
    assert caller.played == [p.APP_NONE]
    assert plan.route_kind == "mobile"  # type: ignore[attr-defined]


async def test_00_without_the_device_registry_is_not_available(store: Store) -> None:
    calls = InmateCalls(store, store, now=lambda: NOW, pins=PINS)  # type: ignore[arg-type]
    session = await calls.login(FakeCaller("1001", "2468"), "f1", "u1", TERMINAL)
    caller = FakeCaller("0079161234567", "79161234567")
    await calls.choose_number(caller, session, "u1", 1)
    assert caller.played == [p.SERVICE_UNAVAILABLE]


# -- the wait ---------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class Contacts:
    def __init__(self, registered: dict[str, str] | None = None) -> None:
        self.registered = dict(registered or {})

    async def dial_string(self, device_id: str) -> str:
        return self.registered.get(device_id, "")

    def leg(self, device_id: str) -> str:
        return f"Leg/{device_id}"


class ScriptedWake:
    """Each next_contact call takes one step of the script: a dict of contacts that
    register then (True is returned), or None (nothing within the timeout)."""

    def __init__(self, contacts: Contacts, clock: Clock, script: list[dict[str, str] | None],
                 log: list[str], unwakeable_at: int | None = None) -> None:
        self.contacts, self.clock, self.script, self.log = contacts, clock, script, log
        self.unwakeable_at = unwakeable_at  # the next_contact call at which the bridge's Unwakeable comes
        self.unwakeable = unwakeable_at == 0
        self.calls = 0

    async def push(self) -> None:
        self.log.append("push")

    async def next_contact(self, timeout_s: float) -> bool:
        self.calls += 1
        if self.unwakeable or self.calls == self.unwakeable_at:
            self.unwakeable = True
            self.clock.t += 0.01
            return False
        await asyncio.sleep(0)  # the announcement runs meanwhile
        step = self.script.pop(0) if self.script else None
        if step is None:
            self.clock.t += timeout_s
            return False
        self.clock.t += 0.1
        self.contacts.registered.update(step)
        return True

    async def cancel(self) -> None:
        self.log.append("cancel")


class Line:
    """The caller's line: its announcement ends at once (``announce_s`` > 0: it lasts
    that long on the fake clock unless cut short by quiet)."""

    def __init__(self, there_for: int = 1000, error: Exception | None = None, clock: Clock | None = None,
                 announce_s: float = 0.0) -> None:
        self.left = there_for
        self.error = error
        self.clock, self.announce_s = clock, announce_s
        self.said: list[str] = []
        self._cut = asyncio.Event()

    async def announce(self) -> None:
        self.said.append("connecting")
        if self.announce_s and self.clock is not None:
            end = self.clock.t + self.announce_s
            while self.clock.t < end and not self._cut.is_set():
                await asyncio.sleep(0)
            self.said.append("cut" if self._cut.is_set() else "said")
        self.said.append("ringback")

    async def quiet(self) -> None:
        self._cut.set()
        await asyncio.sleep(0)

    async def still_there(self) -> bool:
        if self.announce_s:
            assert self.said[-1:] == ["ringback"], "the line was asked during the announcement"
        if self.error is not None:
            raise self.error
        self.left -= 1
        return self.left >= 0


def wake_of(contacts: Contacts, clock: Clock, script: list[dict[str, str] | None], log: list[str],  # type: ignore[no-untyped-def]
            unwakeable_at: int | None = None):
    @asynccontextmanager
    async def wake() -> AsyncIterator[ScriptedWake]:
        log.append("subscribe")
        yield ScriptedWake(contacts, clock, script, log, unwakeable_at)
        log.append("unsubscribe")

    return wake


async def test_registered_contacts_are_dialed_at_once_without_a_push() -> None:
    log: list[str] = []
    clock = Clock()
    contacts = Contacts({"d1": "PJSIP/app-d1/sip:a@1.2.3.4:5000", "d3": "PJSIP/app-d3/sip:c@1.2.3.4:5002"})
    found = await reach(["d1", "d2", "d3"], contacts, wake_of(contacts, clock, [], log), Line(), clock=clock)
    assert found.target == "PJSIP/app-d1/sip:a@1.2.3.4:5000&PJSIP/app-d3/sip:c@1.2.3.4:5002"
    assert found.dialed == ("d1", "d3")
    assert (found.woke, found.outcome) == (False, "registered")
    assert log == []


async def test_no_contact_pushes_after_subscribing_and_dials_a_leg_per_device_at_the_first() -> None:
    log: list[str] = []
    clock = Clock()
    contacts = Contacts()
    script: list[dict[str, str] | None] = [None, None, {"d2": "PJSIP/app-d2/sip:b@h"}]
    found = await reach(["d1", "d2"], contacts, wake_of(contacts, clock, script, log), Line(), window_s=8,
                        clock=clock)
    assert log == ["subscribe", "push", "unsubscribe"]
    # d1 has no contact yet: its leg waits for it while d2's leg rings d2 at once
    assert found.target == "Leg/d1&Leg/d2"
    assert (found.dialed, found.woke, found.outcome) == (("d1", "d2"), True, "woken")
    assert found.left_s == pytest.approx(8 - 1.1)  # the legs wait the rest of the window


async def test_a_contact_during_connecting_cuts_it_short_and_is_dialed_at_once() -> None:
    """A fast app registers while the caller still hears "connecting" (3 s): the prompt is
    cut short at the event, not waited for; the line is not asked while it plays."""
    log: list[str] = []
    clock = Clock()
    contacts = Contacts()
    line = Line(clock=clock, announce_s=3.0)
    script: list[dict[str, str] | None] = [None, {"d1": "PJSIP/app-d1/sip:a@h"}]
    found = await reach(["d1"], contacts, wake_of(contacts, clock, script, log), line, window_s=8, clock=clock)
    assert (found.target, found.outcome) == ("Leg/d1", "woken")
    assert clock.t == pytest.approx(0.6)
    assert line.said == ["connecting", "cut", "ringback"]


async def test_the_announcement_is_said_whole_when_no_contact_comes_during_it() -> None:
    log: list[str] = []
    clock = Clock()
    contacts = Contacts()
    line = Line(clock=clock, announce_s=1.2)
    found = await reach(["d1"], contacts, wake_of(contacts, clock, [], log), line, window_s=3, clock=clock)
    assert found.outcome == "timeout"
    assert line.said == ["connecting", "said", "ringback"]


async def test_nothing_within_the_window_cancels_and_dials_nothing() -> None:
    log: list[str] = []
    clock = Clock()
    contacts = Contacts()
    found = await reach(["d1"], contacts, wake_of(contacts, clock, [], log), Line(), window_s=8, clock=clock)
    assert (found.target, found.outcome) == ("", "timeout")
    assert log == ["subscribe", "push", "cancel", "unsubscribe"]
    assert clock.t == pytest.approx(8.0)  # bounded by the window, polled every 0.5 s


async def test_a_contact_that_left_again_keeps_the_wait_going() -> None:
    log: list[str] = []
    clock = Clock()
    contacts = Contacts()
    found = await reach(["d1"], contacts, wake_of(contacts, clock, [{"other": "x"}], log), Line(),
                        window_s=2, clock=clock)
    assert found.outcome == "timeout"
    assert log[-2:] == ["cancel", "unsubscribe"]


async def test_the_caller_hanging_up_during_the_wait_cancels() -> None:
    log: list[str] = []
    clock = Clock()
    contacts = Contacts()
    found = await reach(["d1"], contacts, wake_of(contacts, clock, [], log), Line(there_for=3), window_s=30,
                        clock=clock)
    assert (found.target, found.outcome) == ("", "gone")
    assert log == ["subscribe", "push", "cancel", "unsubscribe"]
    assert clock.t == pytest.approx(2.0)  # the 4th check found the line gone


async def test_an_error_during_the_wait_cancels_and_is_raised() -> None:
    log: list[str] = []
    clock = Clock()
    contacts = Contacts()
    with pytest.raises(ConnectionError):
        await reach(["d1"], contacts, wake_of(contacts, clock, [], log), Line(error=ConnectionError("agi")),
                    clock=clock)
    assert log == ["subscribe", "push", "cancel"]


async def test_a_contact_the_switch_lists_late_is_dialed_at_a_later_poll() -> None:
    log: list[str] = []
    clock = Clock()

    class LateContacts(Contacts):
        """The event came, but the switch lists the contact only from the third look."""

        looks = 0

        async def dial_string(self, device_id: str) -> str:
            self.looks += 1
            return "PJSIP/app-d1/sip:a@h" if self.looks >= 3 else ""

    contacts = LateContacts()
    found = await reach(["d1"], contacts, wake_of(contacts, clock, [{}], log), Line(), window_s=8, clock=clock)
    assert (found.target, found.outcome) == ("Leg/d1", "woken")
    assert contacts.looks == 3 and log == ["subscribe", "push", "unsubscribe"]


async def test_the_bridge_saying_unwakeable_ends_the_wait_at_once() -> None:
    """Every push refused (dead tokens): the caller hears "unreachable" now, not at the
    window's end; the wake is cancelled as on a timeout, nothing is dialed."""
    log: list[str] = []
    clock = Clock()
    contacts = Contacts()
    line = Line(clock=clock, announce_s=3.0)
    found = await reach(["d1", "d2"], contacts, wake_of(contacts, clock, [], log, unwakeable_at=2), line,
                        window_s=30, clock=clock)
    assert (found.target, found.dialed, found.woke, found.outcome) == ("", (), True, "unwakeable")
    assert log == ["subscribe", "push", "cancel", "unsubscribe"]
    assert clock.t == pytest.approx(0.51)  # one poll, then the message
    assert line.said == ["connecting", "cut", "ringback"]


async def test_a_registered_contact_still_wins_over_unwakeable() -> None:
    """An app that registered by itself while no push went through: it is dialed as a
    registered app is (no legs: nothing more will come)."""
    log: list[str] = []
    clock = Clock()

    class Unlisted(Contacts):
        """Registered before the call, but the first look missed it (the switch listed it late)."""

        looks = 0

        async def dial_string(self, device_id: str) -> str:
            self.looks += 1
            return await super().dial_string(device_id) if self.looks > 2 else ""

    late = Unlisted({"d2": "PJSIP/app-d2/sip:b@h"})
    found = await reach(["d1", "d2"], late, wake_of(late, clock, [], log, unwakeable_at=1), Line(), window_s=30,
                        clock=clock)
    assert (found.target, found.dialed, found.woke, found.outcome) == (
        "PJSIP/app-d2/sip:b@h", ("d2",), True, "registered")


# -- a device's leg ---------------------------------------------------------


class Events:
    """A leg's subscription to its device's contacts: each next_contact takes one step of
    the script (contacts that register then: True), None = nothing within the timeout."""

    def __init__(self, contacts: Contacts, clock: Clock, script: list[dict[str, str] | None],
                 log: list[str], unwakeable_at: int | None = None) -> None:
        self.contacts, self.clock, self.script, self.log = contacts, clock, script, log
        self.unwakeable_at = unwakeable_at  # the next_contact call at which the bridge's Unwakeable comes
        self.unwakeable = unwakeable_at == 0
        self.calls = 0

    async def push(self) -> None:
        raise AssertionError("a leg never pushes")

    async def next_contact(self, timeout_s: float) -> bool:
        self.calls += 1
        if self.unwakeable or self.calls == self.unwakeable_at:
            self.unwakeable = True
            self.clock.t += 0.01
            return False
        step = self.script.pop(0) if self.script else None
        if step is None:
            self.clock.t += timeout_s
            return False
        self.clock.t += 0.05
        self.contacts.registered.update(step)
        return True

    async def cancel(self) -> None:
        self.log.append("cancel")


def events_of(contacts: Contacts, clock: Clock, script: list[dict[str, str] | None], log: list[str],  # type: ignore[no-untyped-def]
              unwakeable_at: int | None = None):
    @asynccontextmanager
    async def listen() -> AsyncIterator[Events]:
        log.append("subscribe")
        yield Events(contacts, clock, script, log, unwakeable_at)
        log.append("unsubscribe")

    return listen


async def test_a_leg_whose_device_is_registered_rings_it_at_once_without_listening() -> None:
    log: list[str] = []
    clock = Clock()
    contacts = Contacts({"d1": "PJSIP/app-d1/sip:a@h"})
    found = await ring_leg("d1", contacts, events_of(contacts, clock, [], log), Line(), left_s=5, clock=clock)
    assert (found.target, found.dialed, found.outcome) == ("PJSIP/app-d1/sip:a@h", ("d1",), "registered")
    assert log == [] and clock.t == 0


async def test_a_device_registering_late_is_rung_as_its_contact_appears_while_the_first_rings() -> None:
    """The call's wait found d1 and dialed both legs: d1's rings at once, d2's waits for d2
    (4 s later), then rings d2 too; neither ends the other's ringing nor cancels the wake."""
    log: list[str] = []
    clock = Clock()
    contacts = Contacts({"d1": "PJSIP/app-d1/sip:a@h"})
    first = await ring_leg("d1", contacts, events_of(contacts, clock, [], log), Line(), left_s=8, clock=clock)
    assert first.target == "PJSIP/app-d1/sip:a@h"
    script: list[dict[str, str] | None] = [None] * 8 + [{"d2": "PJSIP/app-d2/sip:b@h"}]
    late = await ring_leg("d2", contacts, events_of(contacts, clock, script, log), Line(), left_s=8, clock=clock)
    assert (late.target, late.outcome) == ("PJSIP/app-d2/sip:b@h", "woken")
    assert clock.t == pytest.approx(4.05)  # rung at its contact's event, not at a later poll
    assert log == ["subscribe", "unsubscribe"]  # no cancel: d1 still rings


async def test_a_leg_looks_again_after_subscribing_and_at_every_poll() -> None:
    """A contact that registered before the leg listened (its event missed) is found by
    the look after subscribing, or at the next poll when the switch lists it late."""
    log: list[str] = []
    clock = Clock()

    class Later(Contacts):
        looks = 0

        async def dial_string(self, device_id: str) -> str:
            self.looks += 1
            return "PJSIP/app-d1/sip:a@h" if self.looks >= 4 else ""

    contacts = Later()
    found = await ring_leg("d1", contacts, events_of(contacts, clock, [], log), Line(), left_s=8, clock=clock)
    assert (found.target, found.outcome) == ("PJSIP/app-d1/sip:a@h", "woken")
    assert contacts.looks == 4 and clock.t == pytest.approx(1.0)  # before, after subscribing, 2 polls


async def test_a_leg_without_a_contact_within_the_window_ends_without_cancelling_the_others() -> None:
    log: list[str] = []
    clock = Clock()
    contacts = Contacts()
    found = await ring_leg("d1", contacts, events_of(contacts, clock, [{"d9": "x"}], log), Line(), left_s=3,
                           clock=clock)
    assert (found.target, found.outcome) == ("", "timeout")
    assert log == ["subscribe", "unsubscribe"]
    assert clock.t == pytest.approx(3.0)


async def test_a_leg_with_no_window_left_ends_at_once() -> None:
    log: list[str] = []
    clock = Clock()
    contacts = Contacts()
    found = await ring_leg("d1", contacts, events_of(contacts, clock, [], log), Line(), left_s=0, clock=clock)
    assert (found.target, found.outcome) == ("", "timeout")
    assert clock.t == 0 and log == []


async def test_a_leg_hung_up_while_it_waits_cancels_the_wake() -> None:
    """The caller left (or another device answered): Dial hung the leg up."""
    log: list[str] = []
    clock = Clock()
    contacts = Contacts()
    found = await ring_leg("d1", contacts, events_of(contacts, clock, [], log), Line(there_for=2), left_s=30,
                           clock=clock)
    assert (found.target, found.outcome) == ("", "gone")
    assert log == ["subscribe", "cancel", "unsubscribe"]
    assert clock.t == pytest.approx(1.5)


async def test_a_leg_ends_at_once_when_the_call_is_unwakeable() -> None:
    """The bridge's word comes while the leg waits (or was there before it listened):
    the leg ends now, without cancelling (the call's wait does that)."""
    log: list[str] = []
    clock = Clock()
    contacts = Contacts()
    found = await ring_leg("d1", contacts, events_of(contacts, clock, [None], log, unwakeable_at=2), Line(),
                           left_s=30, clock=clock)
    assert (found.target, found.outcome) == ("", "unwakeable")
    assert clock.t == pytest.approx(0.51) and log == ["subscribe", "unsubscribe"]
    clock = Clock()
    found = await ring_leg("d1", contacts, events_of(contacts, clock, [], log, unwakeable_at=0), Line(),
                           left_s=30, clock=clock)
    assert (found.target, found.outcome) == ("", "unwakeable") and clock.t == 0


async def test_a_legs_device_registered_when_unwakeable_came_is_still_rung() -> None:
    log: list[str] = []
    clock = Clock()

    class Later(Contacts):
        looks = 0

        async def dial_string(self, device_id: str) -> str:
            self.looks += 1
            return "PJSIP/app-d1/sip:a@h" if self.looks >= 3 else ""

    contacts = Later()
    found = await ring_leg("d1", contacts, events_of(contacts, clock, [], log, unwakeable_at=1), Line(),
                           left_s=30, clock=clock)
    assert (found.target, found.outcome) == ("PJSIP/app-d1/sip:a@h", "woken")
