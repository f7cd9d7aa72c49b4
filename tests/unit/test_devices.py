"""App devices without I/O: registration checks, SIP account names and the status light."""

from __future__ import annotations

import hashlib

import pytest

from ivr.devices import (
    Device,
    DeviceError,
    Light,
    check_registration,
    device_of_endpoint,
    endpoint_id,
    md5_cred,
    new_device_id,
    new_sip_password,
    status_light,
)

FCM = "fGcmTokEn_0123456789:APA91b" + "x" * 100


def device(device_id: str, active: bool = True, token: str = FCM) -> Device:
    return Device(device_id=device_id, phone="+79161234567", platform="fcm", token=token,
                  app_id="ru.kinline.app", created_ms=0, active=active)


@pytest.mark.parametrize(("platform", "token", "app_id"), [
    ("fcm", FCM, "ru.kinline.app"),
    ("apns-voip", "0123456789abcdef" * 4, "ru.kinline.ios"),
    ("hms", "IQAAAACy0kYJAAB" + "x" * 100, "104567891"),
])
def test_good_registrations(platform: str, token: str, app_id: str) -> None:
    assert check_registration(platform, token, app_id) == platform


@pytest.mark.parametrize(("platform", "token", "app_id", "why"), [
    ("gcm", FCM, "ru.kinline.app", "platform"),
    ("fcm", "x" * 15, "ru.kinline.app", "token"),
    ("fcm", "x" * 513, "ru.kinline.app", "token"),
    ("fcm", FCM + " ", "ru.kinline.app", "token"),
    ("fcm", FCM + "\n", "ru.kinline.app", "token"),
    ("apns-voip", "g" * 64, "ru.kinline.ios", "APNs"),
    ("apns-voip", "ab" * 31, "ru.kinline.ios", "APNs"),
    ("fcm", FCM, "kinline", "app_id"),
    ("fcm", FCM, "ru.kinline.app;drop", "app_id"),
    ("fcm", FCM, "", "app_id"),
    ("hms", FCM, "123", "app_id"),
])
def test_bad_registrations(platform: str, token: str, app_id: str, why: str) -> None:
    with pytest.raises(DeviceError, match=why):
        check_registration(platform, token, app_id)


def test_endpoint_names_round_trip_and_refuse_anything_else() -> None:
    device_id = new_device_id()
    assert endpoint_id(device_id) == f"app-{device_id}"
    assert device_of_endpoint(endpoint_id(device_id)) == device_id
    assert device_of_endpoint("demo-term") is None
    assert device_of_endpoint("app-../../x") is None
    with pytest.raises(DeviceError):
        endpoint_id("0123;inject")
    assert new_device_id() != device_id


def test_md5_cred_is_rfc2617_ha1_in_the_kinline_realm() -> None:
    password = new_sip_password()
    assert len(password) >= 32 and password != new_sip_password()
    expected = hashlib.md5(f"app-0123456789abcdef:kinline:{password}".encode()).hexdigest()
    assert md5_cred("app-0123456789abcdef", password) == expected


def test_status_light() -> None:
    a, b = device("0" * 16), device("1" * 16, active=False)
    assert status_light([], []) is Light.RED
    assert status_light([b], []) is Light.RED  # token deactivated, nothing registered
    assert status_light([a], []) is Light.YELLOW
    assert status_light([a, b], ["1" * 16]) is Light.GREEN  # reachable beats a dead token
    assert status_light([b], ["1" * 16]) is Light.GREEN
    assert status_light([a], ["f" * 16]) is Light.YELLOW  # someone else's device reachable: not mine
    assert status_light([device("2" * 16, token="")], []) is Light.RED
