"""The three push providers against local fakes of FCM, APNs (HTTP/2) and HMS on
127.0.0.1: real HTTP, real JWT signatures, the providers built from a [push] config
as the bridge builds them. Every wait is bounded by the wake's window."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from pushbridge.providers import Device, Outcome, Platform, PushProvider, Wake, build_providers, load_push_config
from pushbridge.providers.base import Clock
from pushbridge.providers.fanout import push_all
from tests.fakes.push_providers import (
    INVALID,
    FakeProvider,
    FakePushServices,
    Push,
    delayed,
    ec_private_pem,
    rsa_private_pem,
    serve_in_thread,
    server_error,
    throttled,
)

BUNDLE = "org.kinline.app"
Providers = dict[Platform, PushProvider]


async def close(providers: Providers) -> None:
    for provider in providers.values():
        await provider.aclose()


@pytest.fixture(scope="module")
def keys() -> tuple[str, str]:
    """The tests' FCM (RSA) and APNs (P-256) keys, made once: key generation is the slow part."""
    return rsa_private_pem(), ec_private_pem()


def fakes(keys: tuple[str, str], clock: Clock = time.time) -> FakePushServices:
    return FakePushServices(fcm_key=keys[0], apns_key=keys[1], clock=clock)


@pytest.fixture
async def services(keys: tuple[str, str]) -> AsyncIterator[FakePushServices]:
    async with fakes(keys) as running:
        yield running


@pytest.fixture
async def providers(services: FakePushServices, tmp_path: Path) -> AsyncIterator[Providers]:
    built = build_providers(load_push_config(services.write_config(tmp_path)))
    yield built
    await close(built)


def device(services: FakePushServices, platform: Platform, token: str) -> Device:
    app_id = services.hms.app_id if platform == "hms" else BUNDLE
    return Device(platform, token, app_id, f"dev-{token}")


def fake_of(services: FakePushServices, platform: Platform) -> FakeProvider:
    return {"fcm": services.fcm, "apns-voip": services.apns, "hms": services.hms}[platform]


def wake(window: float = 10.0, call_id: str = "1763870000.17", clock: Clock = time.time) -> Wake:
    return Wake(call_id, "Колония №1", clock(), window)


ALL: list[Platform] = ["fcm", "apns-voip", "hms"]


@pytest.mark.parametrize("platform", ALL)
async def test_a_wake_is_delivered_with_the_call_id(services: FakePushServices, providers: Providers,
                                                    platform: Platform) -> None:
    w = wake()
    result = await providers[platform].send(device(services, platform, "tok-a"), w)
    assert (result.outcome, result.attempts) == (Outcome.DELIVERED, 1), result.reason
    fake = fake_of(services, platform)
    [push] = fake.pushes_to("tok-a")
    assert push.data == w.data() and fake.rejected == []
    assert result.message_id


async def test_fcm_sends_high_priority_data_with_the_window_as_ttl(services: FakePushServices,
                                                                   providers: Providers) -> None:
    await providers["fcm"].send(device(services, "fcm", "tok-a"), wake(window=30))
    [push] = services.fcm.pushes
    android = push.body["message"]["android"]
    assert android["priority"] == "HIGH" and android["ttl"] in ("29s", "30s")
    assert "notification" not in push.body["message"]


async def test_apns_speaks_http2_with_the_voip_headers(services: FakePushServices, providers: Providers) -> None:
    w = wake(window=30)
    await providers["apns-voip"].send(device(services, "apns-voip", "ab12"), w)
    [push] = services.apns.pushes
    assert push.headers["apns-topic"] == f"{BUNDLE}.voip" and push.headers["apns-push-type"] == "voip"
    assert push.headers["apns-priority"] == "10" and push.headers["apns-expiration"] == str(math.ceil(w.deadline))
    # the fake refuses HTTP/1.1 as APNs does: the success above was HTTP/2
    async with httpx.AsyncClient() as http1:
        response = await http1.post(f"{services.apns.url}/3/device/ab12", json={})
    assert response.status_code == 505 and services.apns.rejected == ["HTTP/1.1 request (APNs speaks HTTP/2 only)"]


async def test_hms_sends_a_high_urgency_voip_message(services: FakePushServices, providers: Providers) -> None:
    await providers["hms"].send(device(services, "hms", "h1"), wake(window=30))
    [push] = services.hms.pushes
    assert push.body["message"]["android"]["urgency"] == "HIGH"
    assert push.body["message"]["android"]["category"] == "VOIP"


