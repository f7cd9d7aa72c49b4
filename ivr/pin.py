"""Card PINs: format policy and keyed hashes.

Current form: ``hmac-sha256$<key id>$<salt hex>$<digest hex>``, where the
digest is HMAC-SHA256(server key, salt || PIN) with a random 16-byte salt per
card, and the key id is a keyed fingerprint of the server key (8 hex digits).
The key lives in the stack's secrets file, never in Redis: a copy of Redis
alone does not let anyone test PINs offline. Hashing and checking take
microseconds, so they run inline (no thread).

Legacy form: ``scrypt$n$r$p$salt_hex$hash_hex`` (unkeyed, ~50 ms of CPU).
It still verifies, and ``PinHasher.needs_upgrade`` tells the caller to store
the keyed form after the next correct PIN. The slow check blocks: from
asyncio code run it in a thread (``PinHasher.is_slow``).

A hash made with another key raises PinHashError rather than saying "wrong
PIN": a server started with the wrong key must refuse calls (fail closed),
not count every right PIN as wrong and lock the cards.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from ivr.errors import PinFormatError, PinHashError

PIN_MIN = 4
PIN_MAX = 8
SALT_BYTES = 16
HASH_BYTES = 32
KEY_MIN_BYTES = 16
HMAC_SCHEME = "hmac-sha256"
SCRYPT_SCHEME = "scrypt"
MAX_COST = 2**20  # scrypt n * r * p accepted for legacy hashes
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


def _format_ok(pin: str) -> bool:
    try:
        check_pin_format(pin)
    except PinFormatError:
        return False
    return True


class PinHasher:
    """Hashes and checks PINs with the server's key (built once, at start-up)."""

    def __init__(self, key: bytes) -> None:
        if len(key) < KEY_MIN_BYTES:
            raise PinHashError(f"PIN key too short: {len(key)} bytes, want at least {KEY_MIN_BYTES}")
        self._key = key
        self.key_id = hmac.new(key, b"kinline pin key id", hashlib.sha256).hexdigest()[:8]
        # Checked for unknown card numbers, so they cost what a real card costs.
        self.dummy = self.hash("0000")

    @classmethod
    def from_hex(cls, text: str) -> PinHasher:
        try:
            key = bytes.fromhex(text.strip())
        except ValueError as err:
            raise PinHashError("PIN key is not hex") from err
        return cls(key)

    def _digest(self, salt: bytes, pin: str) -> bytes:
        return hmac.new(self._key, salt + pin.encode("ascii"), hashlib.sha256).digest()

    def hash(self, pin: str) -> str:
        """Check the format, then hash with a fresh random salt."""
        check_pin_format(pin)
        salt = secrets.token_bytes(SALT_BYTES)
        return f"{HMAC_SCHEME}${self.key_id}${salt.hex()}${self._digest(salt, pin).hex()}"

    def verify(self, pin: str, encoded: str) -> bool:
        """True if ``pin`` matches (constant-time compare). A PIN of the wrong
        format is False; a malformed hash, or one made with another key,
        raises PinHashError. A legacy scrypt hash takes ~50 ms: see is_slow."""
        if encoded.startswith(SCRYPT_SCHEME + "$"):
            return verify_scrypt(pin, encoded)
        salt, digest = self._decode(encoded)
        if not _format_ok(pin):
            return False
        return hmac.compare_digest(self._digest(salt, pin), digest)

    def _decode(self, encoded: str) -> tuple[bytes, bytes]:
        parts = encoded.split("$")
        if len(parts) != 4 or parts[0] != HMAC_SCHEME:
            raise PinHashError("not a PIN hash")
        if parts[1] != self.key_id:
            raise PinHashError(f"PIN hash made with another key ({parts[1]!r}, this server has {self.key_id!r})")
        try:
            salt, digest = bytes.fromhex(parts[2]), bytes.fromhex(parts[3])
        except ValueError as err:
            raise PinHashError("malformed PIN hash") from err
        if len(salt) != SALT_BYTES or len(digest) != HASH_BYTES:
            raise PinHashError("bad salt or hash length")
        return salt, digest

    @staticmethod
    def is_slow(encoded: str) -> bool:
        """True for legacy scrypt hashes (checking blocks ~50 ms)."""
        return encoded.startswith(SCRYPT_SCHEME + "$")

    def needs_upgrade(self, encoded: str) -> bool:
        """True unless ``encoded`` is the current keyed form with this key."""
        parts = encoded.split("$")
        return len(parts) != 4 or parts[0] != HMAC_SCHEME or parts[1] != self.key_id


# --- legacy scrypt hashes (verify only; hash_scrypt is kept for tests and migration) ---

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1


def _scrypt(pin: str, salt: bytes, n: int, r: int, p: int, size: int) -> bytes:
    return hashlib.scrypt(pin.encode("ascii"), salt=salt, n=n, r=r, p=p, maxmem=MAXMEM, dklen=size)


def hash_scrypt(pin: str, n: int = SCRYPT_N) -> str:
    """A legacy scrypt hash, as stored before the keyed form (tests, migration)."""
    check_pin_format(pin)
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(pin, salt, n, SCRYPT_R, SCRYPT_P, HASH_BYTES)
    return f"{SCRYPT_SCHEME}${n}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def _decode_scrypt(encoded: str) -> tuple[int, int, int, bytes, bytes]:
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != SCRYPT_SCHEME:
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


def verify_scrypt(pin: str, encoded: str) -> bool:
    """Check a legacy scrypt hash (blocks ~50 ms); constant-time compare."""
    n, r, p, salt, digest = _decode_scrypt(encoded)
    if not _format_ok(pin):
        return False
    return hmac.compare_digest(_scrypt(pin, salt, n, r, p, len(digest)), digest)
