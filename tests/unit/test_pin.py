"""PIN format policy, keyed HMAC hashes and the legacy scrypt hashes they replace."""

import hashlib
import hmac

import pytest

from ivr.errors import KinlineError, PinFormatError, PinHashError
from ivr.pin import PinHasher, check_pin_format, hash_scrypt, verify_scrypt

KEY = bytes(range(32))
PINS = PinHasher(KEY)
HASH_1234 = PINS.hash("1234")


@pytest.mark.parametrize("pin", ["0000", "1234", "12345678", "000000"])
def test_good_formats(pin: str) -> None:
    check_pin_format(pin)


@pytest.mark.parametrize(
    ("pin", "reason"),
    [
        ("", "empty"),
        ("123", "too_short"),
        ("123456789", "too_long"),
        ("12a4", "bad_char"),
        ("12 34", "bad_char"),
        ("1234#", "bad_char"),
        ("١٢٣٤", "bad_char"),  # Arabic-Indic digits pass str.isdigit()
    ],
)
def test_bad_formats(pin: str, reason: str) -> None:
    with pytest.raises(PinFormatError) as caught:
        check_pin_format(pin)
    assert caught.value.reason == reason
    assert isinstance(caught.value, KinlineError)


def test_keyed_hash_shape_is_hmac_of_salt_and_pin() -> None:
    scheme, key_id, salt_hex, digest_hex = HASH_1234.split("$")
    assert scheme == "hmac-sha256"
    assert key_id == PINS.key_id and len(key_id) == 8
    salt = bytes.fromhex(salt_hex)
    assert len(salt) == 16
    assert bytes.fromhex(digest_hex) == hmac.new(KEY, salt + b"1234", hashlib.sha256).digest()
    assert KEY.hex() not in HASH_1234
    assert not PINS.needs_upgrade(HASH_1234)
    assert not PINS.is_slow(HASH_1234)


def test_verify() -> None:
    assert PINS.verify("1234", HASH_1234) is True
    assert PINS.verify("1235", HASH_1234) is False
    assert PINS.verify("12345", HASH_1234) is False
    assert PINS.verify("12a4", HASH_1234) is False


def test_salt_is_random_per_hash() -> None:
    other = PINS.hash("1234")
    assert other != HASH_1234
    assert PINS.verify("1234", other)


def test_hash_refuses_bad_format() -> None:
    with pytest.raises(PinFormatError):
        PINS.hash("12")


def test_another_key_refuses_instead_of_saying_wrong_pin() -> None:
    """A server with the wrong key must not count right PINs as wrong (and lock cards)."""
    other = PinHasher(bytes(32))
    assert other.key_id != PINS.key_id
    with pytest.raises(PinHashError):
        other.verify("1234", HASH_1234)
    assert other.needs_upgrade(HASH_1234)


def test_key_from_hex_and_too_short_keys() -> None:
    assert PinHasher.from_hex(KEY.hex()).verify("1234", HASH_1234)
    with pytest.raises(PinHashError):
        PinHasher(b"short")
    with pytest.raises(PinHashError):
        PinHasher.from_hex("not hex")


def test_legacy_scrypt_still_verifies_and_asks_for_upgrade() -> None:
    legacy = hash_scrypt("4321", n=2**10)
    assert legacy.startswith("scrypt$1024$8$1$")
    assert PINS.verify("4321", legacy)
    assert not PINS.verify("4322", legacy)
    assert PINS.is_slow(legacy)
    assert PINS.needs_upgrade(legacy)
    upgraded = PINS.hash("4321")
    assert PINS.verify("4321", upgraded) and not PINS.needs_upgrade(upgraded)


def test_legacy_scrypt_hash_made_by_hand() -> None:
    salt = bytes(range(16))
    digest = hashlib.scrypt(b"4321", salt=salt, n=2**10, r=8, p=1, dklen=32)
    encoded = f"scrypt$1024$8$1${salt.hex()}${digest.hex()}"
    assert verify_scrypt("4321", encoded)
    assert PINS.verify("4321", encoded)
    assert not PINS.verify("43210", encoded)


@pytest.mark.parametrize(
    "encoded",
    [
        "",
        "bcrypt$16384$8$1$00$00",
        "scrypt$16384$8$1$zz$" + "00" * 32,
        "scrypt$16384$8$1$" + "00" * 16,
        "scrypt$1000$8$1$" + "00" * 16 + "$" + "00" * 32,  # n not a power of 2
        "scrypt$1048576$8$1$" + "00" * 16 + "$" + "00" * 32,  # too costly
        "scrypt$16384$8$1$$" + "00" * 32,  # empty salt
        "scrypt$16384$8$1$" + "00" * 16 + "$00",  # hash too short
        f"hmac-sha256${PINS.key_id}$zz$" + "00" * 32,
        f"hmac-sha256${PINS.key_id}$" + "00" * 16 + "$" + "00" * 16,  # digest too short
        f"hmac-sha256${PINS.key_id}$" + "00" * 8 + "$" + "00" * 32,  # salt too short
        f"hmac-sha256${PINS.key_id}$" + "00" * 16,
    ],
)
def test_malformed_hash_raises(encoded: str) -> None:
    with pytest.raises(PinHashError):
        PINS.verify("1234", encoded)