async def test_a_cancel_push_reaches_the_app_as_cancel(services: FakePushServices, providers: Providers) -> None:
    w = wake()
    for platform in ALL:
        result = await providers[platform].send(device(services, platform, "t1"), w.cancel(time.time(), 5))
        assert result.delivered
        assert fake_of(services, platform).pushes[-1].data["kind"] == "cancel"


@pytest.mark.parametrize("platform", ["fcm", "hms"])
async def test_one_oauth_token_serves_many_pushes(services: FakePushServices, providers: Providers,
                                                  platform: Platform) -> None:
    devices = [device(services, platform, f"t{i}") for i in range(5)]
    results = await push_all(providers, devices, wake())
    assert all(r.delivered for r in results)
    await providers[platform].send(devices[0], wake())
    fake = fake_of(services, platform)
    assert fake.token_requests == 1 and len(fake.pushes) == 6


class ManualClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def test_oauth_tokens_are_fetched_again_after_expiry(keys: tuple[str, str], tmp_path: Path) -> None:
    clock = ManualClock()
    async with fakes(keys, clock) as services:
        built = build_providers(load_push_config(services.write_config(tmp_path)), clock=clock)
        try:
            for platform in ("fcm", "hms"):
                fake = fake_of(services, platform)
                assert (await built[platform].send(device(services, platform, "t"), wake(clock=clock))).delivered
                clock.now += 3000  # still valid (minus the margin)
                assert (await built[platform].send(device(services, platform, "t"), wake(clock=clock))).delivered
                assert fake.token_requests == 1
                clock.now += 700  # past expiry
                assert (await built[platform].send(device(services, platform, "t"), wake(clock=clock))).delivered
                assert fake.token_requests == 2 and fake.rejected == []
        finally:
            await close(built)


async def test_apns_provider_token_is_reused_then_renewed(keys: tuple[str, str], tmp_path: Path) -> None:
    clock = ManualClock()
    async with fakes(keys, clock) as services:
        built = build_providers(load_push_config(services.write_config(tmp_path)), clock=clock)
        try:
            apns = built["apns-voip"]
            start = clock.now
            for at in (0, 19, 30, 49, 51, 70):
                clock.now = start + at * 60
                assert (await apns.send(device(services, "apns-voip", "ab"), wake(clock=clock))).delivered
            assert len(services.apns.provider_tokens) == 2  # one for 0-49 min, one from 51 min
        finally:
            await close(built)


@pytest.mark.parametrize("platform", ["fcm", "hms"])
async def test_a_refused_access_token_is_replaced_and_the_push_retried(
        services: FakePushServices, providers: Providers, platform: Platform) -> None:
    assert (await providers[platform].send(device(services, platform, "t"), wake())).delivered
    fake = services.fcm if platform == "fcm" else services.hms
    fake.expire_access_tokens()
    result = await providers[platform].send(device(services, platform, "t"), wake())
    assert (result.outcome, result.attempts, fake.token_requests) == (Outcome.DELIVERED, 2, 2)


@pytest.mark.parametrize("platform", ALL)
async def test_an_invalid_token_is_reported_for_deactivation(services: FakePushServices, providers: Providers,
                                                             platform: Platform) -> None:
    fake_of(services, platform).script("dead", then=INVALID)
    result = await providers[platform].send(device(services, platform, "dead"), wake())
    assert (result.outcome, result.attempts) == (Outcome.INVALID_TOKEN, 1)
    expected = {"fcm": "404 UNREGISTERED", "apns-voip": "410 Unregistered", "hms": "400 80300007"}[platform]
    assert expected in result.reason


@pytest.mark.parametrize("platform", ALL)
async def test_throttled_then_retried_after_retry_after(services: FakePushServices, providers: Providers,
                                                        platform: Platform) -> None:
    fake = fake_of(services, platform)
    fake.script("t", throttled(retry_after=1))
    result = await providers[platform].send(device(services, platform, "t"), wake())
    assert (result.outcome, result.attempts) == (Outcome.DELIVERED, 2)
    first, second = fake.pushes_to("t")
    assert (first.answer, second.answer) == ("throttle", "ok") and result.elapsed >= 0.95
    assert 0.95 <= second.received_at - first.received_at < 2.0  # 1 s, not the 0.05 s backoff


@pytest.mark.parametrize("platform", ALL)
async def test_server_errors_twice_then_success(services: FakePushServices, providers: Providers,
                                                platform: Platform) -> None:
    fake = fake_of(services, platform)
    fake.script("t", server_error(503), server_error(500))
    result = await providers[platform].send(device(services, platform, "t"), wake())
    assert (result.outcome, result.attempts) == (Outcome.DELIVERED, 3)
    assert [p.answer for p in fake.pushes_to("t")] == ["error", "error", "ok"]


