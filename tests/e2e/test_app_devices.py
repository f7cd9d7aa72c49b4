"""App devices on the real stack: the API registers a device, Asterisk takes its SIP
account from PostgreSQL at once (PJSIP realtime, no reload), the status light follows
Asterisk's contact, and a deleted device can neither register nor be dialed."""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from ami.client import AmiClient
from ami.protocol import AmiActionError
from tests.e2e.conftest import E2E
from tests.e2e.harness import SipAgent
from tools.config import load_secrets

pytestmark = pytest.mark.e2e

_addresses = (f"198.18.5.{n}" for n in itertools.count(1))  # the API's per-address code limit
APP_ID = "ru.kinline.app"


@dataclass
class Relative:
    http: httpx.AsyncClient
    auth: dict[str, str]

    async def register(self, token: str) -> dict[str, str | int]:
        r = await self.http.post("/v1/app/devices", json={"platform": "fcm", "token": token, "app_id": APP_ID},
                                 headers=self.auth)
        assert r.status_code == 201, r.text
        created = r.json()
        sip: dict[str, str | int] = created["sip"]
        sip["device_id"] = created["device_id"]
        return sip

    async def light(self) -> str:
        r = await self.http.get("/v1/app/status", headers=self.auth)
        assert r.status_code == 200, r.text
        light: str = r.json()["light"]
        return light

    async def light_becomes(self, wanted: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        seen = ""
        while time.monotonic() < deadline:
            if (seen := await self.light()) == wanted:
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"status light {seen!r}, not {wanted!r}, after {timeout} s")


@pytest.fixture
async def relative(e2e: E2E) -> AsyncIterator[Relative]:
    phone = f"+7916{secrets.randbelow(10**7):07d}"
    async with httpx.AsyncClient(base_url=f"http://{e2e.config.host}:{e2e.config.api_port}", timeout=10) as http:
        r = await http.post("/v1/auth/code", json={"phone": phone}, headers={"X-Forwarded-For": next(_addresses)})
        assert r.status_code == 202, r.text
        lines = [ln.split() for ln in e2e.config.path("logs", "sms.log").read_text().splitlines()]
        code = [c for p, c in lines if p == phone][-1]
        r = await http.post("/v1/auth/session", json={"phone": phone, "code": code})
        assert r.status_code == 200, r.text
        yield Relative(http, {"Authorization": f"Bearer {r.json()['token']}"})


@pytest.fixture
async def originate(e2e: E2E) -> AsyncIterator[AmiClient]:
    """The stack's originate-only AMI user: dials an app's endpoint as the 00 routing will."""
    secret = load_secrets(e2e.config)
    client = AmiClient(e2e.config.host, e2e.config.ami_port, secret.ami_originate_user,
                       secret.ami_originate_secret, action_timeout=15, events="off")
    await client.start()
    try:
        yield client
    finally:
        await client.close()


async def app_agent(e2e: E2E, sip: dict[str, str | int], password: str | None = None,
                    port: int | None = None, rtp: int = 26000) -> SipAgent:
    door = f"sip:{sip['server']}:{port or sip['port']}"
    return await SipAgent.start("register", "--registrar", door, "--user", str(sip["username"]),
                                "--password", password or str(sip["password"]), "--mode", "busy",
                                "--rtp-port", str(rtp), "--max-seconds", "60")


async def next_reg(agent: SipAgent, after: int, timeout: float = 10) -> int:
    """The final code of the next REGISTER after the ``after``-th."""
    event = await agent.wait_for("reg", lambda e: agent.events.index(e) >= after, timeout)
    code: int = event["code"]
    return code


async def dial(originate: AmiClient, endpoint: str) -> None:
    await originate.action("Originate", Channel=f"PJSIP/{endpoint}", Application="Wait", Data="1",
                           Timeout="5000", Async="false")


