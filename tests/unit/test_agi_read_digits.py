"""AgiChannel.read_digits: EXEC Read with the files '&'-joined, then the entry and READSTATUS."""

from __future__ import annotations

import asyncio
import logging

import pytest

from agi.channel import ENTRY, AgiChannel
from agi.protocol import AgiCommandError, AgiHangup
from tests.unit.test_agi_protocol import asterisk_parse_args


class Asterisk:
    """Read answers 200 result=0; the GET FULL VARIABLE after it gives ``entry`` and ``status``."""

    def __init__(self, reader: asyncio.StreamReader, entry: str, status: str, hangup: bool = False) -> None:
        self.reader, self.entry, self.status, self.hangup = reader, entry, status, hangup
        self.lines: list[str] = []

    def write(self, data: bytes) -> None:
        self.lines.append(data.decode().rstrip("\n"))
        if self.lines[-1].startswith("EXEC"):
            self.reader.feed_data(b"HANGUP\n200 result=0\n" if self.hangup else b"200 result=0\n")
        else:
            self.reader.feed_data(f"200 result=1 ({self.entry}\x1f{self.status})\n".encode())

    async def drain(self) -> None:
        pass


def read(files: list[str], entry: str = "", status: str = "OK", hangup: bool = False,
         max_digits: int = 24) -> tuple[tuple[str, bool], list[str]]:
    async def run() -> tuple[tuple[str, bool], list[str]]:
        reader = asyncio.StreamReader()
        asterisk = Asterisk(reader, entry, status, hangup)
        agi = AgiChannel(reader, asterisk, logging.LoggerAdapter(logging.getLogger("test"), {}))  # type: ignore[arg-type]
        return await agi.read_digits(files, 15000, max_digits), asterisk.lines

    return asyncio.run(run())


def test_one_read_for_all_the_files_then_one_variable_read() -> None:
    result, lines = read(["kinline/ru/your-balance", "kinline/ru/words/ab12", "kinline/ru/enter-number"],
                         "79161234567")
    assert result == ("79161234567", False)
    assert len(lines) == 2
    verb, app, arg = asterisk_parse_args(lines[0])
    assert (verb, app) == ("EXEC", "Read")
    # Read(variable,files,maxdigits,options,attempts,timeout in s)
    assert arg == f"{ENTRY},kinline/ru/your-balance&kinline/ru/words/ab12&kinline/ru/enter-number,24,,1,15"
    assert asterisk_parse_args(lines[1]) == ["GET", "FULL", "VARIABLE", f"${{{ENTRY}}}\x1f${{READSTATUS}}"]


def test_a_timeout_is_told_with_or_without_digits() -> None:
    assert read(["kinline/en/enter-card"], "12", "TIMEOUT")[0] == ("12", True)
    assert read(["kinline/en/enter-card"], "", "TIMEOUT")[0] == ("", True)
    assert read(["kinline/en/enter-card"], "", "OK")[0] == ("", False)  # '#' alone


def test_a_hangup_during_the_entry_raises() -> None:
    with pytest.raises(AgiHangup):
        read(["kinline/en/enter-card"], hangup=True)
    with pytest.raises(AgiHangup):
        read(["kinline/en/enter-card"], status="HANGUP")
    with pytest.raises(AgiCommandError):
        read(["kinline/en/enter-card"], status="ERROR")


@pytest.mark.parametrize("files", [[], [""], ["a,b"], ["a&b"], ["a b"], ["${X}"], ['a"b']])
def test_what_read_would_misparse_is_refused(files: list[str]) -> None:
    with pytest.raises(ValueError):
        read(files)


def test_read_takes_at_most_255_digits() -> None:
    with pytest.raises(ValueError):
        read(["kinline/en/enter-card"], max_digits=256)


class GosubAsterisk:
    """GOSUB answers 100 Trying then 200 Gosub complete; the GET FULL VARIABLE after it gives
    ``values`` (each entry's digits and status, then the count done)."""

    def __init__(self, reader: asyncio.StreamReader, values: list[str]) -> None:
        self.reader, self.values = reader, values
        self.lines: list[str] = []

    def write(self, data: bytes) -> None:
        self.lines.append(data.decode().rstrip("\n"))
        if self.lines[-1].startswith("GOSUB"):
            self.reader.feed_data(b"100 result=0 Trying...\n200 result=0 Gosub complete\n")
        else:
            self.reader.feed_data(f"200 result=1 ({chr(0x1f).join(self.values)})\n".encode())

    async def drain(self) -> None:
        pass


def read_entries(values: list[str]) -> tuple[list[tuple[str, bool]], list[str]]:
    async def run() -> tuple[list[tuple[str, bool]], list[str]]:
        reader = asyncio.StreamReader()
        asterisk = GosubAsterisk(reader, values)
        agi = AgiChannel(reader, asterisk, logging.LoggerAdapter(logging.getLogger("test"), {}))  # type: ignore[arg-type]
        entries = [(["kinline/ru/welcome", "kinline/ru/enter-card"], 10000, 16), (["kinline/ru/enter-pin"], 8000, 8)]
        return await agi.read_entries(entries), asterisk.lines

    return asyncio.run(run())


def test_entries_back_to_back_are_one_gosub_then_one_variable_read() -> None:
    result, lines = read_entries(["1001", "OK", "2468", "TIMEOUT", "2"])
    assert result == [("1001", False), ("2468", True)]
    assert len(lines) == 2
    # GOSUB context exten priority "args": (files, digits, timeout in s) per entry, for [kinline-entries]
    assert asterisk_parse_args(lines[0]) == [
        "GOSUB", "kinline-entries", "s", "1", "kinline/ru/welcome&kinline/ru/enter-card,16,10,kinline/ru/enter-pin,8,8"]
    assert asterisk_parse_args(lines[1]) == [
        "GET", "FULL", "VARIABLE", "\x1f".join(["${KINLINE_ENTRY1}", "${KINLINE_ENTRY1_STATUS}", "${KINLINE_ENTRY2}",
                                                 "${KINLINE_ENTRY2_STATUS}", "${KINLINE_ENTRIES_DONE}"])]


def test_entries_not_all_done_mean_the_caller_hung_up() -> None:
    with pytest.raises(AgiHangup):
        read_entries(["1001", "OK", "", "", "1"])
    with pytest.raises(AgiCommandError):
        read_entries(["1001", "OK", "", "ERROR", "2"])
