"""The relatives' API through a real uvicorn on 127.0.0.1, a real Redis and httpx."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from api.main import build_from
from api.payments import SIGNATURE_HEADER, TIMESTAMP_HEADER, TOLERANCE_S, sign
from ivr.model import AllowedNumber
from ivr.relatives import CODES_PER_CLIENT_HOUR, CODES_PER_HOUR, MAX_AMOUNT, TRIES_PER_CODE
from store.redis_store import RedisStore
from tests.component.conftest import RedisServer, _free_port
from tests.component.pgserver import PostgresServer, postgres  # noqa: F401
from tests.component.test_redis_store import CARD, balance, provision

PHONE = "+79161234567"
OTHER = "+79031234567"
SECRET = "w" * 64
START_TIMEOUT_S = 10.0


class Api:
    def __init__(self, url: str, sms_log: Path) -> None:
        self.url = url
        self.sms_log = sms_log

    def last_code(self, phone: str) -> str:
        lines = [ln.split() for ln in self.sms_log.read_text().splitlines()]
        return [code for p, code in lines if p == phone][-1]


@contextlib.contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """``app`` under a real uvicorn on 127.0.0.1 (a thread); its base URL."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(START_TIMEOUT_S)


@pytest.fixture(scope="module")
def api_server(redis_server: RedisServer, postgres: PostgresServer,  # noqa: F811
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    sms_log = tmp_path_factory.mktemp("api") / "sms.log"
    with serving(build_from(redis_server.url, sms_log, SECRET, postgres_url=postgres.url)) as url:
        yield Api(url, sms_log)


@pytest.fixture
async def http(api_server: Api, flushed: RedisServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api_server.url, timeout=10) as client:
        yield client


async def login(http: httpx.AsyncClient, api: Api, phone: str = PHONE) -> dict[str, str]:
    assert (await http.post("/v1/auth/code", json={"phone": phone})).status_code == 202
    r = await http.post("/v1/auth/session", json={"phone": phone, "code": api.last_code(phone)})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def webhook(payment_id: str, amount: int, ts: int | None = None, secret: str = SECRET,
            status: str = "succeeded") -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"payment_id": payment_id, "amount": amount, "status": status}).encode()
    stamp = str(int(time.time()) if ts is None else ts)
    return body, {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: sign(secret, stamp, body),
                  "Content-Type": "application/json"}


async def top_up(http: httpx.AsyncClient, auth: dict[str, str], amount: int, key: str) -> str:
    r = await http.post("/v1/me/topups", json={"amount": amount}, headers={**auth, "Idempotency-Key": key})
    assert r.status_code == 201, r.text
    payment_id: str = r.json()["payment_id"]
    body, headers = webhook(payment_id, amount)
    r = await http.post("/v1/webhooks/payments", content=body, headers=headers)
    assert r.status_code == 200 and r.json()["credited"] is True, r.text
    return payment_id


async def my_balance(http: httpx.AsyncClient, auth: dict[str, str]) -> int:
    r = await http.get("/v1/me/balance", headers=auth)
    assert r.status_code == 200, r.text
    value: int = r.json()["balance"]
    return value


# --- login -------------------------------------------------------------------


async def test_login_flow(http: httpx.AsyncClient, api_server: Api) -> None:
    assert (await http.get("/v1/me/balance")).status_code == 401
    assert (await http.get("/v1/me/balance", headers={"Authorization": "Bearer nope"})).status_code == 401
    r = await http.post("/v1/auth/code", json={"phone": PHONE})
    assert r.status_code == 202
    code = api_server.last_code(PHONE)
    assert len(code) == 6 and code.isdigit()
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    r = await http.post("/v1/auth/session", json={"phone": PHONE, "code": wrong})
    assert r.status_code == 401 and r.json()["detail"] == "wrong code"
    r = await http.post("/v1/auth/session", json={"phone": PHONE, "code": code})
    assert r.status_code == 200
    token = r.json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    assert await my_balance(http, auth) == 0
    assert (await http.get("/v1/me/ledger", headers=auth)).json() == []
    # the code was used up
    r = await http.post("/v1/auth/session", json={"phone": PHONE, "code": code})
    assert r.status_code == 401 and "expired" in r.json()["detail"]


async def test_secrets_are_stored_hashed(http: httpx.AsyncClient, api_server: Api, store: RedisStore) -> None:
    auth = await login(http, api_server)
    token = auth["Authorization"].split()[1]
    dump = []
    async for key in store.redis.scan_iter("kl:*"):
        kind = await store.redis.type(key)
        value = await store.redis.get(key) if kind == "string" else await store.redis.hgetall(key) \
            if kind == "hash" else ""
        dump.append(f"{key}={value}")
    assert not any(token in d for d in dump)
    assert any(d.startswith("kl:session:") and d.endswith(f"={PHONE}") for d in dump)


