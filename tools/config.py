"""The stack's one config file (ports, paths) and the secrets made at set-up."""

from __future__ import annotations

import os
import secrets
import tomllib
from collections.abc import Callable
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
    # KINLINE_PORT_OFFSET=N (1-9) moves a stack's ports by N*100 and its RTP
    # range to 30000+N*1000, so several test stacks can run side by side
    # (the e2e harness moves its agents' RTP ports by N*1000 too).
    offset = int(os.environ.get("KINLINE_PORT_OFFSET") or 0)
    if not 0 <= offset <= 9:
        raise ValueError(f"KINLINE_PORT_OFFSET must be 0-9, not {offset}")
    shift = offset * 100
    rtp_start, rtp_end = int(ports["rtp_start"]), int(ports["rtp_end"])
    if offset:
        rtp_start, rtp_end = 30000 + offset * 1000, 30999 + offset * 1000
    fsync = raw.get("redis", {}).get("appendfsync", "always")
    if fsync not in ("always", "everysec", "no"):
        raise ValueError(f"redis.appendfsync must be always, everysec or no, not {fsync!r}")
    return StackConfig(
        host=raw["network"]["host"],
        sip_port=int(ports["sip"]) + shift,
        trunk_port=int(ports["trunk"]) + shift,
        agi_port=int(ports["agi"]) + shift,
        ami_port=int(ports["ami"]) + shift,
        redis_port=int(ports["redis"]) + shift,
        rtp_start=rtp_start,
        rtp_end=rtp_end,
        state=state if state.is_absolute() else REPO / state,
        asterisk_root=Path(os.environ.get("KINLINE_ASTERISK_ROOT") or paths["asterisk_root"]),
        appendfsync=fsync,
    )


@dataclass(frozen=True)
class Secrets:
    ami_user: str  # read-only AMI user (events): tests, the reconciler, the guard
    ami_secret: str
    ami_originate_user: str  # may originate calls; nothing else
    ami_originate_secret: str
    redis_password: str  # the services' Redis ACL user "kinline"
    pin_key: str  # hex; the server-side key of PIN hashes (never stored in Redis)


_SECRET_DEFAULTS: dict[str, Callable[[], str]] = {
    "ami_user": lambda: "kinline",
    "ami_secret": lambda: secrets.token_hex(16),
    "ami_originate_user": lambda: "kinline-originate",
    "ami_originate_secret": lambda: secrets.token_hex(16),
    "redis_password": lambda: secrets.token_hex(24),
    "pin_key": lambda: secrets.token_hex(32),
}


def load_secrets(config: StackConfig) -> Secrets:
    """The stack's secrets, generated on first use (each missing one is added)
    and kept 0600 in the state folder."""
    path = config.path("secrets.toml")
    raw: dict[str, str] = {}
    if path.exists():
        with path.open("rb") as fh:
            raw = {k: str(v) for k, v in tomllib.load(fh).items()}
    missing = [k for k in _SECRET_DEFAULTS if k not in raw]
    if missing:
        for key in missing:
            raw[key] = _SECRET_DEFAULTS[key]()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("".join(f'{k} = "{raw[k]}"\n' for k in _SECRET_DEFAULTS))
        os.replace(tmp, path)
    return Secrets(**{k: raw[k] for k in _SECRET_DEFAULTS})
