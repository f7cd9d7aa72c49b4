"""PostgreSQL for a stack's history: one cluster per stack in ``<state>/postgres``.

The server refuses to run as root, so it runs as Debian's ``postgres`` user. The
state folder may sit under folders only root can enter (``var/`` is 0700, pytest's
temporary folders too), so the server and ``initdb`` run in a mount namespace of
their own (``unshare``, as Asterisk does) where ``<state>/postgres`` is bound on
``/run/kinline-postgres``: the unprivileged user reaches it without any folder
above it being opened up. Every stack binds the same mount point, each in its
own namespace.

Layout: ``<state>/postgres/data`` (the cluster, made once), ``<state>/postgres/sock``
(its Unix socket, 0700). It listens on ``host:postgres_port`` (loopback) and
takes only the services' role ``kinline`` with its password (SCRAM) over TCP,
to the database ``kinline``; the bootstrap superuser ``postgres`` has no
password and may log in only by the local socket as the OS user ``postgres``.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

from tools.config import POSTGRES_DB, POSTGRES_USER, REALTIME_USER, StackConfig, load_secrets

RUN_AS = "postgres"  # Debian's unprivileged user of the postgresql package
MOUNT = Path("/run/kinline-postgres")  # <state>/postgres, seen from inside the server's namespace
PG_LIB = Path("/usr/lib/postgresql")
# A small cluster: several stacks (dev, tests) run side by side on a 2-core box.
SERVER_SETTINGS = {
    "shared_buffers": "16MB",
    "max_connections": "40",
    "password_encryption": "scram-sha-256",
    "unix_socket_permissions": "0700",
    "logging_collector": "off",
    "log_line_prefix": "%m [%p] ",
    "huge_pages": "off",
}
HBA = f"""# Written by tools/postgres.py.
local all postgres peer
host {POSTGRES_DB} {POSTGRES_USER} 127.0.0.1/32 scram-sha-256
host {POSTGRES_DB} {REALTIME_USER} 127.0.0.1/32 scram-sha-256
"""


class PostgresError(Exception):
    """The history's PostgreSQL could not be set up or started."""


def pg_bin(name: str) -> Path:
    """A program of the newest PostgreSQL installed (Debian: /usr/lib/postgresql/<major>/bin)."""
    versions = sorted((int(p.name), p) for p in PG_LIB.glob("*") if p.name.isdigit() and (p / "bin" / name).exists())
    if not versions:
        raise PostgresError(f"PostgreSQL is not installed (no {PG_LIB}/*/bin/{name}): run tools/setup.sh")
    return versions[-1][1] / "bin" / name


def run_as_ids() -> tuple[int, int]:
    try:
        user = pwd.getpwnam(RUN_AS)
    except KeyError as err:
        raise PostgresError(f"no user {RUN_AS!r}: install Debian's postgresql (tools/setup.sh)") from err
    return user.pw_uid, user.pw_gid


def folder(config: StackConfig) -> Path:
    return config.path("postgres")


def in_namespace(top: Path, argv: list[str]) -> list[str]:
    """``argv`` as the ``postgres`` user, in a mount namespace where ``top`` is :data:`MOUNT`.
    The environment is reset (the services' secrets are not passed on); exec all the
    way, so the pid started is the program's own."""
    script = (f"mount --bind {shlex.quote(str(top))} {shlex.quote(str(MOUNT))} && "
              f"exec setpriv --reuid={RUN_AS} --regid={RUN_AS} --init-groups --reset-env -- {shlex.join(argv)}")
    return ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script]


def prepare_folder(top: Path) -> None:
    """``top`` and its socket folder, the postgres user's, 0700; the mount point."""
    uid, gid = run_as_ids()
    MOUNT.mkdir(mode=0o755, parents=True, exist_ok=True)
    for path in (top, top / "sock"):
        path.mkdir(mode=0o700, exist_ok=True)
        os.chown(path, uid, gid)
        path.chmod(0o700)


def ensure_cluster(top: Path, password: str) -> bool:
    """Make the cluster once (True if it was made now): initdb into ``data.new``, the
    role and database by the single-user server (the password on its standard
    input, never on a command line), pg_hba.conf, then rename to ``data``: a set-up
    that died half-way is made again, never taken for a cluster."""
    data = top / "data"
    if (data / "PG_VERSION").exists():
        return False
    if not re.fullmatch(r"[0-9a-f]{16,}", password):
        raise PostgresError("postgres_password in the secrets must be hex")
    prepare_folder(top)
    new = top / "data.new"
    shutil.rmtree(new, ignore_errors=True)
    inside = str(MOUNT / "data.new")
    _run(in_namespace(top, [str(pg_bin("initdb")), "-D", inside, "-U", "postgres", "-E", "UTF8",
                            "--locale=C.UTF-8", "--auth-local=peer", "--auth-host=scram-sha-256"]), "initdb")
    sql = (f"CREATE ROLE {POSTGRES_USER} LOGIN PASSWORD '{password}'\n"
           f"CREATE DATABASE {POSTGRES_DB} OWNER {POSTGRES_USER}\n")
    _run(in_namespace(top, [str(pg_bin("postgres")), "--single", "-D", inside, "postgres"]), "single-user set-up",
         stdin=sql)
    uid, gid = run_as_ids()
    hba = new / "pg_hba.conf"
    hba.write_text(HBA)
    os.chown(hba, uid, gid)
    hba.chmod(0o600)
    os.replace(new, data)
    return True


