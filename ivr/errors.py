"""Typed errors of the Kinline domain."""


class KinlineError(Exception):
    """Base of every error the domain raises on purpose."""


class NumberError(KinlineError):
    """A dialed number is not valid; ``reason`` is a machine code."""

    def __init__(self, reason: str, digits: str = "") -> None:
        super().__init__(f"{reason}: {digits!r}")
        self.reason = reason
        self.digits = digits


class TariffError(KinlineError):
    """A tariff or rate is malformed (negative price, bad prefix...)."""


class NoRateError(KinlineError):
    """No rate of the wanted route kind matches the number."""


class BillingError(KinlineError):
    """Billing arithmetic got an impossible input (negative seconds...)."""


class ScheduleError(KinlineError):
    """A schedule text, window, time zone or instant is not valid."""


class PinFormatError(KinlineError):
    """A PIN is not 4 to 8 ASCII digits; ``reason`` is a machine code."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PinHashError(KinlineError):
    """A stored PIN hash is malformed or uses unsupported parameters."""


class WordsError(KinlineError):
    """An amount, currency or language cannot be said in words."""


class InsufficientFunds(KinlineError):
    """The balance cannot pay what is asked."""


class NotFound(KinlineError):
    """A facility, inmate, card or terminal that does not exist."""


class StoreConflict(KinlineError):
    """An id (call, payment, card) is already used for something else."""
