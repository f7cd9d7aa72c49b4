"""Local fakes of the three push services, each one HTTP server on 127.0.0.1 (a free port).

They check what the real services check (the OAuth flow and the JWT signatures with the
test's public key, the headers, the payload shape) plus the payload our app expects, and
answer in each service's own format. Each can be scripted per device token: success,
invalid token, throttled (429 / HMS 503, with Retry-After), server error N times, a delay.
`on_push(callback)` is called for every push a fake accepts, so an end-to-end test can
tell an app simulator to register.

FakeApns speaks HTTP/2 only: cleartext with prior knowledge (h2c), which httpx uses for
an http:// URL when HTTP/1.1 is off, as ApnsProvider does. The servers are hypercorn
(HTTP/1.1 and h2c on one port) serving small Starlette apps.

They live under tests/, not in the package: production never runs them, and the keys
they trust are made by the tests at run time (`rsa_private_pem`, `ec_private_pem`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import re
import signal
import socket
import threading
import time
import urllib.parse
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Self

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypercorn.asyncio import serve
from hypercorn.config import Config
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

log = logging.getLogger(__name__)

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TTL = re.compile(r"^\d+(\.\d{1,9})?s$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)
APP_KEYS = {"kind", "call_id", "caller", "deadline"}


# --- keys, made at run time ---------------------------------------------------------------

def rsa_private_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def ec_private_pem() -> str:
    """A P-256 key in PKCS#8 PEM, the form of Apple's .p8 files."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def public_pem(private_pem: str) -> str:
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


# --- scripted answers -----------------------------------------------------------------------

@dataclass(frozen=True)
class Answer:
    kind: Literal["ok", "invalid", "throttle", "error"]
    status: int = 200
    retry_after: int | None = None
    delay: float = 0.0  # seconds the fake waits before answering


OK = Answer("ok")
INVALID = Answer("invalid")


def throttled(retry_after: int | None = None) -> Answer:
    return Answer("throttle", 429, retry_after)


def server_error(status: int = 503, retry_after: int | None = None) -> Answer:
    return Answer("error", status, retry_after)


def delayed(seconds: float, answer: Answer = OK) -> Answer:
    return replace(answer, delay=seconds)


@dataclass
class Push:
    """One send request that passed the fake's checks, and what it was answered."""

    provider: str
    token: str
    headers: dict[str, str]
    body: Any  # the JSON body
    data: dict[str, str]  # the app's payload, unpacked the provider's way
    received_at: float  # time.monotonic()
    answer: str = ""


class Rejected(Exception):
    """The request fails a check the real service makes: answered with `response`."""

    def __init__(self, why: str, response: Response) -> None:
        super().__init__(why)
        self.response = response


PushCallback = Callable[[Push], Awaitable[None] | None]


