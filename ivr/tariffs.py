"""Tariffs: per-minute rates by route kind and destination prefix.

Money is in integer minor units (kopecks, cents) everywhere.
"""

from dataclasses import dataclass
from enum import Enum

from ivr.errors import NoRateError, TariffError
from ivr.numbering import DialedNumber, Leg


class RouteKind(Enum):
    MOBILE = "mobile"
    LANDLINE = "landline"
    APP_AUDIO = "app_audio"
    APP_VIDEO = "app_video"
    INTERNATIONAL = "international"


def _is_digits(text: str) -> bool:
    return all(c in "0123456789" for c in text)


@dataclass(frozen=True)
class Rate:
    """``prefix`` is E.164 digits without '+'; "" matches every number."""

    prefix: str
    kind: RouteKind
    per_minute: int  # minor units per minute

    def __post_init__(self) -> None:
        if not _is_digits(self.prefix):
            raise TariffError(f"rate prefix not digits: {self.prefix!r}")
        if type(self.per_minute) is not int or self.per_minute < 0:
            raise TariffError(f"bad per_minute: {self.per_minute!r}")


@dataclass(frozen=True)
class Tariff:
    rates: tuple[Rate, ...]
    connection_fee: int  # minor units, charged once per billed call
    free_threshold_s: int = 3  # answered under this: not billed at all
    increment_s: int = 60  # billed per started increment

    def __post_init__(self) -> None:
        for name in ("connection_fee", "free_threshold_s", "increment_s"):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise TariffError(f"bad {name}: {value!r}")
        if self.increment_s == 0:
            raise TariffError("increment_s must be positive")
        seen: set[tuple[str, RouteKind]] = set()
        for rate in self.rates:
            key = (rate.prefix, rate.kind)
            if key in seen:
                raise TariffError(f"duplicate {rate.kind.value} rate {rate.prefix!r}")
            seen.add(key)

    def lookup(self, e164: str, kind: RouteKind) -> Rate:
        """The rate of this kind with the longest prefix of the number."""
        digits = e164[1:] if e164.startswith("+") else ""
        if not digits or not _is_digits(digits):
            raise NoRateError(f"not an E.164 number: {e164!r}")
        best: Rate | None = None
        for rate in self.rates:
            if (
                rate.kind is kind
                and digits.startswith(rate.prefix)
                and (best is None or len(rate.prefix) > len(best.prefix))
            ):
                best = rate
        if best is None:
            raise NoRateError(f"no {kind.value} rate for {e164}")
        return best


def route_kind(number: DialedNumber) -> RouteKind:
    """APP leg -> APP_AUDIO; +79... -> MOBILE; other +7 -> LANDLINE; else
    INTERNATIONAL. (+76/+77 Kazakhstan count as LANDLINE here.)"""
    if number.leg is Leg.APP:
        return RouteKind.APP_AUDIO
    if number.e164.startswith("+79"):
        return RouteKind.MOBILE
    if number.e164.startswith("+7"):
        return RouteKind.LANDLINE
    return RouteKind.INTERNATIONAL


def demo_tariff() -> Tariff:
    """Seed prices in kopecks: same price from abroad as to a Russian mobile."""
    return Tariff(
        rates=(
            Rate("7", RouteKind.MOBILE, 359),
            Rate("7", RouteKind.LANDLINE, 307),
            Rate("", RouteKind.APP_AUDIO, 205),
            Rate("", RouteKind.APP_VIDEO, 700),
            Rate("", RouteKind.INTERNATIONAL, 359),
        ),
        connection_fee=150,
    )
