"""The domain's ``Caller`` over a FastAGI channel: prompts, digit entry and recording.

Type-ahead: everything said before an entry (the ``lead_in`` queued since the
last entry, then the ask's own ``preamble``) and the entry's own prompt are one
``Read()`` (``AgiChannel.read_digits``): Asterisk plays the files one after the
other and any key cuts them short and is the entry's first digit; the rest of
the entry follows in the same application, so no key falls between two commands.
Two round trips for the whole balance in words and the number prompt (it was one
STREAM FILE per word, then a GET DATA). An entry with nothing before its prompt is
one GET DATA. The gaps between keys typed during a file that is not the last are
the channel's TIMEOUT(digit), which the dial plan sets to the longest entry gap
(dialplan/kinline.conf); keys typed during the entry's own prompt or after it get
the entry's ``timeout_ms``. tests/e2e/test_type_ahead.py types ahead through the
welcome and the balance in ru and fr on the real switch.

Lead-in not followed by an entry (a refusal, goodbye) is said first,
uninterruptibly, as any prompt no entry follows: its keys are dropped. The first
login's name recording is done ``aside``: the balance waits and leads into the number.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from agi.channel import AgiChannel
from agi.prompts import sound_file
from ivr.inmate_call import Ask, Entry
from ivr.recordings import NAME_FORMAT

SAMPLES_PER_MS = 8  # Asterisk's wav: 8 kHz


class AgiCaller:
    def __init__(self, channel: AgiChannel, language: str) -> None:
        self.channel = channel
        self.language = language
        self._lead_in: list[str] = []  # files said before the next ask, or the next play or record

    def set_language(self, language: str) -> None:
        self.language = language

    def lead_in(self, items: Sequence[str]) -> None:
        """Say ``items`` before whatever comes next: the next entry's preamble
        (a key cuts them short and starts it), or before a play or a recording.
        They are said in the language of now, even if it changes before."""
        self._lead_in.extend(sound_file(self.language, item) for item in items)

    @contextmanager
    def aside(self) -> Iterator[None]:
        """What is said and asked inside leaves the lead-in queued for after it: at
        the first login the name is recorded first, then the balance leads into the
        number (said before the name prompt, its keys would be dropped)."""
        kept, self._lead_in = self._lead_in, []
        try:
            yield
        finally:
            self._lead_in = [*self._lead_in, *kept]

    def _files(self, items: Sequence[str]) -> list[str]:
        """The lead-in (taken: said once), then ``items``, as files."""
        files, self._lead_in = self._lead_in, []
        return [*files, *(sound_file(self.language, item) for item in items)]

    def last_words(self, items: Sequence[str]) -> str:
        """The lead-in (taken) and ``items`` as one '&'-joined list of files, for the dial
        plan to play once the route is over (``FINAL_PROMPT``): the session ends first."""
        return "&".join(self._files(items))

    async def play(self, items: Sequence[str]) -> None:
        for file in self._files(items):
            await self.channel.stream_file(file)

    async def ask(self, item: str, max_digits: int, timeout_ms: int, preamble: Sequence[str] = ()) -> Entry:
        files = self._files(preamble)
        prompt = sound_file(self.language, item)
        if files:
            digits, timed_out = await self.channel.read_digits([*files, prompt], timeout_ms, max_digits)
        else:
            digits, timed_out = await self.channel.get_data(prompt, timeout_ms, max_digits)
        return Entry(digits, timed_out)

    async def ask_each(self, asks: Sequence[Ask]) -> list[Entry]:
        """One GOSUB for all (``AgiChannel.read_entries``): the lead-in before the first
        prompt, each entry's prompt right after the one before it ends."""
        lead_in = self._files([])
        read = await self.channel.read_entries(
            [([*(lead_in if i == 0 else []), sound_file(self.language, ask.item)], ask.timeout_ms, ask.max_digits)
             for i, ask in enumerate(asks)])
        return [Entry(digits, timed_out) for digits, timed_out in read]

    async def record(self, sound: str, max_ms: int, silence_s: int) -> int:
        await self.play([])
        samples = await self.channel.record_file(sound, NAME_FORMAT, max_ms, silence_s)
        return samples // SAMPLES_PER_MS