class FakeProvider:
    name = "fake"

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.pushes: list[Push] = []
        self.rejected: list[str] = []  # why each refused request was refused
        self.token_requests = 0
        self._scripts: dict[str, deque[Answer]] = {}
        self._then: dict[str, Answer] = {}
        self._callbacks: list[PushCallback] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(1)
        self._stop = asyncio.Event()
        self._server: asyncio.Task[None] | None = None
        self.port = 0

    # scripting and inspection
    def script(self, token: str, *answers: Answer, then: Answer = OK) -> None:
        """Answer `token`'s next pushes with `answers` in order, then `then` for ever."""
        self._scripts[token] = deque(answers)
        self._then[token] = then

    def on_push(self, callback: PushCallback) -> None:
        self._callbacks.append(callback)

    def pushes_to(self, token: str) -> list[Push]:
        return [p for p in self.pushes if p.token == token]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # lifecycle
    async def start(self) -> Self:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(100)  # connections wait in the backlog until hypercorn accepts
        self.port = sock.getsockname()[1]
        config = Config()
        config.bind = [f"fd://{sock.detach()}"]
        config.accesslog = None
        config.errorlog = log
        config.graceful_timeout = 1.0
        self._stop.clear()
        self._server = asyncio.create_task(serve(self.app(), config, shutdown_trigger=self._stop.wait))  # type: ignore[arg-type]
        return self

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self._stop.set()
        if self._server is not None:
            with contextlib.suppress(asyncio.CancelledError):
                try:
                    async with asyncio.timeout(5):
                        await self._server
                except TimeoutError:
                    self._server.cancel()
            self._server = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # what subclasses provide
    def app(self) -> Starlette:
        raise NotImplementedError

    def render(self, answer: Answer, push: Push) -> Response:
        raise NotImplementedError

    # shared machinery
    def next_id(self) -> int:
        return next(self._ids)

    def reject(self, why: str, response: Response) -> Response:
        log.info("%s fake refused a request: %s", self.name, why)
        self.rejected.append(why)
        return response

    async def answer(self, push: Push) -> Response:
        queue = self._scripts.get(push.token)
        answer = queue.popleft() if queue else self._then.get(push.token, OK)
        if answer.delay:
            await asyncio.sleep(answer.delay)
        push.answer = answer.kind
        self.pushes.append(push)
        if answer.kind == "ok":
            for callback in self._callbacks:
                result = callback(push)
                if asyncio.iscoroutine(result):
                    task = asyncio.create_task(result)
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
        response = self.render(answer, push)
        if answer.retry_after is not None:
            response.headers["retry-after"] = str(answer.retry_after)
        return response


def _bearer(request: Request, scheme: str = "bearer") -> str:
    value = request.headers.get("authorization", "")
    prefix = f"{scheme} "
    return value[len(prefix):] if value.lower().startswith(prefix) else ""


