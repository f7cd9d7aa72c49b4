"""Firebase Cloud Messaging, HTTP v1 API.

Auth: the service account's key signs a JWT assertion (RS256, kid = private_key_id),
traded at its token_uri for an OAuth2 access token (scope firebase.messaging),
cached until shortly before it expires. Send: POST
{base}/v1/projects/{project}/messages:send with a data-only message (the app decides
how to ring), android.priority HIGH (Doze defers NORMAL) and android.ttl the time
left in the ring window.

Answers: 200 {"name": ...} delivered; 404 / errorCode UNREGISTERED and 403
SENDER_ID_MISMATCH mean the token is dead; a 400 whose field violation names
message.token too; 401 drops the cached access token and tries again; 429
(QUOTA_EXCEEDED) and 5xx (UNAVAILABLE, INTERNAL) are retried, honouring Retry-After."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt

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

log = logging.getLogger(__name__)

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFETIME = 3600  # Google accepts at most one hour
RETRYABLE = {429, 500, 502, 503, 504}


@dataclass(frozen=True)
class ServiceAccount:
    project_id: str
    client_email: str
    private_key: str  # PEM
    private_key_id: str
    token_uri: str

    @classmethod
    def from_file(cls, path: Path) -> ServiceAccount:
        try:
            raw = json.loads(path.read_text())
            return cls(
                project_id=str(raw["project_id"]),
                client_email=str(raw["client_email"]),
                private_key=str(raw["private_key"]),
                private_key_id=str(raw.get("private_key_id", "")),
                token_uri=str(raw.get("token_uri", "https://oauth2.googleapis.com/token")),
            )
        except (OSError, ValueError, KeyError) as exc:
            raise PushConfigError(f"FCM service account {path}: {exc!r}") from exc

    def assertion(self, now: float, token_url: str) -> str:
        iat = int(now)
        claims = {"iss": self.client_email, "scope": SCOPE, "aud": token_url, "iat": iat,
                  "exp": iat + ASSERTION_LIFETIME}
        headers = {"kid": self.private_key_id} if self.private_key_id else None
        return jwt.encode(claims, self.private_key, algorithm="RS256", headers=headers)


class FcmProvider(HttpPushProvider):
    NAME = "FCM"
    PLATFORM = "fcm"

    def __init__(
        self,
        account: ServiceAccount,
        *,
        base_url: str = "https://fcm.googleapis.com",
        token_url: str = "",
        client: httpx.AsyncClient | None = None,
        clock: Clock = time.time,
        backoff: Backoff | None = None,
    ) -> None:
        super().__init__(client or httpx.AsyncClient(timeout=10.0), clock, backoff)
        self._account = account
        self._send_url = f"{base_url.rstrip('/')}/v1/projects/{account.project_id}/messages:send"
        self._token_url = token_url or account.token_uri
        self._token = CachedToken("FCM", self._fetch_token, clock=clock)

    def message(self, device: Device, wake: Wake) -> dict[str, Any]:
        return {"message": {
            "token": device.token,
            "data": wake.data(),
            "android": {"priority": "HIGH", "ttl": f"{wake.ttl_seconds(self._clock())}s"},
        }}

    async def _fetch_token(self, call_id: str) -> tuple[str, float]:
        assertion = self._account.assertion(self._clock(), self._token_url)
        return await oauth_token(self._client, self._token_url,
                                 {"grant_type": JWT_BEARER, "assertion": assertion}, "FCM")

    async def _attempt(self, device: Device, wake: Wake, timeout: float) -> Answer:
        access = await self._token.get(wake.call_id)
        response = await self._client.post(
            self._send_url, json=self.message(device, wake), timeout=timeout,
            headers={"authorization": f"Bearer {access}"},
        )
        if response.status_code == 200:
            return Delivered(str(_json(response).get("name", "")))
        status, code, token_field = _error(response)
        reason = f"{response.status_code} {code or status}".strip()
        if response.status_code == 404 or code in ("UNREGISTERED", "SENDER_ID_MISMATCH"):
            return InvalidToken(reason)
        if response.status_code == 400 and token_field:
            return InvalidToken(f"{reason}: invalid registration token")
        if response.status_code == 401 and code != "THIRD_PARTY_AUTH_ERROR":
            self._token.invalidate(access)
            return Retry(f"{reason}: access token refused")
        if response.status_code in RETRYABLE:
            return Retry(reason, retry_after_seconds(response.headers.get("retry-after")))
        return Fail(reason)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error(response: httpx.Response) -> tuple[str, str, bool]:
    """(google.rpc status, FcmError errorCode, whether a field violation names the token)."""
    error = _json(response).get("error")
    if not isinstance(error, dict):
        return "", "", False
    code, token_field = "", False
    for detail in error.get("details") or []:
        if not isinstance(detail, dict):
            continue
        if detail.get("@type", "").endswith("FcmError"):
            code = str(detail.get("errorCode", ""))
        for violation in detail.get("fieldViolations") or []:
            if isinstance(violation, dict) and violation.get("field") == "message.token":
                token_field = True
    return str(error.get("status", "")), code, token_field
