"""Generate the IVR's prompts from prompts/<lang>.toml: espeak-ng, then sox to 8 kHz."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from tools.config import REPO

VOICES = {"en": "en-us", "ru": "ru", "fr": "fr-fr"}
PROMPTS_DIR = REPO / "prompts"


def prompt_texts(lang: str) -> dict[str, str]:
    with (PROMPTS_DIR / f"{lang}.toml").open("rb") as fh:
        return {str(k): str(v) for k, v in tomllib.load(fh).items()}


def generate(out: Path) -> int:
    """Write out/<lang>/<name>.wav for every prompt; return how many were (re)made."""
    made = 0
    for lang, voice in VOICES.items():
        target = out / lang
        target.mkdir(parents=True, exist_ok=True)
        for name, text in prompt_texts(lang).items():
            wav = target / f"{name}.wav"
            stamp = target / f".{name}.sha256"
            digest = hashlib.sha256(f"{voice}\n{text}".encode()).hexdigest()
            if wav.exists() and stamp.exists() and stamp.read_text() == digest:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                raw = Path(tmp) / "raw.wav"
                subprocess.run(
                    ["espeak-ng", "-v", voice, "-s", "150", "-w", str(raw), text],
                    check=True, capture_output=True,
                )
                subprocess.run(
                    ["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer",
                     str(wav)],
                    check=True, capture_output=True,
                )
            stamp.write_text(digest)
            made += 1
    return made


if __name__ == "__main__":
    dest = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "var" / "prompts"
    sys.stdout.write(f"prompts: {generate(dest)} generated in {dest}\n")