async def _form(request: Request) -> dict[str, str]:
    """An application/x-www-form-urlencoded body (no python-multipart needed)."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        return {}
    pairs = urllib.parse.parse_qsl((await request.body()).decode(), keep_blank_values=True)
    return dict(pairs)


async def _json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except ValueError:
        return None


# --- FCM HTTP v1 ------------------------------------------------------------------------------

def _fcm_error(status: int, rpc_status: str, message: str, code: str | None = None,
               field_name: str | None = None) -> JSONResponse:
    details: list[dict[str, Any]] = []
    if code:
        details.append({"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code})
    if field_name:
        details.append({"@type": "type.googleapis.com/google.rpc.BadRequest",
                        "fieldViolations": [{"field": field_name, "description": message}]})
    error: dict[str, Any] = {"code": status, "message": message, "status": rpc_status}
    if details:
        error["details"] = details
    return JSONResponse({"error": error}, status_code=status)


class FakeFcm(FakeProvider):
    """Google's token endpoint (POST /token, the service account's token_uri) and FCM's
    POST /v1/projects/{project}/messages:send."""

    name = "FCM"

    def __init__(self, *, public_key: str, project_id: str, client_email: str, key_id: str,
                 token_lifetime: int = 3599, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock=clock)
        self.public_key = public_key
        self.project_id = project_id
        self.client_email = client_email
        self.key_id = key_id
        self.token_lifetime = token_lifetime
        self.access_tokens: dict[str, float] = {}  # token -> expiry (clock)

    @property
    def token_url(self) -> str:
        return f"{self.url}/token"

    def service_account(self, private_key: str) -> dict[str, str]:
        """The JSON of a service account this fake trusts (given the matching key)."""
        return {"type": "service_account", "project_id": self.project_id, "private_key_id": self.key_id,
                "private_key": private_key, "client_email": self.client_email, "token_uri": self.token_url}

    def expire_access_tokens(self) -> None:
        self.access_tokens.clear()

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/token", self._token, methods=["POST"]),
            Route("/v1/projects/{project}/messages:send", self._send, methods=["POST"]),
        ])

    async def _token(self, request: Request) -> Response:
        self.token_requests += 1
        form = await _form(request)
        def refuse(why: str, description: str) -> Response:
            return self.reject(f"token: {why}", JSONResponse(
                {"error": "invalid_grant", "error_description": description}, status_code=400))
        if form.get("grant_type") != JWT_BEARER:
            return refuse("grant_type", "Invalid grant_type")
        assertion = str(form.get("assertion", ""))
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(assertion, self.public_key, algorithms=["RS256"], audience=self.token_url,
                                options={"require": ["iss", "aud", "iat", "exp"], "verify_exp": False,
                                         "verify_iat": False})  # checked below on the fake's clock
        except jwt.InvalidSignatureError:
            return refuse("bad signature", "Invalid JWT Signature.")
        except jwt.PyJWTError as exc:
            return refuse(f"bad assertion: {exc}", "Invalid JWT.")
        if header.get("kid") != self.key_id:
            return refuse("kid", "Invalid JWT Signature.")
        if claims["iss"] != self.client_email:
            return refuse("iss", "Invalid issuer")
        if FCM_SCOPE not in str(claims.get("scope", "")).split():
            return refuse("scope", "Invalid OAuth scope or ID token audience provided.")
        if not claims["iat"] - 60 <= self.clock() < claims["exp"]:
            return refuse("iat/exp", "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe")
        if claims["exp"] - claims["iat"] > 3600:
            return refuse("lifetime", "Invalid JWT: Token must be a short-lived token (60 minutes)")
        token = f"ya29.fake-{uuid.uuid4().hex}"
        self.access_tokens[token] = self.clock() + self.token_lifetime
        return JSONResponse({"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"})

    async def _send(self, request: Request) -> Response:
        token = _bearer(request)
        if self.access_tokens.get(token, 0.0) <= self.clock():
            return self.reject("send: access token unknown or expired", _fcm_error(
                401, "UNAUTHENTICATED", "Request had invalid authentication credentials."))
        if request.path_params["project"] != self.project_id:
            return self.reject("send: project", _fcm_error(403, "PERMISSION_DENIED", "Permission denied."))
        body = await _json_body(request)
        try:
            message, data = self._check(body)
        except Rejected as exc:
            return self.reject(f"send: {exc}", exc.response)
        push = Push("FCM", str(message["token"]), dict(request.headers), body, data, time.monotonic())
        return await self.answer(push)

    def _check(self, body: Any) -> tuple[dict[str, Any], dict[str, str]]:
        def bad(field_name: str, why: str) -> Rejected:
            return Rejected(f"{field_name}: {why}", _fcm_error(400, "INVALID_ARGUMENT", why, "INVALID_ARGUMENT",
                                                               field_name))
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(message, dict):
            raise bad("message", "Recipient of the message is not set.")
        if not isinstance(message.get("token"), str) or not message["token"]:
            raise bad("message.token", "Invalid registration token")
        if "notification" in message or "notification" in message.get("android", {}):
            raise bad("message.notification", "a wake must be a data-only message")
        data = message.get("data")
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise bad("message.data", "data values must be strings")
        if not set(data) >= APP_KEYS:
            raise bad("message.data", f"the app needs {sorted(APP_KEYS)}")
        android = message.get("android")
        if not isinstance(android, dict) or android.get("priority") != "HIGH":
            raise bad("message.android.priority", "a wake must be HIGH priority")
        if not TTL.match(str(android.get("ttl", ""))):
            raise bad("message.android.ttl", "ttl must be a duration like '30s'")
        return message, data

    def render(self, answer: Answer, push: Push) -> Response:
        if answer.kind == "ok":
            return JSONResponse({"name": f"projects/{self.project_id}/messages/0:{self.next_id()}"})
        if answer.kind == "invalid":
            return _fcm_error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED")
        if answer.kind == "throttle":
            return _fcm_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", "QUOTA_EXCEEDED")
        if answer.status == 500:
            return _fcm_error(500, "INTERNAL", "Internal error encountered.", "INTERNAL")
        return _fcm_error(answer.status, "UNAVAILABLE", "The service is currently unavailable.", "UNAVAILABLE")


# --- APNs (HTTP/2) ----------------------------------------------------------------------------

def _apns_error(status: int, reason: str) -> JSONResponse:
    body: dict[str, Any] = {"reason": reason}
    if status == 410:
        body["timestamp"] = int(time.time() * 1000)
    return JSONResponse(body, status_code=status)


class FakeApns(FakeProvider):
    """APNs' POST /3/device/{token}, HTTP/2 only, provider-token (JWT) auth."""

    name = "APNs"

    def __init__(self, *, public_key: str, key_id: str, team_id: str, bundle_id: str,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock=clock)
        self.public_key = public_key
        self.key_id = key_id
        self.team_id = team_id
        self.bundle_id = bundle_id
        self.provider_tokens: list[str] = []  # distinct JWTs seen, in order

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/3/device/{token}", self._send, methods=["POST"])])

    async def _send(self, request: Request) -> Response:
        if request.scope.get("http_version") != "2":
            return self.reject("HTTP/1.1 request (APNs speaks HTTP/2 only)", Response(status_code=505))
        try:
            self._check_token(_bearer(request))
            payload = self._check_request(request, await _json_body(request))
        except Rejected as exc:
            return self.reject(str(exc), exc.response)
        token = request.path_params["token"]
        data = {k: v for k, v in payload.items() if k != "aps"}
        push = Push("APNs", token, dict(request.headers), payload, data, time.monotonic())
        return await self.answer(push)

    def _check_token(self, token: str) -> None:
        if not token:
            raise Rejected("no provider token", _apns_error(403, "MissingProviderToken"))
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, self.public_key, algorithms=["ES256"],
                                options={"require": ["iss", "iat"], "verify_iat": False})
        except jwt.PyJWTError as exc:
            raise Rejected(f"provider token: {exc}", _apns_error(403, "InvalidProviderToken")) from exc
        if header.get("kid") != self.key_id or claims["iss"] != self.team_id:
            raise Rejected("provider token: kid or iss", _apns_error(403, "InvalidProviderToken"))
        if claims["iat"] > self.clock() + 60:
            raise Rejected("provider token issued in the future", _apns_error(403, "InvalidProviderToken"))
        if self.clock() - claims["iat"] > 3600:
            raise Rejected("provider token older than an hour", _apns_error(403, "ExpiredProviderToken"))
        if token not in self.provider_tokens:
            self.provider_tokens.append(token)

    def _check_request(self, request: Request, payload: Any) -> dict[str, Any]:
        h = request.headers
        if h.get("apns-topic") != f"{self.bundle_id}.voip":
            raise Rejected(f"topic {h.get('apns-topic')}", _apns_error(400, "TopicDisallowed"))
        if h.get("apns-push-type") != "voip":
            raise Rejected("push type", _apns_error(400, "InvalidPushType"))
        if h.get("apns-priority") != "10":
            raise Rejected("priority", _apns_error(400, "BadPriority"))
        expiration = h.get("apns-expiration", "")
        if not expiration.isdigit() or int(expiration) <= self.clock():
            raise Rejected(f"expiration {expiration!r}", _apns_error(400, "BadExpirationDate"))
        if not UUID.match(h.get("apns-id", "")):
            raise Rejected("apns-id", _apns_error(400, "BadMessageId"))
        if len(h.get("apns-collapse-id", "").encode()) > 64:
            raise Rejected("collapse id", _apns_error(400, "BadCollapseId"))
        if not isinstance(payload, dict) or not set(payload) >= APP_KEYS:
            raise Rejected(f"payload lacks {sorted(APP_KEYS)}", _apns_error(400, "PayloadEmpty"))
        return payload

    def render(self, answer: Answer, push: Push) -> Response:
        if answer.kind == "ok":
            return Response(status_code=200, headers={"apns-id": push.headers.get("apns-id", "")})
        if answer.kind == "invalid":
            return _apns_error(410, "Unregistered")
        if answer.kind == "throttle":
            return _apns_error(429, "TooManyRequests")
        if answer.status == 500:
            return _apns_error(500, "InternalServerError")
        return _apns_error(answer.status, "ServiceUnavailable")


