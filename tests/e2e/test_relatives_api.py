"""The relatives' API as the stack runs it (tools/stack.py service "api"): its port,
the services' Redis user from the environment, the webhook secret from the stack's
secrets file, the dev SMS log in the state folder. A relative logs in, tops up
through the signed webhook and moves money to an inmate's card."""

from __future__ import annotations

import json
import secrets
import time

import httpx
import pytest

from api.payments import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from ivr.model import AllowedNumber, Inmate, InmateStatus
from store.redis_store import RedisStore
from tests.e2e.conftest import E2E
from tools.config import load_secrets

pytestmark = pytest.mark.e2e


async def test_relative_tops_up_and_pays_a_card(e2e: E2E, store: RedisStore) -> None:
    config = e2e.config
    phone = f"+7916{secrets.randbelow(10**7):07d}"
    card = str(secrets.randbelow(9 * 10**9) + 10**9)
    await store.put_inmate(Inmate(f"inmate-{card}", "Test Inmate", "open", InmateStatus.CONVICTED))
    await store.create_card(card, f"inmate-{card}", "open", "2468", "en")
    await store.allow_number(card, AllowedNumber(phone, "Mother"))
    async with httpx.AsyncClient(base_url=f"http://{config.host}:{config.api_port}", timeout=10) as http:
        assert (await http.post("/v1/auth/code", json={"phone": phone})).status_code == 202
        lines = config.path("logs", "sms.log").read_text().splitlines()
        code = [ln.split()[1] for ln in lines if ln.split()[0] == phone][-1]
        r = await http.post("/v1/auth/session", json={"phone": phone, "code": code})
        assert r.status_code == 200, r.text
        auth = {"Authorization": f"Bearer {r.json()['token']}"}

        r = await http.post("/v1/me/topups", json={"amount": 15000}, headers={**auth, "Idempotency-Key": "t1"})
        assert r.status_code == 201, r.text
        body = json.dumps({"payment_id": r.json()["payment_id"], "amount": 15000, "status": "succeeded"}).encode()
        stamp = str(int(time.time()))
        secret = load_secrets(config).payment_webhook_secret
        r = await http.post("/v1/webhooks/payments", content=body, headers={
            TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: sign(secret, stamp, body), "Content-Type": "application/json"})
        assert r.status_code == 200 and r.json()["credited"] is True, r.text

        r = await http.post("/v1/me/transfers", json={"card": card, "amount": 5000},
                            headers={**auth, "Idempotency-Key": "x1"})
        assert r.status_code == 201, r.text
        assert (await http.get("/v1/me/balance", headers=auth)).json()["balance"] == 10000
    fresh = await store.card(card)
    assert fresh is not None and fresh.balance == 5000
