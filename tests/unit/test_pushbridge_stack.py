"""The push bridge in the dev stack and in docker-compose.yml agree."""

from __future__ import annotations

from typing import Any

import yaml

from tools import stack
from tools.config import REPO, load_config

PRODUCTION = REPO / "config" / "production.example.toml"


def _service() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    service: dict[str, Any] = data["services"]["pushbridge"]
    return service


def _flag(command: list[str], name: str) -> str:
    assert name in command, f"{name} missing from {command}"
    return command[command.index(name) + 1]


def test_the_bridge_runs_after_asterisk_whose_contacts_it_follows() -> None:
    order = stack.SERVICES
    assert order.index("asterisk") < order.index("pushbridge")
    assert {"redis", "postgres", "asterisk"} <= set(_service()["depends_on"])


def test_compose_runs_the_bridge_as_the_dev_stack_does() -> None:
    config = load_config(PRODUCTION)
    command, dev = _service()["command"], stack.pushbridge_argv(config)
    assert command[1:3] == dev[1:3] == ["-m", "pushbridge.main"]
    for flag in ("--ami-host", "--ami-port"):
        assert _flag(command, flag) == _flag(dev, flag), flag
    assert _service()["env_file"] == f"./var/{stack.services_env_path(config).name}"
    assert not any("://" in arg for arg in [*command, *dev])  # Redis and PostgreSQL URLs hold passwords
