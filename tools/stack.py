"""Start and stop the stack (Redis, PostgreSQL, FastAGI server, chrooted Asterisk...) as local processes.

    python -m tools.stack up|down|status|run [--config config/dev.toml]

Pid files in <state>/run, logs in <state>/logs. Asterisk runs in its own mount
namespace (unshare) so its bind mounts vanish with it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from guard.firewall import table_name as guard_table_name
from store.devices import ensure_schema as ensure_device_schema
from tools import kamailio_conf, postgres
from tools.asterisk_conf import asterisk_ids, write_generated
from tools.config import (
    APPS_NODE,
    NODE_ENDPOINT,
    NODE_SHARED,
    POSTGRES_DB,
    REALTIME_USER,
    REDIS_USER,
    REPO,
    Secrets,
    StackConfig,
    apps_node_ami_port,
    load_config,
    load_secrets,
    nodes,
)
from tools.prompts import generate as generate_prompts

# The push bridge follows Asterisk: it listens to its AMI contact events.
SERVICES = ("redis", "postgres", "history", "api", "agi", "asterisk", "pushbridge", "guard", "reconciler")
# A cluster ([cluster] nodes >= 2): the shared services, then each node's own (in its
# node config: its state folder, ports and pid files), then Kamailio on the terminals' port,
# then what talks to node 1's AMI (the API, the push bridge). Each node's guard watches its
# own doors but trusts Kamailio: every terminal's failed login comes from Kamailio's address,
# and Kamailio applies the guard's rule to the terminals itself (README, "Two nodes").
CLUSTER_SHARED = ("redis", "postgres", "history")
NODE_SERVICES = ("agi", "asterisk", "guard", "reconciler")
CLUSTER_FRONT = ("kamailio", "api", "pushbridge")
# Asterisk drops root for the root's (Debian package's) own "asterisk" user.
ASTERISK_COMMAND = ["/usr/sbin/asterisk", "-f", "-n", "-U", "asterisk", "-G", "asterisk",
                    "-C", "/etc/asterisk/asterisk.conf"]
# Folders Asterisk writes (bind-mounted into its root): owned by its user, 0700.
ASTERISK_WRITABLE = ("spool", "recordings", "names", "logs/asterisk", "logs/asterisk/cel-custom", "run/asterisk",
                     "astdb")
# Spawned services create their files (recordings, Redis AOF, logs) 0600 / folders 0700.
SERVICE_UMASK = 0o077


class StackError(Exception):
    """The stack could not be started or stopped."""


def _out(message: str) -> None:
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def prepare(config: StackConfig) -> None:
    """Folders, secrets, generated Asterisk config, Redis users and prompts."""
    config.state.mkdir(mode=0o700, parents=True, exist_ok=True)
    for sub in ("run", "logs", "redis", *ASTERISK_WRITABLE):
        config.path(sub).mkdir(mode=0o700, parents=True, exist_ok=True)
    config.path("prompts").mkdir(exist_ok=True)  # read by Asterisk's user: not secret
    _give_to_asterisk(config)
    secrets = load_secrets(config)
    write_generated(config, secrets)
    write_redis_acl(config, secrets.redis_password)
    write_services_env(config)
    write_postgres_env(config)
    generate_prompts(config.path("prompts"))
    if config.clustered:
        for node in nodes(config):
            prepare_node(config, node, secrets)
        kamailio_conf.write(config)


def prepare_node(config: StackConfig, node: StackConfig, secrets: Secrets) -> None:
    """A node's state folder: links to what the cluster shares, its own writable folders
    and generated Asterisk config (its ports, its systemname)."""
    node.state.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name in NODE_SHARED:
        link, target = node.path(name), config.path(name)
        if link.is_symlink() and link.readlink() == target:
            continue
        if link.exists() or link.is_symlink():
            raise StackError(f"{link} should be a link to {target}")
        link.symlink_to(target)
    for sub in ("run", "logs", *ASTERISK_WRITABLE):
        node.path(sub).mkdir(mode=0o700, parents=True, exist_ok=True)
    _give_to_asterisk(node)
    write_generated(node, secrets)


def _give_to_asterisk(config: StackConfig) -> None:
    """Asterisk's writable folders (and what an older stack left in them) belong to its user."""
    ids = asterisk_ids(config)
    if ids is None:
        return  # no root yet: up() refuses to start without one
    uid, gid = ids
    for sub in ASTERISK_WRITABLE:
        top = config.path(sub)
        os.chown(top, uid, gid)
        for dirpath, dirnames, filenames in os.walk(top):
            for name in (*dirnames, *filenames):
                os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)


