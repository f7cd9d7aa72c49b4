"""The relatives' API as the stack runs it (tools/stack.py service "api"): a real
uvicorn on the stack's API port, the stack's Redis (the services' user, from the
environment), the webhook secret from the stack's secrets file and the dev SMS log
in the state folder. httpx talks to it over TCP, as a relative's app would.

Each login names its own client address in X-Forwarded-For (the API trusts it
from 127.0.0.1, where the TLS proxy runs), as relatives come from many addresses:
the limit of codes per address is tested on its own.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest

from api.payments import SIGNATURE_HEADER, TIMESTAMP_HEADER, TOLERANCE_S, sign
from ivr.model import AllowedNumber, CallRecord, Inmate, InmateStatus
from ivr.pin import PinHasher
from ivr.relatives import CODES_PER_CLIENT_HOUR, MAX_AMOUNT
from store.redis_store import RedisStore
from store.relatives import RelativeStore
from tests.e2e.conftest import E2E
from tools.config import load_secrets

pytestmark = pytest.mark.e2e

_addresses = (f"198.18.{n // 250}.{n % 250 + 1}" for n in itertools.count())  # RFC 2544 benchmarking range
FUZZ_EXAMPLES = 40  # per operation
FUZZ_TIME_LIMIT_S = 50.0


def new_phone() -> str:
    return f"+7916{secrets.randbelow(10**7):07d}"


@dataclass
class Relative:
    http: httpx.AsyncClient
    phone: str
    auth: dict[str, str]

    def key(self, name: str) -> dict[str, str]:
        return {**self.auth, "Idempotency-Key": f"{name}-{secrets.token_hex(4)}"}

    async def balance(self) -> int:
        r = await self.http.get("/v1/me/balance", headers=self.auth)
        assert r.status_code == 200, r.text
        value: int = r.json()["balance"]
        return value

    async def ledger(self) -> list[dict[str, object]]:
        r = await self.http.get("/v1/me/ledger", params={"limit": 200}, headers=self.auth)
        assert r.status_code == 200, r.text
        entries: list[dict[str, object]] = r.json()
        return entries


class Api:
    def __init__(self, e2e: E2E, http: httpx.AsyncClient) -> None:
        self.config = e2e.config
        self.http = http
        self.secret = load_secrets(e2e.config).payment_webhook_secret

    def last_code(self, phone: str) -> str:
        lines = [ln.split() for ln in self.config.path("logs", "sms.log").read_text().splitlines()]
        return [code for p, code in lines if p == phone][-1]

    async def ask_code(self, phone: str, client: str | None = None) -> httpx.Response:
        return await self.http.post("/v1/auth/code", json={"phone": phone},
                                    headers={"X-Forwarded-For": client or next(_addresses)})

    async def login(self, phone: str | None = None) -> Relative:
        phone = phone or new_phone()
        assert (await self.ask_code(phone)).status_code == 202
        r = await self.http.post("/v1/auth/session", json={"phone": phone, "code": self.last_code(phone)})
        assert r.status_code == 200, r.text
        return Relative(self.http, phone, {"Authorization": f"Bearer {r.json()['token']}"})

    def webhook(self, payment_id: str, amount: int, ts: int | None = None,
                secret: str | None = None) -> tuple[bytes, dict[str, str]]:
        body = json.dumps({"payment_id": payment_id, "amount": amount, "status": "succeeded"}).encode()
        stamp = str(int(time.time()) if ts is None else ts)
        return body, {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: sign(secret or self.secret, stamp, body),
                      "Content-Type": "application/json"}

    async def top_up(self, who: Relative, amount: int) -> str:
        r = await self.http.post("/v1/me/topups", json={"amount": amount}, headers=who.key("topup"))
        assert r.status_code == 201, r.text
        payment_id: str = r.json()["payment_id"]
        body, headers = self.webhook(payment_id, amount)
        r = await self.http.post("/v1/webhooks/payments", content=body, headers=headers)
        assert r.status_code == 200 and r.json()["credited"] is True, r.text
        return payment_id


@pytest.fixture
async def api(e2e: E2E) -> AsyncIterator[Api]:
    async with httpx.AsyncClient(base_url=f"http://{e2e.config.host}:{e2e.config.api_port}", timeout=10) as http:
        yield Api(e2e, http)


async def new_card(store: RedisStore, *phones: str) -> str:
    card = str(secrets.randbelow(9 * 10**9) + 10**9)
    await store.put_inmate(Inmate(f"inmate-{card}", "Test Inmate", "open", InmateStatus.CONVICTED))
    await store.create_card(card, f"inmate-{card}", "open", "2468", "en")
    for phone in phones:
        await store.allow_number(card, AllowedNumber(phone, "Mother"))
    return card


# --- login -------------------------------------------------------------------------


async def test_login_flow(api: Api) -> None:
    assert (await api.http.get("/v1/me/balance")).status_code == 401
    assert (await api.http.get("/v1/me/balance", headers={"Authorization": "Bearer nope"})).status_code == 401
    phone = new_phone()
    r = await api.ask_code(phone)
    assert (r.status_code, r.json()) == (202, {"sent": True, "expires_in": 300})
    code = api.last_code(phone)
    assert len(code) == 6 and code.isdigit()
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    r = await api.http.post("/v1/auth/session", json={"phone": phone, "code": wrong})
    assert (r.status_code, r.json()) == (401, {"detail": "wrong code"})
    r = await api.http.post("/v1/auth/session", json={"phone": phone, "code": code})
    assert r.status_code == 200 and r.json()["expires_in"] == 12 * 3600
    me = Relative(api.http, phone, {"Authorization": f"Bearer {r.json()['token']}"})
    assert await me.balance() == 0 and await me.ledger() == []
    r = await api.http.post("/v1/auth/session", json={"phone": phone, "code": code})  # used up
    assert r.status_code == 401 and "expired" in r.json()["detail"]


async def test_codes_never_reveal_whether_a_number_has_an_account(api: Api, store: RedisStore) -> None:
    known = (await api.login()).phone
    unknown = new_phone()
    assert await RelativeStore(store.redis).balance(unknown) is None
    answers = [await api.ask_code(p) for p in (known, unknown)]
    assert answers[0].status_code == answers[1].status_code == 202
    assert answers[0].json() == answers[1].json()
    for phone in (known, unknown):  # a wrong code: the same answer
        wrong = "000000" if api.last_code(phone) != "000000" else "000001"
        r = await api.http.post("/v1/auth/session", json={"phone": phone, "code": wrong})
        assert (r.status_code, r.json()) == (401, {"detail": "wrong code"})
    # an expired code for the known number, none ever sent to a third: the same answer
    await store.redis.pexpire(f"kl:auth:code:{known}", 1)
    await asyncio.sleep(0.05)
    answers = [await api.http.post("/v1/auth/session", json={"phone": p, "code": "123456"})
               for p in (known, new_phone())]
    assert [(a.status_code, a.json()) for a in answers] == [
        (401, {"detail": "code expired or never sent: ask for a new one"})] * 2


async def test_codes_per_client_address(api: Api) -> None:
    client = next(_addresses)
    for _ in range(CODES_PER_CLIENT_HOUR):
        assert (await api.ask_code(new_phone(), client)).status_code == 202
    r = await api.ask_code(new_phone(), client)
    assert r.status_code == 429 and 3500 <= int(r.headers["Retry-After"]) <= 3600
    assert (await api.ask_code(new_phone())).status_code == 202  # another address


# --- top-up and the provider's webhook ---------------------------------------------------


async def test_webhook_replay_and_bad_signatures(api: Api) -> None:
    me = await api.login()
    r = await api.http.post("/v1/me/topups", json={"amount": 15000}, headers=me.key("t"))
    assert r.status_code == 201 and r.json()["status"] == "pending", r.text
    payment_id = r.json()["payment_id"]
    body, good = api.webhook(payment_id, 15000)
    for headers in (api.webhook(payment_id, 15000, secret="x" * 64)[1],  # another key
                    api.webhook(payment_id, 15000, ts=int(time.time()) - TOLERANCE_S - 5)[1],  # stale
                    {"Content-Type": "application/json"}):  # unsigned
        r = await api.http.post("/v1/webhooks/payments", content=body, headers=headers)
        assert r.status_code == 401, r.text
    r = await api.http.post("/v1/webhooks/payments", content=body.replace(b"15000", b"95000"), headers=good)
    assert r.status_code == 401  # the body changed after signing
    assert await me.balance() == 0
    refusals = [ln for ln in api.config.path("logs", "api.log").read_text().splitlines()
                if "webhook from 127.0.0.1 refused" in ln]
    assert [ln.rsplit(": ", 1)[1] for ln in refusals[-4:]] == ["bad signature", "stale", "missing", "bad signature"]
    credited = []
    for _ in range(3):  # the provider sends it again: one credit
        r = await api.http.post("/v1/webhooks/payments", content=body, headers=good)
        assert r.status_code == 200, r.text
        credited.append(r.json()["credited"])
    assert credited == [True, False, False]
    assert await me.balance() == 15000
    assert [(e["kind"], e["amount"], e["ref"]) for e in await me.ledger()] == [("topup", 15000, payment_id)]


# --- transfers racing each other, refunds and a call's hold --------------------------------

_SIGN = {"topup": 1, "release": 1, "transfer": -1, "refund": -1, "reserve": -1, "charge": 0}


def _check_chain(entries_newest_first: list[dict[str, object]], balance: int) -> None:
    """Every entry moves the balance by its amount, in order, and the last one ends at ``balance``."""
    running = 0
    for e in reversed(entries_newest_first):
        running += _SIGN[str(e["kind"])] * int(str(e["amount"]))
        assert running == e["balance_after"], e
        assert running >= 0
    assert running == balance


async def test_transfer_race_with_a_call_hold_never_overdraws(api: Api, store: RedisStore) -> None:
    me = await api.login()
    card = await new_card(store, me.phone)
    await api.top_up(me, 10_000)
    call_id = f"race-{secrets.token_hex(6)}"

    async def hold() -> int:
        try:
            await store.reserve(call_id, card, 2_000, 600, "{}", payer_phone=me.phone)
        except Exception:  # insufficient funds: a fair outcome of the race
            return 0
        return 2_000

    transfers = [api.http.post("/v1/me/transfers", json={"card": card, "amount": 900}, headers=me.key(f"x{i}"))
                 for i in range(12)]
    refunds = [api.http.post("/v1/me/refunds", json={"amount": 900}, headers=me.key(f"r{i}")) for i in range(3)]
    *answers, held = await asyncio.gather(*transfers, *refunds, hold())
    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {201, 409}, [a.text for a in answers]
    assert all(a.json() == {"detail": "insufficient funds"} for a in answers if a.status_code == 409)
    moved = 900 * statuses.count(201)
    assert moved + held <= 10_000 and 10_000 - moved - held < 900  # the money ran out, never below zero
    moved_to_card = 900 * [a.status_code for a in answers[:12]].count(201)
    fresh = await store.card(card)
    assert fresh is not None and fresh.balance == moved_to_card
    assert await me.balance() == 10_000 - moved - held
    if held:  # the call ends: 509 charged, the rest released to the relative
        record = CallRecord(call_id=call_id, uniqueid=call_id, card=card, inmate_id=f"inmate-{card}",
                            facility_id="open", number=me.phone, route_kind="mobile", payer="callee",
                            started_at=datetime.now(UTC), answered_s=30, billed_s=60, amount=509,
                            dial_status="ANSWER", hangup_cause="16")
        done = await store.settle(record)
        assert (done.charged, done.released) == (509, 1_491)
    final = await me.balance()
    assert final == 10_000 - moved - (509 if held else 0)
    _check_chain(await me.ledger(), final)


# --- per-card settings (always in touch, caps, block) -------------------------------------


async def test_card_settings_caps_and_block(api: Api, store: RedisStore) -> None:
    me = await api.login()
    card = await new_card(store, me.phone)
    stranger_card = await new_card(store)
    url = f"/v1/me/cards/{card}"
    assert (await api.http.get(url, headers=me.auth)).json() == {
        "always_in_touch": False, "cap_day": None, "cap_month": None, "blocked": False}
    settings = {"always_in_touch": True, "cap_day": 30_000, "cap_month": 200_000, "blocked": False}
    r = await api.http.put(url, json=settings, headers=me.auth)
    assert (r.status_code, r.json()) == (200, settings)
    assert (await api.http.get(url, headers=me.auth)).json() == settings
    rel = RelativeStore(store.redis)
    assert await rel.paying_relatives(card) == [me.phone]  # what the 01 routing reads
    for bad in ({"cap_day": 0}, {"cap_day": -5}, {"cap_month": 1.5}, {"cap_day": "100"}, {"blocked": "yes"},
                {"cap_day": MAX_AMOUNT + 1}, {"cap_month": 10**40}, {"surprise": 1}):
        r = await api.http.put(url, json={**settings, **bad}, headers=me.auth)
        assert r.status_code == 422, bad
    assert (await api.http.get(url, headers=me.auth)).json() == settings  # nothing changed
    blocked = {**settings, "blocked": True}
    assert (await api.http.put(url, json=blocked, headers=me.auth)).json() == blocked
    assert await rel.paying_relatives(card) == []
    assert (await api.http.put(url, json=settings, headers=me.auth)).json() == settings  # the relative unblocks
    assert await rel.paying_relatives(card) == [me.phone]
    for other in (f"/v1/me/cards/{stranger_card}", "/v1/me/cards/1"):  # not on its list: one answer
        r = await api.http.put(other, json=settings, headers=me.auth)
        assert (r.status_code, r.json()) == (404, {"detail": "no card with this number on its list"})
    someone = await api.login()
    assert (await api.http.get(url, headers=someone.auth)).status_code == 404


# --- refund -----------------------------------------------------------------------------


async def test_refund_makes_a_payout(api: Api, store: RedisStore) -> None:
    me = await api.login()
    await api.top_up(me, 2_500)
    r = await api.http.post("/v1/me/refunds", json={"amount": 2_501}, headers=me.key("r"))
    assert (r.status_code, r.json()) == (409, {"detail": "insufficient funds"})
    headers = me.key("r")
    r = await api.http.post("/v1/me/refunds", json={"amount": 2_000}, headers=headers)
    assert r.status_code == 201 and r.json()["status"] == "requested", r.text
    again = await api.http.post("/v1/me/refunds", json={"amount": 2_000}, headers=headers)
    assert again.json() == r.json() and again.headers["Idempotent-Replayed"] == "true"
    assert await me.balance() == 500
    payout = await RelativeStore(store.redis).payout(r.json()["payout_id"])
    assert payout is not None and (payout.phone, payout.amount, payout.status) == (me.phone, 2_000, "requested")
    assert [(e["kind"], e["amount"], e["balance_after"]) for e in await me.ledger()] == [
        ("refund", 2_000, 500), ("topup", 2_500, 2_500)]


# --- bad input ---------------------------------------------------------------------------

BAD_AMOUNTS: list[object] = [0, -1, -10**12, 1.5, 100.0, 1e3, "100", "", MAX_AMOUNT + 1, 2**63, 10**30, 10**400,
                             True, None, [100], {"v": 100}]


async def test_bad_input_is_422_never_500(api: Api, store: RedisStore) -> None:
    me = await api.login()
    card = await new_card(store, me.phone)
    await api.top_up(me, 1_000)
    for amount in BAD_AMOUNTS:
        for path, body in (("/v1/me/topups", {"amount": amount}), ("/v1/me/refunds", {"amount": amount}),
                           ("/v1/me/transfers", {"card": card, "amount": amount})):
            r = await api.http.post(path, content=json.dumps(body), headers={
                **me.key("bad"), "Content-Type": "application/json"})
            assert r.status_code == 422, (path, amount, r.text)
    for body in ({"card": "12ab", "amount": 1}, {"card": "", "amount": 1}, {"card": "1" * 21, "amount": 1},
                 {"card": 1001, "amount": 1}, {"amount": 1}, {"card": card, "amount": 1, "extra": 1}):
        r = await api.http.post("/v1/me/transfers", json=body, headers=me.key("bad"))
        assert r.status_code == 422, (body, r.text)
    for raw in (b"", b"{", b"[]", b"null", b'{"amount": 1', "{\"amount\": \"\u0000\"}".encode()):
        r = await api.http.post("/v1/me/topups", content=raw, headers={**me.key("bad"),
                                                                        "Content-Type": "application/json"})
        assert r.status_code == 422, (raw, r.text)
    for headers in ({**me.auth, "Idempotency-Key": ""}, {**me.auth, "Idempotency-Key": "k" * 201}, me.auth):
        r = await api.http.post("/v1/me/topups", json={"amount": 1}, headers=headers)
        assert r.status_code == 422, (headers, r.text)
    for body in ({"phone": "89161234567"}, {"phone": "+7"}, {"phone": 79161234567}, {"phone": "+7916123456789012"},
                 {}, {"phone": new_phone(), "x": 1}):
        assert (await api.http.post("/v1/auth/code", json=body)).status_code == 422, body
    for body in ({"phone": me.phone, "code": "12345"}, {"phone": me.phone, "code": 123456},
                 {"phone": me.phone, "code": "12345a"}, {"phone": me.phone}):
        assert (await api.http.post("/v1/auth/session", json=body)).status_code == 422, body
    r = await api.http.get("/v1/me/ledger", params={"limit": 10**30}, headers=me.auth)
    assert r.status_code == 422
    assert await me.balance() == 1_000  # nothing moved


# --- the whole OpenAPI schema, fuzzed against the running stack ------------------------------


def test_schemathesis_against_the_stack(e2e: E2E) -> None:
    """Every operation of the stack's /openapi.json with generated input (valid and not),
    logged in as a relative with money and a card: no 5xx, and every answer's status,
    content type and body as the schema says. Bounded: FUZZ_EXAMPLES per operation."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    base = f"http://{e2e.config.host}:{e2e.config.api_port}"

    async def prepare() -> dict[str, str]:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            api = Api(e2e, http)
            me = await api.login()
            await api.top_up(me, 10**6)
            store = RedisStore.from_url(e2e.config.redis_url, PinHasher.from_hex(load_secrets(e2e.config).pin_key))
            try:
                await new_card(store, me.phone)
            finally:
                await store.aclose()
            return me.auth

    auth = asyncio.run(prepare())
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    started = time.monotonic()
    errors: list[str] = []
    for operation in operations:
        assert time.monotonic() - started < FUZZ_TIME_LIMIT_S, f"fuzzing took over {FUZZ_TIME_LIMIT_S} s"

        @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=base, headers=auth, timeout=10, checks=checks)

        try:
            run()
        except (Exception, BaseExceptionGroup) as err:
            errors.append(f"{operation.method.upper()} {operation.path}: {str(err)[:800]}")
    assert not errors, "\n\n".join(errors)


