"""AgiServer over real TCP, with a fake Asterisk on the other end of the socket."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from agi.channel import AgiChannel
from agi.protocol import AgiCommandError, AgiEnvironment, AgiHangup, AgiTimeout
from agi.server import AgiServer, Route

STEP = 2.0  # upper bound for any single wait in these tests
UID = "1718031234.5"


def environment(script: str = "test", uniqueid: str | None = UID, args: tuple[str, ...] = ()) -> bytes:
    lines = [
        "agi_network: yes",
        f"agi_network_script: {script}",
        f"agi_request: agi://127.0.0.1:4573/{script}",
        "agi_channel: PJSIP/term9001-00000002",
        "agi_language: en",
        "agi_type: PJSIP",
        *([f"agi_uniqueid: {uniqueid}"] if uniqueid is not None else []),
        "agi_version: 22.0.0",
        "agi_callerid: 9001",
        "agi_calleridname: Terminal 9001",
        "agi_callingpres: 0",
        "agi_context: kinline-in",
        "agi_extension: 100",
        "agi_priority: 2",
        "agi_enhanced: 0.0",
        "agi_accountcode: ",
        "agi_threadid: 140245123456768",
        *(f"agi_arg_{n}: {a}" for n, a in enumerate(args, 1)),
    ]
    return ("\n".join(lines) + "\n\n").encode()


class FakeAsterisk:
    """The Asterisk side of one FastAGI connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def call(cls, port: int, script: str = "test", uniqueid: str | None = UID,
                   args: tuple[str, ...] = ()) -> FakeAsterisk:
        fake = await cls.connect(port)
        await fake.send(environment(script, uniqueid, args))
        return fake

    @classmethod
    async def connect(cls, port: int) -> FakeAsterisk:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), STEP)
        return cls(reader, writer)

    async def send(self, data: bytes | str) -> None:
        self.writer.write(data.encode() if isinstance(data, str) else data)
        await self.writer.drain()

    async def expect(self, command: str) -> None:
        """Read the next command line and check it is exactly ``command``."""
        assert await self.command() == command

    async def command(self) -> str:
        raw = await asyncio.wait_for(self.reader.readline(), STEP)
        assert raw.endswith(b"\n"), f"connection closed instead of a command: {raw!r}"
        return raw.decode()[:-1]

    async def reply(self, *lines: str) -> None:
        await self.send("".join(f"{line}\n" for line in lines))

    async def closed_by_server(self, within: float = STEP) -> bool:
        """True if the server closes the connection without sending anything more."""
        rest = await asyncio.wait_for(self.reader.read(), within)
        return rest == b""

    def close(self) -> None:
        self.writer.close()

    def reset(self) -> None:
        """Close with a TCP RST, as when the host drops the connection."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.close()


Recorder = list[object]


@pytest.fixture
def seen() -> Recorder:
    return []


def make_routes(seen: Recorder) -> dict[str, Route]:
    async def test(ch: AgiChannel, env: AgiEnvironment) -> None:
        seen.append(("args", env.arguments, env.uniqueid))
        await ch.answer()
        await ch.set_variable("KINLINE_NOTE", 'say "hi" \\ there')
        digits, timed_out = await ch.get_data("kinline/en/enter-digits", 5000, 4)
        seen.append(("digits", digits, timed_out))
        ch.log.info("collected for %s", env.extension)

    async def waiter(ch: AgiChannel, env: AgiEnvironment) -> None:
        try:
            await ch.answer()
            seen.append("answered")
            await ch.stream_file("kinline/en/welcome")
            seen.append("streamed")
        except BaseException as exc:
            seen.append(type(exc))
            raise

    async def boom(ch: AgiChannel, env: AgiEnvironment) -> None:
        seen.append("boom")
        raise RuntimeError("kaboom")

    async def usage(ch: AgiChannel, env: AgiEnvironment) -> None:
        try:
            await ch.command("DATABASE GET", "only-family")
        except AgiCommandError as exc:
            seen.append((exc.code, exc.message))
        await ch.answer()
        seen.append("after-usage")

    async def logs(ch: AgiChannel, env: AgiEnvironment) -> None:
        await ch.answer()
        ch.log.info("route sees %s", env.uniqueid)
        await ch.verbose(f"hello {env.uniqueid}")

    return {"test": test, "waiter": waiter, "boom": boom, "usage": usage, "logs": logs}


ServerFactory = Callable[..., Awaitable[AgiServer]]


@pytest.fixture
async def make_server(seen: Recorder) -> AsyncIterator[ServerFactory]:
    servers: list[AgiServer] = []

    async def factory(read_timeout: float = STEP) -> AgiServer:
        server = AgiServer(make_routes(seen), host="127.0.0.1", port=0, read_timeout=read_timeout)
        await asyncio.wait_for(server.start(), STEP)
        servers.append(server)
        return server

    yield factory
    for server in servers:
        await asyncio.wait_for(server.stop(grace=0.5), 5)


@pytest.fixture
async def server(make_server: ServerFactory) -> AgiServer:
    return await make_server()


async def wait_until(predicate: Callable[[], bool], within: float = STEP) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def run_test_route(port: int, seen: Recorder, uniqueid: str = UID) -> None:
    """A whole good call of the ``test`` route."""
    fake = await FakeAsterisk.call(port, "test", uniqueid, args=("fr", "two words"))
    await fake.expect("ANSWER")
    await fake.reply("200 result=0")
    await fake.expect('SET VARIABLE "KINLINE_NOTE" "say \\"hi\\" \\\\ there"')
    await fake.reply("200 result=1")
    await fake.expect('GET DATA "kinline/en/enter-digits" "5000" "4"')
    await fake.reply("200 result=0012 (timeout)")
    assert await fake.closed_by_server()
    fake.close()
    assert ("digits", "0012", True) in seen


def records_of(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == level and r.name.startswith("agi")]


# ---------------------------------------------------------------- a normal call


async def test_route_runs_and_commands_are_quoted(server: AgiServer, seen: Recorder) -> None:
    await run_test_route(server.port, seen)
    assert seen == [("args", ("fr", "two words"), UID), ("digits", "0012", True)]


async def test_uniqueid_is_on_every_log_record_of_the_call(
    server: AgiServer, seen: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="agi")
    caplog.clear()
    await run_test_route(server.port, seen)
    records = [r for r in caplog.records if r.name.startswith("agi")]
    messages = [r.getMessage() for r in records]
    assert re.fullmatch(rf"\[{re.escape(UID)}\] route test for PJSIP/term9001-00000002 done in \d+ ms "
                        r"\(own \d+\.\d ms\)", messages[-1])
    messages[-1] = f"[{UID}] route test done in"
    assert messages == [
        f"[{UID}] route test for PJSIP/term9001-00000002",
        f"[{UID}] agi > ANSWER",
        f"[{UID}] agi < 200 result=0",
        f'[{UID}] agi > SET VARIABLE "KINLINE_NOTE" "say \\"hi\\" \\\\ there"',
        f"[{UID}] agi < 200 result=1",
        f'[{UID}] agi > GET DATA "kinline/en/enter-digits" "5000" "4"',
        f"[{UID}] agi < 200 result=0012 (timeout)",
        f"[{UID}] collected for 100",
        f"[{UID}] route test done in",
    ]
    # Also as a record attribute, for formatters (%(uniqueid)s) and filters.
    assert [getattr(r, "uniqueid", None) for r in records] == [UID] * len(records)


async def test_concurrent_calls_keep_their_own_uniqueid(
    server: AgiServer, seen: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="agi")
    a = await FakeAsterisk.call(server.port, "logs", "100.1")
    b = await FakeAsterisk.call(server.port, "logs", "200.2")
    await a.expect("ANSWER")
    await b.expect("ANSWER")
    await b.reply("200 result=0")
    await a.reply("200 result=0")
    await a.expect('VERBOSE "hello 100.1" "1"')
    await b.expect('VERBOSE "hello 200.2" "1"')
    await a.reply("200 result=1")
    await b.reply("200 result=1")
    assert await a.closed_by_server()
    assert await b.closed_by_server()
    a.close()
    b.close()
    route_lines = [r.getMessage() for r in caplog.records if "route sees" in r.getMessage()]
    assert sorted(route_lines) == ["[100.1] route sees 100.1", "[200.2] route sees 200.2"]
    for record in caplog.records:
        if record.name.startswith("agi") and "hello" in record.getMessage():
            uid = getattr(record, "uniqueid", "")
            assert record.getMessage().startswith(f"[{uid}] ")
            assert f"hello {uid}" in record.getMessage()


# ---------------------------------------------------------------- hangups


@pytest.mark.parametrize(
    "hang_up",
    ["hangup-line-then-minus-one", "hangup-line-then-511", "close-socket", "reset-socket"],
)
async def test_caller_hangs_up_mid_script(
    server: AgiServer, seen: Recorder, caplog: pytest.LogCaptureFixture, hang_up: str
) -> None:
    caplog.set_level(logging.INFO, logger="agi")
    fake = await FakeAsterisk.call(server.port, "waiter")
    await fake.expect("ANSWER")
    await fake.reply("200 result=0")
    await fake.expect('STREAM FILE "kinline/en/welcome" ""')
    if hang_up == "hangup-line-then-minus-one":
        await fake.reply("HANGUP", "200 result=-1 endpos=0")
        assert await fake.closed_by_server()
    elif hang_up == "hangup-line-then-511":
        await fake.reply("HANGUP", "511 Command Not Permitted on a dead channel or intercept routine")
        assert await fake.closed_by_server()
    elif hang_up == "close-socket":
        fake.close()
    else:
        fake.reset()
    await wait_until(lambda: AgiHangup in seen)
    await wait_until(lambda: any("caller hung up during waiter" in r.getMessage() for r in caplog.records))
    fake.close()
    assert seen == ["answered", AgiHangup]
    hangups = [r for r in records_of(caplog, logging.INFO) if "caller hung up" in r.getMessage()]
    assert len(hangups) == 1
    assert hangups[0].getMessage().startswith(f"[{UID}] caller hung up during waiter")
    assert records_of(caplog, logging.ERROR) == []
    assert records_of(caplog, logging.WARNING) == []
    # The server still serves.
    seen.clear()
    await run_test_route(server.port, seen, "1718031299.9")


async def test_command_completed_after_hangup_line_stops_the_next_command(
    server: AgiServer, seen: Recorder
) -> None:
    fake = await FakeAsterisk.call(server.port, "waiter")
    await fake.expect("ANSWER")
    # Asterisk says HANGUP, then still answers the pending command normally.
    await fake.reply("HANGUP", "200 result=0")
    # No STREAM FILE is sent: the channel knows the call is gone.
    assert await fake.closed_by_server()
    fake.close()
    await wait_until(lambda: AgiHangup in seen)
    assert seen == ["answered", AgiHangup]


async def test_asterisk_stops_answering(
    make_server: ServerFactory, seen: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    server = await make_server(read_timeout=0.3)
    fake = await FakeAsterisk.call(server.port, "waiter")
    await fake.expect("ANSWER")
    started = time.monotonic()
    assert await fake.closed_by_server()  # nothing else sent, no VERBOSE either
    elapsed = time.monotonic() - started
    fake.close()
    assert 0.25 <= elapsed < 1.5
    await wait_until(lambda: AgiTimeout in seen)
    assert seen == [AgiTimeout]
    errors = [r.getMessage() for r in records_of(caplog, logging.ERROR)]
    assert errors == [f"[{UID}] route waiter: Asterisk stopped answering: no reply from Asterisk in 0.3 s"]


async def test_environment_never_finished_times_out(make_server: ServerFactory, seen: Recorder) -> None:
    server = await make_server(read_timeout=0.3)
    fake = await FakeAsterisk.connect(server.port)
    await fake.send("agi_network: yes\nagi_uniqueid: 1.1\n")  # no blank line
    assert await fake.closed_by_server()
    fake.close()
    assert seen == []


# ---------------------------------------------------------------- refusals and failures


async def test_unknown_route_is_refused(server: AgiServer, seen: Recorder, caplog: pytest.LogCaptureFixture) -> None:
    fake = await FakeAsterisk.call(server.port, "nosuch")
    await fake.expect('VERBOSE "Kinline: unknown AGI route nosuch" "1"')
    await fake.reply("200 result=1")
    assert await fake.closed_by_server()
    fake.close()
    assert seen == []
    await wait_until(lambda: bool(records_of(caplog, logging.ERROR)))
    assert [r.getMessage() for r in records_of(caplog, logging.ERROR)] == [
        f"[{UID}] unknown route 'nosuch': call refused"
    ]


async def test_route_exception_is_logged_and_server_keeps_serving(
    server: AgiServer, seen: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    fake = await FakeAsterisk.call(server.port, "boom")
    await fake.expect('VERBOSE "Kinline: route boom failed" "1"')
    await fake.reply("200 result=1")
    assert await fake.closed_by_server()
    fake.close()
    assert seen == ["boom"]
    errors = records_of(caplog, logging.ERROR)
    assert [r.getMessage() for r in errors] == [f"[{UID}] route boom failed: call refused"]
    assert errors[0].exc_info is not None
    assert isinstance(errors[0].exc_info[1], RuntimeError)
    seen.clear()
    await run_test_route(server.port, seen)


@pytest.mark.parametrize(
    "payload",
    [
        b"agi_network: yes\nthis is not AGI\n\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"agi_network: yes\nagi_channel: PJSIP/x\n\n",  # no agi_uniqueid
        b"agi_uniqueid: 1.\xff\xfe\n\n",  # not UTF-8
    ],
)
async def test_malformed_environment_closes_the_connection(
    server: AgiServer, seen: Recorder, caplog: pytest.LogCaptureFixture, payload: bytes
) -> None:
    fake = await FakeAsterisk.connect(server.port)
    await fake.send(payload)
    assert await fake.closed_by_server()
    fake.close()
    assert seen == []
    warnings = [r.getMessage() for r in records_of(caplog, logging.WARNING)]
    assert len(warnings) == 1
    assert warnings[0].startswith("[-] bad FastAGI connection: ")
    await run_test_route(server.port, seen)


async def test_connection_closed_before_environment(server: AgiServer, seen: Recorder) -> None:
    fake = await FakeAsterisk.connect(server.port)
    await fake.send("agi_network: yes\n")
    fake.close()
    await asyncio.sleep(0.05)
    await run_test_route(server.port, seen)


async def test_multiline_520_usage_is_a_command_error(server: AgiServer, seen: Recorder) -> None:
    fake = await FakeAsterisk.call(server.port, "usage")
    await fake.expect('DATABASE GET "only-family"')
    await fake.reply(
        "520-Invalid command syntax.  Proper usage follows:",
        " Usage: DATABASE GET <family> <key>",
        "        Retrieves an entry in the Asterisk database for a given family and key.",
        "520 End of proper usage.",
    )
    # The next command's reply is read in step: the usage text was consumed entirely.
    await fake.expect("ANSWER")
    await fake.reply("200 result=0")
    assert await fake.closed_by_server()
    fake.close()
    assert seen == [
        (
            520,
            "Invalid command syntax.  Proper usage follows:  Usage: DATABASE GET <family> <key>"
            "         Retrieves an entry in the Asterisk database for a given family and key.",
        ),
        "after-usage",
    ]


async def test_single_line_510_is_a_command_error(server: AgiServer, seen: Recorder) -> None:
    fake = await FakeAsterisk.call(server.port, "usage")
    await fake.expect('DATABASE GET "only-family"')
    await fake.reply("510 Invalid or unknown command")
    await fake.expect("ANSWER")
    await fake.reply("200 result=0")
    assert await fake.closed_by_server()
    fake.close()
    assert seen == [(510, "Invalid or unknown command"), "after-usage"]


async def test_interim_100_reply_is_skipped(server: AgiServer, seen: Recorder) -> None:
    fake = await FakeAsterisk.call(server.port, "waiter")
    await fake.expect("ANSWER")
    await fake.reply("100 result=0 Trying...", "200 result=0")
    await fake.expect('STREAM FILE "kinline/en/welcome" ""')
    await fake.reply("200 result=0 endpos=16000")
    assert await fake.closed_by_server()
    fake.close()
    assert seen == ["answered", "streamed"]


# ---------------------------------------------------------------- graceful stop


async def test_stop_lets_a_call_finish_within_grace(
    server: AgiServer, seen: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agi")
    fake = await FakeAsterisk.call(server.port, "waiter")
    await fake.expect("ANSWER")
    stopping = asyncio.create_task(server.stop(grace=3.0))
    await asyncio.sleep(0.1)
    assert not stopping.done()
    # No new call while stopping.
    with pytest.raises(OSError):
        await FakeAsterisk.connect(server.port)
    await fake.reply("200 result=0")
    await fake.expect('STREAM FILE "kinline/en/welcome" ""')
    await fake.reply("200 result=0 endpos=8000")
    assert await fake.closed_by_server()
    fake.close()
    started = time.monotonic()
    await asyncio.wait_for(stopping, STEP)
    assert time.monotonic() - started < 1.0
    assert seen == ["answered", "streamed"]
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith(f"[{UID}] route waiter for PJSIP/term9001-00000002 done in ") for m in messages)
    assert messages[-1] == "FastAGI stopped"


async def test_stop_cancels_a_call_after_grace(
    server: AgiServer, seen: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    fake = await FakeAsterisk.call(server.port, "waiter")
    await fake.expect("ANSWER")  # and never answer
    started = time.monotonic()
    await asyncio.wait_for(server.stop(grace=0.3), STEP)
    elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 1.5
    assert seen == [asyncio.CancelledError]
    assert await fake.closed_by_server(0.5)
    fake.close()
    warnings = [r.getMessage() for r in records_of(caplog, logging.WARNING)]
    assert f"[{UID}] route waiter cancelled at shutdown" in warnings
    with pytest.raises(OSError):
        await FakeAsterisk.connect(server.port)


async def test_no_new_connections_after_stop(server: AgiServer) -> None:
    port = server.port
    await asyncio.wait_for(server.stop(grace=0.1), STEP)
    with pytest.raises(OSError):
        await FakeAsterisk.connect(port)


async def test_stop_without_calls_is_quick(server: AgiServer) -> None:
    started = time.monotonic()
    await asyncio.wait_for(server.stop(grace=5.0), STEP)
    assert time.monotonic() - started < 0.5
