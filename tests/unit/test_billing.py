"""Billing arithmetic in kopecks: threshold, fee, started increments, cap."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.billing import (
    billed_seconds,
    charge,
    increment_cost,
    max_call_seconds,
    required_to_start,
)
from ivr.errors import BillingError
from ivr.tariffs import Tariff

MINUTE = Tariff(rates=(), connection_fee=150)  # 3 s free, 60 s increments
MOBILE = 359


@pytest.mark.parametrize(
    ("answered_s", "billed", "amount"),
    [
        (0, 0, 0),
        (2, 0, 0),
        (3, 60, 150 + 359),
        (59, 60, 150 + 359),
        (60, 60, 150 + 359),
        (61, 120, 150 + 2 * 359),
        (120, 120, 150 + 2 * 359),
        (900, 900, 150 + 15 * 359),
        (901, 960, 150 + 16 * 359),
    ],
)
def test_charge_per_started_minute(answered_s: int, billed: int, amount: int) -> None:
    assert billed_seconds(answered_s, MINUTE) == billed
    assert charge(answered_s, MOBILE, MINUTE) == amount


def test_short_increment_rounds_each_increment_up() -> None:
    tariff = Tariff(rates=(), connection_fee=150, increment_s=10)
    assert increment_cost(359, tariff) == 60  # 359 * 10 / 60 = 59.83 -> 60
    assert increment_cost(360, tariff) == 60
    assert increment_cost(361, tariff) == 61
    assert charge(2, 359, tariff) == 0
    assert charge(3, 359, tariff) == 150 + 60
    assert charge(25, 359, tariff) == 150 + 3 * 60
    assert billed_seconds(25, tariff) == 30


def test_free_threshold_zero_still_free_at_zero_seconds() -> None:
    tariff = Tariff(rates=(), connection_fee=150, free_threshold_s=0)
    assert charge(0, MOBILE, tariff) == 0
    assert charge(1, MOBILE, tariff) == 150 + 359


def test_required_to_start() -> None:
    assert required_to_start(359, MINUTE) == 509
    assert required_to_start(307, MINUTE) == 457
    assert required_to_start(205, MINUTE) == 355


@pytest.mark.parametrize(
    ("balance", "seconds"),
    [
        (0, 0),
        (508, 0),
        (509, 60),
        (867, 60),  # 150 + 2 * 359 = 868: one kopeck short of two minutes
        (868, 120),
        (150 + 359 * 5 // 2, 120),  # pays 2.5 increments -> 2 increments
        (150 + 15 * 359, 900),
        (100_000, 900),  # capped by the facility maximum
    ],
)
def test_max_call_seconds(balance: int, seconds: int) -> None:
    assert max_call_seconds(balance, MOBILE, MINUTE, facility_max_s=900) == seconds


def test_facility_cap_not_a_multiple_of_increment() -> None:
    assert max_call_seconds(100_000, MOBILE, MINUTE, facility_max_s=1000) == 1000
    assert charge(1000, MOBILE, MINUTE) == 150 + 17 * 359
    assert max_call_seconds(150 + 10 * 359, MOBILE, MINUTE, facility_max_s=1000) == 600


def test_free_rate_is_bounded_by_facility_only() -> None:
    assert max_call_seconds(150, 0, MINUTE, facility_max_s=900) == 900
    assert max_call_seconds(149, 0, MINUTE, facility_max_s=900) == 0


@pytest.mark.parametrize(
    "call",
    [
        lambda: charge(-1, 359, MINUTE),
        lambda: charge(10, -1, MINUTE),
        lambda: max_call_seconds(-1, 359, MINUTE, 900),
        lambda: max_call_seconds(1000, 359, MINUTE, -5),
        lambda: billed_seconds(-3, MINUTE),
    ],
)
def test_negative_inputs_are_refused(call: object) -> None:
    assert callable(call)
    with pytest.raises(BillingError):
        call()


tariffs = st.builds(
    Tariff,
    rates=st.just(()),
    connection_fee=st.integers(0, 1000),
    free_threshold_s=st.integers(0, 10),
    increment_s=st.integers(1, 120),
)


@given(
    balance=st.integers(0, 10_000_000),
    rate=st.integers(0, 10_000),
    tariff=tariffs,
    facility_max_s=st.integers(0, 7200),
)
def test_max_call_is_always_affordable(balance: int, rate: int, tariff: Tariff, facility_max_s: int) -> None:
    seconds = max_call_seconds(balance, rate, tariff, facility_max_s)
    assert 0 <= seconds <= facility_max_s
    assert charge(seconds, rate, tariff) <= balance
    longer = seconds + 1
    if 0 < seconds < facility_max_s and longer >= tariff.free_threshold_s:
        assert charge(longer, rate, tariff) > balance  # not paid


@given(st.integers(0, 100_000), st.integers(0, 10_000), tariffs)
def test_charge_is_monotonic(answered_s: int, rate: int, tariff: Tariff) -> None:
    assert charge(answered_s, rate, tariff) <= charge(answered_s + 1, rate, tariff)
