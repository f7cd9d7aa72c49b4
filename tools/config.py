"""The stack's one config file (ports, paths) and the secrets made at set-up."""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from ivr.overload import DEFAULT_MAX_AGI_LATENCY_MS, DEFAULT_MAX_IN_IVR

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO / "config" / "dev.toml"
REDIS_USER = "kinline"  # the services' Redis ACL user (tools/stack.py writes its ACL)
POSTGRES_USER = "kinline"  # the services' PostgreSQL role (tools/postgres.py creates it)
POSTGRES_DB = "kinline"  # the history database
REALTIME_USER = "asterisk_rt"  # Asterisk's read-only PostgreSQL role: the apps' SIP accounts (PJSIP realtime)
MAX_NODES = 4  # [cluster] nodes: node n's SIP port is the front door's + n, below the apps' door (+ 10)
# What the nodes of a cluster share with the stack's state folder (symbolic links in each
# node's folder): the secrets, the terminals, the prompts, the inmates' names and the recordings.
NODE_SHARED = ("secrets.toml", "terminals.json", "prompts", "names", "recordings")


@dataclass(frozen=True)
class StackConfig:
    host: str
    sip_port: int
    trunk_port: int
    agi_port: int
    ami_port: int
    redis_port: int
    api_port: int  # the relatives' HTTP API (api/main.py)
    postgres_port: int  # PostgreSQL: the history (tools/postgres.py, history/)
    app_sip_port: int  # the relatives' apps register here (its own PJSIP transport, never the terminals')
    # Prometheus' /metrics of the processes without an HTTP port of their own (the API serves it on api_port).
    agi_metrics_port: int
    reconciler_metrics_port: int
    pushbridge_metrics_port: int
    rtp_start: int
    rtp_end: int
    state: Path
    asterisk_root: Path
    appendfsync: str
    # The production profile (config/production.example.toml). Left out, as in
    # dev and test, SIP listens on ``host``, the trunk is ``host:trunk_port`` and
    # terminals may connect from any address.
    sip_bind: str | None = None  # SIP listens here (the facility network)
    carrier_host: str | None = None  # the carrier: the trunk dials it, and only it is the trunk
    carrier_port: int | None = None
    terminal_subnets: Mapping[str, tuple[str, ...]] | None = None  # facility -> subnets its terminals use
    app_sip_bind: str | None = None  # the apps' SIP door listens here (production: the public side)
    # What the API tells apps to register to (a public DNS name or address); left out: the
    # NAT's public address, else app_sip_host.
    app_sip_public: str | None = None
    # The apps' door behind NAT: the public IPv4 address Asterisk writes in SIP (Contact, Via)
    # and SDP on transport-app, except towards app_sip_local_nets (and loopback).
    app_sip_nat_address: str | None = None
    app_sip_local_nets: tuple[str, ...] = ()
    # Overload control ([agi] max_in_ivr, max_agi_latency_ms; 0: off): the AGI server's levels.
    agi_max_in_ivr: int = DEFAULT_MAX_IN_IVR
    agi_max_latency_ms: int = DEFAULT_MAX_AGI_LATENCY_MS
    # Copied records older than this leave Redis ([history] retention_days; history/copier.py).
    history_retention_s: int = 2 * 24 * 3600
    # [cluster] nodes: 1, one Asterisk on sip_port (the default); 2-4, Kamailio on sip_port
    # dispatching the terminals' calls to that many Asterisk nodes (node_config).
    cluster_nodes: int = 1
    node: int = 0  # 0: the stack itself; n >= 1: node n of the cluster (node_config)

    @property
    def systemname(self) -> str:
        """Asterisk's systemname: it prefixes the node's uniqueids, so call ids are unique
        across nodes. Empty for a single Asterisk (its uniqueids stay as they were)."""
        return f"kinline-n{self.node}" if self.node else ""

    @property
    def clustered(self) -> bool:
        """A stack of several Asterisk nodes (a node's own config is not: it is one Asterisk)."""
        return self.cluster_nodes > 1 and self.node == 0

    @property
    def sip_host(self) -> str:
        """The address SIP listens on."""
        return self.sip_bind or self.host

    @property
    def app_sip_host(self) -> str:
        """The address the apps' SIP door listens on (the apps are told :attr:`app_sip_advertised`)."""
        return self.app_sip_bind or self.host

    @property
    def app_sip_advertised(self) -> str:
        """The apps' door as the apps must reach it: given to them with their credentials."""
        return self.app_sip_public or self.app_sip_nat_address or self.app_sip_host

    @property
    def carrier(self) -> str:
        """The carrier's address:port: the trunk's contact and the one source identified as the trunk."""
        return f"{self.carrier_host or self.host}:{self.carrier_port or self.trunk_port}"

    @property
    def redis_url(self) -> str:
        """The services' Redis user with its password (from the secrets): never print it."""
        password = load_secrets(self).redis_password
        return f"redis://{REDIS_USER}:{password}@{self.host}:{self.redis_port}/0"

    @property
    def redis_address(self) -> str:
        """Where Redis listens, for messages (no credentials)."""
        return f"{self.host}:{self.redis_port}"

    @property
    def postgres_url(self) -> str:
        """The services' PostgreSQL role with its password (from the secrets): never print it."""
        password = load_secrets(self).postgres_password
        return f"postgresql://{POSTGRES_USER}:{password}@{self.host}:{self.postgres_port}/{POSTGRES_DB}"

    @property
    def postgres_admin_url(self) -> str:
        """Production only: the cluster's superuser "postgres" (compose's official image), with
        which postgres-init makes the services' and Asterisk's roles: never print it."""
        password = load_secrets(self).postgres_admin_password
        return f"postgresql://postgres:{password}@{self.host}:{self.postgres_port}/{POSTGRES_DB}"

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
    sip_bind, carrier_host, carrier_port, subnets = _production(raw)
    app_public, app_nat, app_local_nets = _app_door(raw["network"])
    fsync = raw.get("redis", {}).get("appendfsync", "always")
    if fsync not in ("always", "everysec", "no"):
        raise ValueError(f"redis.appendfsync must be always, everysec or no, not {fsync!r}")
    days = raw.get("history", {}).get("retention_days", 2)
    if type(days) is not int or not 1 <= days <= 3650:
        raise ValueError(f"history.retention_days must be a whole number of days (1-3650), not {days!r}")
    max_in_ivr, max_latency_ms = _overload(raw)
    return StackConfig(
        host=raw["network"]["host"],
        sip_port=int(ports["sip"]) + shift,
        trunk_port=int(ports["trunk"]) + shift,
        agi_port=int(ports["agi"]) + shift,
        ami_port=int(ports["ami"]) + shift,
        redis_port=int(ports["redis"]) + shift,
        api_port=int(ports["api"]) + shift,
        postgres_port=int(ports["postgres"]) + shift,
        # Left out (an older config): the terminals' SIP port + 10, as in dev and test.
        app_sip_port=int(ports.get("app_sip", int(ports["sip"]) + 10)) + shift,
        # Left out: the FastAGI port + 5000, 5001, 5002, as in dev and test.
        agi_metrics_port=int(ports.get("agi_metrics", int(ports["agi"]) + 5000)) + shift,
        reconciler_metrics_port=int(ports.get("reconciler_metrics", int(ports["agi"]) + 5001)) + shift,
        pushbridge_metrics_port=int(ports.get("pushbridge_metrics", int(ports["agi"]) + 5002)) + shift,
        rtp_start=rtp_start,
        rtp_end=rtp_end,
        state=state if state.is_absolute() else REPO / state,
        asterisk_root=Path(os.environ.get("KINLINE_ASTERISK_ROOT") or paths["asterisk_root"]),
        appendfsync=fsync,
        sip_bind=sip_bind,
        carrier_host=carrier_host,
        carrier_port=carrier_port,
        terminal_subnets=subnets,
        app_sip_bind=_ipv4(raw["network"]["app_sip_bind"], "network.app_sip_bind")
        if "app_sip_bind" in raw["network"] else None,
        app_sip_public=app_public,
        app_sip_nat_address=app_nat,
        app_sip_local_nets=app_local_nets,
        history_retention_s=days * 24 * 3600,
        agi_max_in_ivr=max_in_ivr,
        agi_max_latency_ms=max_latency_ms,
        cluster_nodes=_cluster_nodes(raw),
    )