def redis_acl_path(config: StackConfig) -> Path:
    return config.path("redis-users.acl")


def write_redis_acl(config: StackConfig, password: str) -> None:
    """Redis users: the default user off; the services' user with a password (stored as its
    SHA-256), every key and command except administration. Created 0600.

    The default user is off (nobody can log in as it) but keeps its permissions:
    Redis 7.0 checks the default user's permissions when it replays the AOF's
    MULTI/EXEC blocks (every Lua script is logged as one) at start-up, and with a
    permission-less default user it refuses them all: every money movement since
    the last rewrite would be lost on restart (tests/e2e/test_faults.py restarts Redis)."""
    digest = hashlib.sha256(password.encode()).hexdigest()
    text = f"user default off ~* &* +@all\nuser {REDIS_USER} on #{digest} ~* &* +@all -@admin\n"
    path = redis_acl_path(config)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


# Services this process spawned, by pid: kept so that they can be reaped (a child
# that dies stays a zombie until its parent waits for it) and their exit status read.
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class ServiceState:
    """What a service's pid file says, checked against /proc."""

    name: str
    pid: int | None  # the pid in the pid file, if any
    alive: bool
    detail: str  # "running" or why it is not


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot) from /proc/<pid>/stat, or None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) ": field 3 on
    return fields[0], int(fields[19])


def _write_pidfile(config: StackConfig, name: str, pid: int) -> None:
    """The pid and its start time: a later pid with the same number is not mistaken for it."""
    stat = _proc_stat(pid)
    config.path("run", f"{name}.pid").write_text(f"{pid} {stat[1] if stat else 0}\n")


def service_state(config: StackConfig, name: str) -> ServiceState:
    """Is the service of ``name``'s pid file alive? A zombie, a gone pid or a pid now
    used by another process (start time differs) all count as dead."""
    path = config.path("run", f"{name}.pid")
    try:
        words = path.read_text().split()
        pid = int(words[0])
        started = int(words[1]) if len(words) > 1 else None
    except FileNotFoundError:
        return ServiceState(name, None, False, "stopped")
    except (OSError, ValueError, IndexError):
        return ServiceState(name, None, False, f"stopped (unreadable pid file {path})")
    stat = _proc_stat(pid)
    if stat is None:
        return ServiceState(name, pid, False, f"dead (pid {pid} is gone)")
    state, start = stat
    if started is not None and start != started:
        return ServiceState(name, pid, False, f"dead (pid {pid} is now another process)")
    if state in ("Z", "X", "x"):
        return ServiceState(name, pid, False, f"dead (pid {pid} exited, not yet reaped: zombie)")
    return ServiceState(name, pid, True, "running")


def _pid(config: StackConfig, name: str) -> int | None:
    state = service_state(config, name)
    return state.pid if state.alive else None


def reap(pid: int) -> int | None:
    """Collect a dead child: its exit code (negative: killed by that signal), or None
    if it still runs, was not ours or was already collected."""
    proc = _children.get(pid)
    if proc is not None:
        code = proc.poll()
        if code is not None:
            del _children[pid]
        return code
    try:
        got, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    return os.waitstatus_to_exitcode(status) if got == pid else None


