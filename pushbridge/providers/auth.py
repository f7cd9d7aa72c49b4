"""Access tokens fetched once and shared by every push until shortly before they expire.

One lock per cache: when a relative's five devices are pushed at once, one OAuth
request goes out and the other four wait for its answer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import httpx

from pushbridge.providers.base import Clock
from pushbridge.providers.errors import AuthError
from pushbridge.providers.retry import retry_after_seconds

log = logging.getLogger(__name__)

Fetch = Callable[[str], Awaitable[tuple[str, float]]]
"""call_id -> (token, lifetime in seconds)."""


class CachedToken:
    def __init__(self, name: str, fetch: Fetch, *, clock: Clock, margin: float = 60.0) -> None:
        self._name = name
        self._fetch = fetch
        self._clock = clock
        self._margin = margin
        self._lock = asyncio.Lock()
        self._token = ""
        self._expires_at = 0.0

    async def get(self, call_id: str) -> str:
        async with self._lock:
            if self._token and self._clock() < self._expires_at - self._margin:
                return self._token
            token, lifetime = await self._fetch(call_id)
            self._token, self._expires_at = token, self._clock() + lifetime
            log.info("call %s: new %s access token, valid %.0f s", call_id, self._name, lifetime)
            return token

    def invalidate(self, token: str) -> None:
        """Drop `token` if it is still the cached one (the provider said it expired)."""
        if token == self._token:
            self._token, self._expires_at = "", 0.0


async def oauth_token(client: httpx.AsyncClient, url: str, form: dict[str, str], what: str) -> tuple[str, float]:
    """POST an OAuth2 token request (form-encoded) and read access_token/expires_in."""
    response = await client.post(url, data=form, headers={"accept": "application/json"})
    if response.status_code == 429 or response.status_code >= 500:
        raise AuthError(f"{what} token endpoint answered {response.status_code}", retryable=True,
                        retry_after=retry_after_seconds(response.headers.get("retry-after")))
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code != 200 or not isinstance(body, dict) or not body.get("access_token"):
        detail = body.get("error_description") or body.get("error") if isinstance(body, dict) else None
        raise AuthError(f"{what} token endpoint refused us: {response.status_code} {detail or response.text[:200]}",
                        retryable=False)
    try:
        lifetime = float(body.get("expires_in", 3600))
    except (TypeError, ValueError):
        lifetime = 3600.0
    return str(body["access_token"]), lifetime
