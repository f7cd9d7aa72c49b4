"""Huawei Push Kit (HMS Core), server API v1, for phones without Google services.

Auth: OAuth2 client credentials (app id + app secret) at the token endpoint, the
access token cached until shortly before it expires. Send: POST
{base}/v1/{app_id}/messages:send with a data message (the payload as a JSON string),
android.urgency HIGH, android.category VOIP (high-priority data messages need that
category approved for the app) and android.ttl the time left in the window.

Answers carry a result code in the body: 80000000 success; 80300007 (all tokens
invalid) and 80100000 naming our token as illegal mean the token is dead;
80200001/80200003 (OAuth error / token expired, HTTP 401) drop the cached token and
try again; HTTP 429, 5xx (503 is Huawei's flow control) and 81000001 (internal
error) are retried."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from pushbridge.providers.auth import CachedToken, oauth_token
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

SUCCESS = "80000000"
PARTIAL = "80100000"
ALL_TOKENS_INVALID = "80300007"
AUTH_CODES = {"80200001", "80200003"}
INTERNAL_ERROR = "81000001"
RETRYABLE = {429, 500, 502, 503, 504}


@dataclass(frozen=True)
class HmsApp:
    app_id: str
    client_secret: str

    @classmethod
    def from_file(cls, app_id: str, secret_file: Path) -> HmsApp:
        try:
            secret = secret_file.read_text().strip()
        except OSError as exc:
            raise PushConfigError(f"HMS client secret {secret_file}: {exc!r}") from exc
        if not app_id or not secret:
            raise PushConfigError("HMS needs app_id and a non-empty client secret")
        return cls(app_id, secret)


class HmsProvider(HttpPushProvider):
    NAME = "HMS"
    PLATFORM = "hms"

    def __init__(
        self,
        app: HmsApp,
        *,
        base_url: str = "https://push-api.cloud.huawei.com",
        token_url: str = "https://oauth-login.cloud.huawei.com/oauth2/v3/token",
        client: httpx.AsyncClient | None = None,
        clock: Clock = time.time,
        backoff: Backoff | None = None,
    ) -> None:
        super().__init__(client or httpx.AsyncClient(timeout=10.0), clock, backoff)
        self._app = app
        self._send_url = f"{base_url.rstrip('/')}/v1/{app.app_id}/messages:send"
        self._token_url = token_url
        self._token = CachedToken("HMS", self._fetch_token, clock=clock)

    def message(self, device: Device, wake: Wake) -> dict[str, Any]:
        return {"validate_only": False, "message": {
            "data": json.dumps(wake.data(), ensure_ascii=False),
            "android": {"urgency": "HIGH", "category": "VOIP", "ttl": f"{wake.ttl_seconds(self._clock())}s"},
            "token": [device.token],
        }}

    async def _fetch_token(self, call_id: str) -> tuple[str, float]:
        form = {"grant_type": "client_credentials", "client_id": self._app.app_id,
                "client_secret": self._app.client_secret}
        return await oauth_token(self._client, self._token_url, form, "HMS")

    async def _attempt(self, device: Device, wake: Wake, timeout: float) -> Answer:
        if device.app_id and device.app_id != self._app.app_id:
            return Fail(f"device belongs to HMS app {device.app_id}, configured is {self._app.app_id}")
        access = await self._token.get(wake.call_id)
        response = await self._client.post(
            self._send_url, json=self.message(device, wake), timeout=timeout,
            headers={"authorization": f"Bearer {access}"},
        )
        body = _json(response)
        code, msg = str(body.get("code", "")), str(body.get("msg", ""))
        reason = f"{response.status_code} {code} {msg}".strip()
        if code == SUCCESS:
            return Delivered(str(body.get("requestId", "")))
        if code == ALL_TOKENS_INVALID or (code == PARTIAL and device.token in msg):
            return InvalidToken(reason)
        if code in AUTH_CODES or response.status_code == 401:
            self._token.invalidate(access)
            return Retry(f"{reason}: access token refused")
        if response.status_code in RETRYABLE or code == INTERNAL_ERROR:
            return Retry(reason, retry_after_seconds(response.headers.get("retry-after")))
        return Fail(reason)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
