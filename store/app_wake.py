"""The app wake's Redis wire formats, shared by the call side (agi/) and the push bridge
(pushbridge/): the request stream and the contacts channel.

Wake requests go through the stream `kl:wake`, one entry per request, all values strings:

    call_id   the call's id; the app matches the INVITE by it
    phone     the relative's number, E.164 with its + (as their account), whose devices are pushed
    caller    what the app shows: the facility's display name
    window_s  seconds the call waits for the app (the ring window)
    kind      wake | cancel (answered elsewhere, the caller hung up, timeout)
    ts        epoch milliseconds when the call side asked

Contact events of a relative's devices are published on `kl:contact:<phone>`
({"device_id", "uri", "status", "ts", "source"}: pushbridge/contacts.py says which
events and statuses). The attempt records are in store/wake_records.py."""

from __future__ import annotations

import time

WAKE_STREAM = "kl:wake"
WAKE_GROUP = "pushbridge"
STREAM_MAXLEN = 100_000  # the producer trims (XADD MAXLEN ~): old entries are past their window anyway
WAKE = "wake"  # ring: the app registers and takes the INVITE carrying the call id
CANCEL = "cancel"  # stop ringing: answered elsewhere or the caller hung up
CONTACT_CHANNEL = "kl:contact:{phone}"


def wake_fields(call_id: str, phone: str, caller: str, window_s: float, kind: str = WAKE,
                ts_ms: int | None = None) -> dict[str, str]:
    """A stream entry (the producer's side: XADD kl:wake MAXLEN ~ STREAM_MAXLEN * fields)."""
    ts = time.time_ns() // 1_000_000 if ts_ms is None else ts_ms
    return {"call_id": call_id, "phone": phone, "caller": caller, "window_s": f"{window_s:g}",
            "kind": str(kind), "ts": str(ts)}


def contact_channel(phone: str) -> str:
    return CONTACT_CHANNEL.format(phone=phone)
