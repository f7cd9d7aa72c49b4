"""Two Asterisk nodes behind Kamailio (config/test-two-nodes.toml): the terminals' calls are
dispatched to both nodes and billed exactly once each; with one node's Asterisk killed,
new calls go to the other within 10 s, and the killed node's bridged call is settled by
that node's own reconciler (one record, one charge, the card free again).

A stack of its own (other ports than the session's test stack), started once for the module.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pytest
import redis.asyncio as aioredis

from guard.policy import BLOCK_S, THRESHOLD
from ivr.devices import endpoint_id
from ivr.model import AllowedNumber, CallRecord
from ivr.pin import PinHasher
from ivr.relatives import CardSettings, code_hash, token_hash
from ivr.tariffs import demo_tariff
from store import wake_records as records
from store.app_wake import WAKE_STREAM
from store.devices import DeviceStore
from store.redis_store import RedisStore
from store.relatives import RelativeStore
from tests.e2e.conftest import FACILITIES
from tests.e2e.harness import AmiWatch, SipAgent, guard_blocked, watching
from tests.e2e.rawsip import RawUac
from tests.e2e.test_app_door import RawRegistrar
from tests.e2e.test_inmate_calls import INMATE_SERVICE, MOBILE, PIN, new_card
from tests.fakes.push_providers import FakePushServices
from tools import stack
from tools.asterisk_conf import TerminalLogin, save_terminals
from tools.config import StackConfig, load_config, load_secrets, nodes

pytestmark = pytest.mark.e2e

BALANCE = 10_000
FEE_AND_ONE_MINUTE = 150 + 359  # the demo tariff's mobile fee + one started minute
APP_FEE, APP_RATE = 150, 205  # the demo tariff: connection fee, app_audio per minute
APP_WINDOW_S = 15  # how long a call waits for a woken app
CALLS = 4  # and 3 more in the second test: 7 calls from one terminal in all
TERMINALS_NET = "127.0.0.0/29"  # facility "open"'s terminals: 127.0.0.1 and the guard test's 127.0.0.4 in it
T = TypeVar("T")


@dataclass(frozen=True)
class Cluster:
    config: StackConfig
    nodes: list[StackConfig]
    terminal: TerminalLogin


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, fakes: FakePushServices) -> Iterator[Cluster]:
    state = tmp_path_factory.mktemp("two-nodes")
    before = os.environ.get("KINLINE_STATE")
    # The push bridge pushes to the fakes; a woken app is awaited APP_WINDOW_S (both nodes).
    push_env = {"KINLINE_PUSH_CONFIG": str(fakes.write_config(tmp_path_factory.mktemp("push"))),
                "KINLINE_APP_WINDOW_S": str(APP_WINDOW_S)}
    os.environ.update(push_env)
    # new_card's give_name() writes the inmate's name under $KINLINE_STATE: the nodes share it
    os.environ["KINLINE_STATE"] = str(state)
    # The terminals' subnets as production has them: Kamailio checks them, the nodes take
    # terminals from Kamailio's address alone (127.0.0.1 here: the tests' own terminals).
    config = replace(load_config("config/test-two-nodes.toml"), terminal_subnets={"open": (TERMINALS_NET,)})
    terminal = TerminalLogin("term-two", secrets.token_hex(12), "en", "open")
    save_terminals(config, [terminal.stored()])
    stack.up(config)
    try:
        asyncio.run(_provision(config))
        yield Cluster(config, nodes(config), terminal)
    finally:
        stack.down(config)
        for key in push_env:
            os.environ.pop(key, None)
        if before is None:
            os.environ.pop("KINLINE_STATE", None)
        else:
            os.environ["KINLINE_STATE"] = before


async def _provision(config: StackConfig) -> None:
    store = RedisStore.from_url(config.redis_url)
    try:
        await store.put_facility(FACILITIES["open"])
        await store.put_tariff("open", demo_tariff())
    finally:
        await store.aclose()


@pytest.fixture
async def store(cluster: Cluster) -> AsyncIterator[RedisStore]:
    client = RedisStore.from_url(cluster.config.redis_url, PinHasher.from_hex(load_secrets(cluster.config).pin_key))
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def watches(cluster: Cluster) -> AsyncIterator[list[AmiWatch]]:
    """One AMI watch per node (node n at index n - 1)."""
    async with contextlib.AsyncExitStack() as stack_:
        yield [await stack_.enter_async_context(watching(node)) for node in cluster.nodes]


@pytest.fixture
async def relative(cluster: Cluster, tmp_path: Path) -> AsyncIterator[SipAgent]:
    """The phone network: both nodes dial the same trunk."""
    agent = await SipAgent.start("answer", "--port", str(cluster.config.trunk_port), "--ring", "0.3",
                                 "--rtp-port", "20700", "--record", str(tmp_path / "relative.wav"))
    try:
        yield agent
    finally:
        await agent.close()


@dataclass
class Call:
    """A terminal's call as the node that took it sees it."""

    agent: SipAgent
    node: int  # 1-based
    ami: AmiWatch
    uid: str

    async def prompt(self, name: str, timeout: float = 20) -> None:
        await self.ami.wait_played(self.uid, f"kinline/en/{name}", timeout)


