"""The status light's question to Asterisk (api/contacts.py) against a fake AMI over
real TCP that answers Getvar of PJSIP_AOR / PJSIP_CONTACT as Asterisk 22 does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from api.contacts import AmiReachability
from tests.component.test_ami_client import message, read_fields

USER, SECRET = "kinline-status", "s3cret"


class GetvarAmi:
    """Login, then Getvar answered from ``values`` (unknown: empty Value, as Asterisk
    answers for an AOR that does not exist); ``silent``: Getvar never answered."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.silent = False
        self.answers_qualify: dict[str, str] = {}  # endpoint -> its contact, Reachable once qualified
        self.asked: list[str] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"Asterisk Call Manager/9.0.0\r\n")
        try:
            while True:
                fields = read_fields(await reader.readuntil(b"\r\n\r\n"))
                action, action_id = fields.get("Action", "").lower(), fields.get("ActionID", "")
                if action == "login":
                    ok = (fields.get("Username"), fields.get("Secret")) == (USER, SECRET)
                    writer.write(message(Response="Success" if ok else "Error", ActionID=action_id))
                elif action == "getvar":
                    variable = fields["Variable"]
                    self.asked.append(variable)
                    if not self.silent:
                        writer.write(message(Response="Success", ActionID=action_id, Variable=variable,
                                             Value=self.values.get(variable, "")))
                elif action == "pjsipqualify":
                    endpoint = fields["Endpoint"]
                    writer.write(message(Response="Success", ActionID=action_id, Message="will qualify"))
                    if endpoint in self.answers_qualify:
                        self.values[f"PJSIP_CONTACT({self.answers_qualify[endpoint]},status)"] = "Reachable"
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


VALUES = {
    "PJSIP_AOR(app-aaaa,contact)": "app-aaaa;@1f2e,app-aaaa;@9c8d",
    "PJSIP_CONTACT(app-aaaa;@1f2e,status)": "Unreachable",
    "PJSIP_CONTACT(app-aaaa;@9c8d,status)": "Reachable",
    "PJSIP_AOR(app-bbbb,contact)": "app-bbbb;@77aa",
    "PJSIP_CONTACT(app-bbbb;@77aa,status)": "Unknown",  # registered, not yet qualified
}


@pytest.fixture
async def ami() -> AsyncIterator[GetvarAmi]:
    fake = GetvarAmi(dict(VALUES))
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


async def test_reachable_only_with_a_contact_that_answered_qualify(ami: GetvarAmi) -> None:
    probe = AmiReachability("127.0.0.1", ami.port, USER, SECRET)
    try:
        assert await probe.reachable(["app-aaaa", "app-bbbb", "app-cccc"]) == {"app-aaaa"}
        assert "PJSIP_AOR(app-cccc,contact)" in ami.asked  # no contact (or no such AOR): not reachable
        assert await probe.reachable([]) == set()
    finally:
        await probe.aclose()


async def test_a_contact_not_yet_qualified_is_qualified_at_once(ami: GetvarAmi) -> None:
    probe = AmiReachability("127.0.0.1", ami.port, USER, SECRET)
    try:
        started = time.monotonic()
        assert await probe.reachable(["app-bbbb"]) == set()  # qualify asked, never answered: not green
        assert time.monotonic() - started < 2.0
        ami.answers_qualify["app-bbbb"] = "app-bbbb;@77aa"
        assert await probe.reachable(["app-bbbb"]) == {"app-bbbb"}
    finally:
        await probe.aclose()


async def test_asterisk_silent_or_down_is_unknown_within_the_bound(ami: GetvarAmi) -> None:
    probe = AmiReachability("127.0.0.1", ami.port, USER, SECRET, timeout=0.5)
    try:
        ami.silent = True
        started = time.monotonic()
        assert await probe.reachable(["app-aaaa"]) is None
        assert time.monotonic() - started < 1.5
    finally:
        await probe.aclose()
    await ami.stop()
    down = AmiReachability("127.0.0.1", ami.port, USER, SECRET, timeout=0.5)
    try:
        started = time.monotonic()
        assert await down.reachable(["app-aaaa"]) is None
        assert time.monotonic() - started < 1.5
    finally:
        await down.aclose()
