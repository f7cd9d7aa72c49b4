"""The payment provider: a Protocol, the fake one for dev and tests, and the
webhook signature (HMAC-SHA256 over "<timestamp>.<raw body>", hex)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Protocol

TIMESTAMP_HEADER = "Webhook-Timestamp"
SIGNATURE_HEADER = "Webhook-Signature"
TOLERANCE_S = 300


class SignatureError(Exception):
    """A webhook whose signature is missing, wrong or too old (``reason``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PaymentProvider(Protocol):
    async def create_payment(self, phone: str, amount: int) -> str:
        """Open a payment at the provider; its id (the webhook names it when paid)."""
        ...


class FakeProvider:
    """Mints payment ids; the test (or ``python -m api.fake_provider``) plays the
    provider's webhook, signed with the stack's ``payment_webhook_secret``."""

    async def create_payment(self, phone: str, amount: int) -> str:
        return "fake_" + secrets.token_hex(12)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(secret: str, timestamp: str | None, signature: str | None, body: bytes, now: float) -> None:
    """Raise SignatureError unless ``signature`` signs ``body`` at ``timestamp``
    (integer seconds) within TOLERANCE_S of ``now``."""
    if not timestamp or not signature:
        raise SignatureError("missing")
    if not timestamp.isdigit() or len(timestamp) > 12:
        raise SignatureError("bad timestamp")
    if abs(now - int(timestamp)) > TOLERANCE_S:
        raise SignatureError("stale")
    if not hmac.compare_digest(sign(secret, timestamp, body), signature):
        raise SignatureError("bad signature")