async def test_code_answer_never_reveals_an_account(http: httpx.AsyncClient, api_server: Api) -> None:
    await login(http, api_server, PHONE)  # PHONE has an account now, OTHER has none
    known = await http.post("/v1/auth/code", json={"phone": PHONE})
    unknown = await http.post("/v1/auth/code", json={"phone": OTHER})
    assert (known.status_code, known.json()) == (unknown.status_code, unknown.json()) == (202, known.json())
    for phone in (PHONE, OTHER):
        r = await http.post("/v1/auth/session", json={"phone": phone, "code": "000000"
                            if api_server.last_code(phone) != "000000" else "000001"})
        assert (r.status_code, r.json()) == (401, {"detail": "wrong code"})


async def test_expired_code_says_so(http: httpx.AsyncClient, api_server: Api, store: RedisStore) -> None:
    assert (await http.post("/v1/auth/code", json={"phone": PHONE})).status_code == 202
    code = api_server.last_code(PHONE)
    assert 0 < await store.redis.pttl(f"kl:auth:code:{PHONE}") <= 300_000  # valid 5 min
    await store.redis.pexpire(f"kl:auth:code:{PHONE}", 1)
    await asyncio.sleep(0.05)
    r = await http.post("/v1/auth/session", json={"phone": PHONE, "code": code})
    assert r.status_code == 401 and "expired" in r.json()["detail"]


async def test_at_most_five_codes_an_hour(http: httpx.AsyncClient, api_server: Api) -> None:
    for _ in range(CODES_PER_HOUR):
        assert (await http.post("/v1/auth/code", json={"phone": PHONE})).status_code == 202
    sent = len(api_server.sms_log.read_text().splitlines())
    r = await http.post("/v1/auth/code", json={"phone": PHONE})
    assert r.status_code == 429 and 3590 <= int(r.headers["Retry-After"]) <= 3600
    assert len(api_server.sms_log.read_text().splitlines()) == sent  # no SMS for the refused one
    assert (await http.post("/v1/auth/code", json={"phone": OTHER})).status_code == 202


async def test_five_tries_per_code(http: httpx.AsyncClient, api_server: Api) -> None:
    assert (await http.post("/v1/auth/code", json={"phone": PHONE})).status_code == 202
    code = api_server.last_code(PHONE)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for _ in range(TRIES_PER_CODE):
        r = await http.post("/v1/auth/session", json={"phone": PHONE, "code": wrong})
        assert r.status_code == 401 and r.json()["detail"] == "wrong code"
    r = await http.post("/v1/auth/session", json={"phone": PHONE, "code": code})
    assert r.status_code == 401 and "too many" in r.json()["detail"]


async def test_codes_per_client_address(http: httpx.AsyncClient, api_server: Api) -> None:
    """One client cannot spray codes over many numbers: CODES_PER_CLIENT_HOUR an hour
    from an address (behind the trusted proxy, X-Forwarded-For names it), then 429."""
    spammer = {"X-Forwarded-For": "203.0.113.7"}
    for i in range(CODES_PER_CLIENT_HOUR):
        r = await http.post("/v1/auth/code", json={"phone": f"+7916000{i:04d}"}, headers=spammer)
        assert r.status_code == 202, r.text
    sent = len(api_server.sms_log.read_text().splitlines())
    r = await http.post("/v1/auth/code", json={"phone": "+79169999999"}, headers=spammer)
    assert r.status_code == 429 and "address" in r.json()["detail"]
    assert 3590 <= int(r.headers["Retry-After"]) <= 3600
    assert len(api_server.sms_log.read_text().splitlines()) == sent  # no SMS
    r = await http.post("/v1/auth/code", json={"phone": "+79169999999"}, headers={"X-Forwarded-For": "203.0.113.8"})
    assert r.status_code == 202


@pytest.mark.parametrize("body", [{"phone": "79161234567"}, {"phone": "+7"}, {"phone": 79161234567}, {}])
async def test_bad_phone_is_422(http: httpx.AsyncClient, body: dict[str, object]) -> None:
    assert (await http.post("/v1/auth/code", json=body)).status_code == 422


# --- top-up and webhook ------------------------------------------------------


