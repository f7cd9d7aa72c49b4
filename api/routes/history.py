"""The relative's call history: calls to their number, whoever paid (the card or they)."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel

from api.deps import ApiDeps, current_phone, get_deps
from api.models import Problem

log = logging.getLogger(__name__)


class CallInfo(BaseModel):
    call_id: str
    card: str
    payer: str  # "caller": the card paid; "callee": this number's account paid
    route_kind: str
    started_at: datetime
    connected_at: datetime | None
    ended_at: datetime | None
    answered_s: int
    billed_s: int
    amount: int  # minor units charged to the payer
    dial_status: str
    credit_reason: str  # why less than the answered time was billed ("" if not)


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), UTC)


def router() -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["history"], responses={401: {"model": Problem}, 503: {"model": Problem}})

    @r.get("/calls")
    async def calls(
        since: Annotated[date | None, Query(alias="from", description="first day (UTC), inclusive")] = None,
        until: Annotated[date | None, Query(alias="to", description="last day (UTC), inclusive")] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        phone: str = Depends(current_phone),
        deps: ApiDeps = Depends(get_deps),  # noqa: B008
    ) -> list[CallInfo]:
        """Calls to the logged-in number, newest first, both payers; optionally between two days."""
        if deps.history is None:
            raise HTTPException(503, "call history unavailable", headers={"Retry-After": "5"})
        if since is not None and until is not None and since > until:
            raise HTTPException(422, "from is after to")
        if (since and since.year >= 9999) or (until and until.year >= 9999):
            raise HTTPException(422, "date out of range")
        rows = await deps.history.calls(number=phone, since=day_start(since) if since else None,
                                        until=day_start(until) + timedelta(days=1) if until else None, limit=limit)
        return [CallInfo(call_id=c.call_id, card=c.card, payer=c.payer, route_kind=c.route_kind,
                         started_at=c.started_at, connected_at=c.connected_at, ended_at=c.ended_at,
                         answered_s=c.answered_s, billed_s=c.billed_s, amount=c.amount, dial_status=c.dial_status,
                         credit_reason=c.credit_reason)
                for c in rows]

    return r
