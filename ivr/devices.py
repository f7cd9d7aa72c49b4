"""The relatives' app devices: what a device is, what its SIP account is called,
and the status light. No I/O: the API (api/routes/devices.py) and the store
(store/devices.py) call these.

A device is one install of the app, logged in as a relative. It has a push
token (to wake it) and a SIP account that Asterisk reads from PostgreSQL
(PJSIP realtime) on every REGISTER and INVITE, so a new, rotated or deleted
account counts at once, without a reload.
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Platform = Literal["fcm", "apns-voip", "hms"]
PLATFORMS: tuple[Platform, ...] = ("fcm", "apns-voip", "hms")

SIP_REALM = "kinline"  # pjsip.conf default_realm; the digest's realm (md5_cred)
ENDPOINT_PREFIX = "app-"  # PJSIP endpoint, auth and aor ids: app-<device id>
MAX_DEVICES = 10  # per relative: a phone, a tablet, ... not a farm of accounts

# A push token: FCM ~160 chars of [A-Za-z0-9_:-], APNs 64 hex, HMS ~130 [A-Za-z0-9_.-].
_TOKEN = re.compile(r"^[A-Za-z0-9_:.\-]{16,512}$")
# Android package / iOS bundle id (reverse DNS), or an AppGallery app id (digits).
_APP_ID = re.compile(r"^(?:[A-Za-z][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)+|[0-9]{4,20})$")
_DEVICE_ID = re.compile(r"^[0-9a-f]{16}$")


class DeviceError(ValueError):
    """A device registration that cannot be accepted (the API answers 422)."""


def check_registration(platform: str, token: str, app_id: str) -> Platform:
    """The platform, if the three fields make a device; DeviceError says which one does not."""
    if platform not in PLATFORMS:
        raise DeviceError(f"platform must be one of {', '.join(PLATFORMS)}")
    if not _TOKEN.fullmatch(token):
        raise DeviceError("push token must be 16-512 letters, digits or _:.-")
    if platform == "apns-voip" and not re.fullmatch(r"[0-9a-fA-F]{64}", token):
        raise DeviceError("an APNs VoIP token is 64 hex digits")
    if len(app_id) > 200 or not _APP_ID.fullmatch(app_id):
        raise DeviceError("app_id must be a package or bundle id (org.example.app) or a numeric app id")
    return next(p for p in PLATFORMS if p == platform)


def new_device_id() -> str:
    return secrets.token_hex(8)


def is_device_id(value: str) -> bool:
    return bool(_DEVICE_ID.fullmatch(value))


def endpoint_id(device_id: str) -> str:
    """The device's PJSIP endpoint (and auth, and aor): its SIP user name."""
    if not is_device_id(device_id):
        raise DeviceError(f"not a device id: {device_id!r}")
    return ENDPOINT_PREFIX + device_id


def device_of_endpoint(endpoint: str) -> str | None:
    """The device id of an ``app-<id>`` endpoint, None for any other endpoint (a terminal)."""
    if not endpoint.startswith(ENDPOINT_PREFIX):
        return None
    rest = endpoint[len(ENDPOINT_PREFIX):]
    return rest if is_device_id(rest) else None


def new_sip_password() -> str:
    """Shown once to the app; only its digest is stored."""
    return secrets.token_urlsafe(24)


def md5_cred(username: str, password: str, realm: str = SIP_REALM) -> str:
    """RFC 2617 HA1 (MD5 of user:realm:password): what Asterisk checks a digest with."""
    return hashlib.md5(f"{username}:{realm}:{password}".encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class Device:
    device_id: str
    phone: str
    platform: Platform
    token: str
    app_id: str
    created_ms: int
    active: bool  # the push token is usable (a provider's "unregistered" turns it off)
    deactivated_reason: str = ""

    @property
    def endpoint(self) -> str:
        return endpoint_id(self.device_id)


class Light(enum.StrEnum):
    GREEN = "green"  # a device has a reachable SIP contact now: a call rings at once
    YELLOW = "yellow"  # none reachable, but a device has a valid push token: it will be woken
    RED = "red"  # nothing usable: the app cannot be called


def status_light(devices: Iterable[Device], reachable: Iterable[str]) -> Light:
    """The app's light for a relative: ``reachable`` holds the ids of the devices with a
    reachable contact now (Asterisk's qualify)."""
    devices = list(devices)
    ids = {d.device_id for d in devices}
    if any(r in ids for r in reachable):
        return Light.GREEN
    if any(d.active and d.token for d in devices):
        return Light.YELLOW
    return Light.RED
