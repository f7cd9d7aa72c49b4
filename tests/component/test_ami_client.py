"""AmiClient against a fake Asterisk Manager Interface over real TCP."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import pytest

from ami.client import AmiClient
from ami.protocol import AmiActionError, AmiDisconnected, AmiMessage

STEP = 2.0
USER, SECRET = "kinline", "s3cret"


def read_fields(block: bytes) -> dict[str, str]:
    """The fake's own parser, independent of ami.protocol."""
    fields: dict[str, str] = {}
    for line in block.decode().split("\r\n"):
        if line:
            key, _, value = line.partition(": ")
            fields[key] = value
    return fields


def message(**fields: str) -> bytes:
    return ("".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n").encode()


class FakeAmi:
    """Asterisk's AMI: banner, Login, Ping, Command, an Async Originate (queued); other actions
    stay unanswered."""

    def __init__(self, secret: str = SECRET) -> None:
        self.secret = secret
        self.accepted = 0
        self.actions: list[dict[str, str]] = []
        self.raw: list[bytes] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.logged_in: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in self.writers:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.writers.append(writer)
        writer.write(b"Asterisk Call Manager/11.0.0\r\n")
        try:
            while True:
                block = await reader.readuntil(b"\r\n\r\n")
                self.raw.append(block)
                fields = read_fields(block)
                self.actions.append(fields)
                action, action_id = fields.get("Action", "").lower(), fields.get("ActionID", "")
                if action == "login":
                    if fields.get("Username") == USER and fields.get("Secret") == self.secret:
                        writer.write(message(Response="Success", ActionID=action_id,
                                             Message="Authentication accepted"))
                        writer.write(message(Event="FullyBooted", Privilege="system,all",
                                             Uptime="12", LastReload="12", Status="Fully Booted"))
                        self.logged_in.append(writer)
                    else:
                        writer.write(message(Response="Error", ActionID=action_id,
                                             Message="Authentication failed"))
                        await writer.drain()
                        break  # Asterisk closes the session after a failed login
                elif action == "originate" and fields.get("Async") == "true":  # queued; its end: an event
                    writer.write(message(Response="Success", ActionID=action_id,
                                         Message="Originate successfully queued"))
                elif action == "ping":
                    writer.write(message(Response="Success", ActionID=action_id, Ping="Pong",
                                         Timestamp="1718031234.123456"))
                elif action == "getvar":
                    writer.write(message(Response="Error", ActionID=action_id,
                                         Message="No such channel"))
                elif action == "command":
                    writer.write(
                        b"Response: Success\r\nActionID: " + action_id.encode()
                        + b"\r\nMessage: Command output follows\r\nOutput: 1 active channel\r\n"
                        b"Output:   indented\r\n\r\n"
                    )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def event(self, **fields: str) -> None:
        """Send an event on the latest logged-in connection."""
        writer = self.logged_in[-1]
        writer.write(message(**fields))
        await writer.drain()

    def drop(self) -> None:
        """Close the latest connection, as when Asterisk restarts."""
        self.logged_in[-1].close()


async def wait_until(predicate: Callable[[], bool], within: float = STEP) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.fixture
async def fake() -> AsyncIterator[FakeAmi]:
    server = FakeAmi()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def client(fake: FakeAmi) -> AsyncIterator[AmiClient]:
    ami = AmiClient("127.0.0.1", fake.port, USER, SECRET, reconnect_delay=0.05, action_timeout=1.0)
    yield ami
    await asyncio.wait_for(ami.close(), STEP)


async def next_event(queue: asyncio.Queue[AmiMessage]) -> AmiMessage:
    return await asyncio.wait_for(queue.get(), STEP)


async def test_start_logs_in(client: AmiClient, fake: FakeAmi) -> None:
    await client.start(timeout=STEP)
    assert client.connected.is_set()
    assert client.connections == 1
    assert fake.accepted == 1
    assert fake.actions[0] == {
        "Action": "Login",
        "ActionID": "kinline-1",
        "Username": USER,
        "Secret": SECRET,
        "Events": "on",
    }
    assert fake.raw[0].endswith(b"\r\n\r\n")


async def test_action_returns_its_response(client: AmiClient, fake: FakeAmi) -> None:
    await client.start(timeout=STEP)
    reply = await asyncio.wait_for(client.action("Ping"), STEP)
    assert reply.response == "Success"
    assert reply.get("Ping") == "Pong"
    assert reply.get("ActionID") == fake.actions[-1]["ActionID"] == "kinline-2"
    output = await asyncio.wait_for(client.action("Command", Command="core show channels"), STEP)
    assert fake.actions[-1] == {"Action": "Command", "ActionID": "kinline-3", "Command": "core show channels"}
    assert output.lines == ("1 active channel", "  indented")


async def test_concurrent_actions_get_their_own_replies(client: AmiClient, fake: FakeAmi) -> None:
    await client.start(timeout=STEP)
    replies = await asyncio.wait_for(asyncio.gather(*(client.action("Ping") for _ in range(5))), STEP)
    assert sorted(r.get("ActionID") for r in replies) == [f"kinline-{n}" for n in range(2, 7)]


async def test_error_response_raises(client: AmiClient) -> None:
    await client.start(timeout=STEP)
    with pytest.raises(AmiActionError) as info:
        await asyncio.wait_for(client.action("Getvar", Channel="PJSIP/nobody", Variable="X"), STEP)
    assert str(info.value) == "Getvar: No such channel"


async def test_action_before_start_is_refused(client: AmiClient) -> None:
    with pytest.raises(AmiDisconnected):
        await client.action("Ping")


async def test_events_reach_every_subscriber(client: AmiClient, fake: FakeAmi) -> None:
    first, second = client.subscribe(), client.subscribe()
    await client.start(timeout=STEP)
    booted = await next_event(first)
    assert booted.event == "FullyBooted"
    assert (await next_event(second)).event == "FullyBooted"
    await fake.event(Event="Newchannel", Channel="PJSIP/term9001-00000002", Uniqueid="1718031234.5")
    # A response nobody waits for is not an event.
    await fake.event(Response="Success", ActionID="someone-else", Message="stray")
    await fake.event(Event="Hangup", Channel="PJSIP/term9001-00000002", Cause="16")
    for queue in (first, second):
        new = await next_event(queue)
        assert (new.event, new.get("Uniqueid")) == ("Newchannel", "1718031234.5")
        hangup = await next_event(queue)
        assert (hangup.event, hangup.get("Cause")) == ("Hangup", "16")
        assert queue.empty()
    client.unsubscribe(second)
    await fake.event(Event="Hangup", Channel="PJSIP/x", Cause="17")
    assert (await next_event(first)).get("Cause") == "17"
    await asyncio.sleep(0.05)
    assert second.empty()


async def test_wrong_secret_fails_and_keeps_retrying(fake: FakeAmi) -> None:
    ami = AmiClient("127.0.0.1", fake.port, USER, "wrong", reconnect_delay=0.05, action_timeout=1.0)
    try:
        with pytest.raises(TimeoutError):
            await ami.start(timeout=0.5)
        assert not ami.connected.is_set()
        assert ami.connections == 0
        attempts = fake.accepted
        assert attempts >= 2  # failed logins are answered at once, then retried
        await wait_until(lambda: fake.accepted > attempts)
        logins = [a for a in fake.actions if a["Action"] == "Login"]
        assert len(logins) >= 3
        assert {a["Secret"] for a in logins} == {"wrong"}
        # The secret is fixed on the Asterisk side: the next attempt gets in.
        fake.secret = "wrong"
        await asyncio.wait_for(ami.connected.wait(), STEP)
        assert ami.connections == 1
    finally:
        await asyncio.wait_for(ami.close(), STEP)


@contextlib.asynccontextmanager
async def asterisk_down() -> AsyncIterator[tuple[AmiClient, FakeAmi]]:
    """A client of an AMI port nobody listens on, and the fake that may come back there."""
    gone = FakeAmi()
    await gone.start()
    port = gone.port
    await gone.stop()
    ami = AmiClient("127.0.0.1", port, USER, SECRET, reconnect_delay=0.05, action_timeout=1.0)
    back = FakeAmi()
    back.port = port
    try:
        yield ami, back
    finally:
        await asyncio.wait_for(ami.close(), STEP)
        await back.stop()


async def test_unreachable_asterisk_keeps_retrying() -> None:
    async with asterisk_down() as (ami, back):
        with pytest.raises(TimeoutError):
            await ami.start(timeout=0.3)
        await back.start()  # Asterisk comes back on the same port
        await asyncio.wait_for(ami.connected.wait(), STEP)
        assert ami.connections == 1
        assert back.accepted == 1


async def test_ready_starts_once_and_waits_only_the_first_time() -> None:
    async with asterisk_down() as (ami, back):
        started = time.monotonic()
        assert not await ami.ready(0.3)  # Asterisk down: waited its timeout, not connected
        assert 0.25 <= time.monotonic() - started < STEP
        started = time.monotonic()
        assert not await ami.ready(5)  # already started: answers at once
        assert time.monotonic() - started < 0.2
        await back.start()  # the client reconnects by itself
        await wait_until(ami.connected.is_set)
        assert await ami.ready(5) and back.accepted == 1


async def test_drop_fails_pending_action_and_reconnects(client: AmiClient, fake: FakeAmi) -> None:
    events = client.subscribe()
    await client.start(timeout=STEP)
    assert (await next_event(events)).event == "FullyBooted"
    pending = asyncio.create_task(client.action("Originate", Channel="PJSIP/term9001"))  # never answered
    await wait_until(lambda: fake.actions[-1]["Action"] == "Originate")
    started = time.monotonic()
    fake.drop()
    with pytest.raises(AmiDisconnected):
        await asyncio.wait_for(pending, STEP)
    assert time.monotonic() - started < 0.5  # at once, not after action_timeout
    await wait_until(lambda: client.connections == 2)
    assert client.connected.is_set()
    assert fake.accepted == 2
    assert [a["Action"] for a in fake.actions].count("Login") == 2
    assert (await next_event(events)).event == "FullyBooted"
    await fake.event(Event="Newchannel", Uniqueid="1718031299.9")
    assert (await next_event(events)).get("Uniqueid") == "1718031299.9"
    reply = await asyncio.wait_for(client.action("Ping"), STEP)
    assert reply.get("Ping") == "Pong"


async def test_drop_during_login_retries_at_once(fake: FakeAmi) -> None:
    """A connection lost before the Login reply must not wait for action_timeout."""
    original = fake._handle
    calls = 0

    async def flaky(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            writer.write(b"Asterisk Call Manager/11.0.0\r\n")
            await reader.readuntil(b"\r\n\r\n")  # the Login, then hang up
            writer.close()
            return
        await original(reader, writer)

    await fake.stop()
    fake._handle = flaky  # type: ignore[method-assign]
    await fake.start()
    ami = AmiClient("127.0.0.1", fake.port, USER, SECRET, reconnect_delay=0.05, action_timeout=5.0)
    try:
        started = time.monotonic()
        await ami.start(timeout=STEP)
        assert time.monotonic() - started < 1.0
        assert calls == 2
        assert ami.connections == 1
    finally:
        await asyncio.wait_for(ami.close(), STEP)


async def test_close_stops_reconnecting(client: AmiClient, fake: FakeAmi) -> None:
    await client.start(timeout=STEP)
    await asyncio.wait_for(client.close(), STEP)
    assert not client.connected.is_set()
    with pytest.raises(AmiDisconnected):
        await client.action("Ping")
    await asyncio.sleep(0.3)  # six reconnect delays
    assert fake.accepted == 1
    assert client.connections == 1


async def test_close_while_waiting_to_reconnect(fake: FakeAmi) -> None:
    ami = AmiClient("127.0.0.1", fake.port, USER, "wrong", reconnect_delay=0.05, action_timeout=1.0)
    with pytest.raises(TimeoutError):
        await ami.start(timeout=0.2)
    await asyncio.wait_for(ami.close(), STEP)
    attempts = fake.accepted
    await asyncio.sleep(0.3)
    assert fake.accepted == attempts


async def test_the_dialer_hears_each_test_call_end_by_its_action_id(fake: FakeAmi) -> None:
    """api/originate.py: each Originate's ActionID is its call id; its OriginateResponse (which
    carries a Response header and that ActionID) is an event, not a reply: ``ended`` says
    answered or failed; another action's end or no end at all (the bound) says nothing."""
    from api.originate import AmiDialer
    from ivr.app_test import ANSWERED, FAILED, TestCall, new_call_id

    dialer = AmiDialer("127.0.0.1", fake.port, USER, SECRET, timeout=1.0, end_bound_s=0.5)
    first, second, silent = (TestCall(new_call_id(), "+79161234567", "ru", 0, 1) for _ in range(3))
    try:
        for c in (first, second, silent):
            await dialer.call_app(c)
        assert [a["ActionID"] for a in fake.actions if a.get("Action") == "Originate"] == [
            first.call_id, second.call_id, silent.call_id]
        ends = [asyncio.create_task(dialer.ended(c)) for c in (first, second, silent)]
        await fake.event(Event="OriginateResponse", Privilege="call,all", ActionID="test-0000000000000000",
                         Response="Failure", Reason="1")
        await fake.event(Event="OriginateResponse", Privilege="call,all", ActionID=second.call_id,
                         Response="Failure", Channel="Local/s@kinline-app-test-dial-00000001;1", Reason="1")
        await fake.event(Event="OriginateResponse", Privilege="call,all", ActionID=first.call_id,
                         Response="Success", Channel="Local/s@kinline-app-test-dial-00000000;1", Reason="4")
        assert await asyncio.wait_for(asyncio.gather(*ends), STEP) == [ANSWERED, FAILED, None]
        assert await dialer.ended(first) is None  # asked once: forgotten
    finally:
        await asyncio.wait_for(dialer.aclose(), STEP)
