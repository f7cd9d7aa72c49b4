"""The apps' SIP door (transport-app) in production.

Under attack: the guard counts failed REGISTERs of an app account there as it does the
terminals', and blocks the source on both doors. The attacker is 127.0.0.23 (the whole
127/8 is loopback), never 127.0.0.1, so the apps and terminals of the other tests are
never blocked; nor 127.0.0.2-9, the sources of test_doors.py: the guard remembers
whom it blocked for 300 s and would not block it again there.

Behind NAT: a stack of its own whose apps' door is bound to a "private" address with
network.app_sip_nat_address set; an app in a network namespace (outside local_net) sees
the public address in Asterisk's requests, an app on loopback (always local) the bound one,
and the API tells apps the public name:

    netns kl<X>a-app  10.213.<X>5.2  an app on the internet side
    host end          10.213.<X>5.1  transport-app's bind (the "private" address)

(X = KINLINE_PORT_OFFSET.) The namespace exists only while the test runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ami.client import AmiClient
from ami.protocol import AmiActionError
from tests.e2e.conftest import E2E
from tests.e2e.harness import guard_blocked, guard_unblock
from tests.e2e.rawsip import RawUac, digest
from tools import stack
from tools.config import REPO, StackConfig, load_config, load_secrets

pytestmark = pytest.mark.e2e

ATTACKER = "127.0.0.23"
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

    def wait_options(self, timeout: float) -> str | None:
        """The next OPTIONS Asterisk sends (its qualify), answered 200; None if none came."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data, source = self.sock.recvfrom(65535)
            except TimeoutError:
                return None
            request = data.decode(errors="replace")
            if request.startswith("OPTIONS "):
                heads = [ln for ln in request.split("\r\n")
                         if ln.split(":", 1)[0].lower() in ("via", "from", "to", "call-id", "cseq")]
                self.sock.sendto("\r\n".join(["SIP/2.0 200 OK", *heads, "Content-Length: 0", "", ""]).encode(),
                                 source)
                return request
        return None

    def refuse_invite(self, timeout: float) -> str | None:
        """The next INVITE (with its SDP), answered 486 Busy Here; None if none came."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data, source = self.sock.recvfrom(65535)
            except TimeoutError:
                return None
            request = data.decode(errors="replace")
            if request.startswith("INVITE "):
                heads = [ln if not ln.lower().startswith("to:") else ln + ";tag=" + secrets.token_hex(4)
                         for ln in request.split("\r\n")
                         if ln.split(":", 1)[0].lower() in ("via", "from", "to", "call-id", "cseq")]
                self.sock.sendto("\r\n".join(["SIP/2.0 486 Busy Here", *heads, "Content-Length: 0", "", ""]).encode(),
                                 source)
                return request
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




@dataclass
class AppAccount:
    """An app's SIP account as the API gave it, and its relative's API session."""

    server: str  # what the API tells the app to register to
    port: int
    username: str
    password: str
    http: httpx.AsyncClient
    auth: dict[str, str]

    async def light(self) -> str:
        """The status light (asks Asterisk to qualify a contact not yet qualified)."""
        r = await self.http.get("/v1/app/status", headers=self.auth)
        assert r.status_code == 200, r.text
        light: str = r.json()["light"]
        return light


@contextlib.asynccontextmanager
async def app_account_on(config: StackConfig, client_address: str) -> AsyncIterator[AppAccount]:
    """A new relative's device registered through the stack's API: its SIP credentials and
    the door the API gives it (the relative's login code is read from the stack's SMS log)."""
    phone = f"+7916{secrets.randbelow(10**7):07d}"
    async with httpx.AsyncClient(base_url=f"http://{config.host}:{config.api_port}", timeout=10) as http:
        r = await http.post("/v1/auth/code", json={"phone": phone}, headers={"X-Forwarded-For": client_address})
        assert r.status_code == 202, r.text
        lines = [ln.split() for ln in config.path("logs", "sms.log").read_text().splitlines()]
        code = [c for p, c in lines if p == phone][-1]
        r = await http.post("/v1/auth/session", json={"phone": phone, "code": code})
        assert r.status_code == 200, r.text
        auth = {"Authorization": f"Bearer {r.json()['token']}"}
        r = await http.post("/v1/app/devices", json={"platform": "fcm", "token": secrets.token_urlsafe(40),
                                                     "app_id": APP_ID}, headers=auth)
        assert r.status_code == 201, r.text
        created = r.json()
        sip = created["sip"]
        try:
            yield AppAccount(str(sip["server"]), int(sip["port"]), str(sip["username"]), str(sip["password"]),
                             http, auth)
        finally:
            await http.delete(f"/v1/app/devices/{created['device_id']}", headers=auth)


@pytest.fixture
async def app_account(e2e: E2E) -> AsyncIterator[AppAccount]:
    async with app_account_on(e2e.config, "198.18.7.1") as account:
        yield account


async def test_twenty_bad_app_registrations_block_the_source_on_both_doors(
        e2e: E2E, app_account: AppAccount) -> None:
    door = (e2e.config.app_sip_host, e2e.config.app_sip_port)
    assert (app_account.server, app_account.port) == door
    user, password = app_account.username, app_account.password
    guard_unblock(e2e.config, ATTACKER)
    try:
        with RawRegistrar(ATTACKER, door, user) as attacker:
            finals = [attacker.register(f"badpassword{n}") for n in range(20)]
            # The block follows the 10th failure by the time an AMI event and an nft
            # command take; the 20 attempts may all be answered before it lands.
            for _ in range(50):
                if ATTACKER in guard_blocked(e2e.config):
                    break
                await asyncio.sleep(0.1)
            # Blocked on the apps' door: even the right password gets no answer at all.
            right = attacker.register(password, timeout=2.0)
        assert finals[0] == 401
        first_silent = finals.index(None) if None in finals else len(finals)
        assert all(code == 401 for code in finals[:first_silent]), finals
        assert all(code is None for code in finals[first_silent:]), finals
        assert ATTACKER in guard_blocked(e2e.config)
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
        guard_unblock(e2e.config, ATTACKER)


# --- Behind NAT: a stack of its own ------------------------------------------------------

OFFSET = int(os.environ.get("KINLINE_PORT_OFFSET") or 0)
PREFIX = f"kl{OFFSET}a"  # namespace and interface names (at most 15 characters)
APP_NET = f"10.213.{OFFSET * 10 + 5}"  # test_production_profile.py uses <X>1-<X>3
PRIVATE = f"{APP_NET}.1"  # transport-app's bind: the "private" side of the NAT
PUBLIC = "192.0.2.99"  # the NAT's public address (a documentation address: never routed)
PUBLIC_NAME = "sip.example.org"
APP_SCRIPT = """
import json, sys
from tests.e2e.test_app_door import RawRegistrar
source, host, port, user, password = sys.argv[1:6]
with RawRegistrar(source, (host, int(port)), user) as app:
    print(json.dumps({"reg": app.register(password, timeout=5.0)}), flush=True)
    print(json.dumps({"options": app.wait_options(30.0)}), flush=True)
    print(json.dumps({"invite": app.refuse_invite(30.0)}), flush=True)
    app.register(password, expires=0, timeout=2.0)
