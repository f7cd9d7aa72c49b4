"""Push providers without a network: the wake, the retry loop, the fan-out, the
request each provider builds, the APNs token age and the [push] config."""

from __future__ import annotations

import asyncio
import json
import math
import time
from pathlib import Path

import httpx
import pytest

from pushbridge.providers import (
    Device,
    Kind,
    Outcome,
    PushConfigError,
    PushResult,
    Wake,
    build_providers,
    parse_push_config,
    push_all,
)
from pushbridge.providers.apns import ApnsProvider, ProviderToken, SigningKey
from pushbridge.providers.base import Platform, PushProvider
from pushbridge.providers.fcm import FcmProvider, ServiceAccount
from pushbridge.providers.hms import HmsApp, HmsProvider
from pushbridge.providers.retry import (
    Answer,
    Attempt,
    Backoff,
    Delivered,
    Fail,
    InvalidToken,
    Retry,
    deliver,
    retry_after_seconds,
)
from tests.fakes.push_providers import ec_private_pem, rsa_private_pem

FAST = Backoff(base=0.02, cap=0.1, jitter=0.0)
PHONE = Device("fcm", "tok-1", "org.kinline.app", "dev-1")


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def scripted(*answers: Answer | BaseException) -> tuple[list[float], Attempt]:
    """An attempt function answering in order; records when each try came."""
    seen: list[float] = []
    queue = list(answers)

    async def attempt(device: Device, wake: Wake, timeout: float) -> Answer:
        seen.append(time.monotonic())
        answer = queue.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    return seen, attempt


# --- the wake ---------------------------------------------------------------------------

def test_wake_data_is_strings_with_the_call_id_and_deadline() -> None:
    wake = Wake("1700.5", "Колония №1", issued_at=1000.0, window=30)
    assert wake.data() == {"kind": "wake", "call_id": "1700.5", "caller": "Колония №1", "deadline": "1030"}
    assert wake.ttl_seconds(1000.0) == 30
    assert wake.ttl_seconds(1029.2) == 1  # ceil of what is left
    assert wake.ttl_seconds(1040.0) == 1  # never 0 ("now or never") nor negative


def test_cancel_keeps_the_call_id_with_a_fresh_window() -> None:
    cancel = Wake("c1", "F", issued_at=1000.0, window=30).cancel(now=1012.0, window=10)
    assert (cancel.kind, cancel.call_id, cancel.deadline) == (Kind.CANCEL, "c1", 1022.0)
    assert cancel.data()["kind"] == "cancel"


@pytest.mark.parametrize(("call_id", "window"), [("", 30), ("c", 0), ("c", -1)])
def test_wake_refuses_no_call_id_or_no_window(call_id: str, window: float) -> None:
    with pytest.raises(ValueError):
        Wake(call_id, "F", issued_at=0.0, window=window)


def test_backoff_doubles_up_to_the_cap() -> None:
    b = Backoff(base=0.25, cap=1.0, jitter=0.0)
    assert [b.delay(n) for n in (1, 2, 3, 4, 5)] == [0.25, 0.5, 1.0, 1.0, 1.0]
    jittered = Backoff(base=1.0, cap=1.0, jitter=0.2)
    assert all(1.0 <= jittered.delay(1) <= 1.2 for _ in range(50))


@pytest.mark.parametrize(("header", "seconds"), [("3", 3.0), (" 1 ", 1.0), ("0.5", 0.5), ("-2", 0.0),
                                                 ("Wed, 21 Oct 2015 07:28:00 GMT", None), (None, None)])
