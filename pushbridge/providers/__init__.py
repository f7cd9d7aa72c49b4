"""Push providers for the app bridge: FCM HTTP v1, APNs VoIP (HTTP/2) and HMS Push Kit.

The bridge depends on `PushProvider` (base.py) and `push_all` (fanout.py); config.py
reads the [push] table and builds one provider per configured platform."""

from pushbridge.providers.base import (
    PLATFORMS,
    Device,
    Kind,
    Outcome,
    Platform,
    PushProvider,
    PushResult,
    Wake,
)
from pushbridge.providers.config import PushConfig, build_providers, load_push_config, parse_push_config
from pushbridge.providers.errors import AuthError, PushConfigError, PushError
from pushbridge.providers.fanout import push_all

__all__ = [
    "PLATFORMS",
    "AuthError",
    "Device",
    "Kind",
    "Outcome",
    "Platform",
    "PushConfig",
    "PushConfigError",
    "PushError",
    "PushProvider",
    "PushResult",
    "Wake",
    "build_providers",
    "load_push_config",
    "parse_push_config",
    "push_all",
]
