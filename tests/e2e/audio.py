"""What the test agents heard: loudness and tones in their 16-bit mono WAV recordings."""

from __future__ import annotations

import math
import struct
import wave
from pathlib import Path

RINGBACK_HZ = 425  # asterisk/conf/indications.conf, country ru


def samples(path: Path, start_s: float = 0.0, end_s: float | None = None) -> tuple[int, tuple[int, ...]]:
    """The sample rate and the samples between ``start_s`` and ``end_s`` (the end: None)."""
    with wave.open(str(path), "rb") as wav:
        assert (wav.getsampwidth(), wav.getnchannels()) == (2, 1)
        rate, total = wav.getframerate(), wav.getnframes()
        first = min(total, max(0, int(start_s * rate)))
        last = total if end_s is None else min(total, max(first, int(end_s * rate)))
        wav.setpos(first)
        raw = wav.readframes(last - first)
    return rate, struct.unpack(f"<{len(raw) // 2}h", raw)


def rms(path: Path, start_s: float = 0.0, end_s: float | None = None) -> float:
    """Root mean square of the samples between ``start_s`` and ``end_s`` (0 if none)."""
    _, values = samples(path, start_s, end_s)
    return math.sqrt(sum(s * s for s in values) / max(1, len(values)))


def duration(path: Path) -> float:
    with wave.open(str(path), "rb") as wav:
        return wav.getnframes() / wav.getframerate()


def tone_share(path: Path, start_s: float, end_s: float, hz: float = RINGBACK_HZ) -> float:
    """Share of the 20 ms frames between ``start_s`` and ``end_s`` whose energy is
    mostly at ``hz`` (Goertzel)."""
    rate, values = samples(path, start_s, end_s)
    n = rate // 50
    coeff = 2 * math.cos(2 * math.pi * hz / rate)
    toned = frames = 0
    for i in range(0, len(values) - n + 1, n):
        frame = values[i:i + n]
        s1 = s2 = 0.0
        for x in frame:
            s1, s2 = x + coeff * s1 - s2, s1
        power = s1 * s1 + s2 * s2 - coeff * s1 * s2
        energy = sum(x * x for x in frame) * n / 2
        frames += 1
        toned += energy > 1e6 * n and power > 0.5 * energy
    return toned / max(1, frames)
