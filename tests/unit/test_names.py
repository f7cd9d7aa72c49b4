"""The inmate's recorded name: takes, playback, keep or redo, with in-memory fakes;
the host folder with real files; RECORD FILE's replies; "9" at the number prompt."""

from __future__ import annotations

import asyncio
import logging
import math
import wave
from collections.abc import Sequence
from pathlib import Path

import pytest

from agi.caller import AgiCaller
from agi.channel import AgiChannel
from agi.name_files import NameFolder, read_sound
from agi.protocol import AgiHangup
from ivr import prompts as p
from ivr.inmate_call import Caller, Entry, InmateCalls
from ivr.names import (
    MAX_MS,
    MIN_VOICED_MS,
    SILENCE_S,
    InmateNames,
    NameStorageError,
    Sound,
    is_voice,
    measure,
)
from ivr.recordings import SWITCH_NAMES, can_have_name, draft_stem, name_sound
from tests.unit.test_inmate_call import NOW, PINS, FakeCaller, Store

VOICE = Sound(2000, 1500)
SILENT = Sound(1000, 0)
UID = "1763900000.7"


class Files:
    """The names folder in memory: stem -> sound."""

    def __init__(self, **existing: Sound) -> None:
        self.files: dict[str, Sound] = dict(existing)
        self.fail_keep = False

    def exists(self, stem: str) -> bool:
        return stem in self.files

    def sound(self, stem: str) -> str:
        return f"{SWITCH_NAMES}/{stem}"

    async def measure(self, stem: str) -> Sound | None:
        return self.files.get(stem)

    async def keep(self, draft: str, stem: str) -> None:
        if self.fail_keep:
            raise NameStorageError("disk full")
        self.files[stem] = self.files.pop(draft)

    async def discard(self, stem: str) -> None:
        self.files.pop(stem, None)


class Terminal:
    """The inmate: each take is what they say (None: Asterisk wrote no file),
    each key what they press after the playback (None: nothing)."""

    def __init__(self, files: Files, takes: Sequence[Sound | None], keys: Sequence[str | None] = (),
                 hang_up_at_take: int = 0) -> None:
        self.files = files
        self.takes = list(takes)
        self.keys = list(keys)
        self.hang_up_at_take = hang_up_at_take
        self.played: list[str] = []
        self.recorded: list[tuple[str, int, int]] = []

    def set_language(self, language: str) -> None:
        pass

    async def play(self, items: Sequence[str]) -> None:
        self.played.extend(items)

    async def ask(self, item: str, max_digits: int, timeout_ms: int, preamble: Sequence[str] = ()) -> Entry:
        assert (item, max_digits, timeout_ms, tuple(preamble)) == (p.NAME_CONFIRM, 1, 10_000, ())
        key = self.keys.pop(0) if self.keys else None
        return Entry(key or "", key is None)

    async def record(self, sound: str, max_ms: int, silence_s: int) -> int:
        self.recorded.append((sound, max_ms, silence_s))
        stem = sound.rsplit("/", 1)[1]
        take = self.takes.pop(0)
        if len(self.recorded) == self.hang_up_at_take:
            self.files.files[stem] = VOICE  # half a take on disk
            raise AgiHangup("caller hung up")
        if take is not None:
            self.files.files[stem] = take
        return take.duration_ms if take else 0


def drafts(files: Files) -> list[str]:
    return [stem for stem in files.files if stem.startswith(".draft.")]


async def test_a_take_confirmed_with_1_is_kept_and_saved() -> None:
    files = Files()
    term = Terminal(files, [VOICE], ["1"])
    assert await InmateNames(files).record(term, "i1", UID)
    assert files.files == {"i1": VOICE}
    draft = f"{SWITCH_NAMES}/{draft_stem('i1', UID, 1)}"
    assert term.recorded == [(draft, MAX_MS, SILENCE_S)]
    assert term.played == [p.NAME_RECORD, p.NAME_PLAYBACK, f"file:{draft}", p.NAME_SAVED]
    assert InmateNames(files).item("i1") == f"file:{SWITCH_NAMES}/i1" == f"file:{name_sound('i1')}"


