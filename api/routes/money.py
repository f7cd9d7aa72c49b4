"""POSTs that move money: top-up, transfer to a card, refund. Each needs an
Idempotency-Key; the store's operation id is derived from it."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Header
from fastapi.responses import JSONResponse

from api.deps import ApiDeps, current_phone, get_deps
from api.idempotency import once
from api.models import (
    BadRequest,
    PayoutAnswer,
    Problem,
    RefundRequest,
    TopupAnswer,
    TopupRequest,
    TransferAnswer,
    TransferRequest,
)
from ivr.errors import InsufficientFunds, NotFound, StoreConflict

log = logging.getLogger(__name__)

IdemKey = Annotated[str, Header(alias="Idempotency-Key", description="one per intended movement")]
_ERRORS: dict[int | str, dict[str, object]] = {401: {"model": Problem}, 404: {"model": Problem},
                                               409: {"model": Problem}, 422: {"model": BadRequest}}


def router() -> APIRouter:
    r = APIRouter(prefix="/v1/me", tags=["money"], responses=_ERRORS)

    @r.post("/topups", status_code=201, response_model=TopupAnswer)
    async def topup(body: TopupRequest, key: IdemKey, phone: str = Depends(current_phone),
                    deps: ApiDeps = Depends(get_deps)) -> JSONResponse:  # noqa: B008
        """Open a payment at the provider; its webhook credits the balance."""
        async def act(op_id: str) -> tuple[int, dict[str, object]]:
            payment_id = await deps.provider.create_payment(phone, body.amount)
            await deps.accounts.create_payment(payment_id, phone, body.amount)
            log.info("op %s phone %s: payment %s of %d opened", op_id, phone, payment_id, body.amount)
            return 201, {"payment_id": payment_id, "amount": body.amount, "status": "pending"}
        return await once(deps.idempotency, phone, key, "topup", body, act)

    @r.post("/transfers", status_code=201, response_model=TransferAnswer)
    async def transfer(body: TransferRequest, key: IdemKey, phone: str = Depends(current_phone),
                       deps: ApiDeps = Depends(get_deps)) -> JSONResponse:  # noqa: B008
        """Move money to a card whose approved list holds this number."""
        async def act(op_id: str) -> tuple[int, dict[str, object]]:
            try:
                done = await deps.accounts.transfer(op_id, phone, body.card, body.amount)
            except InsufficientFunds:
                log.info("op %s phone %s: transfer of %d refused, balance too low", op_id, phone, body.amount)
                return 409, {"detail": "insufficient funds"}
            except NotFound:
                return 404, {"detail": "no card with this number on its list"}
            except StoreConflict:
                return 422, {"detail": "Idempotency-Key already used for another request"}
            log.info("op %s phone %s: %d moved to card %s", op_id, phone, body.amount, body.card)
            return 201, {"card": done.card, "amount": done.amount, "balance": done.balance_after}
        return await once(deps.idempotency, phone, key, "transfer", body, act)

    @r.post("/refunds", status_code=201, response_model=PayoutAnswer)
    async def refund(body: RefundRequest, key: IdemKey, phone: str = Depends(current_phone),
                     deps: ApiDeps = Depends(get_deps)) -> JSONResponse:  # noqa: B008
        """Ask unspent money back: it leaves the balance now; staff pay the payout."""
        async def act(op_id: str) -> tuple[int, dict[str, object]]:
            try:
                payout = await deps.accounts.refund(op_id, phone, body.amount)
            except InsufficientFunds:
                return 409, {"detail": "insufficient funds"}
            except NotFound:
                return 404, {"detail": "no account"}
            except StoreConflict:
                return 422, {"detail": "Idempotency-Key already used for another request"}
            log.info("op %s phone %s: refund of %d, payout %s", op_id, phone, body.amount, payout.id)
            return 201, {"payout_id": payout.id, "amount": payout.amount, "status": payout.status}
        return await once(deps.idempotency, phone, key, "refund", body, act)

    return r