# --- HMS Push Kit -----------------------------------------------------------------------------

class FakeHms(FakeProvider):
    """Huawei's OAuth endpoint (POST /oauth2/v3/token, client credentials) and Push Kit's
    POST /v1/{app_id}/messages:send."""

    name = "HMS"

    def __init__(self, *, app_id: str, client_secret: str, token_lifetime: int = 3600,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock=clock)
        self.app_id = app_id
        self.client_secret = client_secret
        self.token_lifetime = token_lifetime
        self.access_tokens: dict[str, float] = {}

    @property
    def token_url(self) -> str:
        return f"{self.url}/oauth2/v3/token"

    def expire_access_tokens(self) -> None:
        self.access_tokens.clear()

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/oauth2/v3/token", self._token, methods=["POST"]),
            Route("/v1/{app_id}/messages:send", self._send, methods=["POST"]),
        ])

    async def _token(self, request: Request) -> Response:
        self.token_requests += 1
        form = await _form(request)
        if form.get("grant_type") != "client_credentials":
            return self.reject("token: grant_type", JSONResponse(
                {"error": 1102, "sub_error": 20003, "error_description": "unsupported grant type"}, status_code=400))
        if form.get("client_id") != self.app_id or form.get("client_secret") != self.client_secret:
            return self.reject("token: client credentials", JSONResponse(
                {"error": 1101, "sub_error": 20001, "error_description": "invalid client"}, status_code=400))
        token = f"CgB6e3x9-fake-{uuid.uuid4().hex}"
        self.access_tokens[token] = self.clock() + self.token_lifetime
        return JSONResponse({"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"})

    async def _send(self, request: Request) -> Response:
        if self.access_tokens.get(_bearer(request), 0.0) <= self.clock():
            return self.reject("send: access token unknown or expired", JSONResponse(
                {"code": "80200003", "msg": "Request OAuth token expired"}, status_code=401))
        if request.path_params["app_id"] != self.app_id:
            return self.reject("send: app id", JSONResponse(
                {"code": "80300002", "msg": "The current app does not have the permission"}, status_code=400))
        body = await _json_body(request)
        try:
            token, data = self._check(body)
        except Rejected as exc:
            return self.reject(f"send: {exc}", exc.response)
        push = Push("HMS", token, dict(request.headers), body, data, time.monotonic())
        return await self.answer(push)

    def _check(self, body: Any) -> tuple[str, dict[str, str]]:
        def bad(why: str) -> Rejected:
            return Rejected(why, JSONResponse({"code": "80100003", "msg": f"Incorrect message structure: {why}"},
                                              status_code=400))
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(message, dict):
            raise bad("message")
        tokens = message.get("token")
        if not isinstance(tokens, list) or len(tokens) != 1 or not isinstance(tokens[0], str):
            raise bad("token must be a list (one token per wake)")
        if "notification" in message:
            raise bad("a wake must be a data message")
        android = message.get("android")
        if not isinstance(android, dict) or android.get("urgency") != "HIGH" or android.get("category") != "VOIP":
            raise bad("android.urgency HIGH and category VOIP")
        if not TTL.match(str(android.get("ttl", ""))):
            raise bad("android.ttl")
        try:
            data = json.loads(message.get("data", ""))
        except (TypeError, ValueError):
            raise bad("data must be a JSON string") from None
        if not isinstance(data, dict) or not set(data) >= APP_KEYS:
            raise bad(f"data lacks {sorted(APP_KEYS)}")
        return tokens[0], data

    def render(self, answer: Answer, push: Push) -> Response:
        request_id = f"{int(time.time() * 1000)}{self.next_id():06d}"
        if answer.kind == "ok":
            return JSONResponse({"code": "80000000", "msg": "Success", "requestId": request_id})
        if answer.kind == "invalid":
            return JSONResponse({"code": "80300007", "msg": "All the tokens are invalid", "requestId": request_id},
                                status_code=400)
        if answer.kind == "throttle":  # Push Kit's flow control answers 503
            return JSONResponse({"code": "80300010", "msg": "Flow control", "requestId": request_id},
                                status_code=503)
        return JSONResponse({"code": "81000001", "msg": "System inner error", "requestId": request_id},
                            status_code=answer.status)


