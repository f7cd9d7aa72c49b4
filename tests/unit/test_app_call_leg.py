"""The woken app call in the adapters (agi/routes/app_dial.py, agi/channel.py): the wait
passed down to each leg's channel, a leg's subscription waking only on its own device's
contact, and the "connecting" prompt cut short by a new AGI command."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from typing import Any

import pytest

from agi.apps_node import AppsNodeContacts, AppsNodeUnavailable
from agi.channel import AgiChannel
from agi.protocol import AgiHangup
from agi.routes.app_dial import LEG, LegWait, RedisWake, RelayedContacts
from store.app_wake import device_of, unwakeable_call, unwakeable_message


def test_the_legs_wait_goes_down_as_one_variable_and_back() -> None:
    wait = LegWait("1732350000.17-2", "+79161234567", 1_732_350_030_000)
    assert LegWait.decode(wait.encode()) == wait


def test_a_garbled_wait_is_none() -> None:
    for text in ("", "call +7916 soon", "call 79161234567 1732350030000", "a b c d", "call +7916"):
        assert LegWait.decode(text) is None, text


def test_a_leg_is_a_local_channel_per_device() -> None:
    assert LEG.format(device_id="0123456789abcdef") == "Local/0123456789abcdef@kinline-app-leg/n"


class AppsNode:
    def __init__(self, *registered: str) -> None:
        self.registered_endpoints = set(registered)
        self.asked: list[str] = []

    async def registered(self, endpoint: str) -> bool:
        self.asked.append(endpoint)
        return endpoint in self.registered_endpoints


async def test_on_another_node_an_app_is_dialed_through_the_apps_node_when_registered_there() -> None:
    apps_node = AppsNode("app-0123456789abcdef")
    relayed = RelayedContacts(apps_node, "kinline-node1")
    assert await relayed.dial_string("0123456789abcdef") == "PJSIP/0123456789abcdef@kinline-node1"
    assert await relayed.dial_string("fedcba9876543210") == ""  # not registered: woken first
    assert relayed.leg("fedcba9876543210") == "PJSIP/fedcba9876543210@kinline-node1"  # the apps' node waits
    assert apps_node.asked == ["app-0123456789abcdef", "app-fedcba9876543210"]


async def test_an_apps_node_that_does_not_answer_is_unavailable_within_the_bound() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    apps_node = AppsNodeContacts("127.0.0.1", port, "kinline-status", "x", timeout=0.3)
    began = time.monotonic()
    with pytest.raises(AppsNodeUnavailable):
        await apps_node.registered("app-0123456789abcdef")
    assert time.monotonic() - began < 2
    await apps_node.aclose()


class PubSub:
    def __init__(self, *messages: dict[str, Any] | None) -> None:
        self.messages = list(messages)

    async def get_message(self, ignore_subscribe_messages: bool, timeout: float) -> dict[str, Any] | None:
        return self.messages.pop(0) if self.messages else None


def published(device_id: str) -> dict[str, Any]:
    return {"type": "message", "data": json.dumps({"device_id": device_id, "uri": "", "status": "Authenticated"})}


async def test_a_legs_wake_ends_only_on_its_own_devices_contact() -> None:
    pubsub = PubSub(published("d2"), {"type": "message", "data": "not json"}, published("d1"))
    wake = RedisWake(None, pubsub, "call-1", "+79161234567", "", 8, "d1")  # type: ignore[arg-type]
    assert await wake.next_contact(5.0)
    assert pubsub.messages == []  # d2's and the garbled one were skipped


async def test_a_legs_wake_ignores_other_devices_until_its_timeout() -> None:
    wake = RedisWake(None, PubSub(published("d2")), "call-1", "+79161234567", "", 8, "d1")  # type: ignore[arg-type]
    assert not await wake.next_contact(0.05)


async def test_the_calls_wait_ends_on_any_device() -> None:
    wake = RedisWake(None, PubSub(published("d2")), "call-1", "+79161234567", "", 8)  # type: ignore[arg-type]
    assert await wake.next_contact(5.0)



def unwakeable(call_id: str) -> dict[str, Any]:
    return {"type": "message", "data": unwakeable_message(call_id, 1_732_350_000_000)}


@pytest.mark.parametrize("device_id", ["", "d1"])
async def test_the_bridges_unwakeable_for_this_call_ends_the_wait(device_id: str) -> None:
    pubsub = PubSub(unwakeable("call-1"), published("d1"))
    wake = RedisWake(None, pubsub, "call-1", "+79161234567", "", 8, device_id)  # type: ignore[arg-type]
    assert not wake.unwakeable
    assert not await wake.next_contact(5.0)  # at once, not after 5 s
    assert wake.unwakeable and pubsub.messages == [published("d1")]
    assert not await wake.next_contact(5.0)  # stays over


@pytest.mark.parametrize("device_id", ["", "d1"])
async def test_another_calls_unwakeable_is_neither_an_end_nor_a_contact(device_id: str) -> None:
    """Another call to the same relative could not wake the app: this one waits on."""
    pubsub = PubSub(unwakeable("call-2"), {"type": "message", "data": "not json"},
                    {"type": "message", "data": json.dumps({"status": "Created"})})
    wake = RedisWake(None, pubsub, "call-1", "+79161234567", "", 8, device_id)  # type: ignore[arg-type]
    assert not await wake.next_contact(0.05)
    assert not wake.unwakeable and pubsub.messages == []


class Keys:
    def __init__(self, *keys: str) -> None:
        self.keys = set(keys)

    async def exists(self, key: str) -> int:
        return int(key in self.keys)


async def test_a_leg_listening_late_learns_a_past_unwakeable_from_its_key() -> None:
    late = RedisWake(Keys("kl:unwakeable:call-1"), PubSub(), "call-1", "+79161234567", "", 8, "d1")  # type: ignore[arg-type]
    await late.listen()
    assert late.unwakeable
    other = RedisWake(Keys("kl:unwakeable:call-2"), PubSub(), "call-1", "+79161234567", "", 8, "d1")  # type: ignore[arg-type]
    await other.listen()
    assert not other.unwakeable


def test_only_an_unwakeable_without_a_device_names_a_call() -> None:
    assert unwakeable_call(unwakeable_message("c1", 5)) == "c1"
    assert device_of(unwakeable_message("c1", 5)) == ""
    assert unwakeable_call(json.dumps({"call_id": "c1", "status": "Unwakeable", "device_id": "d1"})) == ""
    assert unwakeable_call(b'{"device_id": "d1", "status": "Created"}') == ""
    assert device_of(b'{"device_id": "d1", "status": "Created"}') == "d1"
    assert unwakeable_call("[1]") == device_of("nope") == ""

# -- "connecting to the app", cut short when a contact comes (AgiChannel.stream_file_until) --


class Writer:
    """Asterisk's side: each command written; a scripted reply fed at each command."""

    def __init__(self, reader: asyncio.StreamReader, replies: dict[str, list[str]]) -> None:
        self.reader, self.replies = reader, replies
        self.lines: list[str] = []

    def write(self, data: bytes) -> None:
        line = data.decode().rstrip("\n")
        self.lines.append(line)
        for reply in self.replies.get(line.split(" ")[0], []):
            self.reader.feed_data(f"{reply}\n".encode())

    async def drain(self) -> None:
        pass


