"""Typed errors of the push bridge service (the providers have their own: providers/errors.py)."""

from __future__ import annotations


class BridgeError(Exception):
    """Base of the bridge's errors."""


class BadRequest(BridgeError, ValueError):
    """A wake request in the stream that cannot be served (logged and acknowledged)."""


class DirectoryError(BridgeError):
    """The device directory (PostgreSQL) could not answer."""