def _cluster_nodes(raw: Mapping[str, object]) -> int:
    """[cluster] nodes, checked."""
    cluster = raw.get("cluster", {})
    if not isinstance(cluster, dict):
        raise ValueError("[cluster] must be a table")
    nodes = cluster.get("nodes", 1)
    if type(nodes) is not int or not 1 <= nodes <= MAX_NODES:
        raise ValueError(f"cluster.nodes must be a whole number 1-{MAX_NODES}, not {nodes!r}")
    return nodes


def node_config(config: StackConfig, node: int) -> StackConfig:
    """Node ``node`` (1..cluster_nodes) of a cluster: its own Asterisk, AGI server and reconciler.

    Kamailio takes the terminals' port (sip_port); node n's SIP is sip_port + n. Node 1
    keeps the stack's AMI, FastAGI, apps' door and metrics ports (the API, the push bridge
    and the apps talk to it); node n > 1 has them + (n - 1) (metrics + 10 (n - 1)). Each
    node gets 1/nodes of the RTP range and its own state folder <state>/node<n> (run, logs,
    spool, astdb, generated config), whose NODE_SHARED entries link to the stack's."""
    if not config.clustered or not 1 <= node <= config.cluster_nodes:
        raise ValueError(f"no node {node} in a stack of {config.cluster_nodes} node(s)")
    k = node - 1
    size = (config.rtp_end - config.rtp_start + 1) // config.cluster_nodes
    return replace(
        config,
        node=node,
        sip_port=config.sip_port + node,
        ami_port=config.ami_port + k,
        agi_port=config.agi_port + k,
        app_sip_port=config.app_sip_port + k,
        agi_metrics_port=config.agi_metrics_port + 10 * k,
        reconciler_metrics_port=config.reconciler_metrics_port + 10 * k,
        pushbridge_metrics_port=config.pushbridge_metrics_port + 10 * k,
        rtp_start=config.rtp_start + k * size,
        rtp_end=config.rtp_start + (k + 1) * size - 1,
        state=config.state / f"node{node}",
        # Behind Kamailio a node sees every terminal's request come from Kamailio's address:
        # Kamailio checks the terminals' subnets (tools/kamailio_conf.py); a node takes the
        # terminals from Kamailio's address alone, so none reaches a node's port past it.
        terminal_subnets=None if config.terminal_subnets is None else OnlyFrom(
            (str(ipaddress.ip_network(config.sip_host)),)),
    )


