"""Render the generated part of Asterisk's config (/etc/kinline in the root).

Static config lives in asterisk/conf/ and dialplan/; only what depends on the
stack's config or on provisioned data (ports, secrets, terminals) is written
here, into <state>/generated.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import socket
import string
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from tools.config import APPS_NODE, NODE_ENDPOINT, POSTGRES_DB, REALTIME_USER, Secrets, StackConfig, peer_sip_port

_SAFE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_PASSWORD = re.compile(r"^[A-Za-z0-9]{12,64}$")
_MD5_HEX = re.compile(r"^[0-9a-f]{32}$")
LANGUAGES = ("ru", "fr", "en")
SIP_REALM = "kinline"  # asterisk/conf/pjsip.conf: default_realm and the terminal-auth template's realm

log = logging.getLogger(__name__)


def md5_cred(username: str, password: str, realm: str = SIP_REALM) -> str:
    """RFC 2617 HA1: what Asterisk needs to check a digest, without the password itself."""
    return hashlib.md5(f"{username}:{realm}:{password}".encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class Terminal:
    """A prison terminal as the switch keeps it: a SIP device known by its digest
    (``md5_cred``, MD5 of "name:kinline:password"), never by its password."""

    name: str
    md5_cred: str
    language: str = "ru"
    facility: str = ""

    def validate(self) -> None:
        if not _SAFE.match(self.name):
            raise ValueError(f"terminal name must be letters, digits, ._-: {self.name!r}")
        if not _MD5_HEX.match(self.md5_cred):
            raise ValueError(f"terminal {self.name}: md5_cred must be 32 lowercase hex digits")
        if self.language not in LANGUAGES:
            raise ValueError(f"language must be one of {LANGUAGES}")

    def accepts(self, password: str) -> bool:
        """Whether ``password`` is this terminal's (constant-time compare of the digests)."""
        return hmac.compare_digest(md5_cred(self.name, password), self.md5_cred)


@dataclass(frozen=True)
class TerminalLogin:
    """A terminal's name and plaintext password, as given to staff once (``kinline
    terminal add``) or held by a test's SIP agent. Only ``stored()``, the digest, is saved."""

    name: str
    password: str
    language: str = "ru"
    facility: str = ""

    def validate(self) -> None:
        if not _PASSWORD.match(self.password):
            raise ValueError("terminal password must be 12-64 letters or digits")
        self.stored().validate()

    def stored(self) -> Terminal:
        return Terminal(self.name, md5_cred(self.name, self.password), self.language, self.facility)


