"""AgiCaller's digit entry: a key typed during the preamble starts the entry."""

from __future__ import annotations

from typing import cast

from agi.caller import ENTRY_KEYS, AgiCaller
from agi.channel import AgiChannel
from ivr.inmate_call import Entry


class Channel:
    """STREAM FILE interrupted by the scripted key of each file; then WAIT FOR DIGIT keys."""

    def __init__(self, interrupt: dict[str, str], later: list[str], data: tuple[str, bool] = ("", True)) -> None:
        self.interrupt = interrupt
        self.later = later
        self.data = data
        self.commands: list[tuple[str, ...]] = []

    async def stream_file(self, name: str, escape_digits: str = "") -> str:
        self.commands.append(("stream", name, escape_digits))
        return self.interrupt.get(name, "")

    async def wait_for_digit(self, timeout_ms: int) -> str:
        self.commands.append(("wait", str(timeout_ms)))
        return self.later.pop(0) if self.later else ""

    async def get_data(self, prompt: str, timeout_ms: int, max_digits: int) -> tuple[str, bool]:
        self.commands.append(("get", prompt, str(timeout_ms), str(max_digits)))
        return self.data


async def ask(channel: Channel, max_digits: int = 4) -> Entry:
    caller = AgiCaller(cast(AgiChannel, channel), "en")
    return await caller.ask("menu", max_digits, 5000, preamble=["a", "b", "c"])


async def test_without_a_key_the_preamble_is_said_whole_then_the_prompt_collects() -> None:
    channel = Channel({}, [], data=("12", False))
    assert await ask(channel) == Entry("12", False)
    assert [c[:2] for c in channel.commands] == [("stream", "kinline/en/a"), ("stream", "kinline/en/b"),
                                                 ("stream", "kinline/en/c"), ("get", "kinline/en/menu")]
    assert all(c[2] == ENTRY_KEYS for c in channel.commands[:3])


async def test_a_key_cuts_the_preamble_and_starts_the_entry() -> None:
    channel = Channel({"kinline/en/b": "7"}, ["9", "1", "#"])
    assert await ask(channel) == Entry("791", False)
    assert [c[0] for c in channel.commands] == ["stream", "stream", "wait", "wait", "wait"]
    assert ("wait", "5000") in channel.commands


async def test_max_digits_and_timeouts_end_an_early_entry_like_get_data() -> None:
    assert await ask(Channel({"kinline/en/a": "1"}, []), max_digits=1) == Entry("1", False)
    assert await ask(Channel({"kinline/en/a": "1"}, ["2"])) == Entry("12", True)  # then silence
    assert await ask(Channel({"kinline/en/a": "#"}, [])) == Entry("", False)
    assert await ask(Channel({"kinline/en/a": "1"}, ["2", "3", "4", "5"])) == Entry("1234", False)
