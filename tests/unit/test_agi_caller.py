"""AgiCaller's digit entry: a key typed during the lead-in or the preamble starts the entry (type-ahead)."""

from __future__ import annotations

from typing import cast

from agi.caller import ENTRY_KEYS, AgiCaller
from agi.channel import AgiChannel
from agi.prompts import sound_file
from ivr import prompts as p
from ivr.inmate_call import Entry, InmateCalls
from tests.unit.test_inmate_call import NOW, PINS, Store


class Channel:
    """STREAM FILE interrupted by the scripted key of each file; GET DATA without a
    prompt collects ``later`` (the keys after it) as Asterisk's ast_readstring does;
    GET DATA with its prompt answers ``data``."""

    def __init__(self, interrupt: dict[str, str], later: str = "", data: tuple[str, bool] = ("", True)) -> None:
        self.interrupt = interrupt
        self.later = later
        self.data = data
        self.commands: list[tuple[str, ...]] = []

    async def stream_file(self, name: str, escape_digits: str = "") -> str:
        self.commands.append(("stream", name, escape_digits))
        return self.interrupt.get(name, "")

    async def get_data(self, prompt: str, timeout_ms: int, max_digits: int) -> tuple[str, bool]:
        self.commands.append(("get", prompt, str(timeout_ms), str(max_digits)))
        if prompt:
            return self.data
        digits = ""
        while self.later:
            key, self.later = self.later[0], self.later[1:]
            if key == "#":
                return digits, False
            digits += key
            if len(digits) >= max_digits:
                return digits, False
        return digits, True  # no more keys: the gap timed out


async def ask(channel: Channel, max_digits: int = 4) -> Entry:
    caller = AgiCaller(cast(AgiChannel, channel), "en")
    return await caller.ask("menu", max_digits, 5000, preamble=["a", "b", "c"])


async def test_without_a_key_the_preamble_is_said_whole_then_the_prompt_collects() -> None:
    channel = Channel({}, data=("12", False))
    assert await ask(channel) == Entry("12", False)
    assert [c[:2] for c in channel.commands] == [("stream", "kinline/en/a"), ("stream", "kinline/en/b"),
                                                 ("stream", "kinline/en/c"), ("get", "kinline/en/menu")]
    assert all(c[2] == ENTRY_KEYS for c in channel.commands[:3])


async def test_a_key_cuts_the_preamble_and_one_get_data_collects_the_rest() -> None:
    channel = Channel({"kinline/en/b": "7"}, "91#")
    assert await ask(channel) == Entry("791", False)
    # No prompt: the rest of the entry in one command (no gap between keys to lose one in).
    assert channel.commands == [("stream", "kinline/en/a", ENTRY_KEYS), ("stream", "kinline/en/b", ENTRY_KEYS),
                                ("get", "", "5000", "3")]


async def test_max_digits_and_timeouts_end_an_early_entry_like_get_data() -> None:
    one_key = Channel({"kinline/en/a": "1"}, "2")
    assert await ask(one_key, max_digits=1) == Entry("1", False)
    assert [c[0] for c in one_key.commands] == ["stream"]  # nothing more to collect
    assert await ask(Channel({"kinline/en/a": "1"}, "2")) == Entry("12", True)  # then silence
    only_hash = Channel({"kinline/en/a": "#"}, "123")
    assert await ask(only_hash) == Entry("", False)
    assert [c[0] for c in only_hash.commands] == ["stream"]
    assert await ask(Channel({"kinline/en/a": "1"}, "2345")) == Entry("1234", False)
    assert await ask(Channel({"kinline/en/a": "*"}, "12#")) == Entry("*12", False)  # '*' is a digit here


class Recorder(Channel):
    async def record_file(self, name: str, fmt: str, max_ms: int, silence_s: int, escape_digits: str = "#") -> int:
        self.commands.append(("record", name))
        return 800