def new_password() -> str:
    """24 random letters and digits (about 143 bits)."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(24))


def terminals_path(config: StackConfig) -> Path:
    return config.path("terminals.json")


def _terminal(item: object) -> Terminal:
    """One entry of terminals.json. An entry of the old format holds the plaintext
    ``password`` instead of ``md5_cred``: it becomes the digest here."""
    if not isinstance(item, dict) or not all(isinstance(v, str) for v in item.values()):
        raise ValueError("terminals.json: an entry is not an object of strings")
    fields = dict(item)
    password = fields.pop("password", None)
    try:
        if password is None:
            return Terminal(**fields)
        if "md5_cred" in fields:
            raise ValueError(f"terminals.json: terminal {fields.get('name')!r} has both a password and md5_cred")
        return TerminalLogin(**fields, password=password).stored()
    except TypeError as err:  # a missing or unknown field
        raise ValueError(f"terminals.json: bad entry for terminal {fields.get('name')!r}: {err}") from err


def load_terminals(config: StackConfig) -> list[Terminal]:
    """The terminals of terminals.json. A file of the old format (plaintext passwords)
    is rewritten at once with digests only, so the passwords leave the disk."""
    path = terminals_path(config)
    if not path.exists():
        return []
    items = json.loads(path.read_text())
    if not isinstance(items, list):
        raise ValueError("terminals.json: not a list")
    terminals = [_terminal(item) for item in items]
    for terminal in terminals:
        terminal.validate()
    old = [item["name"] for item in items if "password" in item]
    if old:
        save_terminals(config, terminals)
        log.warning("terminals.json: plaintext SIP passwords of %s replaced by their md5_cred", ", ".join(old))
    return terminals


def save_terminals(config: StackConfig, terminals: list[Terminal]) -> None:
    """Write terminals.json (digests only), created 0600: never readable by others, even for a moment."""
    for terminal in terminals:
        terminal.validate()
    write_private(terminals_path(config), json.dumps([asdict(t) for t in terminals], indent=1))


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in a file created 0600 (never readable by others,
    even for a moment, whatever the umask)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(text)
    tmp.replace(path)


def terminal_acl(terminal: Terminal, subnets: Mapping[str, tuple[str, ...]] | None) -> str:
    """Endpoint ACL lines: with ``subnets`` (the production profile) a terminal is
    accepted only from its facility's subnets, and from nowhere if its facility has
    none. A request from elsewhere meets Asterisk's artificial endpoint: a 401, as for
    an unknown user. Without ``subnets`` (dev, test): no ACL."""
    if subnets is None:
        return ""
    permits = "".join(f"permit = {net}\n" for net in subnets.get(terminal.facility, ()))
    return "deny = 0.0.0.0/0.0.0.0\n" + permits


def terminals_conf(terminals: list[Terminal], subnets: Mapping[str, tuple[str, ...]] | None = None) -> str:
    parts = ["; generated by tools/asterisk_conf.py from terminals.json: do not edit\n"]
    for t in terminals:
        t.validate()
        parts.append(
            f"\n[{t.name}](terminal-auth)\nusername = {t.name}\nmd5_cred = {t.md5_cred}\n"
            f"\n[{t.name}](terminal-aor)\n"
            f"\n[{t.name}](terminal-endpoint)\nauth = {t.name}\naors = {t.name}\n"
            f"language = {t.language}\nset_var = KINLINE_FACILITY={t.facility}\n"
            + terminal_acl(t, subnets)
        )
    return "".join(parts)


# The trunk hangs up a call whose far end sent no RTP for this long (a line
# dropped without a BYE). G.711 sends 50 packets a second; 10 s is far above
# any burst of loss or jitter a call survives, yet credits at most 10 s of
# silence before the drop is known. On hold (no media by design) it is 60 s.
TRUNK_RTP_TIMEOUT_S = 10
TRUNK_RTP_TIMEOUT_HOLD_S = 60

# AMI classes the read-only user receives: call progress, AGI, user events,
# dial plan steps, boot (system) and security events (the guard). It may run no
# action that needs a write class. The other user may only originate.
AMI_READ_CLASSES = "system,call,dtmf,reporting,cdr,dialplan,agi,user,security"
# The services' read-only user gets only the events they follow, by name (Asterisk 22's
# advanced filters: a hash of the name, no regex over each event): the reconciler's
# FullyBooted (reconciler/main.py), the push bridge's contact events (pushbridge/contacts.py
# FOLLOWED_EVENTS), the guard's failures (guard/events.py FAILURE_EVENTS). Without it the push
# bridge parsed every RTCP report of every call (class reporting, like the registrar's TestEvent).
# Two are narrowed by a header: TestEvent comes for every file played too (State: PLAYBACK,
# Asterisk built with TEST_FRAMEWORK), and SuccessfulAuth for every terminal's INVITE; the push
# bridge reads only the registrar's states and the apps' accounts (pushbridge/contacts.py).
SERVICE_EVENT_CLASSES = "system,security,reporting"
SERVICE_EVENTS = (
    "FullyBooted",
    "TestEvent", "ContactStatus", "SuccessfulAuth",
    "InvalidAccountID", "InvalidPassword", "ChallengeResponseFailed", "FailedACL", "AuthMethodNotAllowed",
    "RequestNotAllowed", "UnexpectedAddress",
)
# event -> (header, prefix its value must start with)
SERVICE_EVENT_HEADERS = {"TestEvent": ("State", "AOR_CONTACT_"), "SuccessfulAuth": ("AccountID", "app-")}


def service_event_filters() -> str:
    """The services' user's eventfilter lines: one per event, some narrowed by a header."""
    lines = []
    for event in SERVICE_EVENTS:
        header = SERVICE_EVENT_HEADERS.get(event)
        if header is None:
            lines.append(f"eventfilter(action(include),name({event})) =\n")
        else:
            lines.append(f"eventfilter(action(include),name({event}),header({header[0]}),method(starts_with)) = "
                         f"{header[1]}\n")
    return "".join(lines)


def manager_users_conf(host: str, secrets: Secrets) -> str:
    acl = f"deny = 0.0.0.0/0.0.0.0\npermit = {host}/255.255.255.255\n"
    return (
        f"[{secrets.ami_user}]\nsecret = {secrets.ami_secret}\n{acl}"
        f"read = {AMI_READ_CLASSES}\nwrite =\n\n"
        # The test call's end (api/originate.py) is its OriginateResponse: the only event it gets.
        f"[{secrets.ami_originate_user}]\nsecret = {secrets.ami_originate_secret}\n{acl}"
        "read = call\nwrite = originate\neventfilter(action(include),name(OriginateResponse)) =\n\n"
        # The relatives' API asks which app devices are reachable (Getvar of PJSIP_AOR /
        # PJSIP_CONTACT). "reporting" runs only queries (Getvar, DBGet, CoreShowChannels,
        # PJSIPQualify...): no Originate, Reload, ModuleLoad or Command. No events.
        f"[{secrets.ami_status_user}]\nsecret = {secrets.ami_status_secret}\n{acl}"
        "read =\nwrite = reporting\n\n"
        f"[{secrets.ami_events_user}]\nsecret = {secrets.ami_events_secret}\n{acl}"
        f"read = {SERVICE_EVENT_CLASSES}\nwrite =\n"
        + service_event_filters()
    )


def res_pgsql_conf(config: StackConfig, secrets: Secrets) -> str:
    """res_config_pgsql's connection: Asterisk's read-only role, over TCP on loopback."""
    if secrets.realtime_password and not secrets.realtime_password.isalnum():
        raise ValueError("realtime_password must be letters and digits")
    return (f"hostname = {config.host}\nport = {config.postgres_port}\ndbname = {POSTGRES_DB}\n"
            f"user = {REALTIME_USER}\npassword = {secrets.realtime_password}\nappname = asterisk\n")


def app_acl_conf(subnets: Mapping[str, tuple[str, ...]] | None) -> str:
    """The named ACL of every app endpoint (ps_endpoints.acl): apps are refused from the
    terminals' subnets (production profile), so an app account is useless inside a facility."""
    lines = ["[kinline-apps]\n", "permit = 0.0.0.0/0.0.0.0\n"]
    for nets in (subnets or {}).values():
        lines += [f"deny = {net}\n" for net in nets]
    return "".join(lines)


