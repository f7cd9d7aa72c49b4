"""Asterisk's event log (cel_custom CSV, see asterisk/conf/cel_custom.conf) as facts.

Pure: lines in, facts out. A line is: event type, event time, channel
uniqueid, user event name, extra. The dial plan's own events carry
``kl1 <call id> <ms> [<dial status> <hangup cause>]`` or, for an end since
dropped calls are credited, ``kl2 <call id> <ms> <dial status> <hangup cause>
<far leg's cause>`` in their extra (the far leg's cause is empty unless the
relative's leg ended first). Both versions are read.
"""

from __future__ import annotations

import csv
import json

from ivr.drops import end_cause
from ivr.settlement import Bridged, ChannelEnded, Ended, Fact

VERSIONS = ("kl1", "kl2")


def parse_line(line: str) -> Fact | None:
    """The fact a log line proves, or None for lines that do not concern us.
    Raises ValueError on a line that claims to be ours but is malformed."""
    row = next(csv.reader([line]), [])
    if len(row) < 5:
        return None
    kind, when, uniqueid, user_event, extra = row[:5]
    if kind == "CHAN_END":
        return ChannelEnded(uniqueid, _seconds_to_ms(when)) if uniqueid else None
    # A user event's line names the event itself in the type column (Asterisk 22).
    if user_event not in ("kinline_bridged", "kinline_end") or kind not in ("USER_DEFINED", user_event):
        return None
    words = _payload(extra).split(" ")
    if len(words) < 3 or words[0] not in VERSIONS or not words[1] or not words[2].isdigit():
        raise ValueError(f"malformed kinline event: {line.strip()!r}")
    call_id, at_ms = words[1], int(words[2])
    if user_event == "kinline_bridged":
        return Bridged(call_id, at_ms)
    status = words[3] if len(words) > 3 else ""
    cause = words[4] if len(words) > 4 else ""
    far_cause = words[5] if words[0] == "kl2" and len(words) > 5 else ""
    return Ended(call_id, at_ms, status, end_cause(cause, far_cause))


def _payload(extra: str) -> str:
    """CEL wraps a user event's extra text as JSON ({"extra": "..."}) in Asterisk 22."""
    text = extra.strip()
    if text.startswith("{"):
        data = json.loads(text)
        return str(data.get("extra", "")) if isinstance(data, dict) else ""
    return text


def _seconds_to_ms(text: str) -> int:
    """CEL event time: seconds since the epoch with a fraction ("1795397103.886907")."""
    whole, _, frac = text.strip().partition(".")
    if not whole.isdigit():
        raise ValueError(f"bad CEL event time {text!r}")
    return int(whole) * 1000 + int((frac + "000")[:3] or 0)


def channel_started_ms(uniqueid: str) -> int | None:
    """Asterisk's uniqueid is ``[systemname-]<epoch seconds>.<sequence>``."""
    stamp = uniqueid.rsplit("-", 1)[-1].partition(".")[0]
    return int(stamp) * 1000 if stamp.isdigit() else None
