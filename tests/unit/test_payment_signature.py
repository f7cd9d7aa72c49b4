"""The payment webhook's signature (api/payments.py): HMAC-SHA256 over "<ts>.<body>"."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from api.payments import TOLERANCE_S, SignatureError, sign, verify

SECRET = "s" * 32
BODY = b'{"payment_id": "p1", "amount": 500, "status": "succeeded"}'


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    want = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, "1700000000", BODY) == want


def test_good_signature_within_tolerance() -> None:
    verify(SECRET, "1700000000", sign(SECRET, "1700000000", BODY), BODY, 1700000000 + TOLERANCE_S)
    verify(SECRET, "1700000000", sign(SECRET, "1700000000", BODY), BODY, 1700000000 - TOLERANCE_S)


@pytest.mark.parametrize(("ts", "sig", "body", "now", "reason"), [
    ("1700000000", None, BODY, 1700000000, "missing"),
    (None, "x", BODY, 1700000000, "missing"),
    ("-5", "x", BODY, 1700000000, "bad timestamp"),
    ("1700000000", sign(SECRET, "1700000000", BODY), BODY, 1700000000 + TOLERANCE_S + 1, "stale"),
    ("1700000000", sign(SECRET, "1700000000", BODY), BODY + b" ", 1700000000, "bad signature"),
    ("1700000001", sign(SECRET, "1700000000", BODY), BODY, 1700000000, "bad signature"),
    ("1700000000", sign("other" * 8, "1700000000", BODY), BODY, 1700000000, "bad signature"),
])
def test_refused(ts: str | None, sig: str | None, body: bytes, now: float, reason: str) -> None:
    with pytest.raises(SignatureError) as err:
        verify(SECRET, ts, sig, body, now)
    assert err.value.reason == reason