def app_transport_conf(config: StackConfig) -> str:
    """The apps' own SIP door. Behind NAT (network.app_sip_nat_address), Asterisk writes the
    public address in SIP (Via, Contact) and SDP (c=) towards everyone but loopback and the
    internal nets (local_net); the app endpoints' rtp_symmetric, force_rport and
    rewrite_contact (store/devices.py) answer apps that are behind NAT themselves.

    local_net always holds the bound address itself: res_pjsip_sdp_rtp rewrites the SDP only
    when its own media address is local (no local_net at all: always), so an operator
    who lists only other internal nets would get Via/Contact rewritten and the SDP not."""
    text = ("[transport-app]\ntype = transport\nprotocol = udp\n"
            f"bind = {config.app_sip_host}:{config.app_sip_port}\n")
    if config.app_sip_nat_address:
        text += (f"external_signaling_address = {config.app_sip_nat_address}\n"
                 f"external_signaling_port = {config.app_sip_port}\n"
                 f"external_media_address = {config.app_sip_nat_address}\n")
        for net in dict.fromkeys(("127.0.0.0/8", f"{config.app_sip_host}/32", *config.app_sip_local_nets)):
            text += f"local_net = {net}\n"
    return text


def nodes_conf(config: StackConfig) -> str:
    """A cluster's nodes to one another: the apps' node takes each other node's relays (calls
    to the app taken there, dialplan kinline-from-node), identified by that node's address
    and SIP port only; every other node dials the apps' node through its endpoint. One
    Asterisk: nothing."""
    if not config.node:
        return "; one Asterisk: no other node (tools/asterisk_conf.py)\n"
    common = ("type = endpoint\ncontext = kinline-from-node\ndisallow = all\nallow = ulaw,alaw\n"
              "direct_media = no\ndtmf_mode = rfc4733\nrtp_symmetric = yes\nsend_rpid = no\n"
              "allow_transfer = no\nallow_subscribe = no\nidentify_by = ip\n"
              # a node gone silent mid-call: its relay is hung up, and the call settled as dropped
              f"rtp_timeout = {TRUNK_RTP_TIMEOUT_S}\nrtp_timeout_hold = {TRUNK_RTP_TIMEOUT_HOLD_S}\n")
    text = f"; node {config.node} of a cluster (tools/asterisk_conf.py)\n"
    if config.node == APPS_NODE:
        for other in range(1, config.cluster_nodes + 1):
            if other == APPS_NODE:
                continue
            name = NODE_ENDPOINT.format(node=other)
            text += (f"\n[{name}]\n{common}\n[{name}-identify]\ntype = identify\nendpoint = {name}\n"
                     f"match = {config.sip_host}:{peer_sip_port(config, other)}\n")
        return text
    name = NODE_ENDPOINT.format(node=APPS_NODE)
    return (text + f"\n[{name}]\ntype = aor\ncontact = sip:{config.sip_host}:{peer_sip_port(config, APPS_NODE)}\n"
            f"qualify_frequency = 0\n\n[{name}]\n{common}aors = {name}\n")


