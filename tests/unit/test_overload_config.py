"""Overload levels from config/*.toml ([agi]) to the AGI server's argv and compose."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ivr.overload import DEFAULT_MAX_AGI_LATENCY_MS, DEFAULT_MAX_IN_IVR
from tools import stack
from tools.config import REPO, load_config


def _flag(argv: list[str], name: str) -> str:
    assert name in argv, f"{name} missing from {argv}"
    return argv[argv.index(name) + 1]


def test_dev_and_test_levels_reach_the_agi_argv() -> None:
    for name, (ivr, latency) in (("dev", ("120", "500")), ("test", ("120", "2000"))):
        argv = stack.agi_argv(load_config(REPO / "config" / f"{name}.toml"))
        assert (_flag(argv, "--max-in-ivr"), _flag(argv, "--max-agi-latency-ms")) == (ivr, latency), name


def test_compose_runs_the_agi_server_with_the_production_levels() -> None:
    production = load_config(REPO / "config" / "production.example.toml")  # no [agi]: the defaults
    assert (production.agi_max_in_ivr, production.agi_max_latency_ms) == (DEFAULT_MAX_IN_IVR,
                                                                           DEFAULT_MAX_AGI_LATENCY_MS)
    command = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["agi"]["command"]
    argv = stack.agi_argv(production)
    for flag in ("--max-in-ivr", "--max-agi-latency-ms"):
        assert _flag(command, flag) == _flag(argv, flag), flag


@pytest.mark.parametrize("line", ["max_in_ivr = -1", "max_agi_latency_ms = 0.5", 'max_in_ivr = "10"'])
def test_bad_levels_are_refused(tmp_path: Path, line: str) -> None:
    text = (REPO / "config" / "test.toml").read_text().split("[agi]")[0] + f"[agi]\n{line}\n"
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"agi\.max_"):
        load_config(path)


def test_zero_turns_a_level_off(tmp_path: Path) -> None:
    text = (REPO / "config" / "test.toml").read_text().split("[agi]")[0] + "[agi]\nmax_in_ivr = 0\n"
    path = tmp_path / "off.toml"
    path.write_text(text)
    config = load_config(path)
    assert (config.agi_max_in_ivr, config.agi_max_latency_ms) == (0, DEFAULT_MAX_AGI_LATENCY_MS)