@dataclass
class FakePushServices:
    """The three fakes with fresh keys, started and stopped together."""

    fcm_key: str = field(default_factory=rsa_private_pem)
    apns_key: str = field(default_factory=ec_private_pem)
    hms_secret: str = field(default_factory=lambda: uuid.uuid4().hex)
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self.fcm = FakeFcm(public_key=public_pem(self.fcm_key), project_id="kinline-test",
                           client_email="push@kinline-test.iam.gserviceaccount.com", key_id="fcm-key-1",
                           clock=self.clock)
        self.apns = FakeApns(public_key=public_pem(self.apns_key), key_id="ABC123DEFG", team_id="DEF123GHIJ",
                             bundle_id="org.kinline.app", clock=self.clock)
        self.hms = FakeHms(app_id="104567890", client_secret=self.hms_secret, clock=self.clock)

    @property
    def all(self) -> tuple[FakeFcm, FakeApns, FakeHms]:
        return self.fcm, self.apns, self.hms

    def on_push(self, callback: PushCallback) -> None:
        for fake in self.all:
            fake.on_push(callback)

    def write_config(self, folder: Path, *, fcm_key: str | None = None, apns_key: str | None = None,
                     hms_secret: str | None = None, retry_base_s: float = 0.05, retry_cap_s: float = 0.2) -> Path:
        """Credentials files and `push.toml`, a [push] table pointing the providers at these
        fakes (paths relative to the file). Other keys or secret: credentials they refuse."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "fcm-service-account.json").write_text(json.dumps(self.fcm.service_account(fcm_key or self.fcm_key)))
        (folder / "apns-key.p8").write_text(apns_key or self.apns_key)
        (folder / "hms-client-secret").write_text(hms_secret or self.hms_secret)
        path = folder / "push.toml"
        path.write_text(f"""[push.fcm]
