"""Start the relatives' HTTP API: the one place that wires its objects together.

Redis' URL (with its password) comes from $KINLINE_REDIS_URL and the webhook
secret from the stack's secrets file: neither is on a command line."""

from __future__ import annotations

import argparse
import logging
import os
import tomllib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from api.contacts import AmiReachability
from api.deps import ApiDeps, AppSip
from api.metrics import instrument
from api.originate import AmiDialer
from api.payments import FakeProvider
from api.routes import app_test, auth, devices, history, me, money, webhooks
from api.sms import FileSms
from history.queries import History, HistoryUnavailable
from ivr.app_test import Dialer, TestCalls
from ivr.relatives import CODES_PER_CLIENT_HOUR
from store.app_test import RedisTestCalls
from store.devices import DeviceStore, DevicesUnavailable
from store.redis_store import connect
from store.relatives import RelativeStore

log = logging.getLogger("api")


def build_app(deps: ApiDeps) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if deps.app_tests is not None:
            await deps.app_tests.aclose()  # stop waiting for test calls' ends

    app = FastAPI(title="Kinline relatives' API", version="1", openapi_url="/openapi.json",
                  docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.deps = deps
    instrument(app)  # every request counted; GET /metrics (not in the schema)
    for module in (auth, me, money, webhooks, history, devices):
        app.include_router(module.router())
    if deps.app_tests is not None:  # the free test call, only where the switch can be asked to call
        app.include_router(app_test.router())
    app.add_exception_handler(RedisError, _store_down)
    _document_refusals(app)
    app.add_exception_handler(HistoryUnavailable, _store_down)
    app.add_exception_handler(DevicesUnavailable, _store_down)
    return app


def _document_refusals(app: FastAPI) -> None:
    """Every 422 of this API is FastAPI's list of refused fields or, raised by a route,
    one reason (``{"detail": "from is after to"}``): the schema says both (schemathesis
    checks every answer against it)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            refused = schema.get("components", {}).get("schemas", {}).get("HTTPValidationError")
            if refused is not None:
                refused["properties"]["detail"] = {"title": "Detail", "anyOf": [
                    {"type": "string"}, {"type": "array", "items": {"$ref": "#/components/schemas/ValidationError"}}]}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


async def _store_down(request: Request, err: Exception) -> JSONResponse:
    """Fail closed: nothing is read or moved without the store; the client may retry
    (a money POST keeps its Idempotency-Key)."""
    log.error("%s %s refused: store unavailable (%s)", request.method, request.url.path, err)
    return JSONResponse({"detail": "service unavailable: try again later"}, status_code=503,
                        headers={"Retry-After": "5"})


def load_webhook_secret(secrets_file: Path) -> str:
    """``payment_webhook_secret`` from the stack's secrets file; missing: the API does not start."""
    with secrets_file.open("rb") as fh:
        secret = str(tomllib.load(fh)["payment_webhook_secret"])
    if len(secret) < 16:
        raise ValueError("payment_webhook_secret is too short")
    return secret


def build_from(redis_url: str, sms_log: Path, webhook_secret: str,
               codes_per_client_hour: int = CODES_PER_CLIENT_HOUR, postgres_url: str | None = None,
               app_sip: AppSip | None = None, contacts: AmiReachability | None = None,
               dialer: Dialer | None = None) -> FastAPI:
    """``postgres_url``: the history database (calls, the ledger beyond Redis' recent entries)
    and the app devices; without it the ledger is Redis' recent entries and /v1/calls and
    /v1/app/* answer 503. ``app_sip``: the apps' SIP door; ``contacts``: Asterisk's AMI
    for the status light (without it the light is never green); ``dialer``: Asterisk's AMI
    as the originate-only user, for the free test call (without it, or without the devices,
    POST /v1/app/test-call answers 503)."""
    redis = connect(redis_url)
    store = RelativeStore(redis)
    device_store = DeviceStore(postgres_url) if postgres_url else None
    test_records = RedisTestCalls(redis)
    app_tests = (TestCalls(app_test.ActiveDevices(device_store), test_records, dialer)
                 if device_store is not None and dialer is not None else None)
    return build_app(ApiDeps(accounts=store, codes=store, idempotency=store, sms=FileSms(sms_log),
                             provider=FakeProvider(), webhook_secret=webhook_secret,
                             codes_per_client_hour=codes_per_client_hour,
                             history=History(postgres_url) if postgres_url else None,
                             devices=device_store, app_sip=app_sip, contacts=contacts,
                             app_tests=app_tests, test_records=test_records))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Kinline relatives' HTTP API")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--redis-url", default=os.environ.get("KINLINE_REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="default $KINLINE_REDIS_URL: pass the URL (it holds the password) in the environment",
    )
    parser.add_argument("--secrets", type=Path, default=Path("var/secrets.toml"),
                        help="the stack's secrets file (payment_webhook_secret)")
    parser.add_argument("--sms-log", type=Path, default=Path("var/logs/sms.log"),
                        help="the dev SMS adapter appends 'phone code' lines here")
    parser.add_argument("--codes-per-client", type=int, default=CODES_PER_CLIENT_HOUR,
                        help="login codes one client address may ask for in an hour")
    parser.add_argument("--trusted-proxies", default="127.0.0.1",
                        help="addresses whose X-Forwarded-For names the client (the TLS proxy in front)")
    parser.add_argument("--app-sip", default=os.environ.get("KINLINE_APP_SIP"), metavar="HOST:PORT",
                        help="the apps' SIP door, given to each app with its credentials (default $KINLINE_APP_SIP)")
    parser.add_argument("--ami", default=None, metavar="HOST:PORT",
                        help="Asterisk's AMI, asked which devices are reachable ($KINLINE_AMI_STATUS_USER/_SECRET)"
                             " and to start test calls ($KINLINE_AMI_ORIGINATE_USER/_SECRET)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app_sip = contacts = None
    if args.app_sip:
        host, _, port = args.app_sip.rpartition(":")
        app_sip = AppSip(host, int(port))
    status_user = os.environ.get("KINLINE_AMI_STATUS_USER")
    if args.ami and status_user:
        host, _, port = args.ami.rpartition(":")
        contacts = AmiReachability(host, int(port), status_user, os.environ.get("KINLINE_AMI_STATUS_SECRET", ""))
    dialer = None
    originate_user = os.environ.get("KINLINE_AMI_ORIGINATE_USER")
    if args.ami and originate_user:
        host, _, port = args.ami.rpartition(":")
        dialer = AmiDialer(host, int(port), originate_user, os.environ.get("KINLINE_AMI_ORIGINATE_SECRET", ""))
    app = build_from(args.redis_url, args.sms_log, load_webhook_secret(args.secrets), args.codes_per_client,
                     os.environ.get("KINLINE_POSTGRES_URL") or None, app_sip, contacts, dialer)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level.lower(), access_log=False,
                proxy_headers=True, forwarded_allow_ips=args.trusted_proxies)


if __name__ == "__main__":
    main()
