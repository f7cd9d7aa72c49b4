"""What the call routes share: the domain service and where files live on this host."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from agi.overload import LoadMonitor
from agi.prompts import facility_file, language_or_default
from ivr.inmate_call import InmateCalls
from ivr.model import Facility
from ivr.names import InmateNames
from ivr.recordings import recording_name, switch_path
from metrics.series import AgiMetrics
from tools.prompts import VOICES, synth

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallDeps:
    calls: InmateCalls
    recordings_dir: Path  # the same folder, as this host sees it
    prompts_dir: Path  # generated prompts (sounds/kinline in Asterisk)
    names: InmateNames  # the inmates' recorded names (their own folder)
    metrics: AgiMetrics = field(default_factory=AgiMetrics)  # calls refused/dialed, settlements
    load: LoadMonitor = field(default_factory=LoadMonitor)  # overload control (levels off by default)
    spoken: set[str] = field(default_factory=set)  # facility name files known to exist

    def recording(self, call_id: str) -> tuple[str, Path]:
        """(path for Asterisk, path on this host) of a call's recording."""
        return switch_path(call_id), self.recordings_dir / recording_name(call_id)

    def name_item(self, inmate_id: str) -> str | None:
        """The inmate's recorded name as a sound item ("file:/var/lib/kinline/names/<id>"),
        or None until they recorded one (then the facility's name alone is said)."""
        return self.names.item(inmate_id)

    async def facility_name(self, facility: Facility) -> str:
        """A sound item saying the facility's name: synthesised when missing (the first
        call after the name changed, unless `kinline facility add` did it), then known
        to this process, so later calls touch no file before their INVITE."""
        name = facility_sound(facility)
        if name not in self.spoken:
            await asyncio.to_thread(say_facility_name, self.prompts_dir, facility)
            self.spoken.add(name)
        return f"file:kinline/{name}"


def facility_sound(facility: Facility) -> str:
    """The prompt file (under the prompts folder, no extension) saying the facility's name."""
    return facility_file(language_or_default(facility.language), facility.name)


def say_facility_name(prompts_dir: Path, facility: Facility) -> bool:
    """Synthesise the facility's name into the prompts (once per text); True if made now."""
    voice = VOICES[language_or_default(facility.language)]
    return synth(facility.name, voice, prompts_dir / f"{facility_sound(facility)}.wav")


async def recording_sha256(path: Path) -> str:
    """SHA-256 of a recording ('' if there is none). The dial plan runs
    StopMixMonitor() before the AGI, which closes the file synchronously."""
    def digest() -> str:
        try:
            with path.open("rb") as fh:  # in chunks: a 15-minute recording is ~14 MB
                return hashlib.file_digest(fh, "sha256").hexdigest()
        except FileNotFoundError:
            log.error("recording %s missing: no hash", path.name)
            return ""

    return await asyncio.to_thread(digest)
