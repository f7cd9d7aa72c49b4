"""The free audio test call's limit on a real Redis (one Lua script: check and count at
once) and through the API under a real uvicorn (devices in a real PostgreSQL)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from api.deps import AppSip
from api.main import build_from
from ivr.app_test import LIMIT, WINDOW_S, Admission, SwitchUnavailable, TestCall, admit, new_call_id
from store import wake_records as records
from store.app_test import COUNT_KEY, RedisTestCalls
from store.redis_store import connect
from tests.component.conftest import RedisServer
from tests.component.pgserver import PostgresServer, postgres  # noqa: F401
from tests.component.test_api import FUZZ_EXAMPLES, PHONE, SECRET, Api, _checks, login, serving

T0 = 1_800_000_000_000
HOUR_MS = WINDOW_S * 1000


@pytest.fixture
async def tests_store(flushed: RedisServer) -> AsyncIterator[RedisTestCalls]:
    client = connect(flushed.url)
    try:
        yield RedisTestCalls(client)
    finally:
        await client.aclose()


def call(language: str = "ru") -> TestCall:
    return TestCall(new_call_id(), PHONE, language, T0, 0)


async def test_twenty_at_once_exactly_five_pass(tests_store: RedisTestCalls) -> None:
    calls = [call() for _ in range(20)]
    answers = await asyncio.gather(*(tests_store.admit(PHONE, c, T0 + i, LIMIT, WINDOW_S)
                                     for i, c in enumerate(calls)))
    passed = [c for c, a in zip(calls, answers, strict=True) if a.allowed]
    assert len(passed) == LIMIT
    assert sorted(a.used for a in answers if a.allowed) == list(range(1, LIMIT + 1))
    assert all(1 <= a.retry_after_s <= WINDOW_S for a in answers if not a.allowed)
    for c in calls:  # only the counted calls have a record for the switch's side
        found = await tests_store.get(c.call_id)
        assert (found is not None) == (c in passed)
        assert found is None or (found.phone, found.language) == (PHONE, "ru")


async def test_the_script_applies_the_domain_rule(tests_store: RedisTestCalls) -> None:
    """The same request times through the Lua script and through ivr.app_test.admit."""
    rng = random.Random(8)
    now, counted = T0, []
    for _ in range(60):
        now += rng.choice([1, 1000, 60_000, 600_000, 1_800_000, HOUR_MS])
        expected = admit(counted, now)
        got = await tests_store.admit(PHONE, call(), now, LIMIT, WINDOW_S)
        assert got == expected, (now - T0, counted)
        if got.allowed:
            counted.append(now)
    redis: aioredis.Redis = tests_store.redis
    assert 0 < await redis.pttl(COUNT_KEY.format(phone=PHONE)) <= HOUR_MS  # the count forgets itself


async def test_given_back_frees_the_place_and_the_record(tests_store: RedisTestCalls) -> None:
    calls = [call() for _ in range(LIMIT)]
    for c in calls:
        assert (await tests_store.admit(PHONE, c, T0, LIMIT, WINDOW_S)).allowed
    assert not (await tests_store.admit(PHONE, call(), T0 + 1, LIMIT, WINDOW_S)).allowed
    await tests_store.give_back(PHONE, calls[2].call_id)
    assert await tests_store.get(calls[2].call_id) is None
    assert await tests_store.admit(PHONE, call(), T0 + 2, LIMIT, WINDOW_S) == Admission(True, 0, LIMIT)
    assert (await tests_store.admit("+79030000000", call(), T0, LIMIT, WINDOW_S)).allowed  # per relative


async def test_not_started_uncounts_and_marks_only_a_call_without_a_step(tests_store: RedisTestCalls) -> None:
    never, woken = call(), call()
    for c in (never, woken):
        assert (await tests_store.admit(PHONE, c, T0, LIMIT, WINDOW_S)).allowed
    await records.record(tests_store.redis, woken.call_id, records.AttemptEvent(records.PUSH_SENT, T0 + 50))
    assert await tests_store.not_started(PHONE, never.call_id, T0 + 100) is True
    assert await tests_store.not_started(PHONE, never.call_id, T0 + 200) is False  # once
    assert await tests_store.not_started(PHONE, woken.call_id, T0 + 100) is False  # it was tried: counted
    counted = await tests_store.redis.zrange(COUNT_KEY.format(phone=PHONE), 0, -1)
    assert counted == [woken.call_id]
    assert await tests_store.get(never.call_id) is not None  # the record stays: its outcome is asked for
    assert [(s.event, s.ms) for s in await tests_store.steps(never.call_id)] == [(records.NOT_STARTED, T0 + 100)]
    assert 0 < await tests_store.redis.ttl(records.attempt_key(never.call_id)) <= records.KEEP_S


class FakeDialer:
    def __init__(self) -> None:
        self.calls: list[TestCall] = []
        self.down = False
        self.end_bound_s = 3600.0  # the calls' ends are never known (below): none is swept

    async def ended(self, call: TestCall) -> str | None:
        return None  # these tests are about the count at the start: no end is ever known

    async def call_app(self, call: TestCall) -> None:
        if self.down:
            raise SwitchUnavailable("AMI down")
        await asyncio.sleep(0.01)  # the switch's answer takes a moment: requests overlap
        self.calls.append(call)


@pytest.fixture
def dialer() -> FakeDialer:
    return FakeDialer()


@pytest.fixture
async def clean_db(postgres: PostgresServer) -> str:  # noqa: F811
    if postgres.proc is None or postgres.proc.poll() is not None:
        postgres.start()
    conn = await asyncpg.connect(postgres.url)
    try:
        await conn.execute("DROP TABLE IF EXISTS devices, ps_endpoints, ps_auths, ps_aors")
    finally:
        await conn.close()
    return postgres.url


@pytest.fixture
def api(redis_server: RedisServer, clean_db: str, dialer: FakeDialer, tmp_path: Path) -> Iterator[Api]:
    app = build_from(redis_server.url, tmp_path / "sms.log", SECRET, postgres_url=clean_db,
                     app_sip=AppSip("127.0.0.1", 15070), dialer=dialer)
    with serving(app) as url:
        yield Api(url, tmp_path / "sms.log")


@pytest.fixture
async def http(api: Api, flushed: RedisServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as client:
        yield client


async def test_api_twenty_concurrent_requests_start_exactly_five_calls(
        http: httpx.AsyncClient, api: Api, dialer: FakeDialer, flushed: RedisServer) -> None:
    auth = await login(http, api)
    no_app = await http.post("/v1/app/test-call", headers=auth)
    assert no_app.status_code == 409, no_app.text
    r = await http.post("/v1/app/devices", json={"platform": "fcm", "token": "t" * 40, "app_id": "ru.kinline.app"},
                        headers=auth)
    assert r.status_code == 201, r.text
    dialer.down = True
    assert (await http.post("/v1/app/test-call", headers=auth)).status_code == 503
    dialer.down = False
    answers = await asyncio.gather(*(http.post("/v1/app/test-call", json={"language": "fr"}, headers=auth)
                                     for _ in range(20)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [202] * LIMIT + [429] * 15  # the 409 and the 503 were not counted
    started = {a.json()["call_id"] for a in answers if a.status_code == 202}
    assert started == {c.call_id for c in dialer.calls}
    assert all(1 <= int(a.headers["Retry-After"]) <= WINDOW_S for a in answers if a.status_code == 429)
    # The outcome: from the call's wake records, for its relative only.
    call_id = sorted(started)[0]
    client = connect(flushed.url)
    try:
        await records.record(client, call_id, records.AttemptEvent(records.PUSH_SENT, T0, device_id="d", result="ok"),
                             records.AttemptEvent(records.INVITE_SENT, T0 + 900, device_id="d"))
    finally:
        await client.aclose()
    outcome = await http.get(f"/v1/app/test-call/{call_id}", headers=auth)
    assert outcome.status_code == 200 and outcome.json()["status"] == "ringing", outcome.text
    assert [s["event"] for s in outcome.json()["steps"]] == ["push_sent", "invite_sent"]
    other = await login(http, api, "+79031112233")
    assert (await http.get(f"/v1/app/test-call/{call_id}", headers=other)).status_code == 404


async def test_api_a_repeat_with_the_same_idempotency_key_starts_no_other_call(
        http: httpx.AsyncClient, api: Api, dialer: FakeDialer) -> None:
    auth = await login(http, api)
    r = await http.post("/v1/app/devices", json={"platform": "fcm", "token": "t" * 40, "app_id": "ru.kinline.app"},
                        headers=auth)
    assert r.status_code == 201, r.text
    first = await http.post("/v1/app/test-call", headers={**auth, "Idempotency-Key": "k1"})
    again = await http.post("/v1/app/test-call", headers={**auth, "Idempotency-Key": "k1"})
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == first.json() and again.headers.get("Idempotent-Replayed") == "true"
    assert len(dialer.calls) == 1
    other = await http.post("/v1/app/test-call", json={"language": "en"}, headers={**auth, "Idempotency-Key": "k1"})
    assert other.status_code == 422  # the same key for another request
    assert (await http.post("/v1/app/test-call", headers={**auth, "Idempotency-Key": "k2"})).json()["used"] == 2


async def test_calls_whose_end_the_api_never_heard_are_settled_once_the_switch_s_bound_passed(
        http: httpx.AsyncClient, api: Api, dialer: FakeDialer, flushed: RedisServer) -> None:
    """The API restarted (or lost AMI) while its test calls were on: no end ever reaches it
    (this dialer never tells one). Once the switch's bound has passed, asking a call's outcome
    settles the relative's calls that left no step (uncounted, "failed"); a call that woke the
    app stays counted, and the relative may call again."""
    auth = await login(http, api)
    r = await http.post("/v1/app/devices", json={"platform": "fcm", "token": "t" * 40, "app_id": "ru.kinline.app"},
                        headers=auth)
    assert r.status_code == 201, r.text
    started = [(await http.post("/v1/app/test-call", headers=auth)).json()["call_id"] for _ in range(LIMIT)]
    assert (await http.post("/v1/app/test-call", headers=auth)).status_code == 429
    woken, never = started[0], started[1:]
    client = connect(flushed.url)
    try:
        await records.record(client, woken, records.AttemptEvent(records.PUSH_SENT, T0, device_id="d", result="ok"))
        outcome = await http.get(f"/v1/app/test-call/{never[0]}", headers=auth)
        assert outcome.json()["status"] == "requested"  # inside the bound: it may still be on
        dialer.end_bound_s = 0.0  # the bound has passed for every call
        outcome = await http.get(f"/v1/app/test-call/{never[0]}", headers=auth)
        assert outcome.status_code == 200 and outcome.json()["status"] == "failed", outcome.text
        counted = await client.zrange(COUNT_KEY.format(phone=PHONE), 0, -1)
        assert counted == [woken]  # all four without a step, the one asked for and the others
        for call_id in never[1:]:
            assert (await http.get(f"/v1/app/test-call/{call_id}", headers=auth)).json()["status"] == "failed"
        assert (await http.get(f"/v1/app/test-call/{woken}", headers=auth)).json()["status"] == "pushed"
        again = await http.post("/v1/app/test-call", headers=auth)
        assert again.status_code == 202 and again.json()["used"] == 2, again.text
    finally:
        await client.aclose()


def test_schemathesis_finds_no_server_error_in_the_test_call(api: Api, flushed: RedisServer) -> None:
    """POST /v1/app/test-call and GET /v1/app/test-call/{id} with generated input, logged in
    with a device (the switch a fake): never a 5xx, every answer as the schema says."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    with httpx.Client(base_url=api.url, timeout=10) as client:
        assert client.post("/v1/auth/code", json={"phone": PHONE}).status_code == 202
        r = client.post("/v1/auth/session", json={"phone": PHONE, "code": api.last_code(PHONE)})
        auth = {"Authorization": f"Bearer {r.json()['token']}"}
        r = client.post("/v1/app/devices", json={"platform": "fcm", "token": "t" * 40, "app_id": "ru.kinline.app"},
                        headers=auth)
        assert r.status_code == 201, r.text
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    mine = [op for op in operations if op.path.startswith("/v1/app/test-call")]
    assert len(mine) == 2
    errors: list[str] = []
    for operation in mine:
        @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=api.url, headers=auth, timeout=10, checks=_checks())

        try:
            run()
        except (Exception, BaseExceptionGroup) as err:
            errors.append(f"{operation.method.upper()} {operation.path}: {str(err)[:800]}")
    assert not errors, "\n\n".join(errors)
