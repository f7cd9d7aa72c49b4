"""The apps' SIP door in production: the public name the API gives apps (services.env ->
compose's api), transport-app behind NAT (external addresses, local_net), and the app
endpoints' settings for apps that are behind NAT themselves."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from store.devices import DDL
from tools.asterisk_conf import render
from tools.config import REPO, Secrets, StackConfig, load_config
from tools.stack import service_secrets, services_env_path, write_services_env

EXAMPLE = REPO / "config" / "production.example.toml"
SECRETS = Secrets("ami", "s1", "orig", "s2", "redis-pw", "00" * 32, realtime_password="ab12" * 6)
NAT_LINES = ('app_sip_bind = "10.20.0.5"', 'app_sip_nat_address = "203.0.113.20"',
             'app_sip_local_nets = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]')


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KINLINE_PORT_OFFSET", "KINLINE_STATE", "KINLINE_CONFIG"):
        monkeypatch.delenv(name, raising=False)


def _network(tmp_path: Path, *, drop: tuple[str, ...] = (), add: tuple[str, ...] = ()) -> StackConfig:
    """The example with [network] lines dropped (by key) and added; its state in ``tmp_path``."""
    lines = EXAMPLE.read_text().splitlines()
    lines = [ln for ln in lines if not any(ln.startswith(f"{key} =") for key in drop)]
    at = lines.index("[network]") + 1
    lines[at:at] = list(add)
    path = tmp_path / "production.toml"
    path.write_text("\n".join(lines) + "\n")
    return replace(load_config(path), state=tmp_path / "state")


def _transport(config: StackConfig) -> str:
    return render(replace(config, state=Path("/nonexistent")), SECRETS)["pjsip_app_transport.conf"]


def test_the_example_gives_apps_the_public_name_and_needs_no_nat() -> None:
    config = load_config(EXAMPLE)
    assert (config.app_sip_host, config.app_sip_public, config.app_sip_advertised) == (
        "203.0.113.20", "sip.example.org", "sip.example.org")
    assert config.app_sip_nat_address is None and config.app_sip_local_nets == ()
    assert _transport(config) == "[transport-app]\ntype = transport\nprotocol = udp\nbind = 203.0.113.20:5070\n"
    # Only commented out in the example: the NAT lines this test file uses are the documented ones.
    text = EXAMPLE.read_text()
    for line in NAT_LINES:
        assert f"# {line}\n" in text, line


@pytest.mark.parametrize("name", ["dev.toml", "test.toml"])
def test_dev_and_test_tell_apps_loopback(name: str) -> None:
    config = load_config(REPO / "config" / name)
    assert config.app_sip_advertised == config.app_sip_host == "127.0.0.1"
    assert "external" not in _transport(config) and "local_net" not in _transport(config)


def test_behind_nat_the_transport_writes_the_public_address(tmp_path: Path) -> None:
    config = _network(tmp_path, drop=("app_sip_bind",), add=NAT_LINES)
    assert (config.app_sip_host, config.app_sip_nat_address) == ("10.20.0.5", "203.0.113.20")
    assert config.app_sip_advertised == "sip.example.org"  # the name, when given
    transport = _transport(config)
    assert transport.splitlines() == [
        "[transport-app]", "type = transport", "protocol = udp", "bind = 10.20.0.5:5070",
        "external_signaling_address = 203.0.113.20", "external_signaling_port = 5070",
        "external_media_address = 203.0.113.20",
        # Loopback and the bound address itself always (Asterisk rewrites the SDP only when
        # its own media address is local), then the configured internal nets.
        "local_net = 127.0.0.0/8", "local_net = 10.20.0.5/32",
        "local_net = 10.0.0.0/8", "local_net = 172.16.0.0/12", "local_net = 192.168.0.0/16",
    ]
    # The terminals' door is untouched: NAT is the apps' door's only.
    assert "external" not in render(replace(config, state=Path("/nonexistent")), SECRETS)["pjsip_transport.conf"]
    # Without a name, apps are told the NAT's public address (never the private bind).
    unnamed = _network(tmp_path, drop=("app_sip_bind", "app_sip_public"), add=NAT_LINES)
    assert unnamed.app_sip_advertised == "203.0.113.20"


def test_the_api_is_told_the_public_door(tmp_path: Path) -> None:
    """tools/stack.py gives the API $KINLINE_APP_SIP; compose's api reads it from services.env."""
    config = _network(tmp_path, drop=("app_sip_bind",), add=NAT_LINES)
    config.state.mkdir(mode=0o700)
    assert service_secrets(config)["KINLINE_APP_SIP"] == "sip.example.org:5070"
    write_services_env(config)
    assert "KINLINE_APP_SIP=sip.example.org:5070\n" in services_env_path(config).read_text()
    test = replace(load_config(REPO / "config" / "test.toml"), state=tmp_path / "test-state")
    assert service_secrets(test)["KINLINE_APP_SIP"] == f"127.0.0.1:{test.app_sip_port}"


@pytest.mark.parametrize(("lines", "message"), [
    (('app_sip_public = "sip example.org"',), "app_sip_public must be a DNS name"),
    (('app_sip_public = "sip://sip.example.org"',), "app_sip_public must be a DNS name"),
    (('app_sip_public = 5070',), "app_sip_public must be a DNS name"),
    (('app_sip_nat_address = "sip.example.org"',), "app_sip_nat_address must be an IPv4 address"),
    (('app_sip_local_nets = ["10.0.0.0/8"]',), "needs network.app_sip_nat_address"),
    (('app_sip_nat_address = "203.0.113.20"', 'app_sip_local_nets = []'), "non-empty list"),
    (('app_sip_nat_address = "203.0.113.20"', 'app_sip_local_nets = ["10.0.0.1/8"]'), "app_sip_local_nets"),
])
def test_bad_app_door_settings_are_refused(tmp_path: Path, lines: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        _network(tmp_path, drop=("app_sip_public",), add=lines)


def test_app_endpoints_are_set_for_apps_behind_nat() -> None:
    """Every app is behind a NAT (mobile networks, home routers): Asterisk answers and sends
    media where the packets come from, not where the app's Contact or SDP say."""
    endpoints = next(s for s in DDL if "CREATE TABLE IF NOT EXISTS ps_endpoints" in s)
    columns = dict(re.findall(r"^\s*(\w+) text NOT NULL DEFAULT '([^']*)'", endpoints, re.M))
    assert columns["rtp_symmetric"] == "yes"
    assert columns["force_rport"] == "yes"
    assert columns["rewrite_contact"] == "yes"
    assert columns["direct_media"] == "no"  # media always through Asterisk
