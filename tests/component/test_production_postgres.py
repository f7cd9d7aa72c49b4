"""Asterisk's read-only PostgreSQL role (``asterisk_rt``, PJSIP realtime) on a real cluster,
made both ways: the dev stack's (psql as the bootstrap superuser over the socket) and
production's (docker-compose.yml's one-shot ``postgres-init``: ``python -m tools.postgres
provision`` as the official image's superuser "postgres", which also makes the services'
role, no superuser). Both run the same SQL, and either way the role may log in and SELECT
the ps_* tables, and nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from store.devices import PS_TABLES
from tests.component.conftest import HOST, _free_port
from tests.component.pgserver import PASSWORD, PostgresServer
from tools import postgres as pg
from tools import stack
from tools.config import POSTGRES_DB, POSTGRES_USER, REALTIME_USER, REPO, StackConfig, load_config, load_secrets

TEST_TOML = (REPO / "config" / "test.toml").read_text()


@dataclass
class Cluster:
    server: PostgresServer
    config: StackConfig
    config_file: Path

    def psql(self, sql: str) -> str:
        """``sql`` as the bootstrap superuser over the local socket (as the dev stack does)."""
        argv = pg.in_namespace(self.server.folder, [str(pg.pg_bin("psql")), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
                                                    "-h", str(pg.MOUNT / "sock"), "-p", str(self.server.port),
                                                    "-U", "postgres", "-d", POSTGRES_DB])
        done = subprocess.run(argv, input=sql, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def rt_url(self) -> str:
        password = load_secrets(self.config).realtime_password
        return f"postgresql://{REALTIME_USER}:{password}@{HOST}:{self.server.port}/{POSTGRES_DB}"


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    """A fresh cluster made by tools/postgres.py in a stack state folder, with a config naming it."""
    for name in ("KINLINE_PORT_OFFSET", "KINLINE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    monkeypatch.setenv("KINLINE_STATE", str(state))
    port = _free_port()
    toml = tmp_path / "stack.toml"
    toml.write_text(TEST_TOML.replace("postgres = 15440", f"postgres = {port}"))
    config = load_config(toml)
    assert config.postgres_port == port and pg.folder(config) == state / "postgres"
    (state / "secrets.toml").write_text(f'postgres_password = "{PASSWORD}"\n')
    load_secrets(config)  # the other secrets, realtime_password among them, generated as at set-up
    pg.ensure_cluster(pg.folder(config), PASSWORD)
    server = PostgresServer(pg.folder(config), port)
    server.start()
    try:
        yield Cluster(server, config, toml)
    finally:
        server.stop()


def _as_official_image(cluster: Cluster) -> None:
    """The cluster as compose's postgres image makes it from ./var/postgres.env: the database
    owned by its superuser "postgres", who logs in over TCP with a password; no "kinline"."""
    admin = load_secrets(cluster.config).postgres_admin_password
    hba = pg.folder(cluster.config) / "data" / "pg_hba.conf"
    hba.write_text(hba.read_text() + f"host {POSTGRES_DB} postgres 127.0.0.1/32 scram-sha-256\n")
    cluster.psql(f"ALTER ROLE postgres PASSWORD '{admin}'; ALTER DATABASE {POSTGRES_DB} OWNER TO postgres;"
                 f" DROP OWNED BY {POSTGRES_USER}; DROP ROLE {POSTGRES_USER}; SELECT pg_reload_conf();")


def _production(cluster: Cluster) -> None:
    done = subprocess.run([sys.executable, "-m", "tools.postgres", "provision", "--config", str(cluster.config_file),
                           "--wait", "10"], capture_output=True, text=True, timeout=60, cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert done.returncode == 0, done.stderr
    assert f"{REALTIME_USER}: role and app device tables ready" in done.stdout


async def _dev(cluster: Cluster) -> None:
    stack.ensure_realtime_role(cluster.config)
    await stack.ensure_device_tables(cluster.config)


async def _made(cluster: Cluster, way: str) -> None:
    if way == "production":
        _as_official_image(cluster)
        _production(cluster)
        await _assert_services_role_owns_and_is_no_superuser(cluster)
    else:
        await _dev(cluster)


async def _assert_read_only_on_ps_tables(cluster: Cluster) -> None:
    conn = await asyncpg.connect(cluster.rt_url(), timeout=10)
    try:
        for table in PS_TABLES:
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0
        # Its grants: SELECT on the three ps_* tables, nothing else on any table.
        grants = await conn.fetch("SELECT table_name, privilege_type FROM information_schema.role_table_grants "
                                  "WHERE grantee = $1", REALTIME_USER)
        assert sorted((g["table_name"], g["privilege_type"]) for g in grants) == sorted(
            (t, "SELECT") for t in PS_TABLES)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetchval("SELECT count(*) FROM devices")  # the push tokens are not Asterisk's
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await conn.execute("INSERT INTO ps_aors (id) VALUES ('x')")
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await conn.execute("CREATE TABLE mine (id int)")
        role = await conn.fetchrow("SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls "
                                   "FROM pg_roles WHERE rolname = $1", REALTIME_USER)
        assert tuple(role.values()) == (False,) * 5
    finally:
        await conn.close()


@pytest.mark.parametrize("way", ["dev", "production"])
async def test_the_realtime_role_reads_the_ps_tables_and_nothing_else(cluster: Cluster, way: str) -> None:
    await _made(cluster, way)
    await _assert_read_only_on_ps_tables(cluster)


async def _assert_services_role_owns_and_is_no_superuser(cluster: Cluster) -> None:
    conn = await asyncpg.connect(cluster.config.postgres_url, timeout=10)
    try:
        role = await conn.fetchrow("SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = $1",
                                   POSTGRES_USER)
        assert tuple(role.values()) == (False,) * 3
        owners = {r["tablename"]: r["tableowner"] for r in await conn.fetch(
            "SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'public'")}
        assert set(PS_TABLES) | {"devices"} <= set(owners) and set(owners.values()) == {POSTGRES_USER}
        await conn.execute("CREATE TABLE history_probe (id int); DROP TABLE history_probe")  # its own schema
    finally:
        await conn.close()


async def test_production_runs_again_and_takes_a_new_password(cluster: Cluster) -> None:
    _as_official_image(cluster)
    _production(cluster)
    old = cluster.rt_url()
    secrets_file = cluster.config.path("secrets.toml")
    text = secrets_file.read_text()
    current = load_secrets(cluster.config).realtime_password
    secrets_file.write_text(text.replace(current, "f00d" * 12))
    _production(cluster)  # each `docker compose up` runs it: idempotent, the password set again
    with pytest.raises(asyncpg.InvalidPasswordError):
        await (await asyncpg.connect(old, timeout=10)).close()
    await _assert_read_only_on_ps_tables(cluster)


def test_both_ways_run_the_same_sql(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """The dev stack's psql input is tools/postgres.py's SQL (plus a reload of pg_hba.conf)."""
    sent: list[str] = []

    def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        sent.append(str(kwargs["input"]))
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(stack.subprocess, "run", run)
    stack.ensure_realtime_role(cluster.config)
    password = load_secrets(cluster.config).realtime_password
    assert sent == [pg.realtime_role_sql(password) + "SELECT pg_reload_conf();\n"]
    with pytest.raises(pg.PostgresError):
        pg.realtime_role_sql("x'; DROP ROLE kinline; --")
