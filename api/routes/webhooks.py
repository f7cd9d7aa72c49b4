"""The payment provider's webhook: signed, fresh, idempotent by its payment id."""

from __future__ import annotations

import logging
import time

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import ValidationError

from api.deps import ApiDeps, get_deps
from api.models import BadRequest, Problem, WebhookBody
from api.payments import SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureError, verify
from ivr.errors import NotFound, StoreConflict

log = logging.getLogger(__name__)

_BODY = {"requestBody": {"required": True,
                         "content": {"application/json": {"schema": WebhookBody.model_json_schema()}}}}


def router() -> APIRouter:
    r = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

    @r.post("/payments", openapi_extra=_BODY,
            responses={401: {"model": Problem}, 404: {"model": Problem}, 409: {"model": Problem},
                       422: {"model": BadRequest}})
    async def payment(request: Request, deps: ApiDeps = Depends(get_deps)) -> dict[str, object]:  # noqa: B008
        """HMAC-SHA256 over "<Webhook-Timestamp>.<raw body>" in Webhook-Signature (hex), 300 s tolerance."""
        raw = await request.body()
        try:
            verify(deps.webhook_secret, request.headers.get(TIMESTAMP_HEADER),
                   request.headers.get(SIGNATURE_HEADER), raw, time.time())
        except SignatureError as err:
            log.warning("webhook from %s refused: %s", request.client.host if request.client else "?", err.reason)
            raise HTTPException(401, f"signature refused: {err.reason}") from err
        try:
            body = WebhookBody.model_validate_json(raw)
        except ValidationError as err:
            raise HTTPException(422, "bad webhook body") from err
        if body.status != "succeeded":
            log.info("payment %s: provider says %s, nothing credited", body.payment_id, body.status)
            return {"payment_id": body.payment_id, "credited": False}
        try:
            credited, _ = await deps.accounts.credit_payment(body.payment_id, body.amount)
        except NotFound as err:
            log.warning("payment %s: webhook for an unknown payment", body.payment_id)
            raise HTTPException(404, "unknown payment") from err
        except StoreConflict as err:
            log.warning("payment %s: webhook amount %d disagrees with the payment", body.payment_id, body.amount)
            raise HTTPException(409, "amount differs from the payment's") from err
        log.info("payment %s: %s", body.payment_id, "credited" if credited else "already credited (replay)")
        return {"payment_id": body.payment_id, "credited": credited}

    return r
