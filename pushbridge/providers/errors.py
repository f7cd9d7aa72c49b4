"""Typed errors of the push providers. `send` turns them into a PushResult; they
escape only from configuration loading and provider construction."""

from __future__ import annotations


class PushError(Exception):
    """Base of every push provider error."""


class PushConfigError(PushError):
    """The [push] configuration or a credentials file is missing or malformed."""


class AuthError(PushError):
    """The provider's OAuth endpoint refused us or could not be reached.

    `retryable` is True for a transport error, 429 or 5xx (try again inside the
    window), False when the credentials themselves are refused."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
