"""terminals.json keeps each terminal's SIP digest (md5_cred), never its password;
an old file with plaintext passwords loads and is rewritten with digests at once."""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.asterisk_conf import (
    SIP_REALM,
    Terminal,
    TerminalLogin,
    load_terminals,
    md5_cred,
    new_password,
    save_terminals,
    terminals_conf,
    terminals_path,
)
from tools.config import REPO, StackConfig, load_config


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StackConfig:
    monkeypatch.delenv("KINLINE_PORT_OFFSET", raising=False)
    monkeypatch.delenv("KINLINE_CONFIG", raising=False)
    monkeypatch.setenv("KINLINE_STATE", str(tmp_path / "state"))
    return load_config(REPO / "config" / "test.toml")


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A umask that would leave new files world-readable: the 0600 must not depend on it."""
    old = os.umask(0o000)
    try:
        yield
    finally:
        os.umask(old)


def test_md5_cred_is_rfc_2617_ha1() -> None:
    # RFC 2617 section 3.5's example credentials; HA1 = MD5("Mufasa:testrealm@host.com:Circle Of Life").
    assert md5_cred("Mufasa", "Circle Of Life", realm="testrealm@host.com") == "939e7578ed9e3c518a452acee763bce9"
    # The terminals' realm is the one pjsip.conf's terminal-auth template gives Asterisk.
    assert re.search(rf"(?m)^realm = {SIP_REALM}$", (REPO / "asterisk" / "conf" / "pjsip.conf").read_text())
    assert md5_cred("t1", "pw") == md5_cred("t1", "pw", realm="kinline") != md5_cred("t2", "pw")


def test_a_login_is_stored_as_its_digest(config: StackConfig, open_umask: None) -> None:
    login = TerminalLogin("term-a", "Secret123456789", "fr", "f1")
    save_terminals(config, [login.stored()])
    path = terminals_path(config)
    assert json.loads(path.read_text()) == [
        {"name": "term-a", "md5_cred": md5_cred("term-a", "Secret123456789"), "language": "fr", "facility": "f1"}
    ]
    assert b"Secret123456789" not in path.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    [loaded] = load_terminals(config)
    assert loaded == login.stored()
    assert loaded.accepts("Secret123456789") and not loaded.accepts("Secret12345678")


def test_an_old_file_with_plaintext_passwords_loads_and_is_rewritten(config: StackConfig, open_umask: None) -> None:
    path = terminals_path(config)
    path.parent.mkdir(parents=True)
    old = [
        {"name": "t-old", "password": "PlainOldPass1", "language": "en", "facility": "f1"},
        {"name": "t-new", "md5_cred": md5_cred("t-new", "x" * 12), "language": "ru", "facility": "f2"},
    ]
    path.write_text(json.dumps(old))
    path.chmod(0o644)
    terminals = load_terminals(config)
    assert terminals == [
        Terminal("t-old", md5_cred("t-old", "PlainOldPass1"), "en", "f1"),
        Terminal("t-new", md5_cred("t-new", "x" * 12), "ru", "f2"),
    ]
    # Rewritten at once: digests only, and 0600.
    assert b"PlainOldPass1" not in path.read_bytes() and b'"password"' not in path.read_bytes()
    assert json.loads(path.read_text())[0] == {
        "name": "t-old", "md5_cred": md5_cred("t-old", "PlainOldPass1"), "language": "en", "facility": "f1"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_terminals(config) == terminals  # the new format loads unchanged
    conf = terminals_conf(terminals)
    assert f"md5_cred = {md5_cred('t-old', 'PlainOldPass1')}" in conf and "PlainOldPass1" not in conf


def test_a_file_of_digests_is_not_rewritten(config: StackConfig) -> None:
    save_terminals(config, [TerminalLogin("t1", "a" * 12).stored()])
    path = terminals_path(config)
    before = path.stat().st_mtime_ns, path.stat().st_ino
    load_terminals(config)
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == before


@pytest.mark.parametrize("entry", [
    {"name": "t1"},  # neither password nor digest
    {"name": "t1", "md5_cred": "0" * 32, "colour": "red"},
    {"name": "t1", "md5_cred": "not-hex"},
    {"name": "t1", "md5_cred": "0" * 32, "password": "LeakMe123456789"},
    {"name": "bad name", "password": "LeakMe123456789"},
    {"name": "t1", "password": 123456789012},
])
def test_bad_entries_are_refused_without_echoing_a_password(config: StackConfig, entry: dict[str, object]) -> None:
    path = terminals_path(config)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps([entry]))
    with pytest.raises(ValueError) as err:
        load_terminals(config)
    assert "LeakMe" not in str(err.value) and "123456789012" not in str(err.value)
    assert path.read_text() == json.dumps([entry])  # a file that does not load is left as it was


def test_validation() -> None:
    with pytest.raises(ValueError, match="password"):
        TerminalLogin("t1", "short1").validate()
    with pytest.raises(ValueError, match="password"):
        TerminalLogin("t1", "with space 123").validate()
    with pytest.raises(ValueError, match="md5_cred"):
        Terminal("t1", "0" * 31).validate()
    with pytest.raises(ValueError, match="md5_cred"):
        Terminal("t1", "A" * 32).validate()  # Asterisk's digests are lowercase
    with pytest.raises(ValueError, match="language"):
        TerminalLogin("t1", "a" * 12, "de").validate()
    TerminalLogin("t1", new_password()).validate()
    assert len({new_password() for _ in range(20)}) == 20
