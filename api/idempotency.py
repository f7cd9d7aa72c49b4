"""Idempotency-Key on POSTs that move money: a repeat gets the first answer;
the same key with another request gets 422; a key still being served, 409."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from ivr.ports import Idempotency
from ivr.relatives import operation_id

log = logging.getLogger(__name__)

Action = Callable[[str], Awaitable[tuple[int, dict[str, object]]]]


def check_key(key: str) -> None:
    if not 1 <= len(key) <= 200 or not key.isascii() or not key.isprintable():
        raise HTTPException(422, "Idempotency-Key must be 1 to 200 printable ASCII characters")


async def once(store: Idempotency, phone: str, key: str, what: str, body: BaseModel, action: Action) -> JSONResponse:
    """Run ``action(op_id)`` once per (phone, key); store and replay its answer.
    A server error leaves no record, so the client may retry with the same key."""
    check_key(key)
    op_id = operation_id(phone, key)
    fingerprint = hashlib.sha256(f"{what}\x00{json.dumps(body.model_dump(), sort_keys=True)}".encode()).hexdigest()
    state, status, stored = await store.begin(op_id, fingerprint)
    if state == "done":
        log.info("op %s: repeat of %s answered from the record", op_id, what)
        return JSONResponse(json.loads(stored), status_code=status, headers={"Idempotent-Replayed": "true"})
    if state == "mismatch":
        log.warning("op %s: Idempotency-Key reused for another request (%s)", op_id, what)
        raise HTTPException(422, "Idempotency-Key already used for another request")
    if state == "busy":
        raise HTTPException(409, "a request with this Idempotency-Key is in progress")
    try:
        status, answer = await action(op_id)
    except BaseException:
        await store.abandon(op_id)
        raise
    await store.finish(op_id, status, json.dumps(answer))
    return JSONResponse(answer, status_code=status)
