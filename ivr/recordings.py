"""Where a call's recording lives: one file per attempt, named by its call id."""

# The recordings folder as the switch (Asterisk, in its root or container) sees it.
SWITCH_RECORDINGS = "/var/lib/kinline/recordings"


def recording_name(call_id: str) -> str:
    return f"{call_id}.wav"


def switch_path(call_id: str) -> str:
    return f"{SWITCH_RECORDINGS}/{recording_name(call_id)}"
