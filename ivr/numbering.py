"""What an inmate keys after card and PIN: prefixes and the number.

Grammar (ASCII digits only)::

    [01] [00] ( 7 NNNNNNNNNN  |  810 CC SUBSCRIBER )

``01``  called party pays (the relative's virtual balance);
``00``  the call goes to the relative's mobile app;
``7``   Russia, then exactly 10 digits;
``810`` international: country code and number, E.164 of 8 to 15 digits,
        country code not 7 (Russia/Kazakhstan are dialed as ``7...``).

No ambiguity: a number itself starts with ``7`` or ``8``, never ``0``, so a
leading ``01`` is always the payer prefix and a following ``00`` always the
app prefix (``0100...`` = callee pays, to the app). ``00`` before ``01`` is
not allowed (``0001...`` is ``bad_prefix``).
"""

from dataclasses import dataclass
from enum import Enum

from ivr.errors import NumberError

PAYER_PREFIX = "01"
APP_PREFIX = "00"
RUSSIA = "7"
RUSSIA_LEN = 10  # digits after the 7
INTL_PREFIX = "810"
E164_MIN = 8
E164_MAX = 15
DIGITS = frozenset("0123456789")


class Payer(Enum):
    CALLER = "caller"  # the inmate's card
    CALLEE = "callee"  # the relative's virtual balance ("01")


class Leg(Enum):
    PHONE = "phone"  # SIP trunk to the phone network
    APP = "app"  # the relative's mobile app ("00")


@dataclass(frozen=True)
class DialedNumber:
    e164: str  # "+79161234567"
    payer: Payer
    leg: Leg
    international: bool


def _split_prefixes(digits: str) -> tuple[Payer, Leg, str]:
    payer, leg, body = Payer.CALLER, Leg.PHONE, digits
    if body.startswith(PAYER_PREFIX):
        payer, body = Payer.CALLEE, body[len(PAYER_PREFIX) :]
    if body.startswith(APP_PREFIX):
        leg, body = Leg.APP, body[len(APP_PREFIX) :]
    return payer, leg, body


def _check_body(body: str) -> tuple[str, bool]:
    """Return (e164, international) or raise NumberError."""
    if body == "" or INTL_PREFIX.startswith(body):
        raise NumberError("too_short", body)
    if body.startswith(RUSSIA):
        subscriber = body[len(RUSSIA) :]
        if len(subscriber) < RUSSIA_LEN:
            raise NumberError("too_short", body)
        if len(subscriber) > RUSSIA_LEN:
            raise NumberError("too_long", body)
        return "+" + body, False
    if body.startswith(INTL_PREFIX):
        number = body[len(INTL_PREFIX) :]
        if number.startswith(RUSSIA):
            raise NumberError("use_domestic", body)
        if number.startswith("0"):
            raise NumberError("bad_prefix", body)
        if len(number) < E164_MIN:
            raise NumberError("too_short", body)
        if len(number) > E164_MAX:
            raise NumberError("too_long", body)
        return "+" + number, True
    raise NumberError("bad_prefix", body)


def parse_dialed(digits: str) -> DialedNumber:
    """Parse keyed digits (no ``#``/``*``); raise NumberError with a reason.

    Reasons: empty, bad_char, bad_prefix, too_short, too_long, use_domestic.
    A bare or partial prefix ("0", "01", "0100", "81", "810") is too_short.
    """
    if digits == "":
        raise NumberError("empty", digits)
    if not set(digits) <= DIGITS:
        raise NumberError("bad_char", digits)
    payer, leg, body = _split_prefixes(digits)
    if body == "0" and leg is Leg.PHONE:  # start of "01" or "00"
        raise NumberError("too_short", digits)
    try:
        e164, international = _check_body(body)
    except NumberError as err:
        raise NumberError(err.reason, digits) from None
    return DialedNumber(e164, payer, leg, international)


def classify_incomplete(digits: str) -> bool:
    """True if ``digits`` is not valid yet but some continuation would be.

    Use it after parse_dialed fails: True -> say "incomplete", False ->
    say "wrong number". "" counts as incomplete. A valid international
    number that could take more digits is not "incomplete" (it parses).
    """
    if not set(digits) <= DIGITS:
        return False
    try:
        parse_dialed(digits)
    except NumberError as err:
        return err.reason in ("empty", "too_short")
    return False