async def test_no_key_within_10_s_keeps_the_take() -> None:
    files = Files()
    assert await InmateNames(files).record(Terminal(files, [VOICE], [None]), "i1", UID)
    assert files.files == {"i1": VOICE}


async def test_2_records_again_and_the_new_take_replaces_the_old_name() -> None:
    old, first, second = Sound(2500, 2000), Sound(1800, 1200), Sound(2200, 1900)
    files = Files(i1=old)
    term = Terminal(files, [first, second], ["2", "1"])
    assert await InmateNames(files).record(term, "i1", UID)
    assert files.files == {"i1": second}
    assert len(term.recorded) == 2 and term.played.count(p.NAME_RECORD) == 2
    assert term.played[-1] == p.NAME_SAVED


async def test_a_silent_take_is_not_played_back_nor_kept() -> None:
    files = Files()
    term = Terminal(files, [SILENT, None, VOICE], ["1"])
    assert await InmateNames(files).record(term, "i1", UID)
    assert files.files == {"i1": VOICE}
    assert term.played.count(p.NAME_PLAYBACK) == 1  # only the third take, the one with a voice
    assert term.played[:2] == [p.NAME_RECORD, p.NAME_RECORD]


async def test_three_silent_takes_keep_nothing_and_leave_the_old_name(caplog: pytest.LogCaptureFixture) -> None:
    old = Sound(2500, 2000)
    files = Files(i1=old)
    term = Terminal(files, [SILENT, SILENT, Sound(900, MIN_VOICED_MS - 20)])
    with caplog.at_level(logging.INFO, logger="ivr.names"):
        assert not await InmateNames(files).record(term, "i1", UID)
    assert files.files == {"i1": old}
    assert p.NAME_SAVED not in term.played and p.NAME_PLAYBACK not in term.played
    assert sum("discarded (silent" in r.message and UID in r.message for r in caplog.records) == 3


async def test_at_most_three_takes_then_the_last_good_one_is_kept() -> None:
    files = Files()
    takes = [Sound(2000, 1000), Sound(2100, 1100), Sound(2200, 1200)]
    term = Terminal(files, takes, ["2", "2", "2"])
    assert await InmateNames(files).record(term, "i1", UID)
    assert len(term.recorded) == 3
    assert files.files == {"i1": takes[2]}


async def test_a_refused_take_is_kept_when_the_later_ones_are_silent() -> None:
    files = Files()
    term = Terminal(files, [VOICE, SILENT, SILENT], ["2"])
    assert await InmateNames(files).record(term, "i1", UID)
    assert files.files == {"i1": VOICE}


async def test_a_hangup_mid_recording_leaves_the_old_name_and_no_draft(caplog: pytest.LogCaptureFixture) -> None:
    old = Sound(2500, 2000)
    files = Files(i1=old)
    term = Terminal(files, [VOICE, VOICE], ["2"], hang_up_at_take=2)
    with caplog.at_level(logging.INFO, logger="ivr.names"), pytest.raises(AgiHangup):
        await InmateNames(files).record(term, "i1", UID)
    assert files.files == {"i1": old}
    assert any(UID in r.message and "cut (AgiHangup)" in r.message for r in caplog.records)


async def test_a_name_that_cannot_be_saved_lets_the_call_go_on(caplog: pytest.LogCaptureFixture) -> None:
    files = Files()
    files.fail_keep = True
    term = Terminal(files, [VOICE], ["1"])
    with caplog.at_level(logging.ERROR, logger="ivr.names"):
        assert not await InmateNames(files).record(term, "i1", UID)
    assert files.files == {} and p.NAME_SAVED not in term.played
    assert any(UID in r.message and "disk full" in r.message for r in caplog.records)