@pytest.mark.parametrize("platform", ALL)
async def test_server_errors_until_the_deadline_fail_in_time(services: FakePushServices, providers: Providers,
                                                             platform: Platform) -> None:
    fake = fake_of(services, platform)
    fake.script("t", then=server_error(503))
    w = wake(window=1.0)
    started = time.monotonic()
    result = await providers[platform].send(device(services, platform, "t"), w)
    elapsed = time.monotonic() - started
    assert result.outcome is Outcome.FAILED and result.attempts >= 3
    assert elapsed < 1.5, elapsed  # the window, plus scheduling slack on a busy box
    tries = fake.pushes_to("t")
    assert len(tries) == result.attempts and tries[-1].received_at - started < 1.0  # none past the window


async def test_a_provider_that_does_not_answer_fails_at_the_deadline(services: FakePushServices,
                                                                     providers: Providers) -> None:
    services.fcm.script("slow", delayed(5.0))
    started = time.monotonic()
    result = await providers["fcm"].send(device(services, "fcm", "slow"), wake(window=0.5))
    assert result.outcome is Outcome.FAILED and "deadline" in result.reason
    assert time.monotonic() - started < 1.2


async def test_all_devices_are_pushed_at_once(services: FakePushServices, providers: Providers) -> None:
    await push_all(providers, [device(services, p, "warm") for p in ALL], wake())  # OAuth tokens, connections
    devices = [device(services, p, "slow") for p in ALL]
    for p in ALL:
        fake_of(services, p).script("slow", delayed(1.0))
    started = time.monotonic()
    results = await push_all(providers, devices, wake())
    elapsed = time.monotonic() - started
    assert [r.outcome for r in results] == [Outcome.DELIVERED] * 3
    assert 1.0 <= elapsed < 2.0, elapsed  # the slowest one, not the sum (3 s)


@pytest.mark.parametrize("platform", ALL)
async def test_the_fake_refuses_a_signature_or_secret_it_does_not_trust(
        services: FakePushServices, tmp_path: Path, platform: Platform) -> None:
    wrong = build_providers(load_push_config(services.write_config(
        tmp_path, fcm_key=rsa_private_pem(), apns_key=ec_private_pem(), hms_secret="not-the-secret")))
    try:
        result = await wrong[platform].send(device(services, platform, "t"), wake())
    finally:
        await close(wrong)
    fake = fake_of(services, platform)
    expected = {"fcm": ("Invalid JWT Signature", "token: bad signature"),
                "apns-voip": ("403 InvalidProviderToken", "provider token: Signature verification failed"),
                "hms": ("invalid client", "token: client credentials")}[platform]
    assert (result.outcome, result.attempts) == (Outcome.FAILED, 1)
    assert expected[0] in result.reason and fake.rejected == [expected[1]]
    assert fake.pushes == []


async def test_on_push_tells_the_app_simulator(services: FakePushServices, providers: Providers) -> None:
    seen: list[tuple[str, str]] = []

    async def register(push: Push) -> None:
        seen.append((push.provider, push.data["call_id"]))

    services.on_push(register)
    services.apns.on_push(lambda push: seen.append(("sync", push.token)))
    services.fcm.script("dead", then=INVALID)
    devices = [device(services, "apns-voip", "ab"), device(services, "fcm", "dead"), device(services, "hms", "h")]
    await push_all(providers, devices, wake(call_id="c-42"))
    for _ in range(100):  # async callbacks run as tasks; bounded wait
        if len(seen) == 3:
            break
        await asyncio.sleep(0.01)
    assert sorted(seen) == [("APNs", "c-42"), ("HMS", "c-42"), ("sync", "ab")]  # none for the dead token


def test_the_fakes_serve_from_a_thread_for_sync_fixtures(keys: tuple[str, str], tmp_path: Path) -> None:
    woken = threading.Event()
    with serve_in_thread(fakes(keys)) as services:
        services.on_push(lambda push: woken.set())
        config = services.write_config(tmp_path)

        async def push() -> list[Outcome]:
            built = build_providers(load_push_config(config))
            try:
                results = await push_all(built, [device(services, p, "t") for p in ALL], wake())
            finally:
                await close(built)
            return [r.outcome for r in results]

        assert asyncio.run(push()) == [Outcome.DELIVERED] * 3
        assert woken.wait(5) and len(services.fcm.pushes + services.apns.pushes + services.hms.pushes) == 3
    with pytest.raises(httpx.ConnectError):  # stopped with the block
        httpx.post(services.fcm.token_url, timeout=2)
