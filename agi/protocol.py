"""The FastAGI wire format: pure functions, bytes and strings in, values out.

No I/O here. Asterisk opens a TCP connection, sends ``agi_key: value`` lines
ended by an empty line, then we send one command per line and read one
``200 result=... (data)`` reply per command.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


class AgiError(Exception):
    """Base of every FastAGI protocol error."""


class AgiHangup(AgiError):
    """The channel hung up (``HANGUP`` line, ``511`` reply or ``result=-1``)."""


class AgiProtocolError(AgiError):
    """Asterisk sent something that is not FastAGI."""


class AgiTimeout(AgiError):
    """Asterisk did not answer in time."""


class AgiCommandError(AgiError):
    """Asterisk refused a command (``510`` invalid or ``520`` usage)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class AgiEnvironment:
    """What Asterisk tells us about the call when it connects."""

    script: str
    uniqueid: str
    channel: str
    language: str
    callerid: str
    extension: str
    context: str
    arguments: tuple[str, ...]
    request: str = ""
    extra: dict[str, str] = field(default_factory=dict)


_ENV_LINE = re.compile(r"^(agi_[a-z0-9_]+):\s?(.*)$")
_ARG_KEY = re.compile(r"^agi_arg_(\d+)$")


def parse_environment(lines: list[str]) -> AgiEnvironment:
    """Build the environment from the header lines (without the blank end line)."""
    values: dict[str, str] = {}
    for line in lines:
        match = _ENV_LINE.match(line)
        if match is None:
            raise AgiProtocolError(f"not an AGI environment line: {line[:80]!r}")
        values[match.group(1)] = match.group(2)
    if "agi_uniqueid" not in values:
        raise AgiProtocolError("AGI environment has no agi_uniqueid")
    args = sorted(
        (int(m.group(1)), v) for k, v in values.items() if (m := _ARG_KEY.match(k))
    )
    return AgiEnvironment(
        script=script_name(values.get("agi_network_script", values.get("agi_request", ""))),
        uniqueid=values["agi_uniqueid"],
        channel=values.get("agi_channel", ""),
        language=values.get("agi_language", "en"),
        callerid=values.get("agi_callerid", ""),
        extension=values.get("agi_extension", ""),
        context=values.get("agi_context", ""),
        arguments=tuple(v for _, v in args),
        request=values.get("agi_request", ""),
        extra=values,
    )


def script_name(request: str) -> str:
    """``agi://host:port/greeting?x=1`` or ``greeting`` -> ``greeting``."""
    if "://" in request:
        request = request.split("://", 1)[1]
        request = request.split("/", 1)[1] if "/" in request else ""
    return request.split("?", 1)[0].strip("/")


def quote(arg: str | int) -> str:
    """Quote one command argument so Asterisk reads it as a single word."""
    text = str(arg)
    if "\n" in text or "\r" in text:
        raise ValueError("AGI arguments cannot contain line breaks")
    if "\x00" in text:
        # Asterisk reads the line as a C string: it would silently cut the command here.
        raise ValueError("AGI arguments cannot contain NUL")
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def format_command(*words: str | int) -> bytes:
    """The command's line: the verb as is, every argument quoted."""
    if not words:
        raise ValueError("empty AGI command")
    verb, *args = words
    verb_text = str(verb)
    if not re.fullmatch(r"[A-Z][A-Z ]*[A-Z]", verb_text):
        raise ValueError(f"not an AGI verb: {verb_text!r}")
    line = " ".join([verb_text, *(quote(a) for a in args)]) + "\n"
    try:
        return line.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"AGI command is not valid UTF-8: {exc.reason}") from exc


@dataclass(frozen=True)
class AgiResult:
    """A ``200`` reply: the result word, the parenthesised data, anything after."""

    text: str
    data: str = ""
    extra: str = ""

    @property
    def result(self) -> int:
        """The result as an integer (0 when it is not a number, e.g. digits ``*1``)."""
        return int(self.text) if re.fullmatch(r"-?\d+", self.text) else 0


# The data runs to the LAST ``)`` that can end it: GET VARIABLE's value may hold ``)``.
_RESULT = re.compile(r"^200 result=(\S*)(?: \((.*)\))?(?: (.*))?$")


def parse_result(line: str) -> AgiResult:
    """Parse one reply line; raise the typed error it stands for."""
    line = line.rstrip("\r\n")
    if line == "HANGUP":
        raise AgiHangup("channel hung up")
    if line.startswith("511"):
        raise AgiHangup(line)
    if line.startswith(("510", "520")):
        raise AgiCommandError(int(line[:3]), line[4:])
    match = _RESULT.match(line)
    if match is None:
        raise AgiProtocolError(f"unexpected AGI reply: {line[:80]!r}")
    text = match.group(1)
    if text == "-1":
        raise AgiHangup("command failed: channel gone")
    return AgiResult(text, match.group(2) or "", match.group(3) or "")