def asterisk_options_conf(config: StackConfig) -> str:
    """asterisk.conf [options] lines of this Asterisk: a cluster node's systemname."""
    if not config.systemname:
        return "; one Asterisk: no systemname (tools/asterisk_conf.py)\n"
    return f"; node {config.node} of a cluster (tools/asterisk_conf.py)\nsystemname = {config.systemname}\n"


def render(config: StackConfig, secrets: Secrets) -> dict[str, str]:
    """File name -> content for everything in <state>/generated."""
    host = config.host
    return {
        "globals.conf": f"KINLINE_AGI = {config.agi_url}\nKINLINE_TERMINAL_PORT = {config.sip_port}\n",
        # asterisk.conf's [options] include it: a cluster's node names itself (uniqueids and so
        # call ids "kinline-n<node>-<epoch>.<seq>", unique across nodes); one Asterisk: nothing.
        "asterisk_options.conf": asterisk_options_conf(config),
        "pjsip_transport.conf": (
            "[transport-udp]\ntype = transport\nprotocol = udp\n"
            f"bind = {config.sip_host}:{config.sip_port}\n"
        ),
        "pjsip_trunk.conf": (
            "[trunk]\ntype = aor\n"
            f"contact = sip:{config.carrier}\n"
            "qualify_frequency = 0\n\n"
            "[trunk]\ntype = endpoint\ncontext = from-trunk\ndisallow = all\n"
            "allow = ulaw,alaw\naors = trunk\ndirect_media = no\ndtmf_mode = rfc4733\n"
            "rtp_symmetric = yes\nsend_rpid = no\nallow_transfer = no\n"
            # A far end that stops sending media without a BYE (a dropped line)
            # is hung up after this long: the call is then settled as dropped.
            f"rtp_timeout = {TRUNK_RTP_TIMEOUT_S}\nrtp_timeout_hold = {TRUNK_RTP_TIMEOUT_HOLD_S}\n"
            # Only the carrier's address and port reach the trunk, never its name in From.
            "identify_by = ip\n\n"
            f"[trunk-identify]\ntype = identify\nendpoint = trunk\nmatch = {config.carrier}\n"
        ),
        "pjsip_terminals.conf": terminals_conf(load_terminals(config), config.terminal_subnets),
        "pjsip_nodes.conf": nodes_conf(config),
        # The relatives' apps: their own door (store/devices.py names it in ps_endpoints.transport).
        "pjsip_app_transport.conf": app_transport_conf(config),
        "res_pgsql.conf": res_pgsql_conf(config, secrets),
        "acl_apps.conf": app_acl_conf(config.terminal_subnets),
        "rtp_ports.conf": f"rtpstart = {config.rtp_start}\nrtpend = {config.rtp_end}\n",
        "manager_general.conf": f"port = {config.ami_port}\nbindaddr = {host}\n",
        "manager_users.conf": manager_users_conf(host, secrets),
        # The host name in both families: without its IPv6 line, a lookup of
        # the host name's AAAA record at Asterisk's start went to DNS, off the machine.
        "hosts": (
            f"127.0.0.1\tlocalhost\n127.0.1.1\t{socket.gethostname()}\n"
            f"::1\tlocalhost ip6-localhost ip6-loopback {socket.gethostname()}\n"
        ),
    }


def asterisk_ids(config: StackConfig) -> tuple[int, int] | None:
    """The uid and gid of the ``asterisk`` user of the Asterisk root (None without a root)."""
    ids: list[int] = []
    for table in ("passwd", "group"):
        try:
            lines = (config.asterisk_root / "etc" / table).read_text().splitlines()
        except OSError:
            return None
        entry = next((line.split(":") for line in lines if line.startswith("asterisk:")), None)
        if entry is None:
            return None
        ids.append(int(entry[2]))
    return ids[0], ids[1]


def write_generated(config: StackConfig, secrets: Secrets) -> Path:
    """Write <state>/generated: root-owned, readable by Asterisk's group only (0640 in a 0750 folder)."""
    out = config.path("generated")
    out.mkdir(mode=0o750, parents=True, exist_ok=True)
    ids = asterisk_ids(config)
    gid = ids[1] if ids else -1
    os.chown(out, -1, gid)
    out.chmod(0o750)
    for name, content in render(config, secrets).items():
        target = out / name
        tmp = target.with_suffix(target.suffix + ".tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        with os.fdopen(fd, "w") as fh:
            os.fchown(fh.fileno(), -1, gid)
            os.fchmod(fh.fileno(), 0o640)  # whatever the caller's umask: Asterisk's group reads it
            fh.write(content)
        tmp.replace(target)
    return out