def _run(argv: list[str], what: str, stdin: str | None = None) -> None:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise PostgresError(f"{what} failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-2000:]}")


def server_argv(top: Path, host: str, port: int) -> list[str]:
    """The server in the foreground (its log on stderr), listening on ``host:port`` only."""
    argv = [str(pg_bin("postgres")), "-D", str(MOUNT / "data"), "-p", str(port),
            "-c", f"listen_addresses={host}", "-c", f"unix_socket_directories={MOUNT / 'sock'}"]
    for key, value in SERVER_SETTINGS.items():
        argv += ["-c", f"{key}={value}"]
    return in_namespace(top, argv)


def wait_ready(host: str, port: int, timeout: float) -> None:
    """Until the server accepts connections (pg_isready), at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    isready = str(pg_bin("pg_isready"))
    while time.monotonic() < deadline:
        done = subprocess.run([isready, "-q", "-h", host, "-p", str(port), "-d", POSTGRES_DB, "-t", "1"],
                              capture_output=True, timeout=5)
        if done.returncode == 0:
            return
        time.sleep(0.1)
    raise PostgresError(f"PostgreSQL did not accept connections on {host}:{port} within {timeout:.0f} s")


def setup(config: StackConfig) -> bool:
    """The stack's cluster, made if missing (True if made now): tools/stack.py's prepare step."""
    top = folder(config)
    prepare_folder(top)
    made = ensure_cluster(top, load_secrets(config).postgres_password)
    hba = top / "data" / "pg_hba.conf"
    if hba.read_text() != HBA:  # a cluster made before a role was added (Asterisk's realtime role)
        uid, gid = run_as_ids()
        hba.write_text(HBA)
        os.chown(hba, uid, gid)
        hba.chmod(0o600)
    return made


def argv(config: StackConfig) -> list[str]:
    return server_argv(folder(config), config.host, config.postgres_port)


def realtime_role_sql(password: str) -> str:
    """Asterisk's PostgreSQL role for PJSIP realtime (the apps' SIP accounts): it may log in
    and read, nothing more (no superuser, no roles, no databases, every transaction read-only);
    :func:`store.devices.ensure_schema` grants it SELECT on the ps_* tables only. Made if
    missing, its password set again each time: the one SQL both the dev stack (psql as the
    bootstrap superuser, tools/stack.py) and production (:func:`provision`) run."""
    if not password.isalnum():
        raise PostgresError("realtime_password in the secrets must be letters and digits")
    return (
        f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{REALTIME_USER}') THEN "
        f"CREATE ROLE {REALTIME_USER} LOGIN; END IF; END $$;\n"
        f"ALTER ROLE {REALTIME_USER} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS "
        f"PASSWORD '{password}';\n"
        f"ALTER ROLE {REALTIME_USER} SET default_transaction_read_only = on;\n"
    )


def services_role_sql(password: str) -> str:
    """Production: the services' role "kinline" as the dev stack's cluster has it (made at
    initdb there): it logs in and owns the database, and is no superuser. Made if missing,
    its password set again each time."""
    if not re.fullmatch(r"[0-9a-f]{16,}", password):
        raise PostgresError("postgres_password in the secrets must be hex")
    return (
        f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{POSTGRES_USER}') THEN "
        f"CREATE ROLE {POSTGRES_USER} LOGIN; END IF; END $$;\n"
        f"ALTER ROLE {POSTGRES_USER} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS "
        f"PASSWORD '{password}';\n"
        f"ALTER DATABASE {POSTGRES_DB} OWNER TO {POSTGRES_USER};\n"
    )


async def provision(admin_url: str, url: str, password: str, realtime_password: str) -> None:
    """Production (docker-compose.yml's one-shot ``postgres-init``, before Asterisk): as the
    official image's superuser (``admin_url``), the services' role (``password``) and the
    realtime role; then, as the services' role (``url``), the app devices' tables, which it
    owns, granted to the realtime role. No service runs as a superuser."""
    import asyncpg

    from store.devices import ensure_schema

    admin = await asyncpg.connect(admin_url, timeout=10)
    try:
        await admin.execute(services_role_sql(password) + realtime_role_sql(realtime_password))
    finally:
        await admin.close()
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await ensure_schema(conn)
    finally:
        await conn.close()


def main(args: list[str] | None = None) -> None:
    """``python -m tools.postgres provision --config config/production.toml``: what compose runs
    after PostgreSQL is up (secrets from the state folder, $KINLINE_STATE; none on the command line)."""
    import argparse
    import asyncio
    import sys

    from tools.config import load_config

    parser = argparse.ArgumentParser(description="Kinline: PostgreSQL roles and tables for production")
    parser.add_argument("command", choices=["provision"])
    parser.add_argument("--config", default=None)
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for PostgreSQL to accept logins")
    options = parser.parse_args(args)
    config = load_config(options.config)
    secrets = load_secrets(config)
    deadline = time.monotonic() + options.wait
    while True:
        try:
            asyncio.run(provision(config.postgres_admin_url, config.postgres_url, secrets.postgres_password,
                                  secrets.realtime_password))
            break
        except (OSError, TimeoutError) as err:  # not accepting connections yet
            if time.monotonic() >= deadline:
                sys.exit(f"PostgreSQL at {config.host}:{config.postgres_port} unreachable: {err}")
            time.sleep(1)
    sys.stdout.write(f"{REALTIME_USER}: role and app device tables ready on {config.host}:{config.postgres_port}\n")


if __name__ == "__main__":
    main()
