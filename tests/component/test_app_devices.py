"""App devices through the relatives' API under a real uvicorn, on a real Redis (the
login) and a real PostgreSQL (the devices and the PJSIP realtime rows Asterisk reads)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from api.deps import AppSip
from api.main import build_from
from ivr.devices import MAX_DEVICES, md5_cred
from tests.component.conftest import RedisServer
from tests.component.pgserver import PostgresServer, postgres  # noqa: F401
from tests.component.test_api import PHONE, SECRET, Api, login, serving

OTHER = "+79031112233"
FCM_TOKEN = "fGcmTokEn_0123456789:APA91b" + "x" * 100
APNS_TOKEN = "ab" * 32
DOOR = AppSip("127.0.0.1", 15070)
TABLES = ("devices", "ps_endpoints", "ps_auths", "ps_aors")


class FakeAsterisk:
    """What Asterisk would say about contacts: the endpoints set reachable, or None (not answering)."""

    def __init__(self) -> None:
        self.reachable_now: set[str] | None = set()
        self.asked: list[list[str]] = []

    async def reachable(self, endpoints: list[str]) -> set[str] | None:
        self.asked.append(endpoints)
        return None if self.reachable_now is None else self.reachable_now & set(endpoints)


@pytest.fixture
def asterisk() -> FakeAsterisk:
    return FakeAsterisk()


@pytest.fixture
async def clean_db(postgres: PostgresServer) -> str:  # noqa: F811
    if postgres.proc is None or postgres.proc.poll() is not None:
        postgres.start()
    conn = await asyncpg.connect(postgres.url)
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {', '.join(TABLES)}")
    finally:
        await conn.close()
    return postgres.url


@pytest.fixture
def api(redis_server: RedisServer, clean_db: str, asterisk: FakeAsterisk, tmp_path: Path) -> Iterator[Api]:
    sms_log = tmp_path / "sms.log"
    app = build_from(redis_server.url, sms_log, SECRET, postgres_url=clean_db, app_sip=DOOR,
                     contacts=asterisk)  # type: ignore[arg-type]  # any Reachability
    with serving(app) as url:
        yield Api(url, sms_log)


@pytest.fixture
async def http(api: Api, flushed: RedisServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as client:
        yield client


@pytest.fixture
async def db(clean_db: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(clean_db)
    try:
        yield conn
    finally:
        await conn.close()


async def register(http: httpx.AsyncClient, auth: dict[str, str], token: str = FCM_TOKEN,
                   platform: str = "fcm", app_id: str = "ru.kinline.app") -> dict[str, object]:
    r = await http.post("/v1/app/devices", json={"platform": platform, "token": token, "app_id": app_id}, headers=auth)
    assert r.status_code == 201, r.text
    body: dict[str, object] = r.json()
    return body


async def test_register_returns_sip_credentials_stored_only_as_digest(
        http: httpx.AsyncClient, api: Api, db: asyncpg.Connection) -> None:
    auth = await login(http, api)
    created = await register(http, auth)
    sip = created["sip"]
    assert isinstance(sip, dict)
    device_id = created["device_id"]
    assert sip["username"] == f"app-{device_id}"
    assert (sip["server"], sip["port"], sip["transport"], sip["domain"]) == ("127.0.0.1", 15070, "udp", "127.0.0.1")
    assert len(sip["password"]) >= 24
    auth_row = await db.fetchrow("SELECT * FROM ps_auths WHERE id = $1", sip["username"])
    assert auth_row["md5_cred"] == md5_cred(sip["username"], sip["password"])
    assert (auth_row["auth_type"], auth_row["username"], auth_row["realm"]) == ("md5", sip["username"], "kinline")
    endpoint = await db.fetchrow("SELECT * FROM ps_endpoints WHERE id = $1", sip["username"])
    assert (endpoint["aors"], endpoint["auth"], endpoint["context"], endpoint["transport"]) == (
        sip["username"], sip["username"], "from-app", "transport-app")
    aor = await db.fetchrow("SELECT * FROM ps_aors WHERE id = $1", sip["username"])
    assert (aor["max_contacts"], aor["remove_existing"], aor["qualify_frequency"]) == (1, "yes", 30)
    # The password itself is nowhere in the database.
    for table in TABLES:
        for row in await db.fetch(f"SELECT * FROM {table}"):
            assert sip["password"] not in str(dict(row))
    device = await db.fetchrow("SELECT * FROM devices WHERE id = $1", device_id)
    assert (device["phone"], device["platform"], device["token"], device["active"]) == (PHONE, "fcm", FCM_TOKEN, True)


async def test_list_shows_mine_without_secrets(http: httpx.AsyncClient, api: Api) -> None:
    mine = await login(http, api)
    theirs = await login(http, api, OTHER)
    first = await register(http, mine)
    second = await register(http, mine, APNS_TOKEN, "apns-voip", "ru.kinline.ios")
    await register(http, theirs, "other-token-0123456789")
    r = await http.get("/v1/app/devices", headers=mine)
    assert r.status_code == 200
    listed = r.json()
    assert [d["device_id"] for d in listed] == [first["device_id"], second["device_id"]]
    assert [d["platform"] for d in listed] == ["fcm", "apns-voip"]
    assert all(d["push_active"] for d in listed)
    assert "password" not in r.text and "token" not in r.text and FCM_TOKEN not in r.text


async def test_same_token_again_rotates_the_password_of_the_same_device(
        http: httpx.AsyncClient, api: Api, db: asyncpg.Connection) -> None:
    auth = await login(http, api)
    first = await register(http, auth)
    again = await register(http, auth)
    assert again["device_id"] == first["device_id"]
    old, new = first["sip"], again["sip"]
    assert isinstance(old, dict) and isinstance(new, dict)
    assert old["password"] != new["password"]
    stored = await db.fetchval("SELECT md5_cred FROM ps_auths WHERE id = $1", new["username"])
    assert stored == md5_cred(new["username"], new["password"]) != md5_cred(old["username"], old["password"])
    assert await db.fetchval("SELECT count(*) FROM devices") == 1
    assert await db.fetchval("SELECT count(*) FROM ps_endpoints") == 1


async def test_a_token_registered_by_another_relative_moves_to_them(
        http: httpx.AsyncClient, api: Api, db: asyncpg.Connection) -> None:
    mine = await login(http, api)
    theirs = await login(http, api, OTHER)
    first = await register(http, mine)
    moved = await register(http, theirs)
    assert moved["device_id"] != first["device_id"]
    assert (await http.get("/v1/app/devices", headers=mine)).json() == []
    assert await db.fetchval("SELECT count(*) FROM ps_endpoints WHERE id = $1", f"app-{first['device_id']}") == 0
    assert await db.fetchval("SELECT phone FROM devices") == OTHER


async def test_delete_revokes_the_sip_account(http: httpx.AsyncClient, api: Api, db: asyncpg.Connection) -> None:
    mine = await login(http, api)
    theirs = await login(http, api, OTHER)
    device_id = (await register(http, mine))["device_id"]
    kept = (await register(http, mine, APNS_TOKEN, "apns-voip", "ru.kinline.ios"))["device_id"]
    assert (await http.delete(f"/v1/app/devices/{device_id}", headers=theirs)).status_code == 404
    r = await http.delete(f"/v1/app/devices/{device_id}", headers=mine)
    assert r.status_code == 204, r.text
    for table in ("ps_endpoints", "ps_auths", "ps_aors"):
        assert await db.fetchval(f"SELECT count(*) FROM {table} WHERE id = $1", f"app-{device_id}") == 0
        assert await db.fetchval(f"SELECT count(*) FROM {table} WHERE id = $1", f"app-{kept}") == 1
    assert (await http.delete(f"/v1/app/devices/{device_id}", headers=mine)).status_code == 404
    assert [d["device_id"] for d in (await http.get("/v1/app/devices", headers=mine)).json()] == [kept]


async def test_status_light(http: httpx.AsyncClient, api: Api, asterisk: FakeAsterisk,
                            db: asyncpg.Connection) -> None:
    auth = await login(http, api)
    r = await http.get("/v1/app/status", headers=auth)
    assert r.json() == {"light": "red", "devices": []}
    device_id = (await register(http, auth))["device_id"]
    r = await http.get("/v1/app/status", headers=auth)
    assert r.json()["light"] == "yellow"
    assert r.json()["devices"][0]["reachable"] is False
    asterisk.reachable_now = {f"app-{device_id}"}
    r = await http.get("/v1/app/status", headers=auth)
    assert r.json()["light"] == "green"
    assert r.json()["devices"][0]["reachable"] is True
    assert asterisk.asked[-1] == [f"app-{device_id}"]
    asterisk.reachable_now = None  # Asterisk does not answer: never a green not seen
    r = await http.get("/v1/app/status", headers=auth)
    assert r.json()["light"] == "yellow" and r.json()["devices"][0]["reachable"] is None
    await db.execute("UPDATE devices SET active = false, deactivated_reason = 'unregistered'")
    asterisk.reachable_now = set()
    assert (await http.get("/v1/app/status", headers=auth)).json()["light"] == "red"


@pytest.mark.parametrize(("body", "why"), [
    ({"platform": "sms", "token": FCM_TOKEN, "app_id": "ru.kinline.app"}, "platform"),
    ({"platform": "apns-voip", "token": FCM_TOKEN, "app_id": "ru.kinline.ios"}, "APNs"),
    ({"platform": "fcm", "token": "short", "app_id": "ru.kinline.app"}, "token"),
    ({"platform": "fcm", "token": "bad token with spaces!!", "app_id": "ru.kinline.app"}, "token"),
    ({"platform": "fcm", "token": FCM_TOKEN, "app_id": "not a package"}, "app_id"),
    ({"platform": "fcm", "token": FCM_TOKEN, "app_id": "ru.kinline.app", "extra": 1}, "extra"),
    ({"platform": "fcm", "token": 12345678901234567, "app_id": "ru.kinline.app"}, "token"),
])
async def test_bad_registrations_are_refused(http: httpx.AsyncClient, api: Api, db: asyncpg.Connection,
                                             body: dict[str, object], why: str) -> None:
    auth = await login(http, api)
    r = await http.post("/v1/app/devices", json=body, headers=auth)
    assert r.status_code == 422, r.text
    assert why in r.text
    if await db.fetchval("SELECT to_regclass('ps_endpoints')") is not None:
        assert await db.fetchval("SELECT count(*) FROM ps_endpoints") == 0


async def test_at_most_max_devices(http: httpx.AsyncClient, api: Api) -> None:
    auth = await login(http, api)
    for n in range(MAX_DEVICES):
        await register(http, auth, f"token-number-{n:04d}-xxxxxxxx")
    r = await http.post("/v1/app/devices", json={"platform": "fcm", "token": "one-token-too-many-xx",
                                                 "app_id": "ru.kinline.app"}, headers=auth)
    assert r.status_code == 409, r.text


async def test_needs_a_login(http: httpx.AsyncClient) -> None:
    assert (await http.get("/v1/app/devices")).status_code == 401
    assert (await http.get("/v1/app/status")).status_code == 401
    r = await http.post("/v1/app/devices", json={"platform": "fcm", "token": FCM_TOKEN, "app_id": "ru.kinline.app"})
    assert r.status_code == 401
