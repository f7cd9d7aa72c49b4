"""The production profile (config/production.example.toml) on a real stack, with
terminals, an outsider and the carrier in network namespaces this test creates.

    netns <p>-term     10.213.X1.2  the terminal subnet 10.213.X1.0/24
    netns <p>-out      10.213.X2.2  an address outside every terminal subnet
    netns <p>-carrier  10.213.X3.2  the carrier (the only trunk source)

(X = KINLINE_PORT_OFFSET, so side-by-side runs do not collide.) Each namespace
reaches the host through a veth pair; the host ends are 10.213.Xk.1. SIP listens
on 10.213.X1.1 (the "facility network"); AGI, AMI and Redis stay on 127.0.0.1.
The addresses exist only while the test runs: everything is removed in a finally.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ivr.model import AllowedNumber, Facility, Inmate, InmateStatus
from ivr.pin import PinHasher
from ivr.tariffs import demo_tariff
from store.redis_store import RedisStore
from tests.e2e.conftest import give_name
from tests.e2e.harness import AGENT, AmiWatch, SipAgent, watching
from tools import stack
from tools.asterisk_conf import TerminalLogin, save_terminals
from tools.config import REPO, StackConfig, load_config, load_secrets

pytestmark = pytest.mark.e2e

OFFSET = int(os.environ.get("KINLINE_PORT_OFFSET") or 0)
PREFIX = f"kl{OFFSET}p"  # namespace and interface names (interface names: at most 15 characters)
CARRIER_PORT = 5080
MOBILE = "+79161234567"
PIN = "2468"
FACILITY = Facility("prodfac", "Colony number one", "UTC", "RUB", "en", "mon-sun 00:00-23:59")


def _net(k: int) -> str:
    return f"10.213.{OFFSET * 10 + k}"


TERM_NET, OUT_NET, CARRIER_NET = _net(1), _net(2), _net(3)
SIP_BIND = f"{TERM_NET}.1"
NAMESPACES = {"term": TERM_NET, "out": OUT_NET, "carrier": CARRIER_NET}


def _ip(*args: str, ns: str | None = None, check: bool = True) -> None:
    argv = ["ip", *(["netns", "exec", ns, "ip"] if ns else []), *args]
    subprocess.run(argv, check=check, capture_output=True, timeout=10)


def _remove_networks() -> None:
    for name in NAMESPACES:
        _ip("netns", "del", f"{PREFIX}-{name}", check=False)  # takes the veth pair with it
        _ip("link", "del", f"{PREFIX}{name[0]}h", check=False)


@pytest.fixture(scope="module")
def networks() -> Iterator[None]:
    _remove_networks()  # what a killed earlier run may have left
    try:
        for name, net in NAMESPACES.items():
            ns, host_end, ns_end = f"{PREFIX}-{name}", f"{PREFIX}{name[0]}h", f"{PREFIX}{name[0]}n"
            _ip("netns", "add", ns)
            _ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end)
            _ip("link", "set", ns_end, "netns", ns)
            _ip("addr", "add", f"{net}.1/24", "dev", host_end)
            _ip("link", "set", host_end, "up")
            _ip("link", "set", "lo", "up", ns=ns)
            _ip("addr", "add", f"{net}.2/24", "dev", ns_end, ns=ns)
            _ip("link", "set", ns_end, "up", ns=ns)
            _ip("route", "add", "default", "via", f"{net}.1", ns=ns)
        yield
    finally:
        _remove_networks()


@dataclass(frozen=True)
class Prod:
    config: StackConfig
    terminal: TerminalLogin  # of FACILITY, whose subnet is TERM_NET.0/24
    stranger: TerminalLogin  # of a facility with no subnet: accepted from nowhere

    def target(self, exten: str) -> str:
        return f"sip:{exten}@{self.config.sip_host}:{self.config.sip_port}"


def _config_text(state: Path) -> str:
    """config/production.example.toml with this test's addresses, and ports apart
    from every other stack (test.toml's plus 50; KINLINE_PORT_OFFSET moves them by N*100)."""
    return f"""
[network]
host = "127.0.0.1"
sip_bind = "{SIP_BIND}"

[ports]
sip = 15110
trunk = 15130
agi = 14623
ami = 15088
redis = 16429
api = 18130
postgres = 15490
rtp_start = 13000
rtp_end = 13999

[carrier]
address = "{CARRIER_NET}.2"
port = {CARRIER_PORT}

[terminal_subnets]
{FACILITY.id} = ["{TERM_NET}.0/24"]

[paths]
state = "{state}"
asterisk_root = "/var/cache/kinline/asterisk-root"
"""


async def _provision(config: StackConfig) -> None:
    store = RedisStore.from_url(config.redis_url)
    try:
        await store.put_facility(FACILITY)
        await store.put_tariff(FACILITY.id, demo_tariff())
    finally:
        await store.aclose()


@pytest.fixture(scope="module")
def prod(networks: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prod]:
    folder = tmp_path_factory.mktemp("production")
    path = folder / "production.toml"
    path.write_text(_config_text(folder / "state"))
    saved = os.environ.pop("KINLINE_STATE", None)  # the session stack's; ours is in the file
    try:
        config = load_config(path)
    finally:
        if saved is not None:
            os.environ["KINLINE_STATE"] = saved
    assert (config.host, config.sip_host) == ("127.0.0.1", SIP_BIND)
    terminal = TerminalLogin("term-prod", secrets.token_hex(12), "en", FACILITY.id)
    stranger = TerminalLogin("term-stranger", secrets.token_hex(12), "en", "elsewhere")
    save_terminals(config, [terminal.stored(), stranger.stored()])  # the passwords stay in memory
    stack.up(config)
    try:
        asyncio.run(_provision(config))
        yield Prod(config, terminal, stranger)
    finally:
        stack.down(config)


@pytest.fixture
async def ami(prod: Prod) -> AsyncIterator[AmiWatch]:
    async with watching(prod.config) as watch:
        yield watch


@pytest.fixture
async def agents() -> AsyncIterator[object]:
    started: list[SipAgent] = []

    async def start(ns: str, *args: str) -> SipAgent:
        """A pjsua2 agent inside network namespace ``ns``, bound to that namespace's address."""
        proc = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", f"{PREFIX}-{ns}", sys.executable, str(AGENT), *args,
            "--bind", f"{NAMESPACES[ns]}.2",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            cwd=REPO,
        )
        agent = SipAgent(proc)
        started.append(agent)
        await agent.wait_for("ready", timeout=10)
        return agent

    yield start
    for agent in started:
        await agent.close()


