"""The stack's one config file (ports, paths) and the secrets made at set-up."""

from __future__ import annotations

import os
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO / "config" / "dev.toml"


@dataclass(frozen=True)
class StackConfig:
    host: str
    sip_port: int
    trunk_port: int
    agi_port: int
    ami_port: int
    redis_port: int
    rtp_start: int
    rtp_end: int
    state: Path
    asterisk_root: Path
    appendfsync: str

    @property
    def redis_url(self) -> str:
        return f"redis://{self.host}:{self.redis_port}/0"

    @property
    def agi_url(self) -> str:
        return f"agi://{self.host}:{self.agi_port}"

    def path(self, *parts: str) -> Path:
        return self.state.joinpath(*parts)


def load_config(path: Path | str | None = None) -> StackConfig:
    """Read the config named by ``path``, ``$KINLINE_CONFIG`` or config/dev.toml."""
    chosen = Path(path or os.environ.get("KINLINE_CONFIG") or DEFAULT_CONFIG)
    if not chosen.is_absolute():
        chosen = REPO / chosen
    with chosen.open("rb") as fh:
        raw = tomllib.load(fh)
    ports = raw["ports"]
    paths = raw["paths"]
    state = Path(os.environ.get("KINLINE_STATE") or paths["state"])
    fsync = raw.get("redis", {}).get("appendfsync", "always")
    if fsync not in ("always", "everysec", "no"):
        raise ValueError(f"redis.appendfsync must be always, everysec or no, not {fsync!r}")
    return StackConfig(
        host=raw["network"]["host"],
        sip_port=int(ports["sip"]),
        trunk_port=int(ports["trunk"]),
        agi_port=int(ports["agi"]),
        ami_port=int(ports["ami"]),
        redis_port=int(ports["redis"]),
        rtp_start=int(ports["rtp_start"]),
        rtp_end=int(ports["rtp_end"]),
        state=state if state.is_absolute() else REPO / state,
        asterisk_root=Path(os.environ.get("KINLINE_ASTERISK_ROOT") or paths["asterisk_root"]),
        appendfsync=fsync,
    )


@dataclass(frozen=True)
class Secrets:
    ami_user: str
    ami_secret: str


def load_secrets(config: StackConfig) -> Secrets:
    """The stack's secrets, generated on first use and kept in the state folder."""
    path = config.path("secrets.toml")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f'ami_user = "kinline"\nami_secret = "{secrets.token_hex(16)}"\n')
    with path.open("rb") as fh:
        raw = tomllib.load(fh)
    return Secrets(ami_user=raw["ami_user"], ami_secret=raw["ami_secret"])
