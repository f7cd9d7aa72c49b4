"""docker-compose.yml (production) agrees with the dev stack's config and commands."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import yaml

from tools import postgres, stack
from tools.config import REPO, load_config

COMPOSE = REPO / "docker-compose.yml"
# What compose's `setup` renders from: config/production.toml, a copy of the example.
PRODUCTION = REPO / "config" / "production.example.toml"


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def _flag(command: list[str], name: str) -> str:
    assert name in command, f"{name} missing from {command}"
    return command[command.index(name) + 1]


def test_services_exist() -> None:
    services = _compose()["services"]
    assert {"asterisk", "redis", "agi", "pushbridge"} <= set(services)
    for name in ("asterisk", "redis", "agi", "pushbridge"):
        assert services[name]["network_mode"] == "host"


def test_redis_matches_dev_config() -> None:
    config = load_config(PRODUCTION)
    command = _compose()["services"]["redis"]["command"]
    dev = stack.redis_argv(config)
    assert _flag(command, "--port") == str(config.redis_port) == _flag(dev, "--port")
    assert _flag(command, "--bind") == config.host
    assert _flag(command, "--appendonly") == "yes" == _flag(dev, "--appendonly")
    assert _flag(command, "--appendfsync") == config.appendfsync == _flag(dev, "--appendfsync")
    assert any(v.endswith(":/data") for v in _compose()["services"]["redis"]["volumes"])
    assert _flag(command, "--dir") == "/data"
    # Users (default off, a password for the services) from the ACL file setup writes.
    acl = _flag(command, "--aclfile")
    assert Path(_flag(dev, "--aclfile")) == stack.redis_acl_path(config)
    assert f"./var/{stack.redis_acl_path(config).name}:{acl}:ro" in _compose()["services"]["redis"]["volumes"]


def test_agi_matches_dev_config() -> None:
    config = load_config(PRODUCTION)
    command = _compose()["services"]["agi"]["command"]
    dev = stack.agi_argv(config)
    assert command[1:3] == dev[1:3] == ["-m", "agi.main"]
    for flag in ("--host", "--port"):
        assert _flag(command, flag) == _flag(dev, flag), flag


def test_secrets_reach_the_services_by_environment_only() -> None:
    """The Redis URL (with its password) and the AMI user come from the env file setup
    writes (what tools/stack.py gives its services), never from a command line."""
    config = load_config(PRODUCTION)
    services = _compose()["services"]
    env_file = f"./var/{stack.services_env_path(config).name}"
    for name in ("agi", "pushbridge", "guard"):
        assert services[name]["env_file"] == env_file, name
        assert not any("redis://" in str(arg) for arg in services[name]["command"])
    for argv in (stack.agi_argv(config), stack.guard_argv(config), stack.redis_argv(config)):
        assert not any("redis://" in arg for arg in argv)


def test_guard_matches_dev_stack() -> None:
    config = load_config(PRODUCTION)
    service = _compose()["services"]["guard"]
    command, dev = service["command"], stack.guard_argv(config)
    assert command[1:3] == dev[1:3] == ["-m", "guard.main"]
    for flag in ("--ami-host", "--ami-port", "--sip-port", "--app-sip-port"):
        assert _flag(command, flag) == _flag(dev, flag), flag
    assert _flag(command, "--app-sip-port") == str(config.app_sip_port)  # the apps' door is guarded too
    assert service["cap_add"] == ["NET_ADMIN"]


def test_reconciler_reads_what_asterisk_writes() -> None:
    config = load_config(PRODUCTION)
    services = _compose()["services"]
    command, dev = services["reconciler"]["command"], stack.reconciler_argv(config)
    assert command[1:3] == dev[1:3] == ["-m", "reconciler.main"]
    for flag in ("--ami-host", "--ami-port"):
        assert _flag(command, flag) == _flag(dev, flag), flag
    assert _flag(dev, "--cel-log").endswith("/logs/asterisk/cel-custom/kinline.csv")
    asterisk = {v.split(":")[1]: v.split(":")[0] for v in services["asterisk"]["volumes"]}
    mine = {v.split(":")[1]: v.split(":")[0] for v in services["reconciler"]["volumes"]}
    assert _flag(command, "--cel-log") == "/var/log/asterisk/cel-custom/kinline.csv"
    assert mine["/var/log/asterisk"] == asterisk["/var/log/asterisk"] == "asterisk-logs"
    assert _flag(command, "--recordings") == "/var/lib/kinline/recordings"
    assert mine["/var/lib/kinline/recordings"] == asterisk["/var/lib/kinline/recordings"]
    assert services["reconciler"]["env_file"] == "./var/services.env"


def test_asterisk_mounts_match_dev_stack() -> None:
    config = load_config(PRODUCTION)
    service = _compose()["services"]["asterisk"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
    dev_mounts = {inside: host for host, inside, _ in stack.asterisk_mounts(config)}
    # Every container path the dev stack mounts is mounted in production too,
    # except the run folder and /etc/hosts (a container has its own).
    for inside in dev_mounts:
        if inside in ("/etc/hosts", "/var/lib/kinline/run", "/var/log/asterisk"):
            continue
        assert inside in mounts, f"{inside} not mounted in docker-compose.yml"
    assert mounts["/etc/asterisk"] == "./asterisk/conf"
    assert mounts["/usr/share/kinline/dialplan"] == "./dialplan"
    assert mounts["/var/lib/kinline/recordings"] == "recordings"
    assert {"recordings", "redis-data"} <= set(_compose()["volumes"])
    assert service["command"] == stack.ASTERISK_COMMAND


def test_setup_renders_the_production_profile() -> None:
    setup = _compose()["services"]["setup"]
    assert _flag(setup["command"], "--config") == "config/production.toml"
    assert "./config/production.toml:/app/config/production.toml:ro" in setup["volumes"]
    config = load_config(PRODUCTION)
    assert config.host == "127.0.0.1", "AGI, AMI and Redis stay on loopback"
    assert config.sip_host != config.host and config.carrier_host and config.terminal_subnets
    dev = load_config(REPO / "config" / "dev.toml")
    for port in ("sip_port", "agi_port", "ami_port", "redis_port"):
        assert getattr(config, port) == getattr(dev, port), port


ONE_SHOTS = ("setup", "postgres-init")  # run to completion at each `up`


def test_every_long_running_service_restarts() -> None:
    services = _compose()["services"]
    for name, service in services.items():
        if name in ONE_SHOTS:
            assert service["restart"] == "no", name
        else:
            assert service.get("restart") in ("unless-stopped", "always"), name


def test_asterisks_realtime_role_is_made_before_asterisk() -> None:
    """Production makes asterisk_rt as the dev stack does (tools/postgres.py's SQL; the
    component test tests/component/test_production_postgres.py runs this command on a real
    cluster): once PostgreSQL answers, and Asterisk waits for it."""
    services = _compose()["services"]
    init = services["postgres-init"]
    assert init["command"] == ["python", "-m", "tools.postgres", "provision", "--config", "config/production.toml"]
    assert init["environment"]["KINLINE_STATE"] == "/app/var" and "./var:/app/var" in init["volumes"]
    assert "./config/production.toml:/app/config/production.toml:ro" in init["volumes"]
    assert init["depends_on"]["postgres"]["condition"] == "service_healthy"
    check = services["postgres"]["healthcheck"]["test"]
    assert "pg_isready" in check and _flag(check, "-p") == str(load_config(PRODUCTION).postgres_port)
    assert services["asterisk"]["depends_on"]["postgres-init"]["condition"] == "service_completed_successfully"
    assert not any("postgresql://" in str(arg) for arg in init["command"])  # the password stays in ./var


def test_asterisk_dockerfile_installs_the_root_packages() -> None:
    script = (REPO / "tools" / "asterisk_root.sh").read_text()
    line = next(x for x in script.splitlines() if x.startswith("PACKAGES="))
    packages = line.split("=", 1)[1].strip('"').split()
    dockerfile = (REPO / "asterisk" / "Dockerfile").read_text()
    for package in packages:
        assert package in dockerfile.split(), package
    line = next(x for x in script.splitlines() if x.startswith("MOUNTPOINTS="))
    mountpoints = line.split("=", 1)[1].strip('"').split()
    assert "/var/lib/kinline/names" in mountpoints
    for mountpoint in mountpoints:
        assert mountpoint in dockerfile.split(), mountpoint


def test_dev_ports_are_loopback_and_distinct() -> None:
    for name in ("dev.toml", "test.toml"):
        config = load_config(Path(REPO / "config" / name))
        assert config.host == "127.0.0.1"
        ports = [config.sip_port, config.trunk_port, config.agi_port, config.ami_port, config.redis_port]
        assert len(set(ports)) == len(ports)
        assert all(not config.rtp_start <= p <= config.rtp_end for p in ports)


def test_api_matches_dev_stack() -> None:
    """The relatives' API: same module, address and port as the dev stack; secrets
    from setup's files, never on the command line."""
    config = load_config(PRODUCTION)
    service = _compose()["services"]["api"]
    command, dev = service["command"], stack.api_argv(config)
    assert command[1:3] == dev[1:3] == ["-m", "api.main"]
    for flag in ("--host", "--port"):
        assert _flag(command, flag) == _flag(dev, flag), flag
    assert _flag(command, "--port") == str(config.api_port)
    assert _flag(command, "--secrets") == "/app/var/secrets.toml"
    assert Path(_flag(dev, "--secrets")).name == "secrets.toml"
    assert "./var:/app/var" in service["volumes"]
    assert service["env_file"] == f"./var/{stack.services_env_path(config).name}"
    assert service["network_mode"] == "host"
    assert service["restart"] == "unless-stopped"
    assert "api" in stack.SERVICES
    assert not any("redis://" in str(arg) for arg in [*command, *dev])


