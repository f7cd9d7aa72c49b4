"""The real stack for end-to-end tests: Redis, FastAGI, chrooted Asterisk 22.

Started once per test session from config/test.toml (ports apart from the dev
stack), in a state folder of its own, and stopped at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import secrets
import wave
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from ivr.model import Facility
from ivr.pin import PinHasher
from ivr.tariffs import demo_tariff
from store.devices import DeviceStore
from store.redis_store import RedisStore, connect
from tests.e2e.harness import AmiWatch, watching
from tests.fakes.push_providers import FakePushServices, serve_in_thread
from tools import stack
from tools.asterisk_conf import TerminalLogin, save_terminals
from tools.config import StackConfig, load_config, load_secrets

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class E2E:
    config: StackConfig
    # The tests' SIP logins: the passwords live only here, in memory; the stack stores their digests.
    terminal: TerminalLogin  # facility "test-facility": the diagnostic greeting
    terminals: dict[str, TerminalLogin]  # facility id -> its terminal

    def target(self, exten: str = "9999") -> str:
        return f"sip:{exten}@{self.config.host}:{self.config.sip_port}"


def _closed_schedule(now: datetime) -> str:
    """A weekly schedule that is closed right now (another weekday)."""
    other = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[(now.weekday() + 3) % 7]
    return f"{other} 10:00-11:00"


FACILITIES = {
    "open": Facility("open", "Colony number one", "UTC", "RUB", "en", "mon-sun 00:00-23:59"),
    "short": Facility("short", "Colony number two", "UTC", "RUB", "en", "mon-sun 00:00-23:59", max_call_s=12),
    "closed": Facility("closed", "Colony number three", "UTC", "RUB", "en", "placeholder"),
}


async def _provision(config: StackConfig) -> None:
    store = RedisStore.from_url(config.redis_url)
    try:
        for facility in FACILITIES.values():
            if facility.id == "closed":
                facility = replace(facility, schedule=_closed_schedule(datetime.now(UTC)))
            await store.put_facility(facility)
            await store.put_tariff(facility.id, demo_tariff())
    finally:
        await store.aclose()


def give_name(inmate_id: str, config: StackConfig | None = None) -> Path:
    """The inmate has recorded their name already (a new inmate is asked for it at the
    first login): half a second of tone in the stack's names folder. ``config``: the
    test stack's (by default the session's, from $KINLINE_STATE)."""
    path = (config or load_config("config/test.toml")).path("names", f"{inmate_id}.wav")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"".join(round(3000 * math.sin(2 * math.pi * 440 * i / 8000)).to_bytes(2, "little", signed=True)
                                 for i in range(4000)))
    path.chmod(0o644)  # Asterisk's user plays it
    return path


# On a failed e2e test, what the session stack's services logged during it (the last lines of
# each log that grew) and the machine's load: a CI run keeps no stack logs, only this report.
LOG_TAIL_LINES = 40
_LOG_SIZES = pytest.StashKey[dict[Path, int]]()


def _stack_logs() -> dict[Path, int]:
    """The session stack's log files and their sizes now (none before it is up)."""
    state = os.environ.get("KINLINE_STATE")
    logs = Path(state, "logs") if state else None
    if logs is None or not logs.is_dir():
        return {}
    return {path: path.stat().st_size for path in logs.rglob("*.log") if path.is_file()}


def _grown(before: dict[Path, int]) -> Iterator[tuple[str, str]]:
    for path, size in _stack_logs().items():
        start = before.get(path, 0)
        if size <= start:
            continue
        with path.open("rb") as fh:
            fh.seek(start)
            lines = fh.read().decode(errors="replace").splitlines()
        yield path.name, "\n".join(lines[-LOG_TAIL_LINES:])


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    item.stash[_LOG_SIZES] = _stack_logs()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if report.when == "call" and report.failed and _LOG_SIZES in item.stash:
        report.sections.append(("load", f"load average {os.getloadavg()}"))
        for name, text in _grown(item.stash[_LOG_SIZES]):
            report.sections.append((f"stack log {name} (during the test, last {LOG_TAIL_LINES} lines)", text))
    return report


@pytest.fixture(scope="session")
def e2e(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    state = tmp_path_factory.mktemp("stack")
    os.environ["KINLINE_STATE"] = str(state)
    config = load_config("config/test.toml")
    terminal = TerminalLogin("term9001", secrets.token_hex(12), "en", "test-facility")
    terminals = {f: TerminalLogin(f"term-{f}", secrets.token_hex(12), "en", f) for f in FACILITIES}
    save_terminals(config, [t.stored() for t in (terminal, *terminals.values())])
    stack.up(config)
    try:
        asyncio.run(_provision(config))
        yield E2E(config, terminal, terminals)
    finally:
        stack.down(config)
        os.environ.pop("KINLINE_STATE", None)


@pytest.fixture
async def ami(e2e: E2E) -> AsyncIterator[AmiWatch]:
    async with watching(e2e.config) as watch:
        yield watch


@pytest.fixture
async def store(e2e: E2E) -> AsyncIterator[RedisStore]:
    # Cards made here get PIN hashes with the stack's own key (the AGI server's).
    client = RedisStore.from_url(e2e.config.redis_url, PinHasher.from_hex(load_secrets(e2e.config).pin_key))
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def redis(e2e: E2E) -> AsyncIterator[aioredis.Redis]:
    client = connect(e2e.config.redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def devices(e2e: E2E) -> AsyncIterator[DeviceStore]:
    """The stack's app device registry (PostgreSQL)."""
    registry = DeviceStore(e2e.config.postgres_url)
    try:
        yield registry
    finally:
        await registry.aclose()


@contextlib.contextmanager
def restarted_with(config: StackConfig, names: tuple[str, ...], env: dict[str, str]) -> Iterator[None]:
    """The stack's services ``names`` (in start order) restarted with ``env`` in their
    environment; afterwards restarted again without it, as the rest of the suite expects."""
    for name in reversed(names):
        stack.stop_service(config, name)
    os.environ.update(env)
    try:
        for name in names:
            stack.start_service(config, name)
        yield
    finally:
        for name in reversed(names):
            stack.stop_service(config, name)
        for key in env:
            os.environ.pop(key, None)
        for name in names:
            stack.start_service(config, name)


@pytest.fixture(scope="module")
def fakes() -> Iterator[FakePushServices]:
    """Local fakes of FCM, APNs and HMS for the module's tests (tests/fakes/push_providers.py)."""
    with serve_in_thread(FakePushServices()) as services:
        yield services
