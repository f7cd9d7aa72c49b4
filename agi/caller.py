"""The domain's ``Caller`` over a FastAGI channel: prompts, digit entry and recording.

Type-ahead: everything said before an entry (the ``lead_in`` queued since the
last entry, then the ask's own ``preamble``) is played file by file with STREAM
FILE and every key as an escape digit. The key that cuts it short is the
entry's first digit: the rest of the sequence is skipped at once and a GET DATA
without a prompt collects the rest. Without a key, GET DATA plays the entry's
own prompt and collects (one command).

Why one command per file: AGI has no command that plays several files with
escape digits (GET DATA and STREAM FILE take one file). Between two commands
Asterisk's AGI loop (res_agi.c run_agi) reads the channel and frees every frame.
A key is still not lost there: a SIP INFO key read outside a prompt starts
Asterisk's DTMF emulation (main/channel.c), and its end, the frame a prompt acts
on, comes the key's duration later (pjsua: 160 ms), inside the next command.
Only a gap longer than that loses it (an RFC 4733 key's end comes with its last
packet: the same, not measured here). Measured on the stack (offset 6, a ru
balance, the number keyed into the gap after "your balance"): a gap made 50 ms
long lost nothing in 6 calls; made 400 ms long, every one of 6 calls lost the
first digits ("number invalid"). The real gap is one round trip to this server,
well under a millisecond here; an AGI server hundreds of milliseconds late
(issue 9's overload) would lose keys. tests/e2e/test_type_ahead.py types ahead
through the welcome and the balance in ru and fr; a scratch run of 30 such calls
on this box under a load average of ~56 (other stacks) dialed all 30 numbers right.

Lead-in not followed by an entry (a refusal, goodbye) is said first,
uninterruptibly, as any prompt no entry follows: its keys are dropped. The first
login's name recording is done ``aside``: the balance waits and leads into the number.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

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

    async def play(self, items: Sequence[str]) -> None:
        for file in self._files(items):
            await self.channel.stream_file(file)

    async def ask(self, item: str, max_digits: int, timeout_ms: int, preamble: Sequence[str] = ()) -> Entry:
        for file in self._files(preamble):
            key = await self.channel.stream_file(file, ENTRY_KEYS)
            if key:
                return await self._rest_of_entry(key, max_digits, timeout_ms)
        digits, timed_out = await self.channel.get_data(sound_file(self.language, item), timeout_ms, max_digits)
        return Entry(digits, timed_out)

    async def _rest_of_entry(self, key: str, max_digits: int, timeout_ms: int) -> Entry:
        """The entry that ``key`` starts, as GET DATA would collect it: ``#`` ends
        it, so does ``max_digits``; a gap of ``timeout_ms`` times it out. The rest
        comes in one GET DATA with no prompt: one command, no gap between two keys
        where Asterisk could drop one (a WAIT FOR DIGIT per key had one per key)."""
        if key == "#":
            return Entry("", False)
        if max_digits <= 1:
            return Entry(key, False)
        digits, timed_out = await self.channel.get_data("", timeout_ms, max_digits - 1)
        return Entry(key + digits, timed_out)

    async def record(self, sound: str, max_ms: int, silence_s: int) -> int:
        await self.play([])
        samples = await self.channel.record_file(sound, NAME_FORMAT, max_ms, silence_s)
        return samples // SAMPLES_PER_MS