# --- history: the settled call reaches the API through PostgreSQL --------------------------


async def test_a_settled_call_reaches_the_relatives_history(api: Api, store: RedisStore) -> None:
    """A call the relative paid is settled in Redis; the stack's history copier moves it
    to PostgreSQL and GET /v1/calls lists it (bounded wait: the copier polls)."""
    me = await api.login()
    card = await new_card(store, me.phone)
    await api.top_up(me, 5_000)
    call_id = f"hist-{secrets.token_hex(6)}"
    await store.reserve(call_id, card, 2_000, 600, "{}", payer_phone=me.phone)
    await store.settle(CallRecord(call_id=call_id, uniqueid=call_id, card=card, inmate_id=f"inmate-{card}",
                                  facility_id="open", number=me.phone, route_kind="mobile", payer="callee",
                                  started_at=datetime.now(UTC), answered_s=75, billed_s=120, amount=868,
                                  dial_status="ANSWER", hangup_cause="16"))
    deadline = time.monotonic() + 20
    calls: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        r = await api.http.get("/v1/calls", headers=me.auth)
        assert r.status_code in (200, 503), r.text
        calls = r.json() if r.status_code == 200 else []
        if calls:
            break
        await asyncio.sleep(0.2)
    assert [(c["call_id"], c["card"], c["payer"], c["amount"], c["answered_s"]) for c in calls] == [
        (call_id, card, "callee", 868, 75)]
    assert await me.balance() == 5_000 - 868
    someone = await api.login()
    r = await api.http.get("/v1/calls", headers=someone.auth)
    assert (r.status_code, r.json()) == (200, [])  # calls to another number only
