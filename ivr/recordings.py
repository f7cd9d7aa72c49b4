"""Where recordings live: a call's recording (one file per attempt, named by its
call id) and, apart from them, each inmate's recorded name (one file per inmate)."""

from __future__ import annotations

import re

# The recordings folder as the switch (Asterisk, in its root or container) sees it.
SWITCH_RECORDINGS = "/var/lib/kinline/recordings"
# The inmates' recorded names, a folder of their own (never mixed with calls).
SWITCH_NAMES = "/var/lib/kinline/names"
NAME_FORMAT = "wav"  # 8 kHz 16-bit mono: what Asterisk records and plays without transcoding

# An inmate id that is a plain file name: no "/" and never a leading "." (drafts' mark).
_NAME_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}")
_UNIQUEID = re.compile(r"[0-9A-Za-z_.-]{1,64}")


def recording_name(call_id: str) -> str:
    return f"{call_id}.wav"


def switch_path(call_id: str) -> str:
    return f"{SWITCH_RECORDINGS}/{recording_name(call_id)}"


def can_have_name(inmate_id: str) -> bool:
    """Whether ``inmate_id`` can name a file in the names folder."""
    return _NAME_ID.fullmatch(inmate_id) is not None


def name_stem(inmate_id: str) -> str:
    """The inmate's kept name, without extension (``<inmate_id>``)."""
    if not can_have_name(inmate_id):
        raise ValueError(f"inmate id {inmate_id!r} cannot name a file")
    return inmate_id


def draft_stem(inmate_id: str, uniqueid: str, take: int) -> str:
    """A take not kept yet, in the same folder (renamed over the name when kept)."""
    if _UNIQUEID.fullmatch(uniqueid) is None:
        raise ValueError(f"uniqueid {uniqueid!r} cannot name a file")
    return f".draft.{name_stem(inmate_id)}.{uniqueid}.{take}"


def name_sound(inmate_id: str) -> str:
    """The inmate's name as the switch plays it (STREAM FILE / Playback: no extension)."""
    return f"{SWITCH_NAMES}/{name_stem(inmate_id)}"
