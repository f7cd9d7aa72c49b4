"""Billing arithmetic in integer minor units (no floats).

A call answered for less than ``free_threshold_s`` costs nothing; otherwise
the connection fee plus each started increment, one increment costing
``rate_per_minute * increment_s / 60`` rounded up to a whole minor unit.
"""

from ivr.errors import BillingError
from ivr.tariffs import Tariff


def _check(name: str, value: int) -> None:
    if type(value) is not int or value < 0:
        raise BillingError(f"bad {name}: {value!r}")


def increment_cost(rate_per_minute: int, tariff: Tariff) -> int:
    """Price of one billing increment, rounded up."""
    _check("rate_per_minute", rate_per_minute)
    return -(-rate_per_minute * tariff.increment_s // 60)


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
    """Amount for a call answered ``answered_s`` seconds (0 if not billed)."""
    count = billed_increments(answered_s, tariff)
    cost = increment_cost(rate_per_minute, tariff)
    if count == 0:
        return 0
    return tariff.connection_fee + count * cost


def required_to_start(rate_per_minute: int, tariff: Tariff) -> int:
    """Least balance that lets a call start: the fee plus one increment."""
    return tariff.connection_fee + increment_cost(rate_per_minute, tariff)


def max_call_seconds(balance: int, rate_per_minute: int, tariff: Tariff, facility_max_s: int) -> int:
    """Longest call the balance pays for, capped by the facility maximum.

    Whole increments only; 0 if the balance is below the fee plus one
    increment. ``charge(max_call_seconds(b, ...), ...) <= b`` always holds.
    """
    _check("balance", balance)
    _check("facility_max_s", facility_max_s)
    cost = increment_cost(rate_per_minute, tariff)
    if balance < tariff.connection_fee + cost:
        return 0
    if cost == 0:
        return facility_max_s
    increments = (balance - tariff.connection_fee) // cost
    return min(facility_max_s, increments * tariff.increment_s)
