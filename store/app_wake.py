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
events and statuses). The same channel carries the bridge's word that a call's wake
reached no device (every push invalid, failed, no provider, no active device) and
nothing more will be tried for it:

    {"call_id", "status": "Unwakeable", "source": "push", "ts"}   (no device_id: not a contact)

It is also left in `kl:unwakeable:<call_id>` for the window, for a leg that subscribes
after it was published. A message is a contact only if it names a device (`device_of`).
The attempt records are in store/wake_records.py."""

from __future__ import annotations

import json

from ivr.clock import now_ms

WAKE_STREAM = "kl:wake"
WAKE_GROUP = "pushbridge"
STREAM_MAXLEN = 100_000  # the producer trims (XADD MAXLEN ~): old entries are past their window anyway
WAKE = "wake"  # ring: the app registers and takes the INVITE carrying the call id
CANCEL = "cancel"  # stop ringing: answered elsewhere or the caller hung up
CONTACT_CHANNEL = "kl:contact:{phone}"
UNWAKEABLE = "Unwakeable"  # status: no device of the call could be woken, no push is left to try
SOURCE_PUSH = "push"
UNWAKEABLE_KEY = "kl:unwakeable:{call_id}"


def wake_fields(call_id: str, phone: str, caller: str, window_s: float, kind: str = WAKE,
                ts_ms: int | None = None) -> dict[str, str]:
    """A stream entry (the producer's side: XADD kl:wake MAXLEN ~ STREAM_MAXLEN * fields)."""
    ts = now_ms() if ts_ms is None else ts_ms
    return {"call_id": call_id, "phone": phone, "caller": caller, "window_s": f"{window_s:g}",
            "kind": str(kind), "ts": str(ts)}


def contact_channel(phone: str) -> str:
    return CONTACT_CHANNEL.format(phone=phone)


def unwakeable_message(call_id: str, ts_ms: int) -> str:
    """The bridge's word that call ``call_id``'s wake reached no device (published on the channel)."""
    return json.dumps({"call_id": call_id, "status": UNWAKEABLE, "source": SOURCE_PUSH, "ts": ts_ms})


def unwakeable_key(call_id: str) -> str:
    return UNWAKEABLE_KEY.format(call_id=call_id)


def _body(data: object) -> dict[str, object]:
    try:
        body = json.loads(data.decode() if isinstance(data, bytes) else str(data))
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def device_of(data: object) -> str:
    """The device a message on the contacts channel is about ('' = none: not a contact)."""
    device_id = _body(data).get("device_id")
    return device_id if isinstance(device_id, str) else ""


def unwakeable_call(data: object) -> str:
    """The call id of an Unwakeable message ('' for any other message)."""
    body = _body(data)
    call_id = body.get("call_id")
    if body.get("status") != UNWAKEABLE or "device_id" in body or not isinstance(call_id, str):
        return ""
    return call_id