def start_service(config: StackConfig, name: str) -> None:
    """Start one service of the stack (after ``up`` prepared it) and wait for its port."""
    if name == "redis":
        _spawn(config, name, redis_argv(config))
        wait_port(config.host, config.redis_port, 10, "Redis")
    elif name == "postgres":
        try:
            if postgres.setup(config):
                _out(f"postgres: cluster made in {postgres.folder(config)}")
            _spawn(config, name, postgres.argv(config))
            postgres.wait_ready(config.host, config.postgres_port, 30)
            ensure_realtime_role(config)
            asyncio.run(ensure_device_tables(config))
        except postgres.PostgresError as err:
            raise StackError(f"{err} (see {config.path('logs', 'postgres.log')})") from err
    elif name == "history":
        _spawn(config, name, history_argv(config))
    elif name == "api":
        _spawn(config, name, api_argv(config))
        wait_port(config.host, config.api_port, 15, "relatives' API")
    elif name == "agi":
        _spawn(config, name, agi_argv(config))
        wait_port(config.host, config.agi_port, 10, "FastAGI server")
    elif name == "asterisk":
        _spawn(config, name, asterisk_argv(config))
        wait_asterisk_booted(config)
    elif name == "pushbridge":
        _spawn(config, name, pushbridge_argv(config))
        wait_pushbridge(config)
    elif name == "guard":
        _spawn(config, name, guard_argv(config))
        wait_guard(config)
    elif name == "reconciler":
        _spawn(config, name, reconciler_argv(config))
    elif name == "kamailio":
        _spawn(config, name, kamailio_conf.argv(config))
        wait_kamailio(config)
    else:
        raise StackError(f"no service {name!r}")


