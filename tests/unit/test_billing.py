"""Billing arithmetic in kopecks: threshold, fee, started increments, cap."""

import math
from fractions import Fraction

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


def test_one_second_increment_rounds_once_per_call() -> None:
    """3.01/min at a 1 s increment bills 3.01 for a minute, not 60 x 0.06 = 3.60."""
    tariff = Tariff(rates=(), connection_fee=0, increment_s=1)
    assert increment_cost(301, tariff) == 6  # one second alone: 5.02 -> 6
    assert charge(60, 301, tariff) == 301
    assert charge(3, 301, tariff) == 16  # 903 / 60 = 15.05 -> 16
    assert charge(61, 301, tariff) == 307  # 306.02 -> 307
    assert charge(600, 301, tariff) == 3010
    assert billed_seconds(61, tariff) == 61


def test_six_second_increment_rounds_the_time_then_the_price() -> None:
    tariff = Tariff(rates=(), connection_fee=150, increment_s=6)
    assert billed_seconds(61, tariff) == 66
    assert charge(61, 359, tariff) == 150 + 395  # 359 * 66 / 60 = 394.9 (per increment: 11 x 36 = 396)
    assert charge(25, 359, tariff) == 150 + 180  # 30 s: 179.5 -> 180
    assert charge(60, 359, tariff) == 150 + 359
    assert charge(2, 359, tariff) == 0
    assert required_to_start(359, tariff) == 150 + 36


def test_sixty_second_increment_is_unchanged_by_rounding_once() -> None:
    tariff = Tariff(rates=(), connection_fee=150, increment_s=60)
    assert [charge(s, 359, tariff) for s in (3, 60, 61, 900)] == [509, 509, 868, 150 + 15 * 359]
    assert charge(30, 301, tariff) == 150 + 301


@pytest.mark.parametrize(
    ("increment_s", "balance", "seconds"),
    [
        (1, 150 + 301, 60),  # per-second rounding paid only 50 s
        (1, 150 + 300, 59),  # 59 s cost 295.98 -> 296 <= 300; 60 s cost 301
        (1, 150 + 5, 0),  # one second costs 6 with the rounding
        (1, 150 + 6, 1),
        (6, 868, 120),
        (6, 867, 114),  # 120 s cost 718; 114 s cost 682.1 -> 683
        (60, 867, 60),
        (60, 868, 120),
    ],
)
def test_max_call_seconds_is_the_longest_paid_time(increment_s: int, balance: int, seconds: int) -> None:
    tariff = Tariff(rates=(), connection_fee=150, free_threshold_s=0, increment_s=increment_s)
    rate = 301 if increment_s == 1 else 359
    got = max_call_seconds(balance, rate, tariff, facility_max_s=900)
    assert got == seconds
    assert charge(got, rate, tariff) <= balance
    assert got == 0 or charge(got + increment_s, rate, tariff) > balance


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
def test_charge_rounds_once_per_call(answered_s: int, rate: int, tariff: Tariff) -> None:
    """Reference in exact fractions: fee + ceil(rate x billed / 60), billed = started increments."""
    amount = charge(answered_s, rate, tariff)
    if answered_s == 0 or answered_s < tariff.free_threshold_s:
        assert amount == 0
        return
    billed = math.ceil(Fraction(answered_s, tariff.increment_s)) * tariff.increment_s
    assert amount == tariff.connection_fee + math.ceil(Fraction(rate * billed, 60))
    # Never more than rounding each increment up on its own, never less than the exact price.
    per_increment = math.ceil(Fraction(rate * tariff.increment_s, 60)) * (billed // tariff.increment_s)
    assert tariff.connection_fee + Fraction(rate * billed, 60) <= amount <= tariff.connection_fee + per_increment


@given(st.integers(0, 100_000), st.integers(0, 10_000), tariffs)
def test_charge_is_monotonic(answered_s: int, rate: int, tariff: Tariff) -> None:
    assert charge(answered_s, rate, tariff) <= charge(answered_s + 1, rate, tariff)
