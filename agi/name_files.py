"""The inmates' recorded names as this host sees them: the folder Asterisk
records into (bind-mounted at ``ivr.recordings.SWITCH_NAMES`` in its root)."""

from __future__ import annotations

import asyncio
import os
import sys
import wave
from array import array
from pathlib import Path

from ivr.names import NameStorageError, Sound, measure
from ivr.recordings import NAME_FORMAT, SWITCH_NAMES


class NameFolder:
    """``ivr.names.NameFiles`` over a local folder."""

    def __init__(self, host_dir: Path) -> None:
        self.host_dir = host_dir

    def path(self, stem: str) -> Path:
        return self.host_dir / f"{stem}.{NAME_FORMAT}"

    def exists(self, stem: str) -> bool:
        return self.path(stem).is_file()

    def sound(self, stem: str) -> str:
        return f"{SWITCH_NAMES}/{stem}"

    async def measure(self, stem: str) -> Sound | None:
        return await asyncio.to_thread(read_sound, self.path(stem))

    async def keep(self, draft: str, stem: str) -> None:
        try:
            await asyncio.to_thread(os.replace, self.path(draft), self.path(stem))
        except OSError as err:
            raise NameStorageError(f"cannot keep {draft} as {stem}: {err}") from err

    async def discard(self, stem: str) -> None:
        try:
            await asyncio.to_thread(self.path(stem).unlink, missing_ok=True)
        except OSError as err:
            raise NameStorageError(f"cannot delete {stem}: {err}") from err


def read_sound(path: Path) -> Sound | None:
    """The sound in a 16-bit mono WAV file; None if it is missing or not such a file."""
    try:
        with wave.open(str(path), "rb") as wav:
            if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
                return None
            rate = wav.getframerate()
            frames = wav.readframes(wav.getnframes())
    except (FileNotFoundError, EOFError, wave.Error):
        return None  # nothing recorded, or not audio: no voice in it
    except OSError as err:
        raise NameStorageError(f"cannot read {path.name}: {err}") from err
    samples = array("h")
    samples.frombytes(frames[: len(frames) // 2 * 2])
    if sys.byteorder == "big":
        samples.byteswap()  # WAV is little-endian
    return measure(samples, rate)
