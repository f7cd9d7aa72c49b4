"""The relative's own account: balance, ledger, per-card settings."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query

from api.deps import ApiDeps, current_phone, get_deps
from api.models import Balance, CardSettingsBody, Entry, Problem
from history.queries import newest_first
from ivr.relatives import CardSettings

log = logging.getLogger(__name__)

CardPath = Annotated[str, Path(pattern=r"^[0-9]{1,20}$")]


def router() -> APIRouter:
    r = APIRouter(prefix="/v1/me", tags=["me"], responses={401: {"model": Problem}})

    @r.get("/balance")
    async def balance(phone: str = Depends(current_phone), deps: ApiDeps = Depends(get_deps)) -> Balance:  # noqa: B008
        return Balance(phone=phone, balance=await deps.accounts.balance(phone) or 0)

    @r.get("/ledger")
    async def ledger(
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        phone: str = Depends(current_phone),
        deps: ApiDeps = Depends(get_deps),  # noqa: B008
    ) -> list[Entry]:
        """The account's movements, newest first: the history database's, joined with
        Redis' recent ones it has not copied yet (a movement just made is there)."""
        entries = await deps.accounts.entries(phone, limit)
        if deps.history is not None:
            entries = newest_first(entries, await deps.history.relative_ledger(phone, limit), limit)
        return [Entry(ts=e.ts, kind=e.kind, amount=e.amount, balance_after=e.balance_after, ref=e.ref, card=e.card)
                for e in entries]

    @r.get("/cards/{card}", responses={404: {"model": Problem}})
    async def get_card(card: CardPath, phone: str = Depends(current_phone),
                       deps: ApiDeps = Depends(get_deps)) -> CardSettingsBody:  # noqa: B008
        await _allowed(deps, phone, card)
        s = await deps.accounts.card_settings(phone, card) or CardSettings()
        return CardSettingsBody(always_in_touch=s.always_in_touch, cap_day=s.cap_day, cap_month=s.cap_month,
                                blocked=s.blocked)

    @r.put("/cards/{card}", responses={404: {"model": Problem}})
    async def put_card(card: CardPath, body: CardSettingsBody, phone: str = Depends(current_phone),
                       deps: ApiDeps = Depends(get_deps)) -> CardSettingsBody:  # noqa: B008
        """Always-in-touch on/off, caps per day and month (minor units, null: none), blocked."""
        await _allowed(deps, phone, card)
        await deps.accounts.put_card_settings(phone, card, CardSettings(
            always_in_touch=body.always_in_touch, cap_day=body.cap_day, cap_month=body.cap_month,
            blocked=body.blocked))
        log.info("phone %s: card %s settings %s", phone, card, body.model_dump())
        return body

    return r


async def _allowed(deps: ApiDeps, phone: str, card: str) -> None:
    """Only cards whose approved list holds the number; one answer for every other card."""
    if not await deps.accounts.card_allows(phone, card):
        raise HTTPException(404, "no card with this number on its list")