def test_postgres_and_history_match_dev_stack() -> None:
    """PostgreSQL (the history) on loopback at the config's port, its role and password
    from the env file setup writes; the copier with the services' env file."""
    config = load_config(PRODUCTION)
    services = _compose()["services"]
    command = services["postgres"]["command"]
    assert _flag(command, "-p") == str(config.postgres_port)
    assert "listen_addresses=127.0.0.1" in command and config.host == "127.0.0.1"
    assert services["postgres"]["env_file"] == f"./var/{stack.postgres_env_path(config).name}"
    assert any(v.startswith("postgres-data:") for v in services["postgres"]["volumes"])
    assert "postgres-data" in _compose()["volumes"]
    dev = " ".join(postgres.argv(config))
    assert f"-p {config.postgres_port} " in dev and f"listen_addresses={config.host} " in dev
    history = services["history"]
    assert history["command"][1:3] == stack.history_argv(config)[1:3] == ["-m", "history.main"]
    assert _flag(history["command"], "--retention-s") == _flag(stack.history_argv(config), "--retention-s")
    assert history["env_file"] == f"./var/{stack.services_env_path(config).name}"
    assert {"postgres", "redis"} <= set(history["depends_on"])
    assert stack.SERVICES[:3] == ("redis", "postgres", "history")
    assert not any("postgresql://" in str(arg) for arg in [*command, *history["command"], *dev.split()])


def test_dockerfile_copies_every_package() -> None:
    """The image installs the project: each of its packages must be copied in first."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]]
    lines = (REPO / "Dockerfile").read_text().splitlines()
    for package in packages:
        assert f"COPY {package} {package}" in lines, package
