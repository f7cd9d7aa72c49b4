"""A bare Asterisk for `make bench`: the same cached root and binary as Kinline's, no AGI.

Its config (bench/bare_asterisk/) is rendered into its own state folder and
bind-mounted over the root's /etc/asterisk inside a private mount namespace; its
run, log, spool, astdb and recordings folders are the state folder's. The cached
root itself is mounted read-only, as tools/stack.py does for Kinline's Asterisk.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

CONF = Path(__file__).resolve().parent / "bare_asterisk"
# Core settings shared with Kinline's Asterisk (CDR off, stasis, tones...): copied from asterisk/conf.
SHARED_CONF = ("cdr.conf", "stasis.conf", "ccss.conf", "udptl.conf", "pjproject.conf", "indications.conf",
               "features.conf")
KINLINE_CONF = CONF.parent.parent / "asterisk" / "conf"
COMMAND = ["/usr/sbin/asterisk", "-f", "-n", "-U", "asterisk", "-G", "asterisk", "-C", "/etc/asterisk/asterisk.conf"]
# Folders the bare Asterisk writes: state sub-folder -> where the root has a mount point for it.
WRITABLE = {"spool": "/var/spool/asterisk", "logs": "/var/log/asterisk", "run": "/var/lib/kinline/run",
            "astdb": "/var/lib/kinline/db", "recordings": "/var/lib/kinline/recordings"}
SOUNDS = "/usr/share/asterisk/sounds/kinline"  # as tools/stack.py mounts Kinline's prompts
NAMES = "/var/lib/kinline/names"


class BareError(Exception):
    """The bare Asterisk did not start."""


@dataclass(frozen=True)
class Terminal:
    name: str
    password: str


@dataclass(frozen=True)
class BareConfig:
    root: Path  # the cached Asterisk root (read-only)
    state: Path
    host: str
    sip_port: int
    relative_port: int  # the SIPp relative: the trunk's contact
    rtp_start: int
    rtp_end: int
    # Kinline's call shape (bench/bare_asterisk/extensions.conf [shaped]): Kinline's prompts
    # and an inmate's recorded name, mounted read-only where Kinline's Asterisk has them.
    sounds: Path | None = None
    names: Path | None = None
    shaped: dict[str, str] = field(default_factory=dict)  # its globals: the files each step plays

    def path(self, *parts: str) -> Path:
        return self.state.joinpath(*parts)


def _root_owner(root: Path) -> tuple[int, int]:
    """The uid and gid of the root's own ``asterisk`` user."""
    ids = []
    for table in ("passwd", "group"):
        lines = (root / "etc" / table).read_text().splitlines()
        entry = next((line.split(":") for line in lines if line.startswith("asterisk:")), None)
        if entry is None:
            raise BareError(f"no asterisk entry in {root}/etc/{table}")
        ids.append(int(entry[2]))
    return ids[0], ids[1]


def _md5_cred(user: str, password: str) -> str:
    return hashlib.md5(f"{user}:kinline:{password}".encode()).hexdigest()  # the SIP digest's md5_cred


def write_config(cfg: BareConfig, terminals: list[Terminal]) -> None:
    etc = cfg.path("etc")
    etc.mkdir(parents=True, exist_ok=True)
    for name in ("asterisk.conf", "modules.conf", "logger.conf", "extensions.conf", "cel.conf", "acl.conf"):
        (etc / name).write_text((CONF / name).read_text())
    for name in SHARED_CONF:
        (etc / name).write_text((KINLINE_CONF / name).read_text())
    sections = "\n".join(
        f"[{t.name}](terminal-endpoint)\nauth = {t.name}\naors = {t.name}\n\n"
        f"[{t.name}](terminal-auth)\nusername = {t.name}\nmd5_cred = {_md5_cred(t.name, t.password)}\n\n"
        f"[{t.name}](terminal-aor)\n"
        for t in terminals)
    values = {"host": cfg.host, "sip_port": cfg.sip_port, "relative_port": cfg.relative_port,
              "rtp_start": cfg.rtp_start, "rtp_end": cfg.rtp_end, "terminals": sections}
    for name in ("pjsip.conf", "rtp.conf"):
        (etc / name).write_text((CONF / f"{name}.in").read_text().format(**values))
    (etc / "shaped.conf").write_text("".join(f"{key} = {value}\n" for key, value in cfg.shaped.items()))
    uid, gid = _root_owner(cfg.root)
    for sub in WRITABLE:
        cfg.path(sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chown(cfg.path(sub), uid, gid)
    etc.chmod(0o755)
    for conf in etc.iterdir():
        conf.chmod(0o644)  # no secret: the terminals' digests only, in a throwaway folder


def argv(cfg: BareConfig) -> list[str]:
    root = shlex.quote(str(cfg.root))
    script = ["set -e", f"mount --bind {root} {root}", f"mount -o remount,bind,ro {root}",
              f"mount -t tmpfs -o mode=1777,size=16m tmpfs {shlex.quote(str(cfg.root / 'tmp'))}"]
    mounts = [(cfg.path("etc"), "/etc/asterisk", True), *((cfg.path(s), d, False) for s, d in WRITABLE.items())]
    mounts += [(src, dest, True) for src, dest in ((cfg.sounds, SOUNDS), (cfg.names, NAMES)) if src is not None]
    for src, dest, ro in mounts:
        target = shlex.quote(f"{cfg.root}{dest}")
        script.append(f"mount --bind {shlex.quote(str(src))} {target}")
        if ro:
            script.append(f"mount -o remount,bind,ro {target}")
    script.append(f"exec chroot {root} {shlex.join(COMMAND)}")
    return ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", "\n".join(script)]


def cli(pid: int, command: str, timeout: float = 15.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nsenter", "-t", str(pid), "-m", "-r", *COMMAND[:1], "-C", COMMAND[-1], "-rx", command],
                          capture_output=True, text=True, timeout=timeout, check=False)


def start(cfg: BareConfig, terminals: list[Terminal], timeout: float = 30.0) -> subprocess.Popen[bytes]:
    """Start it and wait until it is fully booted; the caller stops it with stop()."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((cfg.host, cfg.sip_port))
        except OSError as err:
            raise BareError(f"cannot bind {cfg.host}:{cfg.sip_port} for the bare Asterisk: {err}") from err
    write_config(cfg, terminals)
    log = cfg.path("asterisk.out").open("wb")
    proc = subprocess.Popen(argv(cfg), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BareError(f"bare Asterisk exited ({proc.returncode}), see {cfg.path('asterisk.out')}")
        if cfg.path("run", "asterisk.ctl").exists():
            try:
                done = cli(proc.pid, "core waitfullybooted", timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                break
            if done.returncode == 0 and "fully booted" in done.stdout.lower():
                return proc
        time.sleep(0.2)
    stop(proc)
    raise BareError(f"bare Asterisk did not boot within {timeout:.0f} s, see {cfg.path('asterisk.out')}")


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