service_account = "fcm-service-account.json"
base_url = "{self.fcm.url}"

[push.apns]
key_file = "apns-key.p8"
key_id = "{self.apns.key_id}"
team_id = "{self.apns.team_id}"
base_url = "{self.apns.url}"

[push.hms]
app_id = "{self.hms.app_id}"
client_secret_file = "hms-client-secret"
base_url = "{self.hms.url}"
token_url = "{self.hms.token_url}"

[push.retry]
base_s = {retry_base_s}
cap_s = {retry_cap_s}
""")
        return path

    async def __aenter__(self) -> Self:
        for fake in self.all:
            await fake.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for fake in self.all:
            await fake.stop()


@contextlib.contextmanager
def serve_in_thread(services: FakePushServices, timeout: float = 10.0) -> Iterator[FakePushServices]:
    """Run the fakes on an event loop of their own in a daemon thread, for sync fixtures
    (the e2e stack is session-scoped and needs the fakes' URLs before it starts).
    `on_push` callbacks then run in that thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="push-fakes", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(services.__aenter__(), loop).result(timeout)
        try:
            yield services
        finally:
            asyncio.run_coroutine_threadsafe(services.__aexit__(None, None, None), loop).result(timeout)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        loop.close()


async def _serve_until_stopped(folder: Path) -> None:
    async with FakePushServices() as services:
        config = services.write_config(folder)
        services.on_push(lambda push: log.info("%s push to %s: %s", push.provider, push.token, push.data))
        log.info("push fakes up: FCM %s, APNs %s (h2c), HMS %s; config %s",
                 services.fcm.url, services.apns.url, services.hms.url, config)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()


def main() -> None:
    """Run the three fakes by hand: `python -m tests.fakes.push_providers --folder DIR`
    writes fresh credentials and DIR/push.toml (a [push] table) and logs every push."""
    parser = argparse.ArgumentParser(description="Local fakes of FCM, APNs and HMS")
    parser.add_argument("--folder", type=Path, required=True, help="where the credentials and push.toml go")
    args = parser.parse_args()
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(_serve_until_stopped(args.folder))


if __name__ == "__main__":
    main()
