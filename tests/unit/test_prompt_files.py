"""Prompt files: a WAV and, beside it, the same audio in G.711 u-law and A-law."""

from __future__ import annotations

import array
import math
import subprocess
import wave
from pathlib import Path

from tools.prompts import CODECS, synth


def test_each_prompt_is_written_in_every_codec_with_the_same_audio(tmp_path: Path) -> None:
    wav = tmp_path / "en" / "hello.wav"
    assert synth("Hello there.", "en-us", wav)
    with wave.open(str(wav)) as fh:
        assert (fh.getframerate(), fh.getnchannels(), fh.getsampwidth()) == (8000, 1, 2)
        pcm = fh.readframes(fh.getnframes())
    ulaw, alaw = wav.with_suffix(".ulaw").read_bytes(), wav.with_suffix(".alaw").read_bytes()
    assert len(ulaw) == len(alaw) == len(pcm) // 2  # one byte per sample
    # Decoded back (by sox), each is the WAV's audio within G.711's quantisation.
    original = array.array("h", pcm)
    assert _rms(original) > 100
    for ext, kind in CODECS.items():
        back = array.array("h", subprocess.run(
            ["sox", "-t", kind, "-r", "8000", "-c", "1", str(wav.with_suffix(f".{ext}")), "-t", "s16", "-"],
            check=True, capture_output=True).stdout)
        assert len(back) == len(original)
        error = array.array("h", (a - b for a, b in zip(back, original, strict=True)))
        assert _rms(error) < _rms(original) / 10, ext


def _rms(samples: array.array[int]) -> float:
    return math.sqrt(sum(x * x for x in samples) / len(samples))


def test_a_missing_codec_file_is_made_again(tmp_path: Path) -> None:
    wav = tmp_path / "hello.wav"
    assert synth("Hello.", "en-us", wav)
    assert not synth("Hello.", "en-us", wav)  # all there: nothing to do
    wav.with_suffix(".alaw").unlink()
    assert synth("Hello.", "en-us", wav)
    assert all(wav.with_suffix(f".{ext}").exists() for ext in CODECS)