@pytest.mark.parametrize("inmate_id", ["", ".hidden", "a/b", "../x", "x" * 65])
async def test_an_inmate_id_that_is_no_file_name_is_never_recorded(inmate_id: str) -> None:
    files = Files()
    term = Terminal(files, [VOICE], ["1"])
    assert not can_have_name(inmate_id)
    assert not await InmateNames(files).record(term, inmate_id, UID)
    assert term.recorded == [] and files.files == {}
    assert InmateNames(files).item(inmate_id) is None


def test_no_name_until_one_is_kept() -> None:
    assert InmateNames(Files()).item("i1") is None
    assert not InmateNames(Files()).has_name("i1")


# -- what counts as a voice ---------------------------------------------------


def tone(ms: int, amplitude: int, rate: int = 8000) -> list[int]:
    return [round(amplitude * math.sin(2 * math.pi * 440 * i / rate)) for i in range(rate * ms // 1000)]


def test_measure_silence_a_voice_and_a_click() -> None:
    assert measure([0] * 8000, 8000) == Sound(1000, 0)
    assert measure([100] * 8000, 8000) == Sound(1000, 0)  # line noise below the silence level
    spoken = measure([0] * 4000 + tone(1500, 3000) + [0] * 4000, 8000)
    assert spoken.duration_ms == 2500 and 1480 <= spoken.voiced_ms <= 1500
    assert is_voice(spoken)
    click = measure([0] * 8000 + tone(100, 20000) + [0] * 8000, 8000)
    assert click.voiced_ms <= 100 and not is_voice(click)
    assert measure([], 8000) == Sound(0, 0)


# -- the host folder -------------------------------------------------------------


def write_wav(path: Path, samples: list[int], rate: int = 8000) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(b"".join(s.to_bytes(2, "little", signed=True) for s in samples))


async def test_name_folder_measures_keeps_and_discards_real_files(tmp_path: Path) -> None:
    folder = NameFolder(tmp_path)
    draft = draft_stem("i1", UID, 1)
    write_wav(folder.path(draft), tone(2000, 4000))
    sound = await folder.measure(draft)
    assert sound is not None and sound.duration_ms == 2000 and is_voice(sound)
    assert await folder.measure("missing") is None
    write_wav(folder.path("i1"), [0] * 800)
    old_inode = folder.path("i1").stat().st_ino
    await folder.keep(draft, "i1")
    assert not folder.path(draft).exists()
    assert folder.path("i1").stat().st_ino != old_inode  # renamed over, not rewritten
    assert (await folder.measure("i1")) == sound
    assert folder.exists("i1") and folder.sound("i1") == f"{SWITCH_NAMES}/i1"
    await folder.discard("i1")
    await folder.discard("i1")  # already gone: fine
    assert not folder.exists("i1")
    with pytest.raises(NameStorageError):
        await folder.keep("missing", "i1")


def test_a_file_that_is_not_a_wav_holds_no_voice(tmp_path: Path) -> None:
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x00\x00")
    assert read_sound(tmp_path / "bad.wav") is None
    stereo = tmp_path / "stereo.wav"
    with wave.open(str(stereo), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"\x00" * 400)
    assert read_sound(stereo) is None


# -- RECORD FILE over FastAGI ----------------------------------------------------


class Writer:
    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.lines.append(data)

    async def drain(self) -> None:
        pass


def channel_replying(*replies: str) -> tuple[AgiChannel, Writer]:
    reader = asyncio.StreamReader()
    reader.feed_data("".join(f"{r}\n" for r in replies).encode())
    writer = Writer()
    log = logging.LoggerAdapter(logging.getLogger("test"), {})
    return AgiChannel(reader, writer, log), writer  # type: ignore[arg-type]


async def test_record_file_sends_beep_and_silence_and_returns_samples() -> None:
    channel, writer = channel_replying("200 result=0 (timeout) endpos=19200")
    assert await channel.record_file("/var/lib/kinline/names/.draft.i1.u.1", "wav", 3000, 2) == 19200
    assert writer.lines == [b'RECORD FILE "/var/lib/kinline/names/.draft.i1.u.1" "wav" "#" "3000" "BEEP" "s=2"\n']


@pytest.mark.parametrize("reply", ["200 result=35 (dtmf) endpos=8000", "200 result=0 (timeout) endpos=8000"])
async def test_record_file_ended_by_hash_or_silence(reply: str) -> None:
    channel, _ = channel_replying(reply)
    assert await channel.record_file("x", "wav", 3000, 2) == 8000


@pytest.mark.parametrize("reply", ["200 result=49 (randomerror) endpos=0", "200 result=-1 (writefile)"])
async def test_record_file_that_recorded_nothing(reply: str) -> None:
    channel, _ = channel_replying(reply)
    assert await channel.record_file("x", "wav", 3000, 2) == 0
    assert not channel.hung_up


async def test_the_terminal_records_in_wav_and_counts_milliseconds() -> None:
    channel, writer = channel_replying("200 result=0 (timeout) endpos=24000")
    assert await AgiCaller(channel, "en").record("/var/lib/kinline/names/.draft.i1.u.1", 3000, 2) == 3000
    assert b'"/var/lib/kinline/names/.draft.i1.u.1" "wav"' in writer.lines[0]


async def test_record_file_hangup() -> None:
    channel, _ = channel_replying("HANGUP", "200 result=-1 (hangup) endpos=4000")
    with pytest.raises(AgiHangup):
        await channel.record_file("x", "wav", 3000, 2)
    assert channel.hung_up


# -- "9" at the number prompt --------------------------------------------------------


class NameMenu:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def record(self, caller: Caller, inmate_id: str, uniqueid: str) -> bool:
        self.calls.append((inmate_id, uniqueid))
        return True


async def test_9_at_the_number_prompt_records_the_name_then_asks_again() -> None:
    store, menu = Store(), NameMenu()
    calls = InmateCalls(store, store, now=lambda: NOW, pins=PINS, names=menu)
    caller = FakeCaller("1001", "2468", "9", "9", "9", "9", "79161234567")
    session = await calls.login(caller, "f1", "u1", "term-101")
    plan = await calls.choose_number(caller, session, "u1", 1)
    assert plan.e164 == "+79161234567"
    assert menu.calls == [("i1", "u1")] * 4  # four times: none counts as a wrong number
    assert caller.asked.count(p.ENTER_NUMBER) == 5
    assert p.NUMBER_INVALID not in caller.played


async def test_9_without_a_name_menu_is_a_wrong_number() -> None:
    store = Store()
    calls = InmateCalls(store, store, now=lambda: NOW, pins=PINS)
    caller = FakeCaller("1001", "2468", "9", "79161234567")
    session = await calls.login(caller, "f1", "u1", "term-101")
    await calls.choose_number(caller, session, "u1", 1)
    assert p.NUMBER_INVALID in caller.played or p.NUMBER_INCOMPLETE in caller.played


# -- where the names live --------------------------------------------------------


def test_names_have_their_own_folder_in_the_dev_stack_and_in_compose() -> None:
    import yaml

    from tools import stack
    from tools.config import REPO, load_config

    config = load_config(REPO / "config" / "dev.toml")
    mounts = {inside: host for host, inside, _ in stack.asterisk_mounts(config)}
    assert mounts[SWITCH_NAMES] == config.path("names") != mounts["/var/lib/kinline/recordings"]
    assert "names" in stack.ASTERISK_WRITABLE
    argv = stack.agi_argv(config)
    assert argv[argv.index("--names") + 1] == str(config.path("names"))
    assert SWITCH_NAMES in (REPO / "tools" / "asterisk_root.sh").read_text()
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    agi = services["agi"]["command"]
    assert agi[agi.index("--names") + 1] == SWITCH_NAMES
    for name in ("agi", "asterisk"):
        assert f"names:{SWITCH_NAMES}" in services[name]["volumes"], name
