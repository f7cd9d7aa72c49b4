"""Dropped calls: which ends are a failure of the network or the platform.

A call that ends because someone chose to end it (the inmate or the relative
hung up, the call reached its limit) is billed as usual. A call that ends
because the network or the platform failed is *dropped*: the increment in
which it dropped is not billed (billed increments are the whole increments
completed before the drop), and the ledger's charge entry says why.

Causes are Q.850 cause codes as Asterisk reports them (``HANGUPCAUSE``), plus
``lost``: the settlement's own word for a call whose switch died under it.
Pure: no Asterisk, no Redis.
"""

from __future__ import annotations

# The caller's or the callee's own choice, or the ordinary outcome of a call.
NORMAL_CAUSES = frozenset({
    "16",  # normal clearing: someone hung up
    "17",  # user busy
    "18",  # no user responding
    "19",  # no answer
    "21",  # call rejected
    "31",  # normal, unspecified
})
# No cause was recorded: nothing proves a failure, so the call is billed as usual.
UNKNOWN_CAUSES = frozenset({"", "0"})
# The settlement's word for a call lost with its switch (Asterisk died mid-call).
PLATFORM_LOST = "lost"


def end_cause(caller_cause: str, far_cause: str) -> str:
    """The cause the call ended with.

    ``far_cause`` is the relative's leg's own cause when that leg ended first
    (the dial plan leaves it empty when the caller hung up): it wins when it is
    a failure, because the caller's channel then reports a normal clearing
    (Asterisk cut the trunk leg for lack of RTP: far 44, caller 16)."""
    far = far_cause.strip()
    if far and is_failure(far):
        return far
    return caller_cause.strip()


def is_failure(cause: str) -> bool:
    """True for a cause that is a failure of the network or the platform."""
    cause = cause.strip()
    return cause not in NORMAL_CAUSES and cause not in UNKNOWN_CAUSES


def drop_reason(dial_status: str, cause: str) -> str:
    """Why an answered call counts as dropped ("" when it does not).

    Only a connected call (``ANSWER``) can drop: any other outcome is not
    billed at all."""
    if dial_status != "ANSWER" or not is_failure(cause):
        return ""
    cause = cause.strip()
    if cause == PLATFORM_LOST:
        return "dropped: platform fault, last increment credited"
    return f"dropped: network cause {cause}, last increment credited"
