"""The metrics ports: in the config ([ports]), moved by the offset, given to each
service by the stack and by docker-compose.yml alike, apart from every other port."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from tools import stack
from tools.config import REPO, StackConfig, load_config

SERVICES = {"agi": ("agi_argv", "agi_metrics_port"),
            "reconciler": ("reconciler_argv", "reconciler_metrics_port"),
            "pushbridge": ("pushbridge_argv", "pushbridge_metrics_port")}


def _flag(command: list[str], name: str) -> str:
    assert name in command, f"{name} missing from {command}"
    return command[command.index(name) + 1]


def _ports(config: StackConfig) -> list[int]:
    return [config.sip_port, config.trunk_port, config.agi_port, config.ami_port, config.redis_port,
            config.api_port, config.postgres_port, config.app_sip_port, config.agi_metrics_port,
            config.reconciler_metrics_port, config.pushbridge_metrics_port]


def test_dev_and_test_metrics_ports() -> None:
    dev, test = load_config("config/dev.toml"), load_config("config/test.toml")
    assert (dev.agi_metrics_port, dev.reconciler_metrics_port, dev.pushbridge_metrics_port) == (9573, 9574, 9575)
    assert (test.agi_metrics_port, test.reconciler_metrics_port, test.pushbridge_metrics_port) == (19573, 19574, 19575)


@pytest.mark.parametrize("offset", ["0", "5", "9"])
def test_metrics_ports_move_with_the_offset_and_clash_with_nothing(offset: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KINLINE_PORT_OFFSET", offset)
    for name in ("config/dev.toml", "config/test.toml"):
        config = load_config(name)
        ports = _ports(config)
        assert len(set(ports)) == len(ports), ports
        assert all(not config.rtp_start <= port <= config.rtp_end for port in ports)
    assert load_config("config/test.toml").agi_metrics_port == 19573 + int(offset) * 100


def test_the_stack_and_compose_give_each_service_its_metrics_port() -> None:
    config = load_config("config/dev.toml")
    compose: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    for service, (argv, port) in SERVICES.items():
        dev = getattr(stack, argv)(config)
        assert _flag(dev, "--metrics-port") == str(getattr(config, port)), service
        assert _flag(compose["services"][service]["command"], "--metrics-port") == str(getattr(config, port)), service


def test_a_config_without_metrics_ports_gets_the_fastagi_port_plus_5000(tmp_path: Any) -> None:
    text = (REPO / "config" / "dev.toml").read_text()
    old = tmp_path / "old.toml"
    old.write_text("\n".join(line for line in text.splitlines() if "_metrics" not in line))
    config = load_config(old)
    assert (config.agi_metrics_port, config.reconciler_metrics_port, config.pushbridge_metrics_port) == (
        config.agi_port + 5000, config.agi_port + 5001, config.agi_port + 5002)


def _series_names() -> set[str]:
    """Every sample name the four processes expose."""
    from metrics.series import AgiMetrics, ApiMetrics, PushMetrics, ReconcilerMetrics

    agi, push = AgiMetrics(), PushMetrics()
    agi.know_routes(["inmate_call"])
    push.know_platforms(["fcm"])
    api = ApiMetrics()
    api.request_done("GET", "/v1/me/balance", 200, 0.01)
    found: set[str] = set()
    for metrics in (agi, api, push, ReconcilerMetrics()):
        for family in metrics.registry.collect():
            found.update(sample.name for sample in family.samples)
    return found


def test_the_dashboard_queries_only_series_that_exist_and_shows_them_all() -> None:
    dashboard = json.loads((REPO / "docs" / "grafana" / "kinline.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {name for expr in exprs for name in re.findall(r"\bkinline_[a-z_]+", expr)}
    series = _series_names()
    assert used <= series, used - series
    # Every series has a panel (a histogram through its buckets, a counter through _total).
    shown = {re.sub(r"_(bucket|count|sum|total|created)$", "", name) for name in used}
    families = {re.sub(r"_(bucket|count|sum|total|created)$", "", name) for name in series}
    assert families <= shown, families - shown
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