async def test_topup_credited_once_by_the_webhook(http: httpx.AsyncClient, api_server: Api,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    auth = await login(http, api_server)
    r = await http.post("/v1/me/topups", json={"amount": 5000}, headers=auth)
    assert r.status_code == 422  # no Idempotency-Key
    r = await http.post("/v1/me/topups", json={"amount": 5000}, headers={**auth, "Idempotency-Key": "t1"})
    assert r.status_code == 201 and r.json()["status"] == "pending"
    payment_id = r.json()["payment_id"]
    assert await my_balance(http, auth) == 0  # nothing until the provider says paid

    caplog.set_level(logging.WARNING, logger="api")
    for bad_headers in (
        webhook(payment_id, 5000, secret="x" * 64)[1],  # wrong secret
        webhook(payment_id, 5000, ts=int(time.time()) - TOLERANCE_S - 5)[1],  # stale
        {"Content-Type": "application/json"},  # unsigned
    ):
        body = webhook(payment_id, 5000)[0]
        r = await http.post("/v1/webhooks/payments", content=body, headers=bad_headers)
        assert r.status_code == 401, r.text
    body, headers = webhook(payment_id, 5000)
    r = await http.post("/v1/webhooks/payments", content=body.replace(b"5000", b"9000"), headers=headers)
    assert r.status_code == 401  # body changed after signing
    assert sum("webhook from 127.0.0.1 refused" in rec.getMessage() for rec in caplog.records) == 4
    assert await my_balance(http, auth) == 0

    for _ in range(3):  # the provider retries: one credit
        r = await http.post("/v1/webhooks/payments", content=body, headers=headers)
        assert r.status_code == 200
    assert await my_balance(http, auth) == 5000
    ledger = (await http.get("/v1/me/ledger", headers=auth)).json()
    assert [(e["kind"], e["amount"], e["balance_after"], e["ref"]) for e in ledger] == [
        ("topup", 5000, 5000, payment_id)]
    # a signed webhook for a payment we never opened, or with another amount
    r = await http.post("/v1/webhooks/payments", content=(w := webhook("fake_unknown", 5000))[0], headers=w[1])
    assert r.status_code == 404
    r = await http.post("/v1/webhooks/payments", content=(w := webhook(payment_id, 4999))[0], headers=w[1])
    assert r.status_code == 409
    assert await my_balance(http, auth) == 5000


# --- transfers ---------------------------------------------------------------


async def test_transfer_to_a_card_that_lists_the_number(http: httpx.AsyncClient, api_server: Api,
                                                        store: RedisStore) -> None:
    await provision(store, balance=100)
    auth = await login(http, api_server)
    await top_up(http, auth, 3000, "t1")
    r = await http.post("/v1/me/transfers", json={"card": CARD, "amount": 1000},
                        headers={**auth, "Idempotency-Key": "x1"})
    assert r.status_code == 404  # not on the card's list
    await store.allow_number(CARD, AllowedNumber(PHONE, "Mother", False))
    r = await http.post("/v1/me/transfers", json={"card": CARD, "amount": 1000},
                        headers={**auth, "Idempotency-Key": "x2"})
    assert r.status_code == 201 and r.json() == {"card": CARD, "amount": 1000, "balance": 2000}
    assert await balance(store) == 1100
    r = await http.post("/v1/me/transfers", json={"card": "9999", "amount": 1},
                        headers={**auth, "Idempotency-Key": "x3"})
    assert r.status_code == 404


async def test_transfer_race_never_overdraws(http: httpx.AsyncClient, api_server: Api, store: RedisStore) -> None:
    await provision(store)
    await store.allow_number(CARD, AllowedNumber(PHONE, "Mother", False))
    auth = await login(http, api_server)
    await top_up(http, auth, 1000, "t1")
    answers = await asyncio.gather(*(
        http.post("/v1/me/transfers", json={"card": CARD, "amount": 600}, headers={**auth, "Idempotency-Key": k})
        for k in ("race-a", "race-b")))
    assert sorted(a.status_code for a in answers) == [201, 409]
    assert await my_balance(http, auth) == 400
    assert await balance(store) == 600


# --- idempotency and amounts -------------------------------------------------


async def test_idempotency_repeat_and_mismatch(http: httpx.AsyncClient, api_server: Api, store: RedisStore) -> None:
    await provision(store)
    await store.allow_number(CARD, AllowedNumber(PHONE, "Mother", False))
    auth = await login(http, api_server)
    await top_up(http, auth, 1000, "t1")
    headers = {**auth, "Idempotency-Key": "same"}
    first = await http.post("/v1/me/transfers", json={"card": CARD, "amount": 300}, headers=headers)
    again = await http.post("/v1/me/transfers", json={"card": CARD, "amount": 300}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json() and again.headers.get("Idempotent-Replayed") == "true"
    assert await my_balance(http, auth) == 700 and await balance(store) == 300
    other = await http.post("/v1/me/transfers", json={"card": CARD, "amount": 301}, headers=headers)
    assert other.status_code == 422
    elsewhere = await http.post("/v1/me/refunds", json={"amount": 300}, headers=headers)
    assert elsewhere.status_code == 422
    assert await my_balance(http, auth) == 700
    # a refused answer is the first answer too
    poor = {**auth, "Idempotency-Key": "poor"}
    assert (await http.post("/v1/me/transfers", json={"card": CARD, "amount": 5000}, headers=poor)).status_code == 409
    await top_up(http, auth, 9000, "t2")
    assert (await http.post("/v1/me/transfers", json={"card": CARD, "amount": 5000}, headers=poor)).status_code == 409
    # the same key from another relative is another operation
    auth2 = await login(http, api_server, OTHER)
    r = await http.post("/v1/me/refunds", json={"amount": 1}, headers={**auth2, "Idempotency-Key": "same"})
    assert r.status_code == 409  # OTHER has no money: refused on its own merits, not as a mismatch


@pytest.mark.parametrize("amount", [0, -1, 1.5, "100", MAX_AMOUNT + 1, 10**30, True, None])
async def test_bad_amounts_are_422(http: httpx.AsyncClient, api_server: Api, amount: object) -> None:
    auth = await login(http, api_server)
    for path, body in (("/v1/me/topups", {"amount": amount}), ("/v1/me/refunds", {"amount": amount}),
                       ("/v1/me/transfers", {"card": CARD, "amount": amount})):
        r = await http.post(path, json=body, headers={**auth, "Idempotency-Key": f"k-{path}"})
        assert r.status_code == 422, (path, amount, r.text)


# --- settings and refunds ----------------------------------------------------


async def test_card_settings_and_caps(http: httpx.AsyncClient, api_server: Api, store: RedisStore) -> None:
    await provision(store)
    auth = await login(http, api_server)
    settings = {"always_in_touch": True, "cap_day": 30000, "cap_month": 200000, "blocked": False}
    assert (await http.put(f"/v1/me/cards/{CARD}", json=settings, headers=auth)).status_code == 404
    await store.allow_number(CARD, AllowedNumber(PHONE, "Mother", False))
    assert (await http.get(f"/v1/me/cards/{CARD}", headers=auth)).json() == {
        "always_in_touch": False, "cap_day": None, "cap_month": None, "blocked": False}
    r = await http.put(f"/v1/me/cards/{CARD}", json=settings, headers=auth)
    assert r.status_code == 200 and r.json() == settings
    assert (await http.get(f"/v1/me/cards/{CARD}", headers=auth)).json() == settings
    for bad in ({"cap_day": 0}, {"cap_day": -5}, {"cap_month": 1.5}, {"cap_day": "100"},
                {"blocked": "yes"}, {"cap_day": MAX_AMOUNT + 1}, {"surprise": 1}):
        r = await http.put(f"/v1/me/cards/{CARD}", json={**settings, **bad}, headers=auth)
        assert r.status_code == 422, bad
    blocked = {**settings, "blocked": True, "cap_day": None}
    assert (await http.put(f"/v1/me/cards/{CARD}", json=blocked, headers=auth)).json() == blocked
    assert (await http.get(f"/v1/me/cards/{CARD}", headers=auth)).json() == blocked
    auth2 = await login(http, api_server, OTHER)  # another relative sees nothing of it
    assert (await http.get(f"/v1/me/cards/{CARD}", headers=auth2)).status_code == 404


async def test_refund_of_unspent_money(http: httpx.AsyncClient, api_server: Api) -> None:
    auth = await login(http, api_server)
    await top_up(http, auth, 2500, "t1")
    r = await http.post("/v1/me/refunds", json={"amount": 2501}, headers={**auth, "Idempotency-Key": "r0"})
    assert r.status_code == 409
    r = await http.post("/v1/me/refunds", json={"amount": 2000}, headers={**auth, "Idempotency-Key": "r1"})
    assert r.status_code == 201 and r.json()["status"] == "requested" and r.json()["amount"] == 2000
    assert await my_balance(http, auth) == 500
    ledger = (await http.get("/v1/me/ledger", headers=auth)).json()
    assert [(e["kind"], e["amount"], e["balance_after"]) for e in ledger] == [
        ("refund", 2000, 500), ("topup", 2500, 2500)]


async def test_openapi_lists_v1(http: httpx.AsyncClient) -> None:
    spec = (await http.get("/openapi.json")).json()
    assert all(p.startswith("/v1/") for p in spec["paths"])
    assert {"/v1/auth/code", "/v1/auth/session", "/v1/me/balance", "/v1/me/ledger", "/v1/me/topups",
            "/v1/me/transfers", "/v1/me/refunds", "/v1/me/cards/{card}", "/v1/webhooks/payments"} <= set(spec["paths"])


# --- schemathesis: the OpenAPI spec against the live server ------------------

FUZZ_EXAMPLES = 25  # per operation
FUZZ_TIME_LIMIT_S = 90.0  # operations not reached by then are skipped (the run stays bounded)


def _checks() -> list[object]:
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )
    return [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_schemathesis_finds_no_server_error(api_server: Api, flushed: RedisServer) -> None:
    """Every operation of /openapi.json with generated (valid and invalid) input,
    logged in as a relative with money and a card: never a 5xx."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    with httpx.Client(base_url=api_server.url, timeout=10) as client:
        assert client.post("/v1/auth/code", json={"phone": PHONE}).status_code == 202
        r = client.post("/v1/auth/session", json={"phone": PHONE, "code": api_server.last_code(PHONE)})
        auth = {"Authorization": f"Bearer {r.json()['token']}"}
        r = client.post("/v1/me/topups", json={"amount": 10**6}, headers={**auth, "Idempotency-Key": "seed"})
        body, headers = webhook(r.json()["payment_id"], 10**6)
        assert client.post("/v1/webhooks/payments", content=body, headers=headers).json()["credited"] is True

    schema = schemathesis.openapi.from_url(f"{api_server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    started = time.monotonic()
    errors: list[str] = []
    CHECKS = _checks()
    tried = 0
    for operation in operations:
        if time.monotonic() - started > FUZZ_TIME_LIMIT_S:
            break
        tried += 1

        @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=api_server.url, headers=auth, timeout=10, checks=CHECKS)

        try:
            run()
        except (Exception, BaseExceptionGroup) as err:
            errors.append(f"{operation.method.upper()} {operation.path}: {str(err)[:800]}")
    assert tried == len(operations), f"only {tried} of {len(operations)} operations in {FUZZ_TIME_LIMIT_S} s"
    assert not errors, "\n\n".join(errors)


async def test_session_expires(http: httpx.AsyncClient, api_server: Api, store: RedisStore) -> None:
    from ivr.relatives import SESSION_TTL_S, token_hash

    auth = await login(http, api_server)
    key = f"kl:session:{token_hash(auth['Authorization'].split()[1])}"
    assert 0 < await store.redis.ttl(key) <= SESSION_TTL_S
    await store.redis.pexpire(key, 1)
    await asyncio.sleep(0.05)
    assert (await http.get("/v1/me/balance", headers=auth)).status_code == 401


async def test_fake_provider_pays_a_payment(http: httpx.AsyncClient, api_server: Api, tmp_path: Path) -> None:
    from api import fake_provider

    auth = await login(http, api_server)
    r = await http.post("/v1/me/topups", json={"amount": 700}, headers={**auth, "Idempotency-Key": "fp"})
    secrets_file = tmp_path / "secrets.toml"
    secrets_file.write_text(f'payment_webhook_secret = "{SECRET}"\n')
    argv = [r.json()["payment_id"], "700", "--url", api_server.url, "--secrets", str(secrets_file)]
    assert await asyncio.to_thread(fake_provider.main, argv) == 0
    assert await my_balance(http, auth) == 700
    secrets_file.write_text(f'payment_webhook_secret = "{"z" * 64}"\n')
    assert await asyncio.to_thread(fake_provider.main, argv) == 1  # wrong secret: 401


def test_store_down_is_503_and_moves_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Redis unreachable: every request is refused with 503 (no SMS sent), logged."""
    sms_log = tmp_path / "sms.log"
    caplog.set_level(logging.ERROR, logger="api")
    with serving(build_from(f"redis://127.0.0.1:{_free_port()}/0", sms_log, SECRET)) as url, \
            httpx.Client(base_url=url, timeout=15) as client:
        r = client.post("/v1/auth/code", json={"phone": PHONE})
        assert r.status_code == 503 and r.headers["Retry-After"] == "5"
        assert client.get("/v1/me/balance", headers={"Authorization": "Bearer x"}).status_code == 503
        body, headers = webhook("fake_x", 100)
        assert client.post("/v1/webhooks/payments", content=body, headers=headers).status_code == 503
    assert not sms_log.exists()
    assert any("store unavailable" in rec.getMessage() for rec in caplog.records)
