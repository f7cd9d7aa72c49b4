"""The apps' SIP door in the stack's config and Asterisk's: its own port, the realtime
tables Asterisk reads agree with what the API writes, least-privilege users."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from store.devices import APP_ACL, APP_CONTEXT, APP_TRANSPORT, DDL, PS_TABLES
from tools.asterisk_conf import render
from tools.config import REPO, Secrets, load_config

CONF = REPO / "asterisk" / "conf"
SECRETS = Secrets("ami", "s1", "orig", "s2", "redis-pw", "00" * 32, realtime_password="ab12" * 6,
                  ami_status_user="kinline-status", ami_status_secret="s3")


def test_app_port_is_its_own_and_moves_with_the_offset(monkeypatch: pytest.MonkeyPatch) -> None:
    dev, test = load_config(REPO / "config" / "dev.toml"), load_config(REPO / "config" / "test.toml")
    assert (dev.app_sip_port, test.app_sip_port) == (5070, 15070)
    for config in (dev, test):
        others = (config.sip_port, config.trunk_port, config.agi_port, config.ami_port, config.redis_port,
                  config.api_port, config.postgres_port)
        assert config.app_sip_port not in others
        assert not config.rtp_start <= config.app_sip_port <= config.rtp_end
        assert config.app_sip_host == "127.0.0.1"
    monkeypatch.setenv("KINLINE_PORT_OFFSET", "5")
    assert load_config(REPO / "config" / "test.toml").app_sip_port == 15570


def test_generated_transport_role_and_acl() -> None:
    files = render(load_config(REPO / "config" / "test.toml"), SECRETS)
    assert f"[{APP_TRANSPORT}]" in files["pjsip_app_transport.conf"]
    assert "bind = 127.0.0.1:15070" in files["pjsip_app_transport.conf"]
    assert "user = asterisk_rt" in files["res_pgsql.conf"] and f"password = {'ab12' * 6}" in files["res_pgsql.conf"]
    assert "port = 15440" in files["res_pgsql.conf"] and "dbname = kinline" in files["res_pgsql.conf"]
    assert files["acl_apps.conf"] == f"[{APP_ACL}]\npermit = 0.0.0.0/0.0.0.0\n"  # dev/test: no facility subnets
    production = render(load_config(REPO / "config" / "production.example.toml"), SECRETS)
    assert "bind = 203.0.113.20:5070" in production["pjsip_app_transport.conf"]
    assert production["acl_apps.conf"].splitlines()[2:] == [
        "deny = 192.0.2.0/25", "deny = 192.0.2.128/26", "deny = 203.0.113.0/28"]  # apps refused inside facilities


def test_status_ami_user_may_only_query() -> None:
    users = render(load_config(REPO / "config" / "test.toml"), SECRETS)["manager_users.conf"]
    section = users.split("[kinline-status]", 1)[1]
    assert re.search(r"^read =$", section, re.M) and re.search(r"^write = reporting$", section, re.M)


def _section(path: Path, name: str) -> str:
    return path.read_text().split(f"[{name}]", 1)[1].split("\n[", 1)[0]


def test_asterisk_reads_the_tables_the_api_writes() -> None:
    sorcery = _section(CONF / "sorcery.conf", "res_pjsip")
    extconfig = _section(CONF / "extconfig.conf", "settings")
    for kind, table in (("endpoint", "ps_endpoints"), ("auth", "ps_auths"), ("aor", "ps_aors")):
        assert table in PS_TABLES
        # The static config first (terminals, trunk), then PostgreSQL.
        wizards = re.findall(rf"^{kind} = (\w+)", sorcery, re.M)
        assert wizards == ["config", "realtime"], kind
        assert f"{kind} = realtime,{table},allow_unqualified_fetch=no" in sorcery  # never "read them all"
        assert f"{table} => pgsql,kinline,{table}" in extconfig
        assert any(f"CREATE TABLE IF NOT EXISTS {table} (" in statement for statement in DDL)
    modules = (CONF / "modules.conf").read_text()
    for module in ("res_config_pgsql.so", "res_sorcery_realtime.so", "func_pjsip_aor.so", "func_pjsip_contact.so"):
        assert f"load => {module}" in modules
    assert '#include "/etc/kinline/res_pgsql.conf"' in (CONF / "res_pgsql.conf").read_text()
    assert '#include "/etc/kinline/pjsip_app_transport.conf"' in (CONF / "pjsip.conf").read_text()
    assert '#include "/etc/kinline/acl_apps.conf"' in (CONF / "acl.conf").read_text()
    endpoints = next(s for s in DDL if "ps_endpoints" in s)
    assert f"DEFAULT '{APP_TRANSPORT}'" in endpoints and f"DEFAULT '{APP_CONTEXT}'" in endpoints
    assert f"DEFAULT '{APP_ACL}'" in endpoints


def test_calls_from_apps_are_refused_by_the_dial_plan() -> None:
    context = _section(REPO / "dialplan" / "kinline.conf", APP_CONTEXT)
    actions = re.findall(r"^exten => [^,]+,1,(.*)$", context, re.M)
    assert actions and all(a == "Hangup(21)" for a in actions)
    assert "include" not in context
