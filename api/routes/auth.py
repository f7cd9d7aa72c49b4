"""Login: a one-time code by SMS, then a session token. The answers never say
whether the number has an account (every number can ask for a code)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from fastapi import APIRouter, Depends, HTTPException, Request

from api.deps import ApiDeps, get_deps
from api.models import CodeRequest, Problem, SessionAnswer, SessionRequest
from ivr.relatives import CODE_TTL_S, SESSION_TTL_S, code_hash, new_code, new_token, token_hash

log = logging.getLogger(__name__)

_REFUSED = {
    "wrong": "wrong code",
    "expired": "code expired or never sent: ask for a new one",
    "exhausted": "too many wrong tries for this code: ask for a new one",
}


def router() -> APIRouter:
    r = APIRouter(prefix="/v1/auth", tags=["auth"])

    @r.post("/code", status_code=202, responses={429: {"model": Problem}})
    async def send_code(body: CodeRequest, request: Request,
                        deps: ApiDeps = Depends(get_deps)) -> dict[str, object]:  # noqa: B008
        """Send a 6-digit code valid 5 minutes (at most 5 per hour per number, and
        20 per hour from one client address whatever the numbers; else 429 with Retry-After)."""
        client = request.client.host if request.client else "unknown"
        now = datetime.now(UTC)
        wait_s = await deps.codes.take_code_slot(client, now, deps.codes_per_client_hour)
        if wait_s:
            log.warning("client %s: code for %s refused, too many from this address this hour", client, body.phone)
            raise HTTPException(429, "too many codes asked from this address: try again later",
                                headers={"Retry-After": str(wait_s)})
        code = new_code()
        if not await deps.codes.issue_code(body.phone, code_hash(body.phone, code), now):
            log.warning("phone %s: code refused, too many this hour", body.phone)
            raise HTTPException(429, "too many codes for this number: try again later",
                                headers={"Retry-After": str(await deps.codes.code_wait(body.phone, now))})
        await deps.sms.send(body.phone, code)
        log.info("phone %s: code sent", body.phone)
        return {"sent": True, "expires_in": CODE_TTL_S}

    @r.post("/session", responses={401: {"model": Problem}})
    async def open_session(body: SessionRequest, deps: ApiDeps = Depends(get_deps)) -> SessionAnswer:  # noqa: B008
        """Trade a right code for a session token (send it as Authorization: Bearer)."""
        token = new_token()
        outcome = await deps.codes.check_code(body.phone, code_hash(body.phone, body.code), token_hash(token))
        if outcome != "ok":
            log.warning("phone %s: login refused (%s)", body.phone, outcome)
            raise HTTPException(401, _REFUSED.get(outcome, "wrong code"))
        log.info("phone %s: session opened", body.phone)
        return SessionAnswer(token=token, expires_in=SESSION_TTL_S)

    return r