class OnlyFrom(Mapping[str, tuple[str, ...]]):
    """[terminal_subnets] that give every facility the same subnets (a node behind Kamailio:
    Kamailio's address). Iterates as empty: no facility of its own."""

    def __init__(self, subnets: tuple[str, ...]) -> None:
        self.subnets = subnets

    def __getitem__(self, facility: str) -> tuple[str, ...]:
        return self.subnets

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OnlyFrom) and other.subnets == self.subnets

    def __hash__(self) -> int:
        return hash(self.subnets)


APPS_NODE = 1  # the node apps register with (its apps' door), the API and the push bridge talk to
NODE_ENDPOINT = "kinline-node{node}"  # node n's PJSIP endpoint on the others (tools/asterisk_conf.py)


def peer_sip_port(node: StackConfig, other: int) -> int:
    """Node ``other``'s SIP port, from node ``node``'s own config (node_config: sip_port + n)."""
    return node.sip_port - node.node + other


def apps_node_ami_port(node: StackConfig) -> int:
    """The apps' node's AMI port, from another node's config (node_config: ami_port + n - 1)."""
    return node.ami_port - (node.node - APPS_NODE)


def nodes(config: StackConfig) -> list[StackConfig]:
    """The Asterisk nodes of a stack: its node configs, or the stack itself when it has one Asterisk."""
    if not config.clustered:
        return [config]
    return [node_config(config, n) for n in range(1, config.cluster_nodes + 1)]


def _overload(raw: Mapping[str, object]) -> tuple[int, int]:
    """[agi] max_in_ivr and max_agi_latency_ms: whole numbers >= 0 (0: off)."""
    agi = raw.get("agi", {})
    if not isinstance(agi, dict):
        raise ValueError("[agi] must be a table")
    levels: list[int] = []
    for name, default in (("max_in_ivr", DEFAULT_MAX_IN_IVR), ("max_agi_latency_ms", DEFAULT_MAX_AGI_LATENCY_MS)):
        level = agi.get(name, default)
        if type(level) is not int or level < 0:
            raise ValueError(f"agi.{name} must be a whole number >= 0 (0: off), not {level!r}")
        levels.append(level)
    return levels[0], levels[1]


_FACILITY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_DNS_NAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$")


def _app_door(network: Mapping[str, object]) -> tuple[str | None, str | None, tuple[str, ...]]:
    """network.app_sip_public (a DNS name or an IPv4 address), app_sip_nat_address and
    app_sip_local_nets (only with a NAT address), checked."""
    public = network.get("app_sip_public")
    if public is not None:
        if not isinstance(public, str) or not (_DNS_NAME.match(public) or _is_ipv4(public)):
            raise ValueError(f"network.app_sip_public must be a DNS name or an IPv4 address, not {public!r}")
        public = public.lower()
    nat = network.get("app_sip_nat_address")
    if nat is not None:
        nat = _ipv4(nat, "network.app_sip_nat_address")
    nets = network.get("app_sip_local_nets")
    local_nets: tuple[str, ...] = ()
    if nets is not None:
        if nat is None:
            raise ValueError("network.app_sip_local_nets needs network.app_sip_nat_address (the door behind NAT)")
        if not isinstance(nets, list) or not nets:
            raise ValueError("network.app_sip_local_nets must be a non-empty list of subnets")
        try:
            local_nets = tuple(str(ipaddress.IPv4Network(str(n))) for n in nets)
        except ValueError as err:
            raise ValueError(f"network.app_sip_local_nets: {err}") from err
    return public, nat, local_nets


