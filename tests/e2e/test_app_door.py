"""The apps' SIP door (transport-app) under attack: the guard counts failed REGISTERs of
an app account there as it does the terminals', and blocks the source on both doors.

The attacker is 127.0.0.2 (the whole 127/8 is loopback), never 127.0.0.1, so the
apps and terminals of the other tests are never blocked.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import subprocess
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from guard.firewall import table_name
from tests.e2e.conftest import E2E
from tests.e2e.rawsip import RawUac, digest

pytestmark = pytest.mark.e2e

ATTACKER = "127.0.0.2"
APP_ID = "ru.kinline.app"


class RawRegistrar:
    """One UDP socket bound to ``source`` that REGISTERs an app account at ``door``."""

    def __init__(self, source: str, door: tuple[str, int], user: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((source, 0))
        self.local = self.sock.getsockname()
        self.door, self.user = door, user
        self.call_id, self.tag, self.cseq = secrets.token_hex(8), secrets.token_hex(4), 0

    def __enter__(self) -> RawRegistrar:
        return self

    def __exit__(self, *_: object) -> None:
        self.sock.close()

    def _send(self, expires: int, auth: str = "") -> None:
        self.cseq += 1
        host, port = self.door
        lhost, lport = self.local
        lines = [f"REGISTER sip:{host}:{port} SIP/2.0",
                 f"Via: SIP/2.0/UDP {lhost}:{lport};rport;branch=z9hG4bK{secrets.token_hex(8)}",
                 "Max-Forwards: 70", f"From: <sip:{self.user}@{host}>;tag={self.tag}",
                 f"To: <sip:{self.user}@{host}>", f"Call-ID: {self.call_id}", f"CSeq: {self.cseq} REGISTER",
                 f"Contact: <sip:{self.user}@{lhost}:{lport}>", f"Expires: {expires}"]
        if auth:
            lines.append(f"Authorization: {auth}")
        self.sock.sendto("\r\n".join([*lines, "Content-Length: 0", "", ""]).encode(), self.door)

    def _final(self, timeout: float) -> str | None:
        """This REGISTER's final response, or None when nothing came within ``timeout``."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65535).decode(errors="replace")
            except TimeoutError:
                return None
            if data.startswith("SIP/2.0 ") and not data.startswith("SIP/2.0 1") \
                    and f"CSeq: {self.cseq} REGISTER" in data:
                return data
        return None

    def register(self, password: str, expires: int = 60, timeout: float = 1.0) -> int | None:
        """The final code of a digest REGISTER (None: no answer at all, e.g. blocked)."""
        self._send(expires)
        challenge = self._final(timeout)
        if challenge is None or not challenge.startswith("SIP/2.0 401"):
            return None if challenge is None else int(challenge.split()[1])
        header = next(ln.split(":", 1)[1].strip() for ln in challenge.split("\r\n")
                      if ln.lower().startswith("www-authenticate:"))
        host, port = self.door
        self._send(expires, digest("REGISTER", f"sip:{host}:{port}", self.user, password, header))
        final = self._final(timeout)
        return None if final is None else int(final.split()[1])


def _blocked(e2e: E2E) -> str:
    done = subprocess.run(["nft", "list", "set", "inet", table_name(e2e.config.sip_port), "blocked4"],
                          capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _unblock(e2e: E2E, address: str) -> None:
    subprocess.run(["nft", "delete", "element", "inet", table_name(e2e.config.sip_port), "blocked4",
                    f"{{ {address} }}"], capture_output=True, timeout=10)


@pytest.fixture
async def app_account(e2e: E2E) -> AsyncIterator[dict[str, str | int]]:
    """A relative's device registered through the API: its SIP credentials and door."""
    phone = f"+7916{secrets.randbelow(10**7):07d}"
    async with httpx.AsyncClient(base_url=f"http://{e2e.config.host}:{e2e.config.api_port}", timeout=10) as http:
        r = await http.post("/v1/auth/code", json={"phone": phone}, headers={"X-Forwarded-For": "198.18.7.1"})
        assert r.status_code == 202, r.text
        lines = [ln.split() for ln in e2e.config.path("logs", "sms.log").read_text().splitlines()]
        code = [c for p, c in lines if p == phone][-1]
        r = await http.post("/v1/auth/session", json={"phone": phone, "code": code})
        assert r.status_code == 200, r.text
        auth = {"Authorization": f"Bearer {r.json()['token']}"}
        r = await http.post("/v1/app/devices", json={"platform": "fcm", "token": secrets.token_urlsafe(40),
                                                     "app_id": APP_ID}, headers=auth)
        assert r.status_code == 201, r.text
        created = r.json()
        try:
            yield created["sip"]
        finally:
            await http.delete(f"/v1/app/devices/{created['device_id']}", headers=auth)


async def test_twenty_bad_app_registrations_block_the_source_on_both_doors(
        e2e: E2E, app_account: dict[str, str | int]) -> None:
    door = (e2e.config.app_sip_host, e2e.config.app_sip_port)
    assert (app_account["server"], app_account["port"]) == door
    user, password = str(app_account["username"]), str(app_account["password"])
    _unblock(e2e, ATTACKER)
    try:
        with RawRegistrar(ATTACKER, door, user) as attacker:
            finals = [attacker.register(f"badpassword{n}") for n in range(20)]
            # The block follows the 10th failure by the time an AMI event and an nft
            # command take; the 20 attempts may all be answered before it lands.
            for _ in range(50):
                if ATTACKER in _blocked(e2e):
                    break
                await asyncio.sleep(0.1)
            # Blocked on the apps' door: even the right password gets no answer at all.
            right = attacker.register(password, timeout=2.0)
        assert finals[0] == 401
        first_silent = finals.index(None) if None in finals else len(finals)
        assert all(code == 401 for code in finals[:first_silent]), finals
        assert all(code is None for code in finals[first_silent:]), finals
        assert ATTACKER in _blocked(e2e)
        assert right is None
        guard_log = e2e.config.path("logs", "guard.log").read_text()
        assert f"[{ATTACKER}] blocked for 300 s after 10 SIP authentication failures" in guard_log
        # ... and on the terminals' door too: the same source is the same attacker.
        t = e2e.terminal
        with RawUac((ATTACKER, 0), (e2e.config.host, e2e.config.sip_port)) as uac:
            assert uac.invite(t.name, t.password, exten="9999", timeout=2.0).codes == ()
        # The app on 127.0.0.1 still registers (and then leaves: Expires 0).
        with RawRegistrar("127.0.0.1", door, user) as app:
            assert app.register(password, timeout=3.0) == 200
            assert app.register(password, expires=0, timeout=3.0) == 200
    finally:
        _unblock(e2e, ATTACKER)