class Terminal:
    """One terminal (one SIP login) placing calls through Kamailio, one after another."""

    def __init__(self, cluster: Cluster, watches: list[AmiWatch]) -> None:
        self.cluster, self.watches = cluster, watches
        self.agents: list[SipAgent] = []
        self.seen: set[str] = set()

    async def call(self, timeout: float = 15) -> Call:
        t = self.cluster.terminal
        target = f"sip:{INMATE_SERVICE}@{self.cluster.config.sip_host}:{self.cluster.config.sip_port}"
        agent = await SipAgent.start("call", "--target", target, "--user", t.name, "--password", t.password,
                                     "--rtp-port", "20600")
        self.agents.append(agent)
        node, uid = await self._channel(timeout)
        return Call(agent, node, self.watches[node - 1], uid)

    async def _channel(self, timeout: float) -> tuple[int, str]:
        """The node whose AMI shows this terminal's new channel first, and its uniqueid."""
        deadline = time.monotonic() + timeout
        prefix = f"PJSIP/{self.cluster.terminal.name}-"
        while time.monotonic() < deadline:
            for n, watch in enumerate(self.watches, start=1):
                with contextlib.suppress(AssertionError):
                    message = await watch.wait_for("Newchannel", lambda m: m.get("Channel").startswith(prefix)
                                                   and m.get("Uniqueid") not in self.seen, timeout=0.2)
                    self.seen.add(message.get("Uniqueid"))
                    return n, message.get("Uniqueid")
        raise AssertionError(f"no node took the terminal's call within {timeout} s")

    async def close(self) -> None:
        for agent in self.agents:
            await agent.close()


@pytest.fixture
async def terminal(cluster: Cluster, watches: list[AmiWatch]) -> AsyncIterator[Terminal]:
    term = Terminal(cluster, watches)
    try:
        yield term
    finally:
        await term.close()


async def _key_in(call: Call, card: str, number: str) -> None:
    """The card, its PIN and the number, each after its prompt."""
    for prompt, digits in (("enter-card", card), ("enter-pin", PIN), ("enter-number", number)):
        await call.prompt(prompt)
        await call.agent.send(f"dtmf {digits}# info")


async def _bridged_call(store: RedisStore, terminal: Terminal, relative: SipAgent) -> tuple[str, Call]:
    """A new card logs in and dials the relative, who answers and hears the introduction."""
    card = await new_card(store, "open", BALANCE)
    call = await terminal.call()
    before = {e["call_id"] for e in relative.events if e["event"] == "incoming"}
    await _key_in(call, card, MOBILE[1:])
    await relative.wait_for("incoming", lambda e: e["call_id"] not in before, timeout=30)
    await call.ami.wait_for("BridgeEnter", lambda m: m.get("Uniqueid") == call.uid, timeout=30)
    return card, call


async def _eventually(probe: Callable[[], Awaitable[T | None]], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            value = await probe()
            if value:
                return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.25)


