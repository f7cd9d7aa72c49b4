"""Card PINs: format policy and salted scrypt hashes.

Encoded form: ``scrypt$n$r$p$salt_hex$hash_hex``. hash_pin and verify_pin
cost about 50 ms of CPU each and block: from asyncio code call them through
``await asyncio.to_thread(verify_pin, pin, encoded)``.

A 4-digit PIN has only 10 000 values, so a leaked hash can still be brute
forced offline; the attempt limits (per call, per 24 h) are the real guard.
"""

import hashlib
import hmac
import secrets

from ivr.errors import PinFormatError, PinHashError

PIN_MIN = 4
PIN_MAX = 8
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
MAX_COST = 2**20  # n * r * p; 8 times the current cost, refuse more
MAXMEM = 256 * 1024 * 1024


def check_pin_format(pin: str) -> None:
    """Raise PinFormatError (reason empty/bad_char/too_short/too_long)."""
    if pin == "":
        raise PinFormatError("empty")
    if not all(c in "0123456789" for c in pin):
        raise PinFormatError("bad_char")
    if len(pin) < PIN_MIN:
        raise PinFormatError("too_short")
    if len(pin) > PIN_MAX:
        raise PinFormatError("too_long")


def _scrypt(pin: str, salt: bytes, n: int, r: int, p: int, size: int) -> bytes:
    return hashlib.scrypt(pin.encode("ascii"), salt=salt, n=n, r=r, p=p, maxmem=MAXMEM, dklen=size)


def hash_pin(pin: str) -> str:
    """Check the format, then hash with a fresh random 16-byte salt."""
    check_pin_format(pin)
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(pin, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, HASH_BYTES)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def _decode(encoded: str) -> tuple[int, int, int, bytes, bytes]:
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise PinHashError("not a scrypt PIN hash")
    try:
        n, r, p = (int(x) for x in parts[1:4])
        salt, digest = bytes.fromhex(parts[4]), bytes.fromhex(parts[5])
    except ValueError as err:
        raise PinHashError("malformed scrypt PIN hash") from err
    if not (n > 1 and n & (n - 1) == 0 and r >= 1 and p >= 1 and n * r * p <= MAX_COST):
        raise PinHashError("unsupported scrypt parameters")
    if not salt or not 16 <= len(digest) <= 64:
        raise PinHashError("bad salt or hash length")
    return n, r, p, salt, digest


def verify_pin(pin: str, encoded: str) -> bool:
    """True if ``pin`` matches; constant-time compare. A PIN of the wrong
    format is simply False; a malformed ``encoded`` raises PinHashError."""
    n, r, p, salt, digest = _decode(encoded)
    try:
        check_pin_format(pin)
    except PinFormatError:
        return False
    candidate = _scrypt(pin, salt, n, r, p, len(digest))
    return hmac.compare_digest(candidate, digest)


def needs_rehash(encoded: str) -> bool:
    """True if ``encoded`` uses other parameters than the current ones."""
    n, r, p, _, digest = _decode(encoded)
    return (n, r, p, len(digest)) != (SCRYPT_N, SCRYPT_R, SCRYPT_P, HASH_BYTES)