def agi_channel(replies: dict[str, list[str]]) -> tuple[AgiChannel, Writer]:
    reader = asyncio.StreamReader()
    writer = Writer(reader, replies)
    log = logging.LoggerAdapter(logging.getLogger("test"), {})
    return AgiChannel(reader, writer, log), writer  # type: ignore[arg-type]


async def test_a_prompt_cut_short_by_a_noop_frees_the_line() -> None:
    """res_agi ends a STREAM FILE with no reply of its own when a new command comes:
    the NOOP's reply is the only one, and the next command gets its own."""
    channel, writer = agi_channel({"STREAM": [], "NOOP": ["200 result=0"], "GET": ["200 result=1 (x)"]})
    stop = asyncio.Event()
    playing = asyncio.ensure_future(channel.stream_file_until("kinline/en/app-connecting", stop))
    await asyncio.sleep(0.01)
    assert not playing.done()
    stop.set()
    assert await asyncio.wait_for(playing, 1) is True
    assert writer.lines == ['STREAM FILE "kinline/en/app-connecting" ""', "NOOP"]
    assert await channel.get_variable("X") == "x"


async def test_a_prompt_that_ends_by_itself_is_not_cut() -> None:
    channel, writer = agi_channel({"STREAM": ["200 result=0 endpos=23440"]})
    assert await channel.stream_file_until("kinline/en/app-connecting", asyncio.Event()) is False
    assert writer.lines == ['STREAM FILE "kinline/en/app-connecting" ""']


async def test_a_prompt_that_ended_as_the_noop_went_leaves_no_reply_behind() -> None:
    """Both replies come (the prompt's, then the NOOP's): both are read."""
    channel, _ = agi_channel({"NOOP": ["200 result=0 endpos=23440", "200 result=0"],
                                   "GET": ["200 result=1 (y)"]})
    stop = asyncio.Event()
    stop.set()
    assert await channel.stream_file_until("f", stop) is False
    assert await channel.get_variable("Y") == "y"


async def test_the_caller_hanging_up_during_the_prompt_is_a_hangup() -> None:
    channel, _ = agi_channel({"STREAM": ["HANGUP", "200 result=-1 endpos=800"]})
    with pytest.raises(AgiHangup):
        await channel.stream_file_until("f", asyncio.Event())
    assert channel.hung_up
