"""AgiCaller's digit entry: everything said before an entry and its prompt are one Read
(type-ahead: a key during any of them starts the entry); plays stay uninterruptible."""

from __future__ import annotations

from typing import cast

from agi.caller import AgiCaller
from agi.channel import AgiChannel
from agi.prompts import sound_file
from ivr import prompts as p
from ivr.inmate_call import Entry, InmateCalls
from tests.unit.test_inmate_call import NOW, PINS, Store


class Channel:
    """Read plays its files until the scripted key of one of them, then collects ``later``
    (the keys after it) as Asterisk's ast_readstring does; without a key it answers
    ``data`` at the last file, as GET DATA with its prompt does."""

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
        return self.data

    async def read_digits(self, files: list[str], timeout_ms: int, max_digits: int) -> tuple[str, bool]:
        self.commands.append(("read", "&".join(files), str(timeout_ms), str(max_digits)))
        return self._read(files, max_digits)

    async def read_entries(self, entries: list[tuple[list[str], int, int]]) -> list[tuple[str, bool]]:
        """Back to back: the keys left after an entry's '#' go to the next one."""
        self.commands.append(("entries", *(f"{'&'.join(f)},{t},{m}" for f, t, m in entries)))
        return [self._read(files, max_digits) for files, _, max_digits in entries]

    def _read(self, files: list[str], max_digits: int) -> tuple[str, bool]:
        key = next((self.interrupt[f] for f in files if f in self.interrupt), "")
        if not key:
            return self.data
        digits, keys = "", key + self.later
        while keys:
            key, keys = keys[0], keys[1:]
            self.later = keys
            if key == "#":
                return digits, False
            digits += key
            if len(digits) >= max_digits:
                return digits, False
        return digits, True  # no more keys: the gap timed out


async def ask(channel: Channel, max_digits: int = 4) -> Entry:
    caller = AgiCaller(cast(AgiChannel, channel), "en")
    return await caller.ask("menu", max_digits, 5000, preamble=["a", "b", "c"])


async def test_the_preamble_and_the_prompt_are_one_read() -> None:
    channel = Channel({}, data=("12", False))
    assert await ask(channel) == Entry("12", False)
    assert channel.commands == [("read", "kinline/en/a&kinline/en/b&kinline/en/c&kinline/en/menu", "5000", "4")]


async def test_a_key_in_the_preamble_starts_the_entry() -> None:
    channel = Channel({"kinline/en/b": "7"}, "91#")
    assert await ask(channel) == Entry("791", False)
    assert [c[0] for c in channel.commands] == ["read"]  # the rest of the entry in the same command


async def test_an_entry_with_nothing_before_its_prompt_is_one_get_data() -> None:
    channel = Channel({}, data=("2468", False))
    caller = AgiCaller(cast(AgiChannel, channel), "en")
    assert await caller.ask("enter-pin", 8, 10000) == Entry("2468", False)
    assert channel.commands == [("get", "kinline/en/enter-pin", "10000", "8")]


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
    assert channel.commands == [("read", "kinline/ru/busy&kinline/ru/dial-another&kinline/ru/a&kinline/ru/menu",
                                 "5000", "4")]
    channel.commands.clear()
    await caller.ask("menu", 4, 5000)  # said once
    assert [c[0] for c in channel.commands] == ["get"]


async def test_the_balance_in_words_and_the_number_prompt_are_one_read() -> None:
    channel = Channel({"kinline/fr/words/x": "7"}, "916#")
    caller = AgiCaller(cast(AgiChannel, channel), "fr")
    caller.lead_in(["your-balance", "file:kinline/fr/words/x", "file:kinline/fr/words/y", "file:kinline/fr/words/z"])
    assert await caller.ask("enter-number", 24, 15000) == Entry("7916", False)
    assert channel.commands == [("read", "kinline/fr/your-balance&kinline/fr/words/x&kinline/fr/words/y&"
                                 "kinline/fr/words/z&kinline/fr/enter-number", "15000", "24")]


async def test_last_words_take_the_lead_in_for_the_dial_plan() -> None:
    channel = Channel({})
    caller = AgiCaller(cast(AgiChannel, channel), "en")
    caller.lead_in(["login-failed"])
    assert caller.last_words(["too-many-tries", "goodbye"]) == \
        "kinline/en/login-failed&kinline/en/too-many-tries&kinline/en/goodbye"
    assert caller.last_words(["goodbye"]) == "kinline/en/goodbye"  # the lead-in was said once
    assert channel.commands == []  # nothing played by the route itself


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
    words = "&".join(sound_file("ru", w) for w in p.money(50_000, "RUB", "ru"))
    assert channel.commands == [
        ("entries", "kinline/ru/welcome&kinline/ru/enter-card,10000,16", "kinline/ru/enter-pin,10000,8"),
        ("read", f"kinline/ru/your-balance&{words}&kinline/ru/enter-number", "15000", "24")]


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
    assert channel.commands == [("read", "kinline/ru/your-balance&kinline/ru/enter-number", "15000", "24")]