async def _final_code(agent: SipAgent) -> int:
    ended = await agent.ended(timeout=20)
    return int(ended["code"])


def _channels(ami: AmiWatch, prefix: str) -> list[str]:
    return [m.get("Channel") for m in ami.events if m.event == "Newchannel" and m.get("Channel").startswith(prefix)]


async def test_a_terminal_calls_from_its_subnet_only(prod: Prod, ami: AmiWatch, agents: object) -> None:
    start = agents
    t = prod.terminal
    # Inside its facility's subnet: the terminal authenticates and the greeting answers.
    inside = await start("term", "call", "--target", prod.target("9999"),  # type: ignore[operator]
                         "--user", t.name, "--password", t.password)
    await inside.wait_for("state", lambda e: e["state"] == "CONFIRMED", timeout=20)
    await ami.wait_for("Newchannel", lambda m: m.get("Channel").startswith(f"PJSIP/{t.name}-"))
    await inside.send("hangup")
    await inside.ended()

    # The same credentials from outside every terminal subnet: refused like an unknown user.
    outside = await start("out", "call", "--target", prod.target("9999"),  # type: ignore[operator]
                          "--user", t.name, "--password", t.password)
    refused = await _final_code(outside)
    unknown = await start("out", "call", "--target", prod.target("9999"),  # type: ignore[operator]
                          "--user", "nobody", "--password", "whatever12345")
    assert refused == await _final_code(unknown) == 401
    # A terminal of a facility that has no subnet is accepted from nowhere, even inside the network.
    stranger = await start("term", "call", "--target", prod.target("9999"),  # type: ignore[operator]
                           "--user", prod.stranger.name, "--password", prod.stranger.password)
    assert await _final_code(stranger) == 401
    await ami.drain(0.5)
    assert len(_channels(ami, f"PJSIP/{t.name}-")) == 1, "only the call from inside made a channel"
    assert _channels(ami, f"PJSIP/{prod.stranger.name}-") == []


