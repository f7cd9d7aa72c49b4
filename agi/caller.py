"""The domain's ``Caller`` over a FastAGI channel: prompts, digit entry and recording."""

from __future__ import annotations

from collections.abc import Sequence

from agi.channel import AgiChannel
from agi.prompts import sound_file
from ivr.inmate_call import Entry
from ivr.recordings import NAME_FORMAT

SAMPLES_PER_MS = 8  # Asterisk's wav: 8 kHz
ENTRY_KEYS = "0123456789*#"  # any key cuts a preamble short and starts the entry


class AgiCaller:
    def __init__(self, channel: AgiChannel, language: str) -> None:
        self.channel = channel
        self.language = language

    def set_language(self, language: str) -> None:
        self.language = language

    async def play(self, items: Sequence[str]) -> None:
        for item in items:
            await self.channel.stream_file(sound_file(self.language, item))

    async def ask(self, item: str, max_digits: int, timeout_ms: int, preamble: Sequence[str] = ()) -> Entry:
        for said in preamble:
            key = await self.channel.stream_file(sound_file(self.language, said), ENTRY_KEYS)
            if key:
                return await self._rest_of_entry(key, max_digits, timeout_ms)
        digits, timed_out = await self.channel.get_data(sound_file(self.language, item), timeout_ms, max_digits)
        return Entry(digits, timed_out)

    async def _rest_of_entry(self, key: str, max_digits: int, timeout_ms: int) -> Entry:
        """Collect the digits after ``key`` as GET DATA would: ``#`` ends the
        entry, so does ``max_digits``; a gap of ``timeout_ms`` times it out."""
        digits = ""
        while key != "#":
            digits += key
            if len(digits) >= max_digits:
                break
            key = await self.channel.wait_for_digit(timeout_ms)
            if not key:
                return Entry(digits, True)
        return Entry(digits, False)

    async def record(self, sound: str, max_ms: int, silence_s: int) -> int:
        samples = await self.channel.record_file(sound, NAME_FORMAT, max_ms, silence_s)
        return samples // SAMPLES_PER_MS
