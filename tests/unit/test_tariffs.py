"""Tariff lookup: kind must match, longest prefix wins, "" is a catch-all."""

import pytest

from ivr.errors import KinlineError, NoRateError, TariffError
from ivr.numbering import parse_dialed
from ivr.tariffs import Rate, RouteKind, Tariff, demo_tariff, route_kind

MOBILE, LANDLINE, INTL = RouteKind.MOBILE, RouteKind.LANDLINE, RouteKind.INTERNATIONAL

TARIFF = Tariff(
    rates=(
        Rate("", INTL, 359),
        Rate("33", INTL, 250),
        Rate("336", INTL, 400),
        Rate("3361", INTL, 410),
        Rate("7", LANDLINE, 307),
        Rate("7495", LANDLINE, 290),
        Rate("79", MOBILE, 359),
    ),
    connection_fee=150,
)


@pytest.mark.parametrize(
    ("e164", "kind", "prefix", "per_minute"),
    [
        ("+33123456789", INTL, "33", 250),
        ("+33622345678", INTL, "336", 400),
        ("+33699999999", INTL, "336", 400),
        ("+33619999999", INTL, "3361", 410),
        ("+4930123456", INTL, "", 359),
        ("+74951234567", LANDLINE, "7495", 290),
        ("+78121234567", LANDLINE, "7", 307),
        ("+79161234567", MOBILE, "79", 359),
    ],
)
def test_longest_prefix_of_matching_kind(e164: str, kind: RouteKind, prefix: str, per_minute: int) -> None:
    assert TARIFF.lookup(e164, kind) == Rate(prefix, kind, per_minute)


def test_kind_must_match() -> None:
    with pytest.raises(NoRateError):
        TARIFF.lookup("+79161234567", RouteKind.APP_AUDIO)
    with pytest.raises(NoRateError):
        TARIFF.lookup("+78121234567", MOBILE)


@pytest.mark.parametrize("e164", ["79161234567", "+", "", "+7916x"])
def test_malformed_number_has_no_rate(e164: str) -> None:
    with pytest.raises(NoRateError) as caught:
        TARIFF.lookup(e164, LANDLINE)
    assert isinstance(caught.value, KinlineError)


@pytest.mark.parametrize(
    ("digits", "kind"),
    [
        ("79161234567", MOBILE),
        ("0179161234567", MOBILE),
        ("74951234567", LANDLINE),
        ("0079161234567", RouteKind.APP_AUDIO),
        ("010081033123456789", RouteKind.APP_AUDIO),
        ("81033123456789", INTL),
        ("0181033123456789", INTL),
    ],
)
def test_route_kind(digits: str, kind: RouteKind) -> None:
    assert route_kind(parse_dialed(digits)) is kind


@pytest.mark.parametrize(
    ("digits", "per_minute"),
    [
        ("79161234567", 359),
        ("74951234567", 307),
        ("0079161234567", 205),
        ("81033123456789", 359),
        ("8101212555000", 359),
    ],
)
def test_demo_tariff_prices(digits: str, per_minute: int) -> None:
    number = parse_dialed(digits)
    tariff = demo_tariff()
    assert tariff.lookup(number.e164, route_kind(number)).per_minute == per_minute
    assert tariff.connection_fee == 150
    assert tariff.free_threshold_s == 3
    assert tariff.increment_s == 60


def test_demo_tariff_video() -> None:
    assert demo_tariff().lookup("+79161234567", RouteKind.APP_VIDEO).per_minute == 700


@pytest.mark.parametrize(
    "build",
    [
        lambda: Rate("+7", MOBILE, 1),
        lambda: Rate("7", MOBILE, -1),
        lambda: Rate("7", MOBILE, 3.59),  # type: ignore[arg-type]
        lambda: Tariff((), connection_fee=-1),
        lambda: Tariff((), connection_fee=150, increment_s=0),
        lambda: Tariff((), connection_fee=150, free_threshold_s=-1),
        lambda: Tariff((Rate("7", MOBILE, 1), Rate("7", MOBILE, 2)), connection_fee=0),
    ],
)
def test_bad_tariff_data_is_refused(build: object) -> None:
    assert callable(build)
    with pytest.raises(TariffError):
        build()