def _is_ipv4(value: str) -> bool:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True


def _ipv4(value: object, what: str) -> str:
    try:
        return str(ipaddress.IPv4Address(str(value)))
    except ValueError as err:
        raise ValueError(f"{what} must be an IPv4 address, not {value!r}") from err


def _production(raw: Mapping[str, object]) -> tuple[str | None, str | None, int | None,
                                                    dict[str, tuple[str, ...]] | None]:
    """network.sip_bind, [carrier] address/port and [terminal_subnets], checked."""
    network = raw.get("network")
    sip_bind = network.get("sip_bind") if isinstance(network, dict) else None
    carrier = raw.get("carrier", {})
    if not isinstance(carrier, dict):
        raise ValueError("[carrier] must be a table")
    port = carrier.get("port")
    if port is not None and (type(port) is not int or not 0 < port < 65536):
        raise ValueError(f"carrier.port must be a port number, not {port!r}")
    subnets: dict[str, tuple[str, ...]] | None = None
    table = raw.get("terminal_subnets")
    if table is not None:
        if not isinstance(table, dict):
            raise ValueError("[terminal_subnets] must be a table: facility = [subnets]")
        subnets = {}
        for facility, nets in table.items():
            if not _FACILITY_ID.match(facility) or not isinstance(nets, list) or not nets:
                raise ValueError(f"terminal_subnets.{facility} must be a non-empty list of subnets")
            try:
                subnets[facility] = tuple(str(ipaddress.IPv4Network(str(n))) for n in nets)
            except ValueError as err:
                raise ValueError(f"terminal_subnets.{facility}: {err}") from err
    return (
        _ipv4(sip_bind, "network.sip_bind") if sip_bind is not None else None,
        _ipv4(carrier["address"], "carrier.address") if "address" in carrier else None,
        port,
        subnets,
    )


@dataclass(frozen=True)
class Secrets:
    ami_user: str  # read-only AMI user, every event: tests and benches (the services have ami_events_user)
    ami_secret: str
    ami_originate_user: str  # may originate calls; nothing else
    ami_originate_secret: str
    redis_password: str  # the services' Redis ACL user "kinline"
    pin_key: str  # hex; the server-side key of PIN hashes (never stored in Redis)
    payment_webhook_secret: str = ""  # HMAC key of the payment provider's webhooks (api/ refuses a short one)
    postgres_password: str = ""  # the services' PostgreSQL role "kinline" (the history)
    # Production only: the superuser "postgres" of compose's official image (postgres-init uses
    # it to make the roles); the dev/test clusters' superuser logs in by peer, without one.
    postgres_admin_password: str = ""
    realtime_password: str = ""  # Asterisk's read-only PostgreSQL role "asterisk_rt" (PJSIP realtime)
    ami_status_user: str = ""  # AMI: write class "reporting" only (Getvar of contact status), no events
    ami_status_secret: str = ""
    # AMI: the services' read-only user (reconciler, guard, push bridge): only the events they
    # follow (tools/asterisk_conf.py SERVICE_EVENTS), not every call's RTCP reports and steps.
    ami_events_user: str = ""
    ami_events_secret: str = ""


_SECRET_DEFAULTS: dict[str, Callable[[], str]] = {
    "ami_user": lambda: "kinline",
    "ami_secret": lambda: secrets.token_hex(16),
    "ami_originate_user": lambda: "kinline-originate",
    "ami_originate_secret": lambda: secrets.token_hex(16),
    "redis_password": lambda: secrets.token_hex(24),
    "pin_key": lambda: secrets.token_hex(32),
    "payment_webhook_secret": lambda: secrets.token_hex(32),
    "postgres_password": lambda: secrets.token_hex(24),
    "postgres_admin_password": lambda: secrets.token_hex(24),
    "realtime_password": lambda: secrets.token_hex(24),
    "ami_status_user": lambda: "kinline-status",
    "ami_status_secret": lambda: secrets.token_hex(16),
    "ami_events_user": lambda: "kinline-events",
    "ami_events_secret": lambda: secrets.token_hex(16),
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