async def _one_record(store: RedisStore, card: str, timeout: float = 30) -> CallRecord:
    """The card's call record, once it is there and the card is free again: exactly one."""
    async def record() -> CallRecord | None:
        records = await store.call_records(card)
        return records[0] if records else None

    cdr = await _eventually(record, timeout, f"card {card}'s call record")
    await _eventually(lambda: _free(store, card), 30, f"card {card} to be free")
    records = await store.call_records(card)
    assert [r.call_id for r in records] == [cdr.call_id], "exactly one call record"
    return cdr


async def _billed_once(store: RedisStore, card: str, timeout: float = 30) -> CallRecord:
    """The card's one record, one charge of exactly its amount, the ledger adding up, no
    hold left and the card free again."""
    cdr = await _one_record(store, card, timeout)
    ledger = list(reversed(await store.ledger(card, limit=100)))
    charges = [e for e in ledger if e.kind == "charge"]
    assert [(e.ref, e.amount) for e in charges] == [(cdr.call_id, cdr.amount)], "exactly one charge"
    balance = (await store.card(card)).balance  # type: ignore[union-attr]
    moved = {"topup": 1, "release": 1, "reserve": -1, "charge": 0}
    assert sum(moved[e.kind] * e.amount for e in ledger) == balance == BALANCE - cdr.amount
    assert await store.reservation(cdr.call_id) is None, "no hold left open"
    return cdr


async def _free(store: RedisStore, card: str) -> bool:
    return await store.card_lock(card) is None