def test_retry_after(header: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(header) == seconds


# --- the retry loop ---------------------------------------------------------------------

async def test_retries_until_delivered_with_backoff() -> None:
    seen, attempt = scripted(Retry("503"), Retry("503"), Delivered("m-1"))
    wake = Wake("c1", "F", time.time(), 5)
    result = await deliver("T", attempt, PHONE, wake, clock=time.time, backoff=FAST)
    assert (result.outcome, result.attempts, result.message_id) == (Outcome.DELIVERED, 3, "m-1")
    assert seen[1] - seen[0] >= 0.02 and seen[2] - seen[1] >= 0.04  # 0.02 then 0.04


async def test_retry_after_is_honoured_over_backoff() -> None:
    seen, attempt = scripted(Retry("429", retry_after=0.3), Delivered("m"))
    result = await deliver("T", attempt, PHONE, Wake("c", "F", time.time(), 5),
                           clock=time.time, backoff=FAST)
    assert result.delivered and seen[1] - seen[0] >= 0.29


async def test_retry_after_past_the_deadline_gives_up_at_once() -> None:
    seen, attempt = scripted(Retry("429", retry_after=10))
    started = time.monotonic()
    result = await deliver("T", attempt, PHONE, Wake("c", "F", time.time(), 2),
                           clock=time.time, backoff=FAST)
    assert result.outcome is Outcome.FAILED and "would pass the deadline" in result.reason
    assert len(seen) == 1 and time.monotonic() - started < 0.5


async def test_an_attempt_that_hangs_is_cut_at_the_deadline() -> None:
    async def hang(device: Device, wake: Wake, timeout: float) -> Answer:
        await asyncio.sleep(60)
        raise AssertionError("not reached")

    started = time.monotonic()
    result = await deliver("T", hang, PHONE, Wake("c", "F", time.time(), 0.3), clock=time.time, backoff=FAST)
    assert result.outcome is Outcome.FAILED and "deadline" in result.reason
    assert 0.25 < time.monotonic() - started < 1.0


async def test_transport_errors_are_retried_and_auth_refusals_are_not() -> None:
    _, attempt = scripted(httpx.ConnectError("refused"), Delivered("m"))
    ok = await deliver("T", attempt, PHONE, Wake("c", "F", time.time(), 5),
                       clock=time.time, backoff=FAST)
    assert (ok.outcome, ok.attempts) == (Outcome.DELIVERED, 2)
    from pushbridge.providers.errors import AuthError
    _, attempt = scripted(AuthError("invalid client", retryable=False))
    refused = await deliver("T", attempt, PHONE, Wake("c", "F", time.time(), 5),
                            clock=time.time, backoff=FAST)
    assert (refused.outcome, refused.attempts, refused.reason) == (Outcome.FAILED, 1, "auth: invalid client")


async def test_invalid_token_and_fail_end_at_once() -> None:
    for answer, outcome in ((InvalidToken("410 Unregistered"), Outcome.INVALID_TOKEN), (Fail("400 x"), Outcome.FAILED)):
        seen, attempt = scripted(answer)
        result = await deliver("T", attempt, PHONE, Wake("c", "F", time.time(), 5),
                               clock=time.time, backoff=FAST)
        assert (result.outcome, len(seen)) == (outcome, 1)


async def test_an_expired_wake_is_not_sent() -> None:
    seen, attempt = scripted(Delivered("m"))
    result = await deliver("T", attempt, PHONE, Wake("c", "F", time.time() - 60, 30),
                           clock=time.time, backoff=FAST)
    assert result.outcome is Outcome.FAILED and seen == []


# --- fan-out ----------------------------------------------------------------------------

class Stub:
    def __init__(self, platform: Platform, error: Exception | None = None) -> None:
        self._platform = platform
        self.error = error

    @property
    def platform(self) -> Platform:
        return self._platform

    async def send(self, device: Device, wake: Wake) -> PushResult:
        if self.error:
            raise self.error
        return PushResult(device, Outcome.DELIVERED, 1)

    async def aclose(self) -> None:
        pass


async def test_push_all_keeps_device_order_and_isolates_failures() -> None:
    providers: dict[Platform, PushProvider] = {"fcm": Stub("fcm"), "apns-voip": Stub("apns-voip", RuntimeError("bug"))}
    devices = [Device("apns-voip", "a", "b"), Device("fcm", "f", "b"), Device("hms", "h", "b")]
    results = await push_all(providers, devices, Wake("c", "F", time.time(), 5))
    assert [r.device for r in results] == devices
    assert [r.outcome for r in results] == [Outcome.FAILED, Outcome.DELIVERED, Outcome.FAILED]
    assert "RuntimeError: bug" in results[0].reason and results[2].reason == "no hms provider configured"


# --- request shapes ---------------------------------------------------------------------

def test_fcm_message_is_data_only_high_priority_with_the_window_as_ttl() -> None:
    clock = Clock()
    account = ServiceAccount("proj", "a@proj.iam", rsa_private_pem(), "k1", "https://oauth2.example/token")
    fcm = FcmProvider(account, clock=clock)
    wake = Wake("c9", "F", clock.now - 4.5, 30)
    message = fcm.message(PHONE, wake)["message"]
    assert message == {"token": "tok-1", "data": wake.data(), "android": {"priority": "HIGH", "ttl": "26s"}}


def test_apns_request_has_the_voip_headers_and_the_call_id() -> None:
    clock = Clock()
    apns = ApnsProvider(SigningKey("KEY", "TEAM", ec_private_pem()), base_url="https://apns.example/", clock=clock)
    device = Device("apns-voip", "ab12", "org.kinline.app")
    url, headers, payload = apns.request(device, Wake("c9", "F", clock.now, 30))
    assert url == "https://apns.example/3/device/ab12"
    assert headers["apns-topic"] == "org.kinline.app.voip"
    assert (headers["apns-push-type"], headers["apns-priority"]) == ("voip", "10")
    assert headers["apns-expiration"] == str(math.ceil(clock.now + 30))
    assert headers["apns-collapse-id"] == "c9"
    assert payload["call_id"] == "c9" and payload["aps"] == {}
    # one id per call, kind and device: retries reuse it, the cancel gets its own
    _, again, _ = apns.request(device, Wake("c9", "F", clock.now + 1, 30))
    _, cancel, _ = apns.request(device, Wake("c9", "F", clock.now, 30).cancel(clock.now, 5))
    assert again["apns-id"] == headers["apns-id"] != cancel["apns-id"]
    _, long_id, _ = apns.request(device, Wake("x" * 100, "F", clock.now, 30))
    assert len(long_id["apns-collapse-id"]) == 64


def test_hms_message_is_a_high_urgency_voip_data_message() -> None:
    clock = Clock()
    hms = HmsProvider(HmsApp("1045", "s3cret"), clock=clock)
    wake = Wake("c9", "F", clock.now, 30)
    body = hms.message(Device("hms", "h1", "1045"), wake)
    assert body["validate_only"] is False
    message = body["message"]
    assert message["token"] == ["h1"] and json.loads(message["data"]) == wake.data()
    assert message["android"] == {"urgency": "HIGH", "category": "VOIP", "ttl": "30s"}


def test_apns_provider_token_lives_between_20_and_60_minutes() -> None:
    clock = Clock()
    token = ProviderToken(SigningKey("KEY", "TEAM", ec_private_pem()), clock=clock, refresh_after=50 * 60)
    first = token.get()
    clock.now += 49 * 60
    assert token.get() == first
    clock.now += 60
    second = token.get()
    assert second != first
    # Apple says expired: renewed only if the token is at least 20 min old
    clock.now += 5 * 60
    assert token.expired(second) is False and token.get() == second
    clock.now += 15 * 60
    assert token.expired(second) is True and token.get() != second


@pytest.mark.parametrize("minutes", [19, 60, 90])
def test_apns_refresh_outside_20_60_minutes_is_refused(minutes: int) -> None:
    with pytest.raises(PushConfigError, match="20-60 min"):
        ProviderToken(SigningKey("K", "T", ec_private_pem()), clock=time.time, refresh_after=minutes * 60)


# --- config -----------------------------------------------------------------------------

def test_config_reads_urls_and_paths_relative_to_the_file(tmp_path: Path) -> None:
    account = {"project_id": "p", "client_email": "e@p", "private_key": rsa_private_pem(),
               "private_key_id": "k", "token_uri": "https://oauth2.example/token"}
    (tmp_path / "sa.json").write_text(json.dumps(account))
    (tmp_path / "apns.p8").write_text(ec_private_pem())
    (tmp_path / "hms-secret").write_text("s3cret\n")
    config = parse_push_config({
        "fcm": {"service_account": "sa.json", "base_url": "http://127.0.0.1:9001"},
        "apns": {"key_file": "apns.p8", "key_id": "K", "team_id": "T", "token_refresh_min": 30},
        "hms": {"app_id": "1045", "client_secret_file": str(tmp_path / "hms-secret")},
        "retry": {"base_s": 0.1, "cap_s": 1},
    }, tmp_path)
    assert config.fcm is not None and config.fcm.service_account == tmp_path / "sa.json"
    assert config.fcm.base_url == "http://127.0.0.1:9001"
    assert config.apns is not None and config.apns.base_url == "https://api.push.apple.com"
    assert config.hms is not None and config.hms.token_url.startswith("https://oauth-login.cloud.huawei.com/")
    assert (config.backoff.base, config.backoff.cap) == (0.1, 1.0)
    providers = build_providers(config)
    assert {p: type(v).__name__ for p, v in providers.items()} == {
        "fcm": "FcmProvider", "apns-voip": "ApnsProvider", "hms": "HmsProvider"}


@pytest.mark.parametrize(("table", "message"), [
    ({"fcm": {"service_acount": "x"}}, "unknown keys: service_acount"),
    ({"apns": {"key_file": "k", "key_id": "", "team_id": "T"}}, "key_id must be a non-empty string"),
    ({"hms": {"app_id": "1", "client_secret_file": "s", "base_url": "ftp://x"}}, "http"),
    ({"webpush": {}}, "unknown keys: webpush"),
])
def test_config_mistakes_are_named(table: dict[str, object], message: str) -> None:
    with pytest.raises(PushConfigError, match=message):
        parse_push_config(table, Path("/"))


def test_missing_credentials_stop_the_bridge_at_start(tmp_path: Path) -> None:
    config = parse_push_config({"hms": {"app_id": "1", "client_secret_file": "absent"}}, tmp_path)
    with pytest.raises(PushConfigError, match="HMS client secret"):
        build_providers(config)
    assert build_providers(parse_push_config({}, tmp_path)) == {}