async def test_only_the_carrier_reaches_the_trunk(prod: Prod, ami: AmiWatch, agents: object) -> None:
    start = agents
    # "trunk" from the carrier's port, but on a terminal's or an outsider's address: a 401.
    for ns in ("out", "term"):
        impostor = await start(ns, "call", "--target", prod.target("100"),  # type: ignore[operator]
                               "--user", "trunk", "--password", "guess12345", "--port", str(CARRIER_PORT))
        assert await _final_code(impostor) == 401, ns
    await ami.drain(0.5)
    assert _channels(ami, "PJSIP/trunk-") == []

    # From the carrier's address and port the request is the trunk's, with no challenge:
    # it reaches the [from-trunk] context (which refuses calls from the network).
    carrier = await start("carrier", "call", "--target", prod.target("100"),  # type: ignore[operator]
                          "--user", "trunk", "--port", str(CARRIER_PORT))
    channel = await ami.wait_for("Newchannel", lambda m: m.get("Channel").startswith("PJSIP/trunk-"))
    assert channel.get("Context") == "from-trunk"
    assert await _final_code(carrier) != 401


async def test_an_inmate_call_goes_out_to_the_carrier(prod: Prod, ami: AmiWatch, agents: object) -> None:
    start = agents
    store = RedisStore.from_url(prod.config.redis_url, PinHasher.from_hex(load_secrets(prod.config).pin_key))
    try:
        card = str(secrets.randbelow(9 * 10**9) + 10**9)
        inmate = Inmate(f"inmate-{card}", "Test Inmate", FACILITY.id, InmateStatus.CONVICTED)
        await store.put_inmate(inmate)
        give_name(inmate.id, prod.config)  # not asked to record a name before the number
        await store.create_card(card, inmate.id, FACILITY.id, PIN, "en")
        await store.top_up(card, 10_000, f"pay-{card}")
        await store.allow_number(card, AllowedNumber(MOBILE, "Mother"))

        relative = await start("carrier", "answer", "--port", str(CARRIER_PORT), "--ring", "0.3")  # type: ignore[operator]
        t = prod.terminal
        term = await start("term", "call", "--target", prod.target("100"),  # type: ignore[operator]
                           "--user", t.name, "--password", t.password)
        uid = (await ami.wait_for("Newchannel", lambda m: m.get("Channel").startswith(f"PJSIP/{t.name}-"))
               ).get("Uniqueid")

        async def answer(prompt: str, digits: str) -> None:
            await ami.wait_played(uid, f"kinline/en/{prompt}", timeout=20)
            await term.send(f"dtmf {digits}# info")

        await answer("enter-card", card)
        await answer("enter-pin", PIN)
        await answer("enter-number", MOBILE[1:])
        # Asterisk dials the carrier's address from the facility network address.
        incoming = await relative.wait_for("incoming", timeout=30)
        assert MOBILE in incoming["local"]
        await ami.wait_for("BridgeEnter", lambda m: m.get("Uniqueid") == uid, timeout=30)
        await relative.send("hangup")
        await term.ended(timeout=20)
        await ami.drain(0.5)
        records = await store.call_records(card)
        assert [r.dial_status for r in records] == ["ANSWER"]
    finally:
        await store.aclose()