async def test_calls_from_one_terminal_land_on_both_nodes_and_are_billed_exactly(
    cluster: Cluster, store: RedisStore, terminal: Terminal, relative: SipAgent
) -> None:
    done: list[tuple[int, CallRecord]] = []
    for n in range(CALLS):
        began = time.monotonic()
        card, call = await _bridged_call(store, terminal, relative)
        sys.stderr.write(f"\ncall {n + 1}: node {call.node}, bridged after {time.monotonic() - began:.1f} s\n")
        await asyncio.sleep(3.5)
        await relative.send("hangup")
        await call.ami.wait_for("Hangup", lambda m, c=call: m.get("Uniqueid") == c.uid, timeout=15)  # type: ignore[misc]
        cdr = await _billed_once(store, card)
        assert cdr.call_id.startswith(f"kinline-n{call.node}-"), "the call id names the node that took it"
        assert (cdr.dial_status, cdr.evidence, cdr.amount) == ("ANSWER", "call", FEE_AND_ONE_MINUTE)
        assert 3 <= cdr.answered_s <= 6
        done.append((call.node, cdr))
        sys.stderr.write(f"call {n + 1}: billed and card free after {time.monotonic() - began:.1f} s\n")
    by_node = [n for n, _ in done]
    # round robin over the two nodes: each took half of the calls
    assert sorted(by_node) == [1] * (CALLS // 2) + [2] * (CALLS // 2), by_node
    assert len({cdr.call_id for _, cdr in done}) == CALLS, "call ids unique across the nodes"
    for _, cdr in done:
        data = cluster.config.path("recordings", Path(cdr.recording_path).name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == cdr.recording_sha256


def test_ten_refused_passwords_from_one_address_close_the_front_door_to_it_alone(cluster: Cluster) -> None:
    """The guard's rule at Kamailio (the nodes see only its address): the 10th refused digest
    from one source blocks it; after that, even the right password from there gets no answer,
    while the terminals elsewhere still get through."""
    t = cluster.terminal
    target = (cluster.config.sip_host, cluster.config.sip_port)
    attacker = "127.0.0.4"  # the whole 127/8 is loopback
    with RawUac((attacker, 0), target) as uac:
        outcomes = [uac.invite(t.name, f"badpassword{n}", exten="9999", timeout=2.0) for n in range(THRESHOLD + 2)]
        right = uac.invite(t.name, t.password, exten="9999", timeout=2.0)
    finals = [o.code for o in outcomes]
    assert finals == [401] * THRESHOLD + [None, None], finals  # each refused, then nothing at all
    assert right.codes == ()
    log = cluster.config.path("logs", "kamailio.log").read_text()
    assert f"[{attacker}] blocked for {BLOCK_S} s after {THRESHOLD} SIP authentication failures" in log
    with RawUac(("127.0.0.1", 0), target) as good:
        assert good.invite(t.name, t.password, exten="9999", timeout=5.0).code == 200


def test_a_terminal_s_password_from_outside_its_facility_s_subnets_is_refused(cluster: Cluster) -> None:
    """[terminal_subnets] in a cluster: Kamailio refuses a terminal's right password from outside
    its facility's subnets (403, logged), and a node reached past Kamailio takes a terminal from
    Kamailio's address only (its endpoint ACL: Asterisk's 401, as for an unknown user)."""
    t = cluster.terminal
    outsider = "127.0.0.9"
    with RawUac((outsider, 0), (cluster.config.sip_host, cluster.config.sip_port)) as uac:
        refused = uac.invite(t.name, t.password, exten="9999", timeout=3.0)
    assert refused.code == 403, refused  # the first INVITE was challenged by a node, the answer refused here
    log = cluster.config.path("logs", "kamailio.log").read_text()
    assert f"[{outsider}] INVITE as terminal {t.name} refused: not from its facility's subnets" in log
    node = cluster.nodes[1]
    with RawUac((outsider, 0), (node.sip_host, node.sip_port)) as uac:
        past = uac.invite(t.name, t.password, exten="9999", timeout=3.0)
    assert past.code == 401 and past.codes[-1] == 401, past  # the right password, refused by the ACL
    with RawUac(("127.0.0.1", 0), (cluster.config.sip_host, cluster.config.sip_port)) as good:
        assert good.invite(t.name, t.password, exten="9999", timeout=5.0).code == 200  # from inside the net


async def test_each_node_s_guard_blocks_an_app_door_attacker_but_never_kamailio(cluster: Cluster) -> None:
    """Node 2's apps' door under attack: its guard blocks the source. The terminals' failed
    logins all come from Kamailio's address (the test above sent ten): no guard counts them."""
    node = cluster.nodes[1]
    attacker = "127.0.0.26"
    with RawRegistrar(attacker, (node.app_sip_host, node.app_sip_port), "app-" + "0" * 16) as registrar:
        finals = [registrar.register(f"badpassword{n}") for n in range(THRESHOLD * 2)]
        for _ in range(50):  # the block follows the 10th failure by an AMI event and an nft command
            if attacker in guard_blocked(node):
                break
            await asyncio.sleep(0.1)
        assert attacker in guard_blocked(node), finals
        assert registrar.register("anything", timeout=2.0) is None  # no answer at all
    assert finals[0] == 401
    log = node.path("logs", "guard.log").read_text()
    assert f"[{attacker}] blocked for {BLOCK_S} s after {THRESHOLD} SIP authentication failures" in log
    kamailio = cluster.config.sip_host
    for each in cluster.nodes:
        each_log = each.path("logs", "guard.log").read_text()
        assert f"(trusted: {kamailio})" in each_log
        assert f"[{kamailio}]" not in each_log  # never counted (a count is logged at INFO)
        assert kamailio not in guard_blocked(each)


@dataclass(frozen=True)
class AppRelative:
    """A new card and the relative on its list, with one app device."""

    card: str
    phone: str
    device_id: str
    password: str
    token: str


async def _app_relative(cluster: Cluster, store: RedisStore) -> AppRelative:
    card = await new_card(store, "open", BALANCE)
    registry = DeviceStore(cluster.config.postgres_url)
    token = f"e2e-fcm-{secrets.token_hex(8)}"
    phone = f"+7916{secrets.randbelow(10**7):07d}"
    try:
        await store.allow_number(card, AllowedNumber(phone, "Daughter"))
        device, password = await registry.register(phone, "fcm", token, "org.kinline.app")
    finally:
        await registry.aclose()
    return AppRelative(card, phone, device.device_id, password, token)


async def _app_registers(cluster: Cluster, relative: AppRelative) -> SipAgent:
    """The relative's app, registered with node 1's apps' door (the caller closes it)."""
    door = cluster.nodes[0]
    agent = await SipAgent.start("register", "--registrar", f"sip:{door.app_sip_host}:{door.app_sip_port}",
                                 "--user", endpoint_id(relative.device_id), "--password", relative.password,
                                 "--rtp-port", "20900", "--ring", "0.3")
    try:
        await agent.wait_for("reg", lambda e: e["code"] == 200, timeout=20)
    except BaseException:
        await agent.close()
        raise
    return agent


async def _call_on_node_2(terminal: Terminal) -> Call:
    """A terminal's call that Kamailio gave node 2 (round robin: within two calls)."""
    for _ in range(3):
        call = await terminal.call()
        if call.node == 2:
            return call
        await call.agent.close()
    raise AssertionError("no call on node 2")


async def _restart_killed_asterisk(node: StackConfig) -> None:
    """Once its killed Asterisk is reaped, the node's Asterisk started again."""
    async def gone() -> bool:
        stack.service_state(node, "asterisk")  # reaps it
        return stack._pid(node, "asterisk") is None

    await _eventually(gone, 15, "the killed Asterisk to be reaped")
    await asyncio.to_thread(stack.start_service, node, "asterisk")


async def _app_call_on_node_2(cluster: Cluster, store: RedisStore, terminal: Terminal, watches: list[AmiWatch],
                              fakes: FakePushServices, *, registered: bool, relative_pays: bool = False,
                              app_cause: str = "") -> None:
    """A card's "00" call that Kamailio gave node 2, to an app registered with node 1 before
    the call (``registered``) or only once its push came; it answers, talks, hangs up.
    ``relative_pays``: "01" + "00", the relative accepts in the app's menu (key 1) and pays.
    ``app_cause``: the app's BYE carries this failure cause (Reason: Q.850): the call dropped."""
    relative = await _app_relative(cluster, store)
    card, phone, token = relative.card, relative.phone, relative.token
    relatives = RelativeStore(store.redis)
    if relative_pays:  # a relative's account, with money, that takes the card's calls
        assert await relatives.issue_code(phone, code_hash(phone, "123456"), datetime.now(UTC))
        assert await relatives.check_code(phone, code_hash(phone, "123456"), token_hash(f"tok-{phone}")) == "ok"
        await relatives.create_payment(f"pay-{phone}", phone, BALANCE)
        assert await relatives.credit_payment(f"pay-{phone}", BALANCE) == (True, BALANCE)
        await relatives.put_card_settings(phone, card, CardSettings(always_in_touch=True))
    apps: list[SipAgent] = []
    try:
        if registered:
            apps.append(await _app_registers(cluster, relative))
        call = await _call_on_node_2(terminal)
        await _key_in(call, card, ("0100" if relative_pays else "00") + phone[1:])
        if not registered:
            await call.prompt("app-connecting")
            await _eventually(lambda: asyncio.sleep(0, bool(fakes.fcm.pushes_to(token))), 20,
                              "the push at the fake FCM")
            apps.append(await _app_registers(cluster, relative))
        [app] = apps
        await app.wait_for("incoming", timeout=30)
        await app.wait_for("state", lambda e: e["state"] == "CONFIRMED", timeout=30)
        if relative_pays:  # the menu runs on node 2's relay; the app's key crosses node 1
            dial = await call.ami.wait_for("DialBegin", lambda m: m.get("Uniqueid") == call.uid, timeout=30)
            assert dial.get("DestChannel").startswith("PJSIP/kinline-node1-")
            await call.ami.wait_played(dial.get("DestUniqueid"), "kinline/en/accept-menu", timeout=60)
            await app.send("dtmf 1 rfc2833")
        await call.ami.wait_for("BridgeEnter", lambda m: m.get("Uniqueid") == call.uid, timeout=30)
        # node 1 took node 2's relay and rang the app from it
        await watches[0].wait_for("Newchannel", lambda m: m.get("Channel").startswith("PJSIP/kinline-node2-"),
                                  timeout=5)
        await asyncio.sleep(3.5)
        await app.send(f"hangup {app_cause}".strip())
        await call.ami.wait_for("Hangup", lambda m: m.get("Uniqueid") == call.uid, timeout=20)
    finally:
        for agent in apps:
            await agent.close()
    if relative_pays:
        cdr = await _one_record(store, card)
        assert cdr.payer == "callee"
        assert await relatives.balance(phone) == BALANCE - cdr.amount  # the relative paid
        assert (await store.card(card)).balance == BALANCE  # type: ignore[union-attr]
    else:
        cdr = await _billed_once(store, card)
    assert cdr.call_id.startswith("kinline-n2-"), "billed by the node that took the call"
    assert (cdr.dial_status, cdr.number, cdr.route_kind) == ("ANSWER", phone, "app_audio")
    if app_cause:  # node 1 hung the relay up with the app's cause: on node 2 the call dropped
        assert cdr.credit_reason == f"dropped: network cause {app_cause}, last increment credited"
        assert cdr.amount == 0
    else:
        assert cdr.amount == APP_FEE + APP_RATE  # one started minute at the app's rate
    assert 2 <= cdr.answered_s <= 6
    client = aioredis.from_url(cluster.config.redis_url, decode_responses=True)
    try:
        [attempt] = records.per_device(await records.read_attempts(client, cdr.call_id))
        wakes = [f["kind"] for _, f in await client.xrange(WAKE_STREAM) if f.get("call_id") == cdr.call_id]
    finally:
        await client.aclose()
    assert attempt.device_id == relative.device_id
    assert attempt.invite_ms is not None and attempt.answered_ms is not None  # recorded by node 1
    assert attempt.invite_ms <= attempt.answered_ms
    if registered:
        assert attempt.push_sent_ms is None and fakes.fcm.pushes_to(token) == []
        assert wakes == ["cancel"]  # once: at the app's answer (node 1) or after Dial (node 2), not twice
    else:
        [push] = fakes.fcm.pushes_to(token)
        assert push.data["call_id"] == cdr.call_id  # the push named the call the INVITE belongs to
        assert attempt.push_result == "delivered" and attempt.contact_ms is not None
        assert attempt.contact_ms <= attempt.invite_ms
        assert wakes == ["wake", "cancel"]


async def test_an_app_call_taken_by_node_2_rings_the_app_registered_on_node_1_and_is_billed_once(
    cluster: Cluster, store: RedisStore, terminal: Terminal, watches: list[AmiWatch], fakes: FakePushServices
) -> None:
    """Apps register with node 1 (its apps' door) only. A "00" call that Kamailio gave node 2
    asks node 1's AMI whether the app is registered, dials it through node 1 (a relay: node 1
    rings the app's contact and records its INVITE and answer), plays the introduction and
    bills the call on node 2, under node 2's call id, exactly once. No push."""
    await _app_call_on_node_2(cluster, store, terminal, watches, fakes, registered=True)


async def test_an_app_woken_for_a_call_on_node_2_registers_on_node_1_and_is_rung_through_it(
    cluster: Cluster, store: RedisStore, terminal: Terminal, watches: list[AmiWatch], fakes: FakePushServices
) -> None:
    """The app not registered: node 2 asks for the push, hears the contact (the push bridge
    follows node 1) and dials a relay leg; node 1 rings the app once its contact is listed."""
    await _app_call_on_node_2(cluster, store, terminal, watches, fakes, registered=False)


async def test_an_app_s_failure_cause_crosses_node_1_s_relay_and_the_call_counts_as_dropped(
    cluster: Cluster, store: RedisStore, terminal: Terminal, watches: list[AmiWatch], fakes: FakePushServices
) -> None:
    """The app's leg ends in a failure (its BYE: Reason Q.850 cause 41): node 1 hangs the relay
    up with that cause, node 2 reads it as the far leg's and settles the call as dropped."""
    await _app_call_on_node_2(cluster, store, terminal, watches, fakes, registered=True, app_cause="41")


async def test_01_00_on_node_2_the_relative_accepts_in_the_app_through_node_1_and_pays(
    cluster: Cluster, store: RedisStore, terminal: Terminal, watches: list[AmiWatch], fakes: FakePushServices
) -> None:
    """The relative pays ("01" + "00"): node 2 plays the accept menu over its relay to node 1;
    the app's key (RFC 4733) crosses node 1 back; accepted, the relative's account is charged."""
    await _app_call_on_node_2(cluster, store, terminal, watches, fakes, registered=True, relative_pays=True)


async def test_node_1_killed_under_an_app_call_of_node_2_drops_it_and_node_2_settles_it_as_dropped(
    cluster: Cluster, store: RedisStore, terminal: Terminal, watches: list[AmiWatch]
) -> None:
    """The app's media crosses node 1: node 1's Asterisk killed mid-call, node 2's relay gets
    no more RTP and is hung up (44) after the nodes' rtp_timeout; node 2 settles the call as
    dropped (the last increment credited), once, and the card is free. Node 1 restarted."""
    relative = await _app_relative(cluster, store)
    card = relative.card
    one = cluster.nodes[0]
    app = await _app_registers(cluster, relative)
    try:
        call = await _call_on_node_2(terminal)
        await _key_in(call, card, "00" + relative.phone[1:])
        await app.wait_for("state", lambda e: e["state"] == "CONFIRMED", timeout=30)
        await call.ami.wait_for("BridgeEnter", lambda m: m.get("Uniqueid") == call.uid, timeout=30)
        await asyncio.sleep(3)
        pid = stack._pid(one, "asterisk")
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await call.ami.wait_for("Hangup", lambda m: m.get("Uniqueid") == call.uid, timeout=30)
    finally:
        await app.close()
        await _restart_killed_asterisk(one)
    cdr = await _billed_once(store, card)
    assert cdr.call_id.startswith("kinline-n2-") and cdr.dial_status == "ANSWER"
    assert cdr.credit_reason == "dropped: network cause 44, last increment credited"
    assert cdr.amount == 0


async def test_a_killed_node_gets_no_new_calls_and_its_call_is_settled_by_its_reconciler(
    cluster: Cluster, store: RedisStore, terminal: Terminal, relative: SipAgent
) -> None:
    card, victim = await _bridged_call(store, terminal, relative)
    dead, alive = cluster.nodes[victim.node - 1], cluster.nodes[2 - victim.node]
    bridged = time.monotonic()
    await asyncio.sleep(5)
    pid = stack._pid(dead, "asterisk")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    # New calls right after the kill: both go to the other node (round robin would have
    # given one of them to the dead node), the first within 10 s of the kill.
    for i in range(2):
        call = await terminal.call(timeout=10)
        assert call.node == alive.node, f"new call {i + 1} went to the killed node {call.node}"
        if i == 0:
            took = time.monotonic() - killed
            sys.stderr.write(f"\nMEASURED node killed -> a new call on the other node: {took:.1f} s\n")
            assert took < 10
        await call.prompt("welcome")  # served: the IVR of the live node answers it
        await call.agent.close()
    # The relative's leg is left with no media: hang it up as the phone network would.
    await relative.send("hangup")

    await _restart_killed_asterisk(dead)
    cdr = await _billed_once(store, card, timeout=45)
    talked = killed - bridged
    # settled by the dead node's reconciler, up to its last heartbeat: never more than was
    # talked (the live node's reconciler, whose Asterisk stayed up, must not beat for it)
    assert cdr.call_id.startswith(f"kinline-n{dead.node}-")
    assert cdr.evidence == "heartbeat" and cdr.dial_status == "ANSWER"
    assert talked - 5 <= cdr.answered_s <= talked + 0.5
    assert cdr.amount == 0 and cdr.credit_reason == "dropped: platform fault, last increment credited"
    assert await store.acquire_card(card, "probe", 5), "the card is usable again"
    await store.release_card(card, "probe")
    # Restarted, the node answers Kamailio's probes again and gets calls again.
    deadline = time.monotonic() + 20
    while True:
        call = await terminal.call(timeout=10)
        await call.agent.close()
        if call.node == dead.node:
            break
        assert time.monotonic() < deadline, "the restarted node got no call within 20 s"
