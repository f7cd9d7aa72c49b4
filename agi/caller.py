"""The domain's ``Caller`` over a FastAGI channel: prompts and digit entry."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from agi.channel import AgiChannel
from ivr.inmate_call import Entry
from ivr.prompts import LANGUAGES

DEFAULT_LANGUAGE = "en"


def sound_file(language: str, item: str) -> str:
    """``enter-card`` / ``word:двадцать`` / ``facility:<sha>`` -> a file under sounds/kinline."""
    lang = language if language in LANGUAGES else DEFAULT_LANGUAGE
    if item.startswith("word:"):
        return f"kinline/{lang}/words/{word_slug(item[5:])}"
    if item.startswith("file:"):
        return item[5:]
    return f"kinline/{lang}/{item}"


def word_slug(token: str) -> str:
    return hashlib.sha1(token.encode()).hexdigest()[:16]


class AgiCaller:
    def __init__(self, channel: AgiChannel, language: str) -> None:
        self.channel = channel
        self.language = language

    def set_language(self, language: str) -> None:
        self.language = language

    async def play(self, items: Sequence[str]) -> None:
        for item in items:
            await self.channel.stream_file(sound_file(self.language, item))

    async def ask(self, item: str, max_digits: int, timeout_ms: int) -> Entry:
        digits, timed_out = await self.channel.get_data(sound_file(self.language, item), timeout_ms, max_digits)
        return Entry(digits, timed_out)
