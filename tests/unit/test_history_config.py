"""The history's settings in the stack config: PostgreSQL's port and Redis' retention."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.config import REPO, load_config

TEST_TOML = (REPO / "config" / "test.toml").read_text()


def _config(tmp_path: Path, history: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(TEST_TOML.split("[history]")[0] + history)
    return path


def test_ports_and_default_retention(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KINLINE_PORT_OFFSET", raising=False)
    dev, test = load_config(REPO / "config" / "dev.toml"), load_config(REPO / "config" / "test.toml")
    assert (dev.postgres_port, test.postgres_port) == (5440, 15440)
    assert dev.history_retention_s == test.history_retention_s == 2 * 24 * 3600


def test_port_offset_moves_postgres(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KINLINE_PORT_OFFSET", "3")
    assert load_config(REPO / "config" / "test.toml").postgres_port == 15740


def test_retention_days(tmp_path: Path) -> None:
    assert load_config(_config(tmp_path, "[history]\nretention_days = 7\n")).history_retention_s == 7 * 86400
    assert load_config(_config(tmp_path, "")).history_retention_s == 2 * 86400
    for bad in ("0", "1.5", '"2"', "100000"):
        with pytest.raises(ValueError, match="retention_days"):
            load_config(_config(tmp_path, f"[history]\nretention_days = {bad}\n"))
