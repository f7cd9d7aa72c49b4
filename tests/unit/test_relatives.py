"""The relatives' rules (ivr/relatives.py): who may pay, amounts, codes and tokens."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.relatives import (
    CODE_DIGITS,
    MAX_AMOUNT,
    CardSettings,
    RelativeError,
    check_amount,
    check_phone,
    code_hash,
    may_pay,
    new_code,
    operation_id,
    token_hash,
)

ON = CardSettings(always_in_touch=True)


def test_no_settings_is_not_enabled() -> None:
    assert may_pay(None, 0, 0, 100) == "not_enabled"


def test_always_in_touch_off_is_not_enabled() -> None:
    assert may_pay(CardSettings(), 0, 0, 100) == "not_enabled"


def test_enabled_without_caps_pays() -> None:
    assert may_pay(ON, 10**8, 10**9, 100) is None


def test_blocked_wins_over_everything() -> None:
    assert may_pay(CardSettings(always_in_touch=True, blocked=True), 0, 0, 1) == "blocked"
    assert may_pay(CardSettings(blocked=True), 0, 0, 1) == "blocked"


def test_day_cap_counts_what_was_spent_today() -> None:
    s = CardSettings(always_in_touch=True, cap_day=1000)
    assert may_pay(s, 900, 900, 100) is None  # exactly the cap
    assert may_pay(s, 901, 901, 100) == "cap_day"
    assert may_pay(s, 0, 50_000, 1001) == "cap_day"


def test_month_cap_counts_what_was_spent_this_month() -> None:
    s = CardSettings(always_in_touch=True, cap_day=1000, cap_month=5000)
    assert may_pay(s, 0, 4900, 100) is None
    assert may_pay(s, 0, 4950, 100) == "cap_month"
    # the day cap is checked first
    assert may_pay(s, 1000, 5000, 100) == "cap_day"


def test_bad_inputs_are_errors_not_reasons() -> None:
    with pytest.raises(ValueError):
        may_pay(ON, -1, 0, 100)
    with pytest.raises(ValueError):
        may_pay(ON, 0, 0, 0)


@given(st.integers(0, 10**6), st.integers(0, 10**7), st.integers(1, 10**5),
       st.one_of(st.none(), st.integers(1, 10**6)), st.one_of(st.none(), st.integers(1, 10**7)))
def test_paying_never_passes_a_cap(today: int, month: int, amount: int, cap_day: int | None,
                                   cap_month: int | None) -> None:
    s = CardSettings(always_in_touch=True, cap_day=cap_day, cap_month=cap_month)
    if may_pay(s, today, month, amount) is None:
        assert cap_day is None or today + amount <= cap_day
        assert cap_month is None or month + amount <= cap_month


@pytest.mark.parametrize("amount", [0, -1, MAX_AMOUNT + 1, 1.0, "5", True, None])
def test_bad_amounts_are_refused(amount: object) -> None:
    with pytest.raises(RelativeError) as err:
        check_amount(amount)  # type: ignore[arg-type]
    assert err.value.reason == "bad_amount"


def test_good_amounts() -> None:
    check_amount(1)
    check_amount(MAX_AMOUNT)


def test_caps_must_be_amounts() -> None:
    with pytest.raises(RelativeError):
        CardSettings(cap_day=0)
    with pytest.raises(RelativeError):
        CardSettings(cap_month=-5)


@pytest.mark.parametrize("phone", ["79161234567", "+0916123456", "+7916", "+7916123456789012", "+7 916", ""])
def test_phones_must_be_e164(phone: str) -> None:
    with pytest.raises(RelativeError):
        check_phone(phone)


def test_e164_phone() -> None:
    assert check_phone("+79161234567") == "+79161234567"


def test_codes_have_six_digits_and_vary() -> None:
    codes = {new_code() for _ in range(200)}
    assert all(len(c) == CODE_DIGITS and c.isdigit() for c in codes)
    assert len(codes) > 150


def test_hashes_bind_phone_and_never_equal_the_secret() -> None:
    assert code_hash("+79161234567", "123456") != code_hash("+79161234568", "123456")
    assert "123456" not in code_hash("+79161234567", "123456")
    assert token_hash("abc") != "abc" and len(token_hash("abc")) == 64


def test_operation_id_is_per_phone_and_key() -> None:
    assert operation_id("+79161234567", "k1") == operation_id("+79161234567", "k1")
    assert operation_id("+79161234567", "k1") != operation_id("+79161234568", "k1")
    assert operation_id("+79161234567", "k1") != operation_id("+79161234567", "k2")