"""


def _ip(*args: str, ns: str | None = None, check: bool = True) -> None:
    argv = ["ip", *(["netns", "exec", ns, "ip"] if ns else []), *args]
    subprocess.run(argv, check=check, capture_output=True, timeout=10)


def _remove_network() -> None:
    _ip("netns", "del", f"{PREFIX}-app", check=False)  # takes the veth pair with it
    _ip("link", "del", f"{PREFIX}h", check=False)


def _nat_config_text(state: Path) -> str:
    """Ports apart from every other stack: test.toml's plus 25 (the production profile's
    test uses plus 50); KINLINE_PORT_OFFSET moves them by N*100."""
    return f"""
[network]
host = "127.0.0.1"
app_sip_bind = "{PRIVATE}"
app_sip_public = "{PUBLIC_NAME}"
app_sip_nat_address = "{PUBLIC}"
app_sip_local_nets = ["172.16.0.0/12"]  # not the app namespace

[ports]
sip = 15085
trunk = 15105
agi = 14598
ami = 15063
redis = 16404
api = 18105
postgres = 15465
app_sip = 15095
agi_metrics = 19598
reconciler_metrics = 19599
pushbridge_metrics = 19600
rtp_start = 11000
rtp_end = 11999

[paths]
state = "{state}"
asterisk_root = "/var/cache/kinline/asterisk-root"
"""


@pytest.fixture(scope="module")
def nat_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackConfig]:
    _remove_network()  # what a killed earlier run may have left
    try:
        ns, host_end, ns_end = f"{PREFIX}-app", f"{PREFIX}h", f"{PREFIX}n"
        _ip("netns", "add", ns)
        _ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end)
        _ip("link", "set", ns_end, "netns", ns)
        _ip("addr", "add", f"{PRIVATE}/24", "dev", host_end)
        _ip("link", "set", host_end, "up")
        _ip("link", "set", "lo", "up", ns=ns)
        _ip("addr", "add", f"{APP_NET}.2/24", "dev", ns_end, ns=ns)
        _ip("link", "set", ns_end, "up", ns=ns)
        folder = tmp_path_factory.mktemp("appnat")
        path = folder / "production.toml"
        path.write_text(_nat_config_text(folder / "state"))
        saved = os.environ.pop("KINLINE_STATE", None)  # the session stack's; ours is in the file
        try:
            config = load_config(path)
        finally:
            if saved is not None:
                os.environ["KINLINE_STATE"] = saved
        assert (config.app_sip_host, config.app_sip_nat_address) == (PRIVATE, PUBLIC)
        stack.up(config)
        try:
            yield config
        finally:
            stack.down(config)
    finally:
        _remove_network()


async def _app_sees(config: StackConfig, account: AppAccount, argv: list[str]) -> tuple[int, str, str]:
    """Run an app (``argv``: the registrar script and its arguments): the code of its REGISTER,
    the OPTIONS Asterisk sends it when the status light asks for a qualify, and the INVITE
    (with its SDP) it gets when dialed as the 00 routing does (it refuses it: busy)."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.stdout is not None and proc.stderr is not None
    secret = load_secrets(config)
    originate = AmiClient(config.host, config.ami_port, secret.ami_originate_user, secret.ami_originate_secret,
                          action_timeout=15, events="off")
    await originate.start()
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 15)
        assert line, (await proc.stderr.read()).decode()
        code = int(json.loads(line)["reg"])
        if code != 200:
            return code, "", ""
        seen: list[str] = []
        for key, poke in (("options", account.light), ("invite", lambda: _dial(originate, account.username))):
            reading = asyncio.ensure_future(proc.stdout.readline())
            deadline = time.monotonic() + 20
            while not reading.done() and time.monotonic() < deadline:
                await poke()  # light: qualifies a contact not yet qualified; dial: an INVITE
                await asyncio.wait({reading}, timeout=0.5)
            seen.append(json.loads(await asyncio.wait_for(reading, 1))[key] or "")
        return code, seen[0], seen[1]
    finally:
        await originate.close()
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