def _spawn(config: StackConfig, name: str, argv: list[str]) -> int:
    if (pid := _pid(config, name)) is not None:
        _out(f"{name}: already running (pid {pid})")
        return pid
    log = os.fdopen(os.open(config.path("logs", f"{name}.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, cwd=REPO, env=service_env(config),
                            umask=SERVICE_UMASK)
    _children[proc.pid] = proc
    _write_pidfile(config, name, proc.pid)
    _out(f"{name}: started (pid {proc.pid})")
    return proc.pid


def service_secrets(config: StackConfig) -> dict[str, str]:
    """What the Python services need from the secrets, as environment variables."""
    secrets = load_secrets(config)
    return {"KINLINE_REDIS_URL": config.redis_url, "KINLINE_POSTGRES_URL": config.postgres_url,
            # The services' AMI user: only the events they follow (tools/asterisk_conf.py SERVICE_EVENTS).
            "KINLINE_AMI_USER": secrets.ami_events_user, "KINLINE_AMI_SECRET": secrets.ami_events_secret,
            "KINLINE_AMI_STATUS_USER": secrets.ami_status_user, "KINLINE_AMI_STATUS_SECRET": secrets.ami_status_secret,
            "KINLINE_AMI_ORIGINATE_USER": secrets.ami_originate_user,
            "KINLINE_AMI_ORIGINATE_SECRET": secrets.ami_originate_secret,
            "KINLINE_APP_SIP": f"{config.app_sip_advertised}:{config.app_sip_port}"}  # what apps are told


def ensure_realtime_role(config: StackConfig) -> None:
    """Asterisk's PostgreSQL role for PJSIP realtime (the apps' SIP accounts): it may log in
    to the database and read; the API grants it SELECT on the ps_* tables only. Made or its
    password set again at every start, by the bootstrap superuser over the local socket
    (the password on psql's standard input, never on a command line)."""
    try:
        sql = postgres.realtime_role_sql(load_secrets(config).realtime_password) + "SELECT pg_reload_conf();\n"
    except postgres.PostgresError as err:
        raise StackError(str(err)) from err
    top = postgres.folder(config)
    argv = postgres.in_namespace(top, [str(postgres.pg_bin("psql")), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                                       "-h", str(postgres.MOUNT / "sock"), "-p", str(config.postgres_port),
                                       "-U", "postgres", "-d", POSTGRES_DB])
    done = subprocess.run(argv, input=sql, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise StackError(f"could not make PostgreSQL role {REALTIME_USER}: {done.stderr.strip()[-500:]}")


async def ensure_device_tables(config: StackConfig) -> None:
    """The app devices' tables, made (and granted to Asterisk's role) before Asterisk
    starts: it reads every realtime AOR at start (res_pjsip's qualify set-up)."""
    conn = await asyncpg.connect(config.postgres_url, timeout=10)
    try:
        await ensure_device_schema(conn)
    finally:
        await conn.close()


def service_env(config: StackConfig) -> dict[str, str]:
    """The services' environment: secrets travel here, never on a command line (ps shows those)."""
    return dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", **service_secrets(config))


def services_env_path(config: StackConfig) -> Path:
    return config.path("services.env")


def write_services_env(config: StackConfig) -> None:
    """The same variables as a 0600 env file, for docker-compose.yml's ``env_file``."""
    path = services_env_path(config)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("".join(f"{k}={v}\n" for k, v in service_secrets(config).items()))
    os.replace(tmp, path)


def postgres_env_path(config: StackConfig) -> Path:
    return config.path("postgres.env")


def write_postgres_env(config: StackConfig) -> None:
    """docker-compose.yml's postgres container (the official image) makes its cluster from
    these: its superuser "postgres" and password, and the database. The services' role
    "kinline" is made by postgres-init (no superuser: tools/postgres.py provision). 0600."""
    path = postgres_env_path(config)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"POSTGRES_USER=postgres\nPOSTGRES_DB={POSTGRES_DB}\n"
                 f"POSTGRES_PASSWORD={load_secrets(config).postgres_admin_password}\n")
    os.replace(tmp, path)


def redis_argv(config: StackConfig) -> list[str]:
    return [
        "redis-server", "--bind", config.host, "--port", str(config.redis_port),
        "--dir", str(config.path("redis")), "--appendonly", "yes",
        "--appendfsync", config.appendfsync, "--save", "", "--daemonize", "no",
        "--protected-mode", "yes", "--logfile", "", "--aclfile", str(redis_acl_path(config)),
    ]


def agi_argv(config: StackConfig) -> list[str]:
    """The FastAGI server; it reads Redis' URL (with the password) from $KINLINE_REDIS_URL."""
    return [sys.executable, "-m", "agi.main", "--host", config.host, "--port", str(config.agi_port),
            "--recordings", str(config.path("recordings")), "--names", str(config.path("names")),
            "--prompts", str(config.path("prompts")), "--secrets", str(config.path("secrets.toml")),
            "--metrics-port", str(config.agi_metrics_port),
            # overload control: past these, new calls hear "all lines are busy" ([agi], 0: off)
            "--max-in-ivr", str(config.agi_max_in_ivr), "--max-agi-latency-ms", str(config.agi_max_latency_ms),
            # a cluster's node other than the apps' node: calls to the app go through that node
            *(["--apps-node", f"{config.host}:{apps_node_ami_port(config)},{NODE_ENDPOINT.format(node=APPS_NODE)}"]
              if config.node > APPS_NODE else []),
            "--log-level", os.environ.get("KINLINE_AGI_LOG_LEVEL", "INFO")]


def api_argv(config: StackConfig) -> list[str]:
    """The relatives' HTTP API; Redis URL from the environment, webhook secret from the secrets file."""
    return [sys.executable, "-m", "api.main", "--host", config.host, "--port", str(config.api_port),
            "--secrets", str(config.path("secrets.toml")), "--sms-log", str(config.path("logs", "sms.log")),
            "--ami", f"{config.host}:{config.ami_port}"]


def history_argv(config: StackConfig) -> list[str]:
    """Copies call records and ledgers from Redis into PostgreSQL; both URLs from the environment."""
    return [sys.executable, "-m", "history.main", "--retention-s", str(config.history_retention_s)]


def reconciler_argv(config: StackConfig) -> list[str]:
    """Settles what a call's hangup path left open; Redis URL and AMI user from the environment."""
    return [sys.executable, "-m", "reconciler.main", "--ami-host", config.host, "--ami-port", str(config.ami_port),
            "--cel-log", str(config.path("logs", "asterisk", "cel-custom", "kinline.csv")),
            "--recordings", str(config.path("recordings")), "--metrics-port", str(config.reconciler_metrics_port),
            # a cluster's node settles only its own calls (uniqueids "<systemname>-...")
            *(("--node", config.systemname, "--systemname", config.systemname) if config.systemname else ())]


def guard_argv(config: StackConfig) -> list[str]:
    """The SIP guard, for both doors (terminals' and apps' ports); AMI credentials from
    $KINLINE_AMI_USER / $KINLINE_AMI_SECRET."""
    return [sys.executable, "-m", "guard.main", "--ami-host", config.host, "--ami-port", str(config.ami_port),
            "--sip-port", str(config.sip_port), "--app-sip-port", str(config.app_sip_port),
            # a cluster node: Kamailio, on the stack's SIP address, relays every terminal
            *(("--trust", config.sip_host) if config.node else ())]


def pushbridge_argv(config: StackConfig) -> list[str]:
    """The push bridge; Redis, PostgreSQL and the read-only AMI user from the environment, and
    its [push] config from $KINLINE_PUSH_CONFIG if set (none: pushes disabled, it says so)."""
    return [sys.executable, "-m", "pushbridge.main", "--ami-host", config.host, "--ami-port", str(config.ami_port),
            "--metrics-port", str(config.pushbridge_metrics_port)]


def wait_pushbridge(config: StackConfig, timeout: float = 15.0) -> None:
    """The bridge is ready when its alive key says it is logged in to AMI."""
    import redis

    client = redis.Redis.from_url(config.redis_url, socket_timeout=2, socket_connect_timeout=2)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and _pid(config, "pushbridge") is not None:
            with contextlib.suppress(redis.RedisError, ValueError):
                alive = client.get("kl:pushbridge:alive")
                if alive and json.loads(alive).get("ami") is True:
                    return
            time.sleep(0.1)
    finally:
        client.close()
    raise StackError(f"the push bridge did not come up (see {config.path('logs', 'pushbridge.log')})")


def wait_guard(config: StackConfig, timeout: float = 15.0) -> None:
    """The guard is ready when its nftables table exists (it makes it after logging in to AMI)."""
    table = guard_table_name(config.sip_port)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _pid(config, "guard") is None:
            break
        done = subprocess.run(["nft", "list", "table", "inet", table], capture_output=True, timeout=5)
        if done.returncode == 0:
            return
        time.sleep(0.2)
    raise StackError(f"the guard did not set up nftables table {table} (see {config.path('logs', 'guard.log')})")


def asterisk_mounts(config: StackConfig) -> list[tuple[Path, str, bool]]:
    """(host path, path inside the root, read-only)."""
    return [
        (REPO / "asterisk" / "conf", "/etc/asterisk", True),
        (REPO / "dialplan", "/usr/share/kinline/dialplan", True),
        (config.path("generated"), "/etc/kinline", True),
        (config.path("generated", "hosts"), "/etc/hosts", True),
        (config.path("prompts"), "/usr/share/asterisk/sounds/kinline", True),
        (config.path("spool"), "/var/spool/asterisk", False),
        (config.path("recordings"), "/var/lib/kinline/recordings", False),
        (config.path("names"), "/var/lib/kinline/names", False),
        (config.path("logs", "asterisk"), "/var/log/asterisk", False),
        (config.path("run", "asterisk"), "/var/lib/kinline/run", False),
        (config.path("astdb"), "/var/lib/kinline/db", False),
    ]


def asterisk_argv(config: StackConfig) -> list[str]:
    root = config.asterisk_root
    quoted_root = shlex.quote(str(root))
    # The cached root is shared by every stack: Asterisk sees it read-only, with a
    # private /tmp, and writes only into the folders mounted from this stack's state.
    script = ["set -e", f"mount --bind {quoted_root} {quoted_root}", f"mount -o remount,bind,ro {quoted_root}",
              f"mount -t tmpfs -o mode=1777,size=16m tmpfs {shlex.quote(str(root / 'tmp'))}"]
    for src, dest, ro in asterisk_mounts(config):
        inside = root / dest.lstrip("/")
        # A symlink on the way would point the mount at the host's own files.
        if any(p.is_symlink() for p in [inside, *inside.parents] if root in p.parents or p == root):
            raise StackError(f"mount point {dest} in the Asterisk root is (under) a symlink")
        if not inside.exists():
            raise StackError(f"mount point {dest} missing in the Asterisk root: rebuild it")
        target = shlex.quote(f"{root}{dest}")
        script.append(f"mount --bind {shlex.quote(str(src))} {target}")
        if ro:
            script.append(f"mount -o remount,bind,ro {target}")
    script.append(f"exec chroot {shlex.quote(str(root))} {shlex.join(ASTERISK_COMMAND)}")
    return ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", "\n".join(script)]


def _port_busy(host: str, port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as sock:
        if kind == socket.SOCK_STREAM:
            # as the services do: a port whose last connections are in TIME_WAIT is free
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _check_ports_free(config: StackConfig) -> None:
    """Refuse to start next to another stack on the same ports."""
    if config.clustered:
        _check_cluster_ports_free(config)
        return
    host, sip = config.host, config.sip_host
    wanted = [("redis", host, config.redis_port, socket.SOCK_STREAM),
              ("agi", host, config.agi_port, socket.SOCK_STREAM),
              ("agi", host, config.agi_metrics_port, socket.SOCK_STREAM),
              ("reconciler", host, config.reconciler_metrics_port, socket.SOCK_STREAM),
              ("pushbridge", host, config.pushbridge_metrics_port, socket.SOCK_STREAM),
              ("api", host, config.api_port, socket.SOCK_STREAM),
              ("postgres", host, config.postgres_port, socket.SOCK_STREAM),
              ("asterisk", host, config.ami_port, socket.SOCK_STREAM),
              ("asterisk", sip, config.sip_port, socket.SOCK_DGRAM),
              ("asterisk", config.app_sip_host, config.app_sip_port, socket.SOCK_DGRAM)]
    for name, address, port, kind in wanted:
        if _pid(config, name) is None and _port_busy(address, port, kind):
            raise StackError(f"cannot bind {address}:{port} for {name} (another stack running, or no such address?)")


def _check_cluster_ports_free(config: StackConfig) -> None:
    """A cluster's ports: the shared services', Kamailio's (the terminals' port) and each node's."""
    host = config.host
    wanted = [(config, "redis", host, config.redis_port, socket.SOCK_STREAM),
              (config, "postgres", host, config.postgres_port, socket.SOCK_STREAM),
              (config, "api", host, config.api_port, socket.SOCK_STREAM),
              (config, "pushbridge", host, config.pushbridge_metrics_port, socket.SOCK_STREAM),
              (config, "kamailio", config.sip_host, config.sip_port, socket.SOCK_DGRAM)]
    for node in nodes(config):
        wanted += [(node, "agi", host, node.agi_port, socket.SOCK_STREAM),
                   (node, "agi", host, node.agi_metrics_port, socket.SOCK_STREAM),
                   (node, "reconciler", host, node.reconciler_metrics_port, socket.SOCK_STREAM),
                   (node, "asterisk", host, node.ami_port, socket.SOCK_STREAM),
                   (node, "asterisk", node.sip_host, node.sip_port, socket.SOCK_DGRAM),
                   (node, "asterisk", node.app_sip_host, node.app_sip_port, socket.SOCK_DGRAM)]
    for owner, name, address, port, kind in wanted:
        if _pid(owner, name) is None and _port_busy(address, port, kind):
            where = f"node {owner.node} " if owner.node else ""
            raise StackError(f"cannot bind {address}:{port} for {where}{name} (another stack running?)")


def cluster_services(config: StackConfig) -> list[tuple[StackConfig, str]]:
    """A cluster's services in start order, each with the config it runs under."""
    order = [(config, name) for name in CLUSTER_SHARED]
    for node in nodes(config):
        order += [(node, name) for name in NODE_SERVICES]
    return order + [(config, name) for name in CLUSTER_FRONT]


def wait_kamailio(config: StackConfig, timeout: float = 15.0) -> None:
    """Kamailio is ready when an OPTIONS to the terminals' port gets any answer (a node's)."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((config.host, 0))
        sock.settimeout(0.5)
        port = sock.getsockname()[1]
        n = 0
        while time.monotonic() < deadline and _pid(config, "kamailio") is not None:
            n += 1
            sock.sendto(_options(config, port, n), (config.sip_host, config.sip_port))
            try:
                if sock.recv(4096).startswith(b"SIP/2.0 "):
                    return
            except TimeoutError:
                continue
    raise StackError(f"Kamailio did not answer on {config.sip_host}:{config.sip_port} "
                     f"(see {config.path('logs', 'kamailio.log')})")


def _options(config: StackConfig, port: int, n: int) -> bytes:
    target = f"{config.sip_host}:{config.sip_port}"
    return (f"OPTIONS sip:{target} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {config.host}:{port};branch=z9hG4bK-kinline-up-{os.getpid()}-{n}\r\n"
            "Max-Forwards: 10\r\n"
            f"From: <sip:stack@{config.host}>;tag=up{n}\r\nTo: <sip:{target}>\r\n"
            f"Call-ID: kinline-up-{os.getpid()}-{n}@{config.host}\r\nCSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n").encode()


def wait_port(host: str, port: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise StackError(f"{what} did not open {host}:{port} within {timeout:.0f} s")


def wait_asterisk_booted(config: StackConfig, timeout: float = 30.0) -> None:
    """Log in to AMI and wait for FullyBooted (again if Asterisk drops the
    connection while it starts)."""
    secrets = load_secrets(config)
    wait_port(config.host, config.ami_port, timeout, "Asterisk AMI")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if _booted(config, secrets.ami_user, secrets.ami_secret, deadline):
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise StackError("Asterisk did not report FullyBooted")


def _booted(config: StackConfig, user: str, secret: str, deadline: float) -> bool:
    left = max(0.1, deadline - time.monotonic())
    with socket.create_connection((config.host, config.ami_port), timeout=left) as sock:
        sock.sendall(f"Action: Login\r\nUsername: {user}\r\nSecret: {secret}\r\nEvents: system\r\n\r\n".encode())
        data = b""
        while time.monotonic() < deadline:
            chunk = sock.recv(4096)
            if not chunk:
                return False
            data += chunk
            if b"Authentication failed" in data:
                raise StackError("AMI login failed: secrets and generated config disagree")
            if b"Event: FullyBooted" in data:
                sock.sendall(b"Action: Logoff\r\n\r\n")
                return True
    return False


def up(config: StackConfig) -> None:
    if not (config.asterisk_root / "usr/sbin/asterisk").exists():
        raise StackError(f"no Asterisk root at {config.asterisk_root}: run tools/asterisk_root.sh")
    prepare(config)
    _check_ports_free(config)
    try:
        if config.clustered:
            for owner, name in cluster_services(config):
                start_service(owner, name)
            _out(f"cluster up: Kamailio on SIP {config.sip_host}:{config.sip_port}, "
                 + ", ".join(f"node {n.node} on {n.sip_port}" for n in nodes(config)))
            return
        for name in SERVICES:
            start_service(config, name)
    except BaseException:
        down(config)  # a service that did not start: stop those that did (no orphans holding ports)
        raise
    _out(f"stack up: SIP {config.sip_host}:{config.sip_port}, logs in {config.path('logs')}")


def stop_service(config: StackConfig, name: str, timeout: float = 10.0) -> None:
    state = service_state(config, name)
    pid = state.pid if state.alive else None
    if pid is None:
        if state.pid is not None:
            reap(state.pid)  # a dead child of ours: collect it
        config.path("run", f"{name}.pid").unlink(missing_ok=True)
        return
    with contextlib.suppress(ProcessLookupError):
        if name == "postgres":
            os.kill(pid, signal.SIGINT)  # its own "fast shutdown"; it stops its children itself
        else:
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid(config, name) is not None:
        time.sleep(0.05)
        _reap(pid)
    if _pid(config, name) is not None:
        os.killpg(pid, signal.SIGKILL)
        time.sleep(0.2)
        _reap(pid)
    config.path("run", f"{name}.pid").unlink(missing_ok=True)
    _out(f"{name}: stopped")


def _reap(pid: int) -> None:
    reap(pid)


def down(config: StackConfig) -> None:
    if config.clustered:
        for owner, name in reversed(cluster_services(config)):
            stop_service(owner, name)
        return
    for name in reversed(SERVICES):
        stop_service(config, name)


def status(config: StackConfig, names: tuple[str, ...] = SERVICES) -> bool:
    """Print each service's state; True if all of them are alive."""
    ok = True
    if config.clustered and names == SERVICES:
        for owner, name in cluster_services(config):
            state = service_state(owner, name)
            ok = ok and state.alive
            label = f"node{owner.node} {name}" if owner.node else name
            _out(f"{label}: running, pid {state.pid}" if state.alive else f"{label}: {state.detail}")
        return ok
    for name in names:
        state = service_state(config, name)
        ok = ok and state.alive
        _out(f"{name}: running, pid {state.pid}" if state.alive else f"{name}: {state.detail}")
    return ok


def asterisk_cli(config: StackConfig, command: str) -> str:
    """Run an Asterisk CLI command inside the running Asterisk's namespace and root."""
    pid = _pid(config, "asterisk")
    if pid is None:
        raise StackError("Asterisk is not running")
    out = subprocess.run(
        ["nsenter", "-t", str(pid), "-m", "-r", "/usr/sbin/asterisk", "-C",
         "/etc/asterisk/asterisk.conf", "-rx", command],
        capture_output=True, text=True, timeout=15,
    )
    return out.stdout


def apply_terminals(config: StackConfig) -> str:
    """Render terminals.json into Asterisk's config and reload it if it runs; say what happened.
    A cluster: into every node's config, each node reloaded; and into Kamailio's check of the
    terminals' subnets, Kamailio restarted if it runs and the check changed (it reads it when
    it starts; connected calls go on, their requests follow record-route; a request in flight
    during the restart, ~1 s, is retransmitted by its terminal or the call tried again)."""
    if config.clustered:
        said = "; ".join(f"node {node.node}: {apply_terminals(node)}" for node in nodes(config))
        path = kamailio_conf.folder(config) / "terminals.cfg"
        before = path.read_text() if path.exists() else None
        if kamailio_conf.write_terminals(config).read_text() != before and _pid(config, "kamailio") is not None:
            stop_service(config, "kamailio")
            start_service(config, "kamailio")
            said += "; Kamailio restarted (the terminals' subnets)"
        return said
    write_generated(config, load_secrets(config))
    try:
        asterisk_cli(config, "module reload res_pjsip.so")
    except StackError:
        return "Asterisk is not running: it reads the terminals when it starts"
    except (OSError, subprocess.SubprocessError) as err:
        sys.stderr.write(f"kinline: warning: could not reload Asterisk ({err}); run: module reload res_pjsip.so\n")
        return "config written; Asterisk not reloaded"
    return "Asterisk reloaded res_pjsip"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("up", "down", "status", "run", "cli", "prepare"))
    parser.add_argument("args", nargs="*")
    parser.add_argument("--config", default=None)
    opts = parser.parse_args(argv)
    config = load_config(opts.config)
    try:
        if opts.command == "up":
            up(config)
        elif opts.command == "prepare":
            prepare(config)
        elif opts.command == "down":
            down(config)
        elif opts.command == "status":
            return 0 if status(config) else 1
        elif opts.command == "cli":
            _out(asterisk_cli(config, " ".join(opts.args)))
        elif config.clustered:
            raise StackError("a cluster runs with up / down / status (run's supervisor knows one Asterisk only)")
        else:
            from tools.demo import run_foreground
            run_foreground(config)
    except StackError as exc:
        sys.stderr.write(f"stack: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
