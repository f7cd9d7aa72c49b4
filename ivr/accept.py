"""The relative's accept menu for a call they pay for ("01"), independent of Asterisk.

Before the bridge the relative hears, in the card's language: who calls (the
facility, the inmate's recorded name), that the call is recorded, that it is
paid from their balance at the rate per minute, their balance, then the menu:
1 accepts, 2 declines, 9 blocks calls from this card, 0 (or any other key)
repeats. No key within ``MENU_TIMEOUT_MS`` declines, so a voicemail never
accepts; a hangup declines (the adapter reports it). Only ``ACCEPTED`` lets
the adapter bridge, which starts billing: the menu time is free.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from enum import Enum
from typing import Protocol

from ivr import prompts as p
from ivr.call_plan import CallPlan
from ivr.inmate_call import Caller
from ivr.model import Card, Facility
from ivr.relatives import CardSettings

log = logging.getLogger(__name__)

MENU_TIMEOUT_MS = 10_000
KEY_GAP_MS = 1  # after the announcement, straight on to the menu
MENU_ROUNDS = 3  # the announcement is said at most this many times, then the call is declined
ACCEPT, DECLINE, BLOCK, REPEAT = "1", "2", "9", "0"


class Outcome(Enum):
    ACCEPTED = "accepted"
    DECLINED = "declined"  # key 2, no key in time, or too many other keys
    BLOCKED = "blocked"  # key 9: calls from this card are refused until the relative unblocks
    HUNG_UP = "hungup"  # the relative hung up during the menu (the adapter sees it)
    CALLER_GONE = "callergone"  # the inmate hung up meanwhile: nobody to connect

    @property
    def bridges(self) -> bool:
        return self is Outcome.ACCEPTED


FAREWELL = {Outcome.DECLINED: [p.ACCEPT_DECLINED], Outcome.BLOCKED: [p.ACCEPT_BLOCKED]}


def inmate_hears(outcome: str) -> str | None:
    """What the inmate hears after a "01" call the relative answered, from the
    outcome the adapter kept (an ``Outcome`` value, or '' if the menu never
    ran: the platform failed on the relative's leg). None: they were connected."""
    if outcome == Outcome.ACCEPTED.value:
        return None
    if outcome == Outcome.BLOCKED.value:
        return p.RELATIVE_BLOCKED
    if outcome in (Outcome.DECLINED.value, Outcome.HUNG_UP.value):
        return p.CALL_DECLINED
    return p.UNREACHABLE


class MenuDirectory(Protocol):
    """The part of ``ivr.ports.Directory`` the menu reads."""

    async def facility(self, facility_id: str) -> Facility | None: ...

    async def card(self, number: str) -> Card | None: ...


class MenuRelatives(Protocol):
    """The part of ``ivr.ports.RelativeAccounts`` the menu reads and writes."""

    async def balance(self, phone: str) -> int | None: ...

    async def card_settings(self, phone: str, card: str) -> CardSettings | None: ...

    async def put_card_settings(self, phone: str, card: str, settings: CardSettings) -> None: ...


class OfferError(Exception):
    """The call cannot be offered (card, facility or account gone): not accepted."""


@dataclass(frozen=True)
class Offer:
    """What the relative is told, loaded once per call."""

    plan: CallPlan
    facility: Facility
    language: str  # the card's
    balance: int  # the relative's, this call's hold included (what they had before the call)

    def announcement(self, facility_item: str, name_item: str | None) -> list[str]:
        currency, lang = self.facility.currency, self.language
        return [
            p.CALLEE_INTRO, facility_item, *([name_item] if name_item else []),
            *([p.CALL_RECORDED] if self.plan.record else []),
            p.ACCEPT_PAID, *p.money(self.plan.rate, currency, lang), p.PER_MINUTE,
            p.YOUR_BALANCE, *p.money(self.balance, currency, lang),
        ]


class AcceptMenu:
    def __init__(self, directory: MenuDirectory, relatives: MenuRelatives) -> None:
        self.directory = directory
        self.relatives = relatives

    async def offer(self, plan: CallPlan) -> Offer:
        """The facts the relative hears; OfferError when one is missing."""
        card = await self.directory.card(plan.card)
        facility = await self.directory.facility(plan.facility_id)
        balance = await self.relatives.balance(plan.e164)
        if card is None or facility is None or balance is None:
            raise OfferError(f"call {plan.call_id}: card, facility or the relative's account is missing")
        return Offer(plan, facility, card.language, balance + plan.reserved)

    async def run(self, relative: Caller, offer: Offer, facility_item: str, name_item: str | None,
                  inmate_waits: Callable[[], Awaitable[bool]] | None = None) -> Outcome:
        """Say the offer and the menu until a decision (at most MENU_ROUNDS times).

        ``inmate_waits`` says whether the inmate is still on the line: asked
        before each announcement, before the menu and before accepting
        (CALLER_GONE when not).
        The relative hears the decision's last words from ``farewell``, after
        the adapter has recorded it (a hangup then changes nothing)."""
        relative.set_language(offer.language)
        call_id = offer.plan.call_id

        async def gone() -> bool:
            if inmate_waits is None or await inmate_waits():
                return False
            log.info("[%s] the inmate hung up during the relative's menu", call_id)
            return True

        for _ in range(MENU_ROUNDS):
            if await gone():
                return Outcome.CALLER_GONE
            # A key during the announcement counts (a relative who knows the
            # menu need not hear it all to the end); else the menu, and its wait.
            said = offer.announcement(facility_item, name_item)
            entry = await relative.ask(said[-1], 1, KEY_GAP_MS, preamble=said[:-1])
            if not entry.digits:
                if await gone():
                    return Outcome.CALLER_GONE
                entry = await relative.ask(p.ACCEPT_MENU, 1, MENU_TIMEOUT_MS)
            key = entry.digits[:1]
            if key == ACCEPT:
                if await gone():
                    return Outcome.CALLER_GONE
                log.info("[%s] the relative accepted", call_id)
                return Outcome.ACCEPTED
            if key == DECLINE:
                log.info("[%s] the relative declined (key 2)", call_id)
                return Outcome.DECLINED
            if key == BLOCK:
                await self.block(offer.plan)
                return Outcome.BLOCKED
            if not key and entry.timed_out:
                log.info("[%s] declined: no key in %d s", call_id, MENU_TIMEOUT_MS // 1000)
                return Outcome.DECLINED
            log.info("[%s] key %r: the offer again", call_id, key)
        log.info("[%s] declined: %d rounds without a decision", call_id, MENU_ROUNDS)
        return Outcome.DECLINED

    async def farewell(self, relative: Caller, outcome: Outcome) -> None:
        items = FAREWELL.get(outcome)
        if items:
            await relative.play(items)

    async def block(self, plan: CallPlan) -> None:
        """Block calls from the plan's card to this relative, keeping their other settings."""
        settings = await self.relatives.card_settings(plan.e164, plan.card) or CardSettings()
        await self.relatives.put_card_settings(plan.e164, plan.card, replace(settings, blocked=True))
        log.info("[%s] the relative blocked calls from card %s", plan.call_id, plan.card)