async def test_device_registers_at_once_turns_green_and_is_revoked_at_once(
        e2e: E2E, relative: Relative, originate: AmiClient) -> None:
    assert await relative.light() == "red"
    sip = await relative.register(secrets.token_urlsafe(40))
    assert (sip["server"], sip["port"]) == (e2e.config.app_sip_host, e2e.config.app_sip_port)
    assert await relative.light() == "yellow"  # a push token, nothing registered
    agent = await app_agent(e2e, sip)
    intruder = await app_agent(e2e, sip, password="wrong-" + str(sip["password"]), rtp=26100)
    try:
        assert await next_reg(agent, 0) == 200  # no reload: Asterisk read the new row
        assert await next_reg(intruder, 0) == 401
        await relative.light_becomes("green")  # qualify: the contact answers OPTIONS
        # Dialed as the 00 routing will: the INVITE reaches the app (busy: no call is made).
        with pytest.raises(AmiActionError):
            await dial(originate, str(sip["username"]))
        await agent.wait_for("incoming", timeout=5)

        r = await relative.http.delete(f"/v1/app/devices/{sip['device_id']}", headers=relative.auth)
        assert r.status_code == 204, r.text
        assert await relative.light() == "red"
        seen = len(agent.events)
        await agent.send("register")
        assert await next_reg(agent, seen) == 401  # the account is gone for Asterisk's next request
        incoming = sum(e["event"] == "incoming" for e in agent.events)
        with pytest.raises(AmiActionError):  # the endpoint no longer exists: no INVITE is sent
            await dial(originate, str(sip["username"]))
        assert sum(e["event"] == "incoming" for e in agent.events) == incoming
    finally:
        await agent.close()
        await intruder.close()


async def test_rotated_password_counts_at_once(e2e: E2E, relative: Relative) -> None:
    token = secrets.token_urlsafe(40)
    old = await relative.register(token)
    new = await relative.register(token)
    assert new["device_id"] == old["device_id"] and new["password"] != old["password"]
    stale = await app_agent(e2e, old, rtp=26200)
    fresh = await app_agent(e2e, new, rtp=26300)
    try:
        assert await next_reg(stale, 0) == 401
        assert await next_reg(fresh, 0) == 200
    finally:
        await stale.close()
        await fresh.close()


async def test_apps_cannot_call_through_either_door(e2e: E2E, relative: Relative) -> None:
    """An app only receives calls: its INVITE is refused (context from-app), on its own
    door and on the terminals'."""
    sip = await relative.register(secrets.token_urlsafe(40))
    for port, rtp in ((e2e.config.app_sip_port, 26400), (e2e.config.sip_port, 26500)):
        caller = await SipAgent.start("call", "--target", f"sip:100@{e2e.config.host}:{port}",
                                      "--user", str(sip["username"]), "--password", str(sip["password"]),
                                      "--rtp-port", str(rtp), "--max-seconds", "20")
        try:
            end = await caller.ended()
            assert end["code"] == 403, end
            assert not any(e["event"] == "state" and e["state"] == "CONFIRMED" for e in caller.events)
        finally:
            await caller.close()


async def test_a_terminal_cannot_call_through_the_apps_door(e2e: E2E) -> None:
    caller = await SipAgent.start("call", "--target", f"sip:9999@{e2e.config.host}:{e2e.config.app_sip_port}",
                                  "--user", e2e.terminal.name, "--password", e2e.terminal.password,
                                  "--rtp-port", "26600", "--max-seconds", "20")
    try:
        end = await caller.ended()
        assert not any(e["event"] == "state" and e["state"] == "CONFIRMED" for e in caller.events), end
    finally:
        await caller.close()


async def test_status_ami_user_may_only_query(e2e: E2E) -> None:
    """The API's AMI user (write class "reporting"): Getvar and PJSIPQualify, nothing that
    changes Asterisk or calls anyone."""
    secret = load_secrets(e2e.config)
    client = AmiClient(e2e.config.host, e2e.config.ami_port, secret.ami_status_user, secret.ami_status_secret,
                       events="off")
    await client.start()
    try:
        assert (await client.action("Getvar", Variable="PJSIP_AOR(app-0000000000000000,contact)")).get("Value") == ""
        for action, fields in (("Command", {"Command": "core show settings"}), ("Reload", {}),
                               ("GetConfig", {"Filename": "manager.conf"}), ("ModuleLoad", {"LoadType": "unload",
                                                                                          "Module": "chan_pjsip.so"}),
                               ("Originate", {"Channel": "Local/100@terminals", "Application": "Wait"}),
                               ("Getvar", {"Variable": "SHELL(id)"})):
            with pytest.raises(AmiActionError, match=r"Permission denied|Access Forbidden"):
                await client.action(action, **fields)
    finally:
        await client.close()
