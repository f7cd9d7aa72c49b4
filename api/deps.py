"""What the routes need, built once by api/main.py and kept on the app's state."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.contacts import Reachability
from api.payments import PaymentProvider
from history.queries import History
from ivr.app_test import TestCalls
from ivr.ports import Idempotency, LoginCodes, RelativeAccounts, SmsSender
from ivr.relatives import CODES_PER_CLIENT_HOUR, token_hash
from store.app_test import RedisTestCalls
from store.devices import DeviceStore

log = logging.getLogger(__name__)

_bearer = HTTPBearer(auto_error=False)


@dataclass(frozen=True)
class AppSip:
    """The apps' SIP door, as the app must reach it (the API tells it with its credentials)."""

    host: str
    port: int
    transport: str = "udp"


@dataclass(frozen=True)
class ApiDeps:
    accounts: RelativeAccounts
    codes: LoginCodes
    idempotency: Idempotency
    sms: SmsSender
    provider: PaymentProvider
    webhook_secret: str
    codes_per_client_hour: int = CODES_PER_CLIENT_HOUR  # POST /v1/auth/code from one address
    history: History | None = None  # PostgreSQL: calls and the ledger beyond Redis' recent entries
    devices: DeviceStore | None = None  # PostgreSQL: app devices and their SIP accounts (PJSIP realtime)
    app_sip: AppSip | None = None  # where apps register
    contacts: Reachability | None = None  # Asterisk: which devices are reachable now
    app_tests: TestCalls | None = None  # the free audio test call (needs the devices and AMI Originate)
    test_records: RedisTestCalls | None = None  # the test calls' records and wake steps


def get_deps(request: Request) -> ApiDeps:
    deps = request.app.state.deps
    assert isinstance(deps, ApiDeps)
    return deps


async def current_phone(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
) -> str:
    """The relative's phone number from the session token (Authorization: Bearer)."""
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise HTTPException(401, "log in first", headers={"WWW-Authenticate": "Bearer"})
    phone = await get_deps(request).codes.session_phone(token_hash(credentials.credentials))
    if phone is None:
        raise HTTPException(401, "session expired or unknown", headers={"WWW-Authenticate": "Bearer"})
    return phone
