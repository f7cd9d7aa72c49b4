"""Number grammar: prefixes 01/00, Russia 7+10, international 810+E.164."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.errors import KinlineError, NumberError
from ivr.numbering import DialedNumber, Leg, Payer, classify_incomplete, parse_dialed

PREFIXES = {
    "": (Payer.CALLER, Leg.PHONE),
    "01": (Payer.CALLEE, Leg.PHONE),
    "00": (Payer.CALLER, Leg.APP),
    "0100": (Payer.CALLEE, Leg.APP),
}

digit_strings = st.text(alphabet="0123456789", min_size=0, max_size=20)
prefixes = st.sampled_from(sorted(PREFIXES))
ten_digits = st.text(alphabet="0123456789", min_size=10, max_size=10)
russian = ten_digits.map(lambda s: "7" + s)
country_first = st.sampled_from("12345689")  # not 0, not 7


@st.composite
def international(draw: st.DrawFn) -> str:
    """E.164 digits (no '+') of 8..15 digits, not starting with 0 or 7."""
    rest = draw(st.text(alphabet="0123456789", min_size=7, max_size=14))
    return draw(country_first) + rest


CALLER, CALLEE, PHONE, APP = Payer.CALLER, Payer.CALLEE, Leg.PHONE, Leg.APP


@pytest.mark.parametrize(
    ("digits", "e164", "payer", "leg", "international"),
    [
        ("79161234567", "+79161234567", CALLER, PHONE, False),
        ("0179161234567", "+79161234567", CALLEE, PHONE, False),
        ("0079161234567", "+79161234567", CALLER, APP, False),
        ("010079161234567", "+79161234567", CALLEE, APP, False),
        ("74951234567", "+74951234567", CALLER, PHONE, False),
        ("81033123456789", "+33123456789", CALLER, PHONE, True),
        ("0181033123456789", "+33123456789", CALLEE, PHONE, True),
        ("0081033123456789", "+33123456789", CALLER, APP, True),
        ("010081033123456789", "+33123456789", CALLEE, APP, True),
        ("81012345678", "+12345678", CALLER, PHONE, True),
        ("810123456789012345", "+123456789012345", CALLER, PHONE, True),
    ],
)
def test_valid_examples(digits: str, e164: str, payer: Payer, leg: Leg, international: bool) -> None:
    assert parse_dialed(digits) == DialedNumber(e164, payer, leg, international)


@pytest.mark.parametrize(
    ("digits", "reason", "incomplete"),
    [
        ("", "empty", True),
        ("0", "too_short", True),
        ("01", "too_short", True),
        ("010", "too_short", True),
        ("00", "too_short", True),
        ("0100", "too_short", True),
        ("7", "too_short", True),
        ("7916123456", "too_short", True),
        ("8", "too_short", True),
        ("81", "too_short", True),
        ("810", "too_short", True),
        ("8103312345", "too_short", True),
        ("81033", "too_short", True),
        ("791612345678", "too_long", False),
        ("8101234567890123456", "too_long", False),
        ("8107916123456", "use_domestic", False),
        ("81079161234567", "use_domestic", False),
        ("8100123456789", "bad_prefix", False),
        ("89161234567", "bad_prefix", False),
        ("000", "bad_prefix", False),
        ("0001", "bad_prefix", False),
        ("000179161234567", "bad_prefix", False),
        ("010179161234567", "bad_prefix", False),
        ("5", "bad_prefix", False),
        ("+79161234567", "bad_char", False),
        ("7916123456#", "bad_char", False),
        ("7916*234567", "bad_char", False),
        ("7916 234567", "bad_char", False),
        ("7٩16123456", "bad_char", False),  # Arabic-Indic digit
    ],
)
def test_invalid_examples(digits: str, reason: str, incomplete: bool) -> None:
    with pytest.raises(NumberError) as caught:
        parse_dialed(digits)
    assert caught.value.reason == reason
    assert caught.value.digits == digits
    assert isinstance(caught.value, KinlineError)
    assert classify_incomplete(digits) is incomplete


def test_valid_number_is_not_incomplete() -> None:
    assert classify_incomplete("79161234567") is False
    assert classify_incomplete("81033123456789") is False


@given(prefixes, russian)
def test_russian_round_trip(prefix: str, number: str) -> None:
    payer, leg = PREFIXES[prefix]
    expected = DialedNumber("+" + number, payer, leg, False)
    assert parse_dialed(prefix + number) == expected


@given(prefixes, international())
def test_international_round_trip(prefix: str, number: str) -> None:
    payer, leg = PREFIXES[prefix]
    parsed = parse_dialed(prefix + "810" + number)
    assert parsed == DialedNumber("+" + number, payer, leg, True)


@given(prefixes, russian)
def test_every_proper_prefix_of_valid_is_incomplete(prefix: str, number: str) -> None:
    full = prefix + number
    for end in range(len(full)):
        assert classify_incomplete(full[:end]) is True


@given(st.text(min_size=1, max_size=20), st.data())
def test_any_non_digit_char_is_rejected(text: str, data: st.DataObject) -> None:
    bad = data.draw(st.characters().filter(lambda c: c not in "0123456789"))
    pos = data.draw(st.integers(min_value=0, max_value=len(text)))
    digits = text[:pos] + bad + text[pos:]
    with pytest.raises(NumberError) as caught:
        parse_dialed(digits)
    assert caught.value.reason == "bad_char"
    assert classify_incomplete(digits) is False


@given(prefixes, st.text(alphabet="0123456789", max_size=25))
def test_russian_length_other_than_ten_is_rejected(prefix: str, rest: str) -> None:
    if len(rest) == 10:
        return
    with pytest.raises(NumberError) as caught:
        parse_dialed(prefix + "7" + rest)
    assert caught.value.reason == ("too_short" if len(rest) < 10 else "too_long")


@given(prefixes, country_first, st.text(alphabet="0123456789", max_size=25))
def test_international_length_out_of_bounds_is_rejected(prefix: str, first: str, rest: str) -> None:
    number = first + rest
    if 8 <= len(number) <= 15:
        return
    with pytest.raises(NumberError) as caught:
        parse_dialed(prefix + "810" + number)
    assert caught.value.reason == ("too_short" if len(number) < 8 else "too_long")


@given(digit_strings)
def test_digits_either_parse_or_raise_number_error(digits: str) -> None:
    try:
        parsed = parse_dialed(digits)
    except NumberError as err:
        reasons = {"empty", "too_short", "too_long", "bad_prefix", "use_domestic"}
        assert err.reason in reasons
        return
    assert parsed.e164.startswith("+")
    assert 8 <= len(parsed.e164) - 1 <= 15
    assert parsed.e164[1:] in digits
