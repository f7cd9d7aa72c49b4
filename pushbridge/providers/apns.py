"""Apple Push Notification service, VoIP pushes (PushKit) over HTTP/2.

Auth: a provider token, an ES256 JWT {iss: team id, iat} with kid = the key id,
signed with the .p8 key. Apple refuses a token older than an hour
(ExpiredProviderToken) and one renewed more often than every 20 minutes
(TooManyProviderTokenUpdates), so one token is reused and renewed once it is
`refresh_after` old (20-60 min, default 50).

Send: POST {base}/3/device/{token} with apns-topic <bundle>.voip, apns-push-type
voip, apns-priority 10, apns-expiration = the wake's deadline, apns-collapse-id the
call id (a cancel replaces a wake still queued), apns-id a UUID derived from the
call, kind and token; the JSON payload carries the call id so the app can match the
INVITE and report the CallKit call (iOS kills an app that does not).

Answers: 200 delivered (apns-id); 410 Unregistered, 400 BadDeviceToken and
DeviceTokenNotForTopic mean the token is dead; 403 ExpiredProviderToken renews the
token and tries again; 429 and 5xx are retried; anything else fails."""

from __future__ import annotations

import hashlib
import json
import math
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt

from pushbridge.providers.base import Clock, Device, Wake
from pushbridge.providers.errors import PushConfigError
from pushbridge.providers.retry import (
    Answer,
    Backoff,
    Delivered,
    Fail,
    HttpPushProvider,
    InvalidToken,
    Retry,
    retry_after_seconds,
)

MIN_REFRESH = 20 * 60
MAX_REFRESH = 60 * 60
DEAD_TOKEN = {"BadDeviceToken", "DeviceTokenNotForTopic", "Unregistered"}
RETRYABLE = {429, 500, 502, 503, 504}
APNS_ID_NAMESPACE = uuid.UUID("6f1c1c0e-3a51-4d2e-9a43-6b0e2c1d7a55")


@dataclass(frozen=True)
class SigningKey:
    key_id: str
    team_id: str
    private_key: str  # PEM of the .p8 file

    @classmethod
    def from_file(cls, path: Path, key_id: str, team_id: str) -> SigningKey:
        try:
            pem = path.read_text()
        except OSError as exc:
            raise PushConfigError(f"APNs key {path}: {exc!r}") from exc
        if not key_id or not team_id:
            raise PushConfigError("APNs needs key_id and team_id")
        return cls(key_id, team_id, pem)


class ProviderToken:
    """The JWT, renewed once it is `refresh_after` old."""

    def __init__(self, key: SigningKey, *, clock: Clock, refresh_after: float) -> None:
        if not MIN_REFRESH <= refresh_after < MAX_REFRESH:
            raise PushConfigError(f"APNs token refresh must be 20-60 min, got {refresh_after / 60:.1f} min")
        self._key = key
        self._clock = clock
        self._refresh_after = refresh_after
        self._token = ""
        self._issued_at = 0.0

    def get(self) -> str:
        now = self._clock()
        if not self._token or now - self._issued_at >= self._refresh_after:
            self._issued_at = now
            self._token = jwt.encode({"iss": self._key.team_id, "iat": int(now)}, self._key.private_key,
                                     algorithm="ES256", headers={"kid": self._key.key_id})
        return self._token

    def expired(self, token: str) -> bool:
        """Apple says `token` expired: renew unless it is younger than 20 min (Apple would
        refuse the renewal; then the clock is wrong and retrying does not help)."""
        if token != self._token or self._clock() - self._issued_at < MIN_REFRESH:
            return False
        self._token = ""
        return True


class ApnsProvider(HttpPushProvider):
    NAME = "APNs"
    PLATFORM = "apns-voip"

    def __init__(
        self,
        key: SigningKey,
        *,
        base_url: str = "https://api.push.apple.com",
        refresh_after: float = 50 * 60,
        client: httpx.AsyncClient | None = None,
        clock: Clock = time.time,
        backoff: Backoff | None = None,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._token = ProviderToken(key, clock=clock, refresh_after=refresh_after)
        # HTTP/2 only: ALPN h2 over TLS, prior knowledge over cleartext (the local fake).
        super().__init__(client or httpx.AsyncClient(http1=False, http2=True, timeout=10.0), clock, backoff)

    def request(self, device: Device, wake: Wake) -> tuple[str, dict[str, str], dict[str, Any]]:
        headers = {
            "apns-topic": f"{device.app_id}.voip",
            "apns-push-type": "voip",
            "apns-priority": "10",
            "apns-expiration": str(math.ceil(wake.deadline)),
            "apns-collapse-id": _collapse_id(wake.call_id),
            "apns-id": str(uuid.uuid5(APNS_ID_NAMESPACE, f"{wake.call_id}/{wake.kind}/{device.token}")),
        }
        payload: dict[str, Any] = {"aps": {}, **wake.data()}
        return f"{self._base}/3/device/{device.token}", headers, payload

    async def _attempt(self, device: Device, wake: Wake, timeout: float) -> Answer:
        url, headers, payload = self.request(device, wake)
        token = self._token.get()
        response = await self._client.post(
            url, content=json.dumps(payload, ensure_ascii=False).encode(), timeout=timeout,
            headers={**headers, "authorization": f"bearer {token}", "content-type": "application/json"},
        )
        if response.status_code == 200:
            return Delivered(response.headers.get("apns-id", headers["apns-id"]))
        reason_code = _reason(response)
        reason = f"{response.status_code} {reason_code}".strip()
        if response.status_code == 410 or reason_code in DEAD_TOKEN:
            return InvalidToken(reason)
        if response.status_code == 403 and reason_code == "ExpiredProviderToken" and self._token.expired(token):
            return Retry(f"{reason}: provider token renewed")
        if response.status_code in RETRYABLE:
            return Retry(reason, retry_after_seconds(response.headers.get("retry-after")))
        return Fail(reason)


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("reason", "")) if isinstance(body, dict) else ""


def _collapse_id(call_id: str) -> str:
    """apns-collapse-id may not exceed 64 bytes."""
    if len(call_id.encode()) <= 64:
        return call_id
    return hashlib.sha256(call_id.encode()).hexdigest()
