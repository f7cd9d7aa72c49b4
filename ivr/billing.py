"""Billing arithmetic in integer minor units (no floats).

A call answered for less than ``free_threshold_s`` costs nothing. Otherwise
its answered time is rounded up to whole increments (the billed time), and
it costs the connection fee plus ``ceil(rate_per_minute * billed_s / 60)``:
the price is rounded once per call, never once per increment (at a 1 s
increment, 3.01/min bills 3.01/min, not 3.60/min).
"""

from ivr.errors import BillingError
from ivr.tariffs import Tariff


def _check(name: str, value: int) -> None:
    if type(value) is not int or value < 0:
        raise BillingError(f"bad {name}: {value!r}")


def _price(rate_per_minute: int, billed_s: int) -> int:
    """``ceil(rate_per_minute * billed_s / 60)``, exact in integers."""
    return -(-rate_per_minute * billed_s // 60)


def increment_cost(rate_per_minute: int, tariff: Tariff) -> int:
    """Price of a call of exactly one increment, fee excluded, rounded up."""
    _check("rate_per_minute", rate_per_minute)
    return _price(rate_per_minute, tariff.increment_s)


def billed_increments(answered_s: int, tariff: Tariff) -> int:
    """Started increments billed for a call answered ``answered_s`` seconds."""
    _check("answered_s", answered_s)
    if answered_s < tariff.free_threshold_s or answered_s == 0:
        return 0
    return -(-answered_s // tariff.increment_s)


def billed_seconds(answered_s: int, tariff: Tariff) -> int:
    """0 under the free threshold, else the started increments in seconds."""
    return billed_increments(answered_s, tariff) * tariff.increment_s


def charge(answered_s: int, rate_per_minute: int, tariff: Tariff) -> int:
    """Amount for a call answered ``answered_s`` seconds (0 if not billed):
    the fee plus the billed time's price, rounded up once."""
    _check("rate_per_minute", rate_per_minute)
    billed = billed_seconds(answered_s, tariff)
    if billed == 0:
        return 0
    return tariff.connection_fee + _price(rate_per_minute, billed)


def required_to_start(rate_per_minute: int, tariff: Tariff) -> int:
    """Least balance that lets a call start: the fee plus one increment."""
    return tariff.connection_fee + increment_cost(rate_per_minute, tariff)


def max_call_seconds(balance: int, rate_per_minute: int, tariff: Tariff, facility_max_s: int) -> int:
    """Longest call the balance pays for, capped by the facility maximum.

    The longest whole number of increments ``k`` with
    ``fee + ceil(rate * k * increment_s / 60) <= balance``; since the right
    side is an integer, that is ``rate * k * increment_s <= 60 * (balance - fee)``.
    0 if the balance is below the fee plus one increment.
    ``charge(max_call_seconds(b, ...), ...) <= b`` always holds.
    """
    _check("balance", balance)
    _check("facility_max_s", facility_max_s)
    _check("rate_per_minute", rate_per_minute)
    if balance < required_to_start(rate_per_minute, tariff):
        return 0
    if rate_per_minute == 0:
        return facility_max_s
    increments = 60 * (balance - tariff.connection_fee) // (rate_per_minute * tariff.increment_s)
    return min(facility_max_s, increments * tariff.increment_s)
