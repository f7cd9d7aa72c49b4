"""The [push] table of a Kinline TOML config: base URLs (real services by default,
the local fakes in dev and tests) and where the credentials are. Secrets stay in
their own files; relative paths are taken from the config file's folder.

    [push.fcm]
    service_account = "/etc/kinline/fcm-service-account.json"
    base_url = "https://fcm.googleapis.com"        # optional
    token_url = ""                                 # optional, default: the account's token_uri

    [push.apns]
    key_file = "/etc/kinline/apns-AuthKey.p8"
    key_id = "ABC123DEFG"
    team_id = "DEF123GHIJ"
    base_url = "https://api.push.apple.com"        # sandbox: https://api.sandbox.push.apple.com
    token_refresh_min = 50                         # 20 <= x < 60

    [push.hms]
    app_id = "123456789"
    client_secret_file = "/etc/kinline/hms-client-secret"
    base_url = "https://push-api.cloud.huawei.com"
    token_url = "https://oauth-login.cloud.huawei.com/oauth2/v3/token"

    [push.retry]
    base_s = 0.25                                  # first backoff; doubles per try
    cap_s = 4.0
"""

from __future__ import annotations

import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pushbridge.providers.apns import ApnsProvider, SigningKey
from pushbridge.providers.base import Clock, Platform, PushProvider
from pushbridge.providers.errors import PushConfigError
from pushbridge.providers.fcm import FcmProvider, ServiceAccount
from pushbridge.providers.hms import HmsApp, HmsProvider
from pushbridge.providers.retry import Backoff


@dataclass(frozen=True)
class FcmConfig:
    service_account: Path
    base_url: str = "https://fcm.googleapis.com"
    token_url: str = ""


@dataclass(frozen=True)
class ApnsConfig:
    key_file: Path
    key_id: str
    team_id: str
    base_url: str = "https://api.push.apple.com"
    token_refresh_min: float = 50.0


@dataclass(frozen=True)
class HmsConfig:
    app_id: str
    client_secret_file: Path
    base_url: str = "https://push-api.cloud.huawei.com"
    token_url: str = "https://oauth-login.cloud.huawei.com/oauth2/v3/token"


@dataclass(frozen=True)
class PushConfig:
    fcm: FcmConfig | None = None
    apns: ApnsConfig | None = None
    hms: HmsConfig | None = None
    backoff: Backoff = field(default_factory=Backoff)


def load_push_config(path: Path) -> PushConfig:
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PushConfigError(f"{path}: {exc}") from exc
    return parse_push_config(raw.get("push", {}), path.parent)


def parse_push_config(table: Mapping[str, Any], base_dir: Path) -> PushConfig:
    _only(table, {"fcm", "apns", "hms", "retry"}, "push")
    fcm = apns = hms = None
    if (t := table.get("fcm")) is not None:
        _only(t, {"service_account", "base_url", "token_url"}, "push.fcm")
        fcm = FcmConfig(_path(t, "service_account", "push.fcm", base_dir),
                        _url(t, "base_url", FcmConfig.base_url), _url(t, "token_url", "", required=False))
    if (t := table.get("apns")) is not None:
        _only(t, {"key_file", "key_id", "team_id", "base_url", "token_refresh_min"}, "push.apns")
        apns = ApnsConfig(_path(t, "key_file", "push.apns", base_dir), _str(t, "key_id", "push.apns"),
                          _str(t, "team_id", "push.apns"), _url(t, "base_url", ApnsConfig.base_url),
                          float(t.get("token_refresh_min", ApnsConfig.token_refresh_min)))
    if (t := table.get("hms")) is not None:
        _only(t, {"app_id", "client_secret_file", "base_url", "token_url"}, "push.hms")
        hms = HmsConfig(_str(t, "app_id", "push.hms"), _path(t, "client_secret_file", "push.hms", base_dir),
                        _url(t, "base_url", HmsConfig.base_url), _url(t, "token_url", HmsConfig.token_url))
    r = table.get("retry", {})
    _only(r, {"base_s", "cap_s"}, "push.retry")
    backoff = Backoff(base=float(r.get("base_s", Backoff.base)), cap=float(r.get("cap_s", Backoff.cap)))
    return PushConfig(fcm, apns, hms, backoff)


def build_providers(config: PushConfig, *, clock: Clock = time.time) -> dict[Platform, PushProvider]:
    """One provider per configured platform; credentials are read here, so a bad file
    stops the bridge at start, not at the first call."""
    providers: dict[Platform, PushProvider] = {}
    if config.fcm:
        providers["fcm"] = FcmProvider(ServiceAccount.from_file(config.fcm.service_account),
                                       base_url=config.fcm.base_url, token_url=config.fcm.token_url,
                                       clock=clock, backoff=config.backoff)
    if config.apns:
        key = SigningKey.from_file(config.apns.key_file, config.apns.key_id, config.apns.team_id)
        providers["apns-voip"] = ApnsProvider(key, base_url=config.apns.base_url,
                                              refresh_after=config.apns.token_refresh_min * 60,
                                              clock=clock, backoff=config.backoff)
    if config.hms:
        providers["hms"] = HmsProvider(HmsApp.from_file(config.hms.app_id, config.hms.client_secret_file),
                                       base_url=config.hms.base_url, token_url=config.hms.token_url,
                                       clock=clock, backoff=config.backoff)
    return providers


def _only(table: Any, keys: set[str], where: str) -> None:
    if not isinstance(table, Mapping):
        raise PushConfigError(f"[{where}] must be a table")
    unknown = set(table) - keys
    if unknown:
        raise PushConfigError(f"[{where}] unknown keys: {', '.join(sorted(unknown))}")


def _str(table: Mapping[str, Any], key: str, where: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value:
        raise PushConfigError(f"[{where}] {key} must be a non-empty string")
    return value


def _path(table: Mapping[str, Any], key: str, where: str, base_dir: Path) -> Path:
    path = Path(_str(table, key, where))
    return path if path.is_absolute() else base_dir / path


def _url(table: Mapping[str, Any], key: str, default: str, *, required: bool = True) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or (value and not value.startswith(("http://", "https://"))):
        raise PushConfigError(f"{key} must be an http(s) URL, got {value!r}")
    if required and not value:
        raise PushConfigError(f"{key} must not be empty")
    return value
