"""AMI wire format: ``Key: Value`` lines, a blank line ends a message. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field


class AmiError(Exception):
    """Base of AMI errors."""


class AmiProtocolError(AmiError):
    """Not an AMI message."""


class AmiDisconnected(AmiError):
    """The connection to Asterisk is gone (the client reconnects by itself)."""


class AmiActionError(AmiError):
    """Asterisk answered ``Response: Error``."""


@dataclass(frozen=True)
class AmiMessage:
    """An event (``Event: X``) or a response (``Response: Success``)."""

    fields: dict[str, str] = field(default_factory=dict)
    lines: tuple[str, ...] = ()

    @property
    def event(self) -> str:
        return self.fields.get("Event", "")

    @property
    def response(self) -> str:
        return self.fields.get("Response", "")

    def get(self, key: str, default: str = "") -> str:
        return self.fields.get(key, default)


def parse_message(block: str) -> AmiMessage:
    """Parse one message (without its blank end line)."""
    fields: dict[str, str] = {}
    lines: list[str] = []
    for line in block.split("\r\n"):
        if not line:
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise AmiProtocolError(f"not an AMI line: {line[:80]!r}")
        key = key.strip()
        if key == "Output":
            # Command output keeps its indentation: drop only the separator space.
            output = value[1:] if value.startswith(" ") else value
            lines.append(output.rstrip())
        value = value.strip()
        fields[key] = value
    if not fields:
        raise AmiProtocolError("empty AMI message")
    return AmiMessage(fields, tuple(lines))


def format_action(name: str, action_id: str, fields: dict[str, str]) -> bytes:
    """One action, ready to send."""
    for text in (name, action_id, *fields.keys(), *fields.values()):
        if "\r" in text or "\n" in text:
            raise ValueError("AMI fields cannot contain line breaks")
    out = [f"Action: {name}", f"ActionID: {action_id}"]
    out.extend(f"{key}: {value}" for key, value in fields.items())
    return ("\r\n".join(out) + "\r\n\r\n").encode()