async def test_the_lead_in_then_the_preamble_lead_into_the_entry() -> None:
    channel = Channel({}, data=("12", False))
    caller = AgiCaller(cast(AgiChannel, channel), "ru")
    caller.lead_in(["busy"])
    caller.lead_in(["dial-another"])
    assert await caller.ask("menu", 4, 5000, preamble=["a"]) == Entry("12", False)
    assert channel.commands == [("stream", "kinline/ru/busy", ENTRY_KEYS),
                                ("stream", "kinline/ru/dial-another", ENTRY_KEYS),
                                ("stream", "kinline/ru/a", ENTRY_KEYS), ("get", "kinline/ru/menu", "5000", "4")]
    channel.commands.clear()
    await caller.ask("menu", 4, 5000)  # said once
    assert [c[0] for c in channel.commands] == ["get"]


async def test_a_key_in_the_lead_in_skips_the_rest_of_it_and_starts_the_entry() -> None:
    # The balance in words is several files: a key in the first skips all the others.
    channel = Channel({"kinline/fr/words/x": "7"}, "916#")
    caller = AgiCaller(cast(AgiChannel, channel), "fr")
    caller.lead_in(["your-balance", "file:kinline/fr/words/x", "file:kinline/fr/words/y", "file:kinline/fr/words/z"])
    assert await caller.ask("enter-number", 24, 15000) == Entry("7916", False)
    assert channel.commands == [("stream", "kinline/fr/your-balance", ENTRY_KEYS),
                                ("stream", "kinline/fr/words/x", ENTRY_KEYS), ("get", "", "15000", "23")]


async def test_before_a_play_or_a_recording_the_lead_in_is_said_uninterruptibly() -> None:
    channel = Recorder({"kinline/en/busy": "5"})  # a key would count for nothing: not an escape digit
    caller = AgiCaller(cast(AgiChannel, channel), "en")
    caller.lead_in(["busy"])
    await caller.play(["goodbye"])
    assert channel.commands == [("stream", "kinline/en/busy", ""), ("stream", "kinline/en/goodbye", "")]
    channel.commands.clear()
    caller.lead_in(["your-balance"])
    assert await caller.record("/names/x", 3000, 2) == 100
    assert channel.commands == [("stream", "kinline/en/your-balance", ""), ("record", "/names/x")]


async def test_the_lead_in_is_said_in_the_language_it_was_queued_in() -> None:
    channel = Channel({})
    caller = AgiCaller(cast(AgiChannel, channel), "en")
    caller.lead_in(["login-failed"])
    caller.set_language("fr")
    await caller.play(["goodbye"])
    assert [c[1] for c in channel.commands] == ["kinline/en/login-failed", "kinline/fr/goodbye"]


async def test_a_whole_call_typed_ahead_through_the_agi_caller() -> None:
    # The domain over the real adapter: the card keyed during the welcome, the number
    # during the balance's first word; the rest of the balance is never streamed.
    store = Store()
    balance_word = sound_file("ru", p.money(50_000, "RUB", "ru")[0])
    channel = Channel({"kinline/ru/welcome": "1", balance_word: "7"}, "001#9161234567#", data=("2468", False))
    caller = AgiCaller(cast(AgiChannel, channel), "ru")
    calls = InmateCalls(store, store, now=lambda: NOW, pins=PINS)  # type: ignore[arg-type]
    session = await calls.login(caller, "f1", "u1", "term-1")
    plan = await calls.choose_number(caller, session, "u1", 1)
    assert plan.e164 == "+79161234567"
    streamed = [c[1] for c in channel.commands if c[0] == "stream"]
    assert streamed == ["kinline/ru/welcome", "kinline/ru/your-balance", balance_word]
    assert [c[1] for c in channel.commands if c[0] == "get"] == ["", "kinline/ru/enter-pin", ""]


async def test_aside_the_lead_in_waits_for_the_entry_after() -> None:
    # The first login: the name is recorded with the balance kept for the number.
    channel = Recorder({"kinline/ru/your-balance": "7"}, "9161234567#")
    caller = AgiCaller(cast(AgiChannel, channel), "ru")
    caller.lead_in(["your-balance"])
    with caller.aside():
        await caller.play(["name-record"])
        await caller.record("/names/x", 3000, 2)
    assert channel.commands == [("stream", "kinline/ru/name-record", ""), ("record", "/names/x")]
    channel.commands.clear()
    assert await caller.ask("enter-number", 24, 15000) == Entry("79161234567", False)
    assert channel.commands[0] == ("stream", "kinline/ru/your-balance", ENTRY_KEYS)
