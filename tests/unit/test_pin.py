"""PIN format policy and scrypt hashes."""

import pytest

from ivr.errors import KinlineError, PinFormatError, PinHashError
from ivr.pin import check_pin_format, hash_pin, needs_rehash, verify_pin

HASH_1234 = hash_pin("1234")


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


def test_encoding_shape() -> None:
    name, n, r, p, salt, digest = HASH_1234.split("$")
    assert (name, n, r, p) == ("scrypt", "16384", "8", "1")
    assert len(bytes.fromhex(salt)) == 16
    assert len(bytes.fromhex(digest)) == 32
    assert not needs_rehash(HASH_1234)


def test_verify() -> None:
    assert verify_pin("1234", HASH_1234) is True
    assert verify_pin("1235", HASH_1234) is False
    assert verify_pin("12345", HASH_1234) is False
    assert verify_pin("12a4", HASH_1234) is False


def test_salt_is_random() -> None:
    other = hash_pin("1234")
    assert other != HASH_1234
    assert verify_pin("1234", other)


def test_hash_refuses_bad_format() -> None:
    with pytest.raises(PinFormatError):
        hash_pin("12")


def test_other_parameters_still_verify_and_ask_for_rehash() -> None:
    import hashlib

    salt = bytes(range(16))
    digest = hashlib.scrypt(b"4321", salt=salt, n=2**10, r=8, p=1, dklen=32)
    encoded = f"scrypt$1024$8$1${salt.hex()}${digest.hex()}"
    assert verify_pin("4321", encoded)
    assert not verify_pin("4322", encoded)
    assert needs_rehash(encoded)


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
    ],
)
def test_malformed_hash_raises(encoded: str) -> None:
    with pytest.raises(PinHashError):
        verify_pin("1234", encoded)
