"""The production profile's config (config/production.example.toml): parsing, checks,
and what it renders for Asterisk; dev and test stay on loopback with no ACL."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.asterisk_conf import TerminalLogin, render, terminals_conf
from tools.config import REPO, Secrets, StackConfig, load_config

EXAMPLE = REPO / "config" / "production.example.toml"
SECRETS = Secrets("ami", "s1", "orig", "s2", "redis-pw", "00" * 32)
TERMINALS = [TerminalLogin("t-a", "a" * 16, "ru", "colony1").stored(),
             TerminalLogin("t-b", "b" * 16, "ru", "colony2").stored(),
             TerminalLogin("t-c", "c" * 16, "ru", "nowhere").stored()]


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KINLINE_PORT_OFFSET", "KINLINE_STATE", "KINLINE_CONFIG"):
        monkeypatch.delenv(name, raising=False)


def test_the_example_parses() -> None:
    config = load_config(EXAMPLE)
    assert config.host == "127.0.0.1"
    assert (config.sip_bind, config.sip_host) == ("192.0.2.10", "192.0.2.10")
    assert config.carrier == "198.51.100.7:5060"
    assert config.terminal_subnets == {"colony1": ("192.0.2.0/25",), "colony2": ("192.0.2.128/26", "203.0.113.0/28")}
    assert (config.redis_port, config.ami_port, config.agi_port) == (6379, 5038, 4573)
    assert config.agi_url == "agi://127.0.0.1:4573"


@pytest.mark.parametrize("name", ["dev.toml", "test.toml"])
def test_dev_and_test_have_no_production_settings(name: str) -> None:
    config = load_config(REPO / "config" / name)
    assert (config.sip_bind, config.carrier_host, config.carrier_port, config.terminal_subnets) == (None,) * 4
    assert config.sip_host == config.host == "127.0.0.1"
    assert config.carrier == f"127.0.0.1:{config.trunk_port}"
    assert "deny" not in terminals_conf(TERMINALS, config.terminal_subnets)


def _render(config: StackConfig, tmp_path: Path) -> dict[str, str]:
    from dataclasses import replace

    return render(replace(config, state=tmp_path), SECRETS)


def test_production_rendering(tmp_path: Path) -> None:
    out = _render(load_config(EXAMPLE), tmp_path)
    assert "bind = 192.0.2.10:5060\n" in out["pjsip_transport.conf"]
    assert "contact = sip:198.51.100.7:5060\n" in out["pjsip_trunk.conf"]
    assert "match = 198.51.100.7:5060\n" in out["pjsip_trunk.conf"]
    assert "bindaddr = 127.0.0.1\n" in out["manager_general.conf"]
    assert out["globals.conf"] == "KINLINE_AGI = agi://127.0.0.1:4573\nKINLINE_TERMINAL_PORT = 5060\n"


def test_each_terminal_is_limited_to_its_facility_subnets() -> None:
    text = terminals_conf(TERMINALS, load_config(EXAMPLE).terminal_subnets)
    sections = {s.split("]")[0]: s for s in text.split("\n[")[1:] if "(terminal-endpoint)" in s}
    assert sections["t-a"].endswith("deny = 0.0.0.0/0.0.0.0\npermit = 192.0.2.0/25\n")
    assert sections["t-b"].endswith("deny = 0.0.0.0/0.0.0.0\npermit = 192.0.2.128/26\npermit = 203.0.113.0/28\n")
    # A facility with no subnet: its terminal is accepted from nowhere (fail closed).
    assert sections["t-c"].endswith("deny = 0.0.0.0/0.0.0.0\n")


@pytest.mark.parametrize(("snippet", "message"), [
    ('[network]\nhost = "127.0.0.1"\nsip_bind = "10.0.0.300"\n', "network.sip_bind must be an IPv4 address"),
    ('[network]\nhost = "127.0.0.1"\n[carrier]\naddress = "carrier.example"\n', "carrier.address must be an IPv4"),
    ('[network]\nhost = "127.0.0.1"\n[carrier]\naddress = "10.0.0.1"\nport = 70000\n', "carrier.port must be a port"),
    ('[network]\nhost = "127.0.0.1"\n[terminal_subnets]\nf1 = []\n', "terminal_subnets.f1 must be a non-empty list"),
    ('[network]\nhost = "127.0.0.1"\n[terminal_subnets]\nf1 = ["10.0.0.1/24"]\n',
     "terminal_subnets.f1: 10.0.0.1/24 has host bits set"),
])
def test_bad_production_settings_are_refused(tmp_path: Path, snippet: str, message: str) -> None:
    rest = (REPO / "config" / "test.toml").read_text().split("[ports]", 1)[1]
    path = tmp_path / "bad.toml"
    path.write_text(snippet + "[ports]" + rest)
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("[", r"\[")):
        load_config(path)
