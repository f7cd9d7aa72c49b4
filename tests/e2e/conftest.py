"""The real stack for end-to-end tests: Redis, FastAGI, chrooted Asterisk 22.

Started once per test session from config/test.toml (ports apart from the dev
stack), in a state folder of its own, and stopped at the end.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest

from ami.client import AmiClient
from tests.e2e.harness import AmiWatch
from tools import stack
from tools.asterisk_conf import Terminal, save_terminals
from tools.config import StackConfig, load_config, load_secrets

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class E2E:
    config: StackConfig
    terminal: Terminal

    def target(self, exten: str = "9999") -> str:
        return f"sip:{exten}@{self.config.host}:{self.config.sip_port}"


@pytest.fixture(scope="session")
def e2e(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    import os

    state = tmp_path_factory.mktemp("stack")
    os.environ["KINLINE_STATE"] = str(state)
    config = load_config("config/test.toml")
    terminal = Terminal("term9001", secrets.token_hex(12), "en", "test-facility")
    save_terminals(config, [terminal])
    stack.up(config)
    try:
        yield E2E(config, terminal)
    finally:
        stack.down(config)
        os.environ.pop("KINLINE_STATE", None)


@pytest.fixture
async def ami(e2e: E2E) -> AsyncIterator[AmiWatch]:
    secret = load_secrets(e2e.config)
    client = AmiClient(e2e.config.host, e2e.config.ami_port, secret.ami_user, secret.ami_secret)
    await client.start()
    watch = AmiWatch(client)
    try:
        yield watch
    finally:
        watch.close()
        await client.close()
