"""One FastAGI conversation: send a command, read its reply, with a timeout."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

from agi.protocol import (
    AgiCommandError,
    AgiHangup,
    AgiProtocolError,
    AgiResult,
    AgiTimeout,
    format_command,
    parse_result,
)

MAX_LINE = 8192
# What MSet() (one EXEC for several variables) passes through unchanged: no ',' (its
# separator), '=', quotes, backslashes, spaces or '$'. Anything else goes by SET VARIABLE.
MSET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MSET_VALUE = re.compile(r"[A-Za-z0-9_+\-/@.&:*#!]*")
# The pairs of one MSet: its command line stays under res_agi's 2048-byte buffer (AGI_BUF_LEN).
MSET_MAX_LINE = 1900
# Between the values of one GET FULL VARIABLE (get_variables): a control character none of
# our values holds (names, digits, stamps; the call plan is base64url).
VALUES_SEPARATOR = "\x1f"
# read_digits: the variable Read() fills, what a file name may not hold in Read()'s
# arguments, and Read()'s own limit on digits.
ENTRY = "KINLINE_ENTRY"
READ_UNSAFE = frozenset(',&|"\\$\n ')
READ_MAX_DIGITS = 255
# read_entries: the dial plan's gosub of entries back to back, and its count of entries done.
ENTRIES_GOSUB = ("kinline-entries", "s", "1")
ENTRIES_DONE = "KINLINE_ENTRIES_DONE"
# Commands Asterisk answers at once (nothing waits on the caller): their round trips
# measure the AGI backlog for overload control (agi/overload.py).
QUICK_COMMANDS = frozenset({"SET VARIABLE", "GET VARIABLE", "GET FULL VARIABLE", "VERBOSE", "NOOP",
                            "CHANNEL STATUS"})


def _mset_batches(pairs: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """``pairs`` in order, cut into MSets whose command lines fit MSET_MAX_LINE."""
    batches: list[list[tuple[str, str]]] = [[]]
    size = 0
    for name, value in pairs:
        length = len(name) + len(value) + 2  # "name=value,"
        if batches[-1] and size + length > MSET_MAX_LINE:
            batches.append([])
            size = 0
        batches[-1].append((name, value))
        size += length
    return batches


class AgiChannel:
    """The call as the route sees it: AGI commands with typed results."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        log: logging.LoggerAdapter[logging.Logger],
        read_timeout: float = 10.0,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.log = log
        self.read_timeout = read_timeout
        self.hung_up = False
        self.waited = 0.0  # seconds spent waiting for Asterisk's replies (prompts included)
        self.on_round_trip: Callable[[float], None] | None = None  # gets each QUICK_COMMANDS round trip (s)

    async def command(self, *words: str | int, timeout: float | None = None) -> AgiResult:
        """Send one command; ``timeout`` adds to the read timeout (for prompts)."""
        reply = await self._exchange(words, timeout)
        try:
            return parse_result(reply)
        except AgiHangup:
            self.hung_up = True
            raise

    async def _exchange(self, words: tuple[str | int, ...], timeout: float | None) -> str:
        """Send one command and return its final reply line, unparsed."""
        if self.hung_up:
            raise AgiHangup("channel already hung up")
        line = format_command(*words)
        if self.log.isEnabledFor(logging.DEBUG):
            self.log.debug("agi > %s", line.decode().rstrip())
        try:
            self._writer.write(line)
            await self._writer.drain()
        except (ConnectionError, RuntimeError) as exc:
            self.hung_up = True
            raise AgiHangup(f"connection lost: {exc}") from exc
        wait = self.read_timeout + (timeout or 0.0)
        started = time.perf_counter()
        try:
            reply = await self._read_reply(wait)
        finally:
            self.waited += time.perf_counter() - started
        if self.on_round_trip is not None and (words[0] in QUICK_COMMANDS or words[:2] == ("EXEC", "MSet")):
            self.on_round_trip(time.perf_counter() - started)
        self.log.debug("agi < %s", reply)
        return reply

    async def _read_reply(self, wait: float) -> str:
        while True:
            reply = await self.read_line(wait)
            if reply == "HANGUP":
                # Asterisk says so once, then still answers the pending command.
                self.hung_up = True
                continue
            if reply.startswith("100 "):
                # Interim reply ("100 result=0 Trying..." of GOSUB): the final one follows.
                self.log.debug("agi < %s", reply)
                continue
            if reply.startswith("520-"):
                usage = [reply[4:]]
                while not (line := await self.read_line(wait)).startswith("520 "):
                    usage.append(line)
                raise AgiCommandError(520, " ".join(usage))
            if self.hung_up and not reply.startswith("200"):
                raise AgiHangup(reply)
            return reply

    async def read_line(self, wait: float) -> str:
        """One line without its end; EOF means the call is gone."""
        # asyncio.timeout, not wait_for: no task per line (every AGI reply comes here).
        with self._reading(wait):
            async with asyncio.timeout(wait):
                raw = await self._reader.readline()
        return self._text(raw)

    async def read_block(self, wait: float, max_lines: int) -> list[str]:
        """Lines up to an empty one (the environment Asterisk sends first), all within
        ``wait``: one timer for the block, not one per line."""
        lines: list[str] = []
        with self._reading(wait):
            async with asyncio.timeout(wait):
                while line := self._text(await self._reader.readline()):
                    lines.append(line)
                    if len(lines) > max_lines:
                        raise AgiProtocolError(f"more than {max_lines} lines before the empty one")
        return lines

    @contextmanager
    def _reading(self, wait: float) -> Iterator[None]:
        """What reading from Asterisk can raise, as the protocol's errors."""
        try:
            yield
        except TimeoutError as exc:
            raise AgiTimeout(f"no reply from Asterisk in {wait:.1f} s") from exc
        except ConnectionError as exc:
            # A reset is the call going away, not Asterisk speaking nonsense.
            self.hung_up = True
            raise AgiHangup(f"connection lost: {exc}") from exc
        except (asyncio.LimitOverrunError, ValueError) as exc:
            raise AgiProtocolError(f"bad line from Asterisk: {exc}") from exc

    def _text(self, raw: bytes) -> str:
        if not raw:
            self.hung_up = True
            raise AgiHangup("connection closed by Asterisk")
        if len(raw) > MAX_LINE:
            raise AgiProtocolError("AGI line too long")
        try:
            return raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as exc:
            raise AgiProtocolError("AGI line is not UTF-8") from exc

    # Convenience commands used by routes ---------------------------------

    async def answer(self) -> None:
        await self.command("ANSWER")

    async def set_variable(self, name: str, value: str | int) -> None:
        await self.command("SET VARIABLE", name, value)

    async def set_variables(self, values: Mapping[str, str | int]) -> None:
        """Several channel variables in one round trip (EXEC MSet), in order; by one
        SET VARIABLE each when a value holds a character MSet would misread. Values too
        long for one command line (res_agi reads 2048 bytes) go in several MSets, in order."""
        pairs = [(name, str(value)) for name, value in values.items()]
        if len(pairs) > 1 and all(MSET_NAME.fullmatch(n) and MSET_VALUE.fullmatch(v) for n, v in pairs):
            for batch in _mset_batches(pairs):
                result = await self.command("EXEC", "MSet", ",".join(f"{n}={v}" for n, v in batch))
                if result.result != 0:
                    raise AgiCommandError(200, f"MSet failed: result={result.text}")
            return
        for name, value in pairs:
            await self.set_variable(name, value)

    async def get_variable(self, name: str) -> str | None:
        result = await self.command("GET VARIABLE", name)
        return result.data if result.result == 1 else None

    async def get_variables(self, names: Sequence[str]) -> dict[str, str]:
        """Several variables (or functions, e.g. ``CHANNEL(endpoint)``) in one round trip:
        GET FULL VARIABLE of ``${A}<US>${B}...``. An unset variable reads ''."""
        expression = VALUES_SEPARATOR.join(f"${{{name}}}" for name in names)
        if any(VALUES_SEPARATOR in name or "}" in name for name in names):
            raise ValueError(f"not a variable name list: {names!r}")
        result = await self.command("GET FULL VARIABLE", expression)
        values = result.data.split(VALUES_SEPARATOR)
        if result.result != 1 or len(values) != len(names):
            raise AgiProtocolError(f"GET FULL VARIABLE gave {len(values)} values for {len(names)} names")
        return dict(zip(names, values, strict=True))

    async def stream_file(self, name: str, escape_digits: str = "") -> str:
        """Play a prompt; return the digit that interrupted it, or ''."""
        result = await self.command("STREAM FILE", name, escape_digits, timeout=120)
        return chr(result.result) if result.result > 0 else ""

    async def stream_file_until(self, name: str, stop: asyncio.Event) -> bool:
        """Play a prompt to its end or until ``stop`` is set, then cut it short with a
        NOOP: Asterisk ends a STREAM FILE, with no reply of its own, as soon as a new
        command comes (res_agi). True if it was cut short. The line is free after."""
        if self.hung_up:
            raise AgiHangup("channel already hung up")
        noop = False
        reading: asyncio.Future[str] | None = None
        stopping = asyncio.ensure_future(stop.wait())
        try:
            self._writer.write(format_command("STREAM FILE", name, ""))
            await self._writer.drain()
            reading = asyncio.ensure_future(self._read_reply(self.read_timeout + 120))
            await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not reading.done():
                self._writer.write(format_command("NOOP"))
                await self._writer.drain()
                noop = True
            reply = await reading  # the prompt's own reply if it ended first, else the NOOP's
            if noop and "endpos=" in reply:  # it ended just before the NOOP: the NOOP's reply follows
                parse_result(reply)
                reply, noop = await self._read_reply(self.read_timeout), False
            parse_result(reply)
        except AgiHangup:
            self.hung_up = True
            raise
        except (ConnectionError, RuntimeError) as exc:
            self.hung_up = True
            raise AgiHangup(f"connection lost: {exc}") from exc
        finally:
            stopping.cancel()
            if reading is not None and not reading.done():
                reading.cancel()
        return noop

    async def wait_for_digit(self, timeout_ms: int) -> str:
        """The next key within ``timeout_ms``, or '' (Asterisk's WAIT FOR DIGIT)."""
        result = await self.command("WAIT FOR DIGIT", timeout_ms, timeout=timeout_ms / 1000)
        return chr(result.result) if result.result > 0 else ""

    async def get_data(self, prompt: str, timeout_ms: int, max_digits: int) -> tuple[str, bool]:
        """Play ``prompt`` and collect digits until ``#``, ``max_digits`` or timeout.

        Returns the digits and whether entry timed out (no ``#``).
        """
        result = await self.command(
            "GET DATA", prompt, timeout_ms, max_digits, timeout=120 + timeout_ms / 1000
        )
        return result.text, result.data == "timeout"

    async def read_digits(self, files: Sequence[str], timeout_ms: int, max_digits: int) -> tuple[str, bool]:
        """Play ``files`` one after the other and collect digits as GET DATA does (``#``,
        ``max_digits`` or a gap of ``timeout_ms`` ends the entry); any key cuts the files
        short and is the entry's first digit. Two round trips whatever the number of files:
        ``EXEC Read`` with the files '&'-joined (ast_app_getdata: after every file but the
        last it waits 50 ms for a first key), then the digits and READSTATUS in one read.
        Returns the digits and whether the entry timed out (READSTATUS TIMEOUT: a gap, with
        or without digits). A key typed during a file that is not the last is followed by
        gaps of the channel's TIMEOUT(digit) (the dial plan sets it), not ``timeout_ms``."""
        _check_read(files, max_digits)
        options = f"{ENTRY},{'&'.join(files)},{max_digits},,1,{timeout_ms / 1000:g}"
        result = await self.command("EXEC", "Read", options, timeout=120 + len(files) * 60 + timeout_ms / 1000)
        if result.result != 0:
            raise AgiCommandError(200, f"Read failed: result={result.text}")
        seen = await self.get_variables((ENTRY, "READSTATUS"))
        status = seen["READSTATUS"]
        if status == "HANGUP":
            self.hung_up = True
            raise AgiHangup("hung up during the entry")
        return _entry(seen[ENTRY], status, "Read")

    async def read_entries(self, entries: Sequence[tuple[Sequence[str], int, int]]) -> list[tuple[str, bool]]:
        """Several entries back to back, each ``(files, timeout_ms, max_digits)`` as for
        ``read_digits``, in one GOSUB of the dial plan's ``[kinline-entries]`` (a ``Read()``
        each), then every entry's digits and READSTATUS in one read: two round trips, and
        no key typed after one entry's ``#`` is lost before the next starts (between two
        commands res_agi reads the channel and drops what it reads; a gosub's Reads keep
        them queued for the next). Returns (digits, timed out) per entry."""
        if not entries:
            raise ValueError("no entry to read")
        args = []
        for files, timeout_ms, max_digits in entries:
            _check_read(files, max_digits)
            args += ["&".join(files), str(max_digits), f"{timeout_ms / 1000:g}"]
        wait = 120 + sum(len(files) * 60 + timeout_ms / 1000 for files, timeout_ms, _ in entries)
        await self.command("GOSUB", *ENTRIES_GOSUB, ",".join(args), timeout=wait)
        count = range(1, len(entries) + 1)
        seen = await self.get_variables((*(f"{ENTRY}{n}{part}" for n in count for part in ("", "_STATUS")),
                                         ENTRIES_DONE))
        if seen[ENTRIES_DONE] != str(len(entries)):
            self.hung_up = True
            raise AgiHangup(f"hung up during the entries ({seen[ENTRIES_DONE] or 0} of {len(entries)} done)")
        return [_entry(seen[f"{ENTRY}{n}"], seen[f"{ENTRY}{n}_STATUS"], f"Read {n}") for n in count]

    async def record_file(self, name: str, fmt: str, max_ms: int, silence_s: int, escape_digits: str = "#") -> int:
        """A beep, then record the caller into ``name``.``fmt`` (Asterisk's path, no
        extension) for at most ``max_ms``, up to ``silence_s`` of silence or an
        escape digit. Returns the samples written (Asterisk's ``endpos``); 0 when
        nothing was recorded: a digit during the beep ("randomerror") or a file
        Asterisk could not create ("writefile", logged). Hangup: AgiHangup."""
        reply = await self._exchange(
            ("RECORD FILE", name, fmt, escape_digits, max_ms, "BEEP", f"s={silence_s}"), 30 + max_ms / 1000
        )
        if reply.startswith("200 result=-1 (writefile)"):
            self.log.error("Asterisk could not create %s.%s", name, fmt)
            return 0
        try:
            result = parse_result(reply)
        except AgiHangup:
            self.hung_up = True
            raise
        if result.data == "randomerror":
            return 0
        endpos = result.extra.removeprefix("endpos=")
        return int(endpos) if endpos.isdigit() else 0

    async def exec(self, application: str, options: str = "") -> int:
        result = await self.command("EXEC", application, options, timeout=3600)
        return result.result

    async def verbose(self, message: str, level: int = 1) -> None:
        await self.command("VERBOSE", message, level)

    async def hangup(self) -> None:
        if not self.hung_up:
            await self.command("HANGUP")
            self.hung_up = True


def _entry(digits: str, status: str, what: str) -> tuple[str, bool]:
    """A Read's digits and whether it timed out (READSTATUS TIMEOUT: a gap, with or without
    digits); any status but OK and TIMEOUT is an error (a hangup is told apart before)."""
    if status not in ("OK", "TIMEOUT"):
        raise AgiCommandError(200, f"{what} ended with READSTATUS={status!r}")
    return digits, status == "TIMEOUT"


def _check_read(files: Sequence[str], max_digits: int) -> None:
    """What Read() takes: sound files with nothing its arguments split on, 1-255 digits."""
    if not files or any(not f or set(f) & READ_UNSAFE for f in files):
        raise ValueError(f"not a list of sound files for Read: {files!r}")
    if not 0 < max_digits <= READ_MAX_DIGITS:
        raise ValueError(f"Read takes 1 to {READ_MAX_DIGITS} digits, not {max_digits}")
