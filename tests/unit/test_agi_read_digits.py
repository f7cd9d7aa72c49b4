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
