"""What the call routes share: the domain service and where files live on this host."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from ivr.inmate_call import InmateCalls
from ivr.model import Facility
from tools.prompts import VOICES, synth

log = logging.getLogger(__name__)

# Where Asterisk (in its root or container) sees the recordings folder.
ASTERISK_RECORDINGS = "/var/lib/kinline/recordings"


@dataclass(frozen=True)
class CallDeps:
    calls: InmateCalls
    recordings_dir: Path  # the same folder, as this host sees it
    prompts_dir: Path  # generated prompts (sounds/kinline in Asterisk)

    def recording(self, call_id: str) -> tuple[str, Path]:
        """(path for Asterisk, path on this host) of a call's recording."""
        name = f"{call_id}.wav"
        return f"{ASTERISK_RECORDINGS}/{name}", self.recordings_dir / name

    async def facility_name(self, facility: Facility) -> str:
        """A sound item saying the facility's name (synthesised once, then cached)."""
        lang = facility.language if facility.language in VOICES else "en"
        slug = hashlib.sha1(f"{lang}:{facility.name}".encode()).hexdigest()[:16]
        wav = self.prompts_dir / lang / "facility" / f"{slug}.wav"
        await asyncio.to_thread(synth, facility.name, VOICES[lang], wav)
        return f"file:kinline/{lang}/facility/{slug}"


async def recording_sha256(path: Path) -> str:
    """SHA-256 of a recording ('' if there is none). The dial plan runs
    StopMixMonitor() before the AGI, which closes the file synchronously."""
    def digest() -> str:
        try:
            return hashlib.sha256(path.read_bytes()).hexdigest()
        except FileNotFoundError:
            log.error("recording %s missing: no hash", path.name)
            return ""

    return await asyncio.to_thread(digest)
