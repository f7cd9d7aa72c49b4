"""The inmate's recorded name: said after the tone (up to 3 s), played back,
then kept or recorded again. The relative hears it after the facility's name.

Independent of Asterisk: the terminal records through ``Caller.record`` and the
files live behind ``NameFiles`` (one folder, apart from call recordings). A take
is recorded as a draft and renamed over the old name only when kept, so a
hangup mid-recording leaves the old name as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ivr import prompts as p
from ivr.errors import KinlineError
from ivr.inmate_call import Caller
from ivr.recordings import can_have_name, draft_stem, name_stem

log = logging.getLogger(__name__)

MAX_TAKES = 3
MAX_MS = 3000
SILENCE_S = 2  # the recording stops after this much silence
CONFIRM_TIMEOUT_MS = 10_000  # no key: the take is kept
KEEP, REDO = "1", "2"

FRAME_MS = 20
VOICE_LEVEL = 256  # mean |sample| of a 16-bit frame: Asterisk's default silence threshold
MIN_VOICED_MS = 300  # less than this above the threshold is silence, a click or a cough


class NameStorageError(KinlineError):
    """The names folder could not be read or written."""


@dataclass(frozen=True)
class Sound:
    """What a take holds: its length and how much of it is above the silence level."""

    duration_ms: int
    voiced_ms: int


def measure(samples: Sequence[int], rate: int) -> Sound:
    """Length and voiced time of 16-bit mono samples at ``rate`` Hz (20 ms frames)."""
    frame = max(1, rate * FRAME_MS // 1000)
    voiced = 0
    for start in range(0, len(samples) - frame + 1, frame):
        if sum(abs(s) for s in samples[start:start + frame]) >= VOICE_LEVEL * frame:
            voiced += 1
    return Sound(len(samples) * 1000 // rate, voiced * FRAME_MS)


def is_voice(sound: Sound) -> bool:
    """A take worth keeping: someone spoke in it."""
    return sound.voiced_ms >= MIN_VOICED_MS


def file_item(sound: str) -> str:
    """A spoken item for a file the switch plays by its own path."""
    return f"file:{sound}"


class NameFiles(Protocol):
    """The names folder. ``stem`` is a file name without extension in it."""

    def exists(self, stem: str) -> bool: ...

    def sound(self, stem: str) -> str:
        """Where the switch records and plays ``stem`` (a path without extension)."""
        ...

    async def measure(self, stem: str) -> Sound | None:
        """The take's sound, None if there is no such file (or it is not audio)."""
        ...

    async def keep(self, draft: str, stem: str) -> None:
        """Rename ``draft`` over ``stem`` in one step; NameStorageError if it fails."""
        ...

    async def discard(self, stem: str) -> None:
        """Delete ``stem`` if it exists."""
        ...


class InmateNames:
    """Record, play back, keep or redo; say where a kept name is."""

    def __init__(self, files: NameFiles) -> None:
        self.files = files

    def has_name(self, inmate_id: str) -> bool:
        return can_have_name(inmate_id) and self.files.exists(name_stem(inmate_id))

    def item(self, inmate_id: str) -> str | None:
        """The inmate's name as a spoken item, or None until they recorded one."""
        if not self.has_name(inmate_id):
            return None
        return file_item(self.files.sound(name_stem(inmate_id)))

    async def record(self, caller: Caller, inmate_id: str, uniqueid: str) -> bool:
        """Up to MAX_TAKES takes; keep the one confirmed (1, or no key), or the
        last one with a voice in it. True if a new name was kept. Storage errors
        are logged and leave the old name (the call goes on without)."""
        if not can_have_name(inmate_id):
            log.error("[%s] inmate id %r cannot name a file: no name recorded", uniqueid, inmate_id)
            return False
        good: str | None = None
        drafts: list[str] = []
        kept = False
        try:
            for take in range(1, MAX_TAKES + 1):
                draft = draft_stem(inmate_id, uniqueid, take)
                drafts.append(draft)
                await caller.play([p.NAME_RECORD])
                recorded_ms = await caller.record(self.files.sound(draft), MAX_MS, SILENCE_S)
                sound = await self.files.measure(draft)
                if sound is None or not is_voice(sound):
                    log.info("[%s] inmate %s: name take %d discarded (%s, %d ms recorded)", uniqueid, inmate_id,
                             take, "silent" if sound else "no file", recorded_ms)
                    continue
                log.info("[%s] inmate %s: name take %d recorded (%d ms, %d ms voiced)", uniqueid, inmate_id, take,
                         sound.duration_ms, sound.voiced_ms)
                good = draft
                await caller.play([p.NAME_PLAYBACK, file_item(self.files.sound(draft))])
                answer = await caller.ask(p.NAME_CONFIRM, 1, CONFIRM_TIMEOUT_MS)
                if answer.digits != REDO:
                    break
                log.info("[%s] inmate %s: name take %d refused (2: record again)", uniqueid, inmate_id, take)
            if good is None:
                log.info("[%s] inmate %s: no name kept after %d takes", uniqueid, inmate_id, len(drafts))
                return False
            await self.files.keep(good, name_stem(inmate_id))
            kept = True
            log.info("[%s] inmate %s: name kept (%s)", uniqueid, inmate_id, good)
        except NameStorageError as err:
            log.error("[%s] inmate %s: name not saved: %s", uniqueid, inmate_id, err)
            return False
        except BaseException as exc:  # the caller hung up (or the server stops) mid-take
            log.info("[%s] inmate %s: name recording cut (%s): %d take(s) discarded, the old name kept",
                     uniqueid, inmate_id, type(exc).__name__, len(drafts))
            raise
        finally:
            for draft in drafts:
                if not (kept and draft == good):
                    try:
                        await self.files.discard(draft)
                    except NameStorageError as err:
                        log.error("[%s] inmate %s: draft %s not deleted: %s", uniqueid, inmate_id, draft, err)
        await caller.play([p.NAME_SAVED])
        return True
