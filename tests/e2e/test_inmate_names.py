# ruff: noqa: F811 (the fixtures imported from test_inmate_calls are parameters here)
"""The inmate's recorded name end to end: a pjsua2 terminal speaks after the beep
(a WAV synthesised by espeak-ng), Asterisk records it over FastAGI's RECORD FILE
into the names folder, and the inmate keeps it with 1."""

from __future__ import annotations

import math
import subprocess
import wave
from pathlib import Path

import pytest

from ivr.recordings import SWITCH_NAMES
from store.redis_store import RedisStore
from tests.e2e.conftest import E2E
from tests.e2e.harness import AmiWatch
from tests.e2e.test_inmate_calls import (  # noqa: F401 (fixtures)
    Terminal,
    call_in,
    new_card,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 2 s of a spoken name, then silence (8 kHz mono, as a terminal sends)."""
    folder = tmp_path_factory.mktemp("speech")
    raw, wav = folder / "raw.wav", folder / "name.wav"
    subprocess.run(["espeak-ng", "-v", "en", "-s", "130", "-w", str(raw), "Ivan Sergeyevich Petrov"],
                   check=True, capture_output=True, timeout=30)
    subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer", str(wav),
                    "pad", "0", "6"], check=True, capture_output=True, timeout=30)
    return wav


def loudness(path: Path) -> tuple[float, float]:
    """(seconds, RMS of 16-bit samples) of a mono WAV file."""
    with wave.open(str(path), "rb") as fh:
        assert (fh.getnchannels(), fh.getsampwidth(), fh.getframerate()) == (1, 2, 8000)
        frames = fh.readframes(fh.getnframes())
    samples = [int.from_bytes(frames[i:i + 2], "little", signed=True) for i in range(0, len(frames), 2)]
    rms = math.sqrt(sum(s * s for s in samples) / len(samples)) if samples else 0.0
    return len(samples) / 8000, rms


async def say_name(term: Terminal, speech: Path) -> None:
    """After the name prompt and the beep, speak; then keep the take with 1."""
    await term.prompt("name-record")
    await term.ami.wait_new("AGIExecStart", lambda m: m.get("Uniqueid") == term.uid
                            and m.get("Command").startswith("RECORD FILE"), timeout=20)
    await term.agent.send(f"play {speech}")
    await term.prompt("name-confirm")
    await term.agent.send("dtmf 1 info")
    await term.prompt("name-saved")


def _asked(ami: AmiWatch, uid: str, name: str) -> bool:
    return f"kinline/en/{name}" in ami.played(uid)


async def test_first_login_records_the_name_later_logins_do_not_and_9_records_it_again(
    e2e: E2E, ami: AmiWatch, store: RedisStore, call_in: object, speech: Path
) -> None:
    card = await new_card(store, "open", 10_000, named=False)
    inmate_id = f"inmate-{card}"
    names = e2e.config.path("names")
    name = names / f"{inmate_id}.wav"
    assert not name.exists()

    # First login: asked for the name before the number; the take is kept.
    term: Terminal = await call_in()  # type: ignore[operator]
    await term.login(card)
    await say_name(term, speech)
    played = [m.get("Command") for m in ami.events if m.event == "AGIExecStart" and m.get("Uniqueid") == term.uid]
    # The take was played back from the names folder before the question.
    assert any(f'"{SWITCH_NAMES}/.draft.{inmate_id}.' in c for c in played), played
    await term.prompt("enter-number")
    seconds, rms = loudness(name)
    assert 1.0 <= seconds <= 3.05, seconds  # at most 3 s: RECORD FILE's limit
    assert rms > 300, rms  # a voice, not the silence of a terminal that said nothing
    assert not [f.name for f in names.glob(".draft.*")]  # takes not kept are gone
    first = name.stat()
    await term.agent.send("hangup")
    await term.hangup_cause()
    await term.agent.close()

    # Second login: straight to the number; "9" there records the name again.
    again: Terminal = await call_in()  # type: ignore[operator]
    await again.login(card)
    await again.answer("enter-number", "9")
    await say_name(again, speech)
    await again.prompt("enter-number")  # then the number is asked again
    assert not _asked(ami, again.uid, "number-invalid")
    second = name.stat()
    assert second.st_ino != first.st_ino  # a new take renamed over the old one
    seconds, rms = loudness(name)
    assert seconds <= 3.05 and rms > 300
    await again.agent.send("hangup")
    await again.hangup_cause()
    # Name recording asked nothing at the second login before the number.
    prompts_before_9 = ami.played(again.uid)
    first_number = prompts_before_9.index("kinline/en/enter-number")
    assert not any("name-record" in c for c in prompts_before_9[:first_number])


async def test_a_hangup_mid_take_keeps_the_old_name_and_leaves_no_draft(
    e2e: E2E, ami: AmiWatch, store: RedisStore, call_in: object, speech: Path
) -> None:
    card = await new_card(store, "open", 10_000)  # has a name already
    names = e2e.config.path("names")
    name = names / f"inmate-{card}.wav"
    before = name.read_bytes()
    term: Terminal = await call_in()  # type: ignore[operator]
    await term.login(card)
    await term.answer("enter-number", "9")
    await term.prompt("name-record")
    await term.ami.wait_new("AGIExecStart", lambda m: m.get("Uniqueid") == term.uid
                            and m.get("Command").startswith("RECORD FILE"), timeout=20)
    await term.agent.send(f"play {speech}")
    await term.agent.wait_for("playing")
    await term.agent.send("hangup")  # in the middle of the take
    await term.hangup_cause()
    await ami.drain(1.0)  # the route's cleanup runs as the channel goes
    assert name.read_bytes() == before
    assert not [f.name for f in names.glob(f".draft.inmate-{card}.*")]
    assert not _asked(ami, term.uid, "name-confirm")


async def test_a_terminal_that_says_nothing_keeps_no_name_and_goes_on_to_the_number(
    e2e: E2E, ami: AmiWatch, store: RedisStore, call_in: object
) -> None:
    card = await new_card(store, "open", 10_000, named=False)
    names = e2e.config.path("names")
    term: Terminal = await call_in()  # type: ignore[operator]
    await term.login(card)
    await term.prompt("enter-number", timeout=60)  # after three silent takes, cut by silence detection
    records = [m for m in ami.events if m.event == "AGIExecStart" and m.get("Uniqueid") == term.uid
               and m.get("Command").startswith("RECORD FILE")]
    assert len(records) == 3
    assert not _asked(ami, term.uid, "name-confirm") and not _asked(ami, term.uid, "name-saved")
    assert not list(names.glob(f"inmate-{card}.*")) and not list(names.glob(f".draft.inmate-{card}.*"))
    await term.agent.send("hangup")
    await term.hangup_cause()