async def _dial(originate: AmiClient, endpoint: str) -> str:
    with contextlib.suppress(AmiActionError):  # the app refuses: busy
        await originate.action("Originate", Channel=f"PJSIP/{endpoint}", Application="Wait", Data="1",
                               Timeout="5000", Async="false")
    return ""


def _header(message: str, name: str) -> str:
    return next((ln.split(":", 1)[1].strip() for ln in message.split("\r\n")
                 if ln.lower().startswith(name.lower() + ":")), "")


async def test_behind_nat_apps_see_the_public_address_and_local_nets_the_private(nat_stack: StackConfig) -> None:
    config = nat_stack
    door = [PRIVATE, str(config.app_sip_port)]
    # The API tells apps the public name, never the private address Asterisk is bound to.
    async with app_account_on(config, "198.18.7.2") as outside, app_account_on(config, "198.18.7.3") as local:
        assert (outside.server, outside.port) == (PUBLIC_NAME, config.app_sip_port)
        # An app on the internet side (outside local_net): Asterisk's requests route back to the
        # public address (Via, Contact) and its SDP offers media there.
        code, options, invite = await _app_sees(config, outside, [
            "ip", "netns", "exec", f"{PREFIX}-app", sys.executable, "-c", APP_SCRIPT, f"{APP_NET}.2", *door,
            outside.username, outside.password])
        assert code == 200
        assert _header(options, "Via").startswith(f"SIP/2.0/UDP {PUBLIC}:{config.app_sip_port}"), options
        assert f"@{PUBLIC}:{config.app_sip_port}>" in _header(options, "Contact"), options
        assert _header(invite, "Via").startswith(f"SIP/2.0/UDP {PUBLIC}:{config.app_sip_port}"), invite
        assert f"@{PUBLIC}:{config.app_sip_port}>" in _header(invite, "Contact"), invite
        assert f"\r\nc=IN IP4 {PUBLIC}\r\n" in invite and f"c=IN IP4 {PRIVATE}" not in invite, invite
        # An app on loopback (always in local_net): nothing rewritten, the bound address.
        code, options, invite = await _app_sees(config, local, [
            sys.executable, "-c", APP_SCRIPT, "127.0.0.1", *door, local.username, local.password])
        assert code == 200
        assert _header(options, "Via").startswith(f"SIP/2.0/UDP {PRIVATE}:{config.app_sip_port}"), options
        assert _header(invite, "Via").startswith(f"SIP/2.0/UDP {PRIVATE}:{config.app_sip_port}"), invite
        assert invite and PUBLIC not in options + invite, invite
