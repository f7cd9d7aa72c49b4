"""Generate the IVR's prompts from prompts/<lang>.toml: espeak-ng, then sox to 8 kHz.

Each prompt is written as a WAV (signed linear, what tests and tools read) and beside it
in the terminals' and the trunk's codecs, G.711 u-law (.ulaw) and A-law (.alaw): Asterisk
opens, of the files with the same name, the one cheapest to send on the channel, so a
prompt played to a G.711 channel is read as is instead of transcoded on every call."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from agi.prompts import word_file
from ivr.prompts import ALL as PROMPT_NAMES
from ivr.prompts import vocabulary
from tools.config import REPO

VOICES = {"en": "en-us", "ru": "ru", "fr": "fr-fr"}
# Asterisk's file extension -> sox's raw type, for each codec a prompt is stored in.
CODECS = {"ulaw": "ul", "alaw": "al"}
PROMPTS_DIR = REPO / "prompts"


def prompt_texts(lang: str) -> dict[str, str]:
    with (PROMPTS_DIR / f"{lang}.toml").open("rb") as fh:
        return {str(k): str(v) for k, v in tomllib.load(fh).items()}


def synth(text: str, voice: str, wav: Path) -> bool:
    """Speak ``text`` into an 8 kHz mono WAV, unless the same text is already there."""
    stamp = wav.with_name(f".{wav.stem}.sha256")
    digest = hashlib.sha256(f"{voice}\n{text}".encode()).hexdigest()
    encoded = [wav.with_suffix(f".{ext}") for ext in CODECS]
    if wav.exists() and all(f.exists() for f in encoded) and stamp.exists() and stamp.read_text() == digest:
        return False
    created = [folder for folder in (wav.parent, *wav.parent.parents) if not folder.exists()]
    wav.parent.mkdir(parents=True, exist_ok=True)
    for folder in created:  # made under the service's umask 077; Asterisk (its own user) must enter
        folder.chmod(0o755)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(raw), text],
                       check=True, capture_output=True)
        out = Path(tmp) / "out.wav"
        subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer", str(out)],
                       check=True, capture_output=True)
        out.chmod(0o644)  # prompts are public: Asterisk (its own user) reads them
        for ext, kind in CODECS.items():
            coded = Path(tmp) / f"out.{ext}"
            subprocess.run(["sox", str(out), "-t", kind, str(coded)], check=True, capture_output=True)
            coded.chmod(0o644)
            coded.replace(wav.with_suffix(f".{ext}"))
        out.replace(wav)  # the stamp, written last, vouches for all three files
    stamp.write_text(digest)
    return True


def generate(out: Path) -> int:
    """Write out/<lang>/<name>.wav for every prompt and out/<lang>/words/<slug>.wav
    for every number word; return how many were (re)made."""
    made = 0
    for lang, voice in VOICES.items():
        texts = prompt_texts(lang)
        missing = set(PROMPT_NAMES) - set(texts)
        if missing:
            raise ValueError(f"prompts/{lang}.toml lacks {sorted(missing)}")
        for name, text in texts.items():
            made += synth(text, voice, out / lang / f"{name}.wav")
        for token in sorted(vocabulary(lang)):
            made += synth(token, voice, out / f"{word_file(lang, token)}.wav")
    return made


if __name__ == "__main__":
    dest = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "var" / "prompts"
    sys.stdout.write(f"prompts: {generate(dest)} generated in {dest}\n")
