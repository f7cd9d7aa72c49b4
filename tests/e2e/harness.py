"""Helpers for end-to-end tests: SIP agents as subprocesses, AMI event waits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from ami.client import AmiClient
from ami.protocol import AmiMessage
from guard.firewall import table_name
from tools.config import StackConfig, load_secrets

AGENT = Path(__file__).resolve().parent.parent / "agents" / "sipagent.py"

Event = dict[str, Any]


def _stderr() -> Any:
    """The agents' stderr: appended to $KINLINE_AGENT_LOG to debug them, else a temporary
    file (what an agent that never gets ready said is then in the test's failure)."""
    path = os.environ.get("KINLINE_AGENT_LOG")
    return open(path, "ab") if path else tempfile.TemporaryFile()


def _shift_rtp(args: tuple[str, ...]) -> tuple[str, ...]:
    """Move ``--rtp-port`` by KINLINE_PORT_OFFSET * 1000, as tools.config moves the stack."""
    offset = int(os.environ.get("KINLINE_PORT_OFFSET") or 0)
    out = list(args)
    for i, arg in enumerate(out[:-1]):
        if arg == "--rtp-port":
            out[i + 1] = str(int(out[i + 1]) + offset * 1000)
    return tuple(out)


def _attached(args: tuple[str, ...]) -> tuple[str, ...]:
    """Every ``--option value`` as ``--option=value`` (each of the agent's options takes a
    value): argparse takes a value starting with '-' for an option, and an app's generated
    SIP password may start with '-' (the agent then exited with "expected one argument"
    and never got ready: the e2e's occasional "agent not ready")."""
    out: list[str] = []
    for arg in args:
        if out and out[-1].startswith("--") and "=" not in out[-1]:
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return tuple(out)


class SipAgent:
    """A pjsua2 user agent in its own process, driven by lines on stdin."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[Event] = []
        self._new = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, *args: str) -> SipAgent:
        args = _attached(_shift_rtp(args))
        stderr = _stderr()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(AGENT), *args,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
        agent = cls(proc)
        try:
            await agent.wait_for("ready", timeout=30)
        except TimeoutError:
            running = proc.returncode is None
            if running:
                proc.kill()
            await proc.wait()
            agent._reader.cancel()
            stderr.seek(0, os.SEEK_END)
            stderr.seek(max(0, stderr.tell() - 3000))
            said = stderr.read().decode("utf-8", "replace")
            stderr.close()
            raise AssertionError(f"test agent {args[:1]} not ready in 30 s ({'killed' if running else 'exited'}"
                                 f" {proc.returncode}); its stderr ends: {said}") from None
        stderr.close()  # the process keeps its own descriptor
        return agent

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            try:
                event = json.loads(raw)
            except ValueError:
                if os.environ.get("KINLINE_AGENT_LOG"):
                    with open(os.environ["KINLINE_AGENT_LOG"], "ab") as fh:
                        fh.write(raw)
                continue  # PJSIP's own log lines
            async with self._new:
                self.events.append(event)
                self._new.notify_all()

    async def wait_for(
        self, name: str, where: Callable[[Event], bool] = lambda e: True, timeout: float = 15
    ) -> Event:
        async def find() -> Event:
            async with self._new:
                while True:
                    for event in self.events:
                        if event["event"] == name and where(event):
                            return event
                    await self._new.wait()
        return await asyncio.wait_for(find(), timeout)

    async def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    async def ended(self, timeout: float = 15) -> Event:
        return await self.wait_for("state", lambda e: e["state"] == "DISCONNECTED", timeout)

    async def close(self) -> None:
        if self.proc.returncode is None:
            try:
                await self.send("quit")
                await asyncio.wait_for(self.proc.wait(), 10)
            except (TimeoutError, ConnectionError):
                self.proc.kill()
                await self.proc.wait()
        self._reader.cancel()


@contextlib.asynccontextmanager
async def watching(config: StackConfig) -> AsyncIterator[AmiWatch]:
    """An AmiWatch on a stack, as its read-only AMI user, closed afterwards."""
    secret = load_secrets(config)
    client = AmiClient(config.host, config.ami_port, secret.ami_user, secret.ami_secret)
    await client.start()
    watch = AmiWatch(client)
    try:
        yield watch
    finally:
        watch.close()
        await client.close()


def sound_started(m: AmiMessage, uniqueid: str, channel: str) -> str | None:
    """The sound file ``m`` says began to play on the channel (``uniqueid``, named ``channel``),
    or None. Debian's Asterisk is built with TEST_FRAMEWORK: ast_streamfile sends a TestEvent
    PLAYBACK (Message: the file) for every file of GET DATA, Read and Playback; the AGI's STREAM
    FILE opens its stream itself and sends none, its AGIExecStart names the file instead."""
    if m.event == "TestEvent":
        if m.get("State") == "PLAYBACK" and m.get("Channel") == channel and m.get("Message"):
            return str(m.get("Message"))
    elif m.event == "AGIExecStart" and m.get("Uniqueid") == uniqueid:
        command = str(m.get("Command"))
        if command.startswith("STREAM FILE "):
            return command.split('"')[1] if '"' in command else command.split()[2]
    return None


class AmiWatch:
    """Every AMI event since the watch started, with waits on them."""

    def __init__(self, client: AmiClient) -> None:
        self.client = client
        self.queue = client.subscribe()
        self.events: list[AmiMessage] = []
        self._taken: set[int] = set()

    async def wait_for(
        self, name: str, where: Callable[[AmiMessage], bool] = lambda m: True, timeout: float = 15
    ) -> AmiMessage:
        return await self._wait(lambda m: m.event == name and where(m), name, timeout)

    async def _wait(self, where: Callable[[AmiMessage], bool], what: str, timeout: float) -> AmiMessage:
        for message in self.events:
            if where(message):
                return message
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                seen = sorted({m.event for m in self.events})
                raise AssertionError(f"no AMI {what} event in {timeout} s; saw {seen}")
            try:
                message = await asyncio.wait_for(self.queue.get(), left)
            except TimeoutError:
                continue
            self.events.append(message)
            if where(message):
                return message

    async def wait_new(
        self, name: str, where: Callable[[AmiMessage], bool] = lambda m: True, timeout: float = 15
    ) -> AmiMessage:
        """The next matching event not returned by wait_new before (in arrival order)."""
        return await self._wait_new(lambda m: m.event == name and where(m), name, timeout)

    async def _wait_new(self, where: Callable[[AmiMessage], bool], what: str, timeout: float) -> AmiMessage:
        def fresh(m: AmiMessage) -> bool:
            return id(m) not in self._taken and where(m)

        message = await self._wait(fresh, what, timeout)
        self._taken.add(id(message))
        return message

    async def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                self.events.append(await asyncio.wait_for(self.queue.get(), left))
            except TimeoutError:
                break

    def of(self, uniqueid: str) -> list[str]:
        return [m.event for m in self.events if m.get("Uniqueid") == uniqueid]

    def channel_of(self, uniqueid: str) -> str:
        """The channel's name, from its Newchannel (TestEvents name the channel, not its uniqueid)."""
        name = next((m.get("Channel") for m in self.events if m.event == "Newchannel"
                     and m.get("Uniqueid") == uniqueid), "")
        assert name, f"no Newchannel seen for {uniqueid}"
        return str(name)

    def played(self, uniqueid: str) -> list[str]:
        """The sound files Asterisk began to play on channel ``uniqueid``, in order: whatever
        played them (STREAM FILE, GET DATA, a Read's files, the dial plan's Playback)."""
        channel = self.channel_of(uniqueid)
        return [sound for m in self.events if (sound := sound_started(m, uniqueid, channel))]

    async def wait_played(self, uniqueid: str, sound: str, timeout: float = 15) -> AmiMessage:
        """The next start of ``sound`` (e.g. ``kinline/en/enter-card``) on channel ``uniqueid``."""
        if not any(m.event == "Newchannel" and m.get("Uniqueid") == uniqueid for m in self.events):
            await self.wait_for("Newchannel", lambda m: m.get("Uniqueid") == uniqueid, timeout)
        channel = self.channel_of(uniqueid)
        return await self._wait_new(lambda m: sound_started(m, uniqueid, channel) == sound, f"start of {sound}",
                                    timeout)

    def close(self) -> None:
        self.client.unsubscribe(self.queue)


def guard_blocked(config: StackConfig) -> str:
    """The addresses the guard of ``config``'s Asterisk (a stack or a cluster node) has blocked: its
    nftables set, as ``nft list set`` prints it."""
    done = subprocess.run(["nft", "list", "set", "inet", table_name(config.sip_port), "blocked4"],
                          capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, done.stderr
    return done.stdout


def guard_unblock(config: StackConfig, address: str) -> None:
    subprocess.run(["nft", "delete", "element", "inet", table_name(config.sip_port), "blocked4",
                    f"{{ {address} }}"], capture_output=True, timeout=10)
