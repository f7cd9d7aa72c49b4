"""The doors of the switch: who reaches what, scanners and crackers, malformed SIP,
the guard's blocklist, AMI privileges, the Asterisk user and file modes.

Requests that fail authentication come from their own loopback addresses
(127.0.0.2 and up: the whole 127/8 is loopback), never from 127.0.0.1, so the
guard never blocks the terminals the other tests use.
"""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ami.client import AmiClient
from ami.protocol import AmiActionError
from tests.e2e.conftest import E2E
from tests.e2e.harness import SipAgent, guard_blocked, guard_unblock
from tests.e2e.rawsip import RawUac
from tools import stack
from tools.asterisk_conf import asterisk_ids
from tools.config import load_secrets

pytestmark = pytest.mark.e2e

TORTURE = Path(__file__).resolve().parent / "rfc4475"
# Every message of RFC 4475 section 3, by section, named as in the RFC's archive (Appendix A).
RFC4475_MESSAGES = {
    "3.1.1 valid": ("wsinv", "intmeth", "esc01", "escnull", "esc02", "lwsdisp", "longreq", "dblreq",
                    "semiuri", "transports", "mpart01", "unreason", "noreason"),
    "3.1.2 invalid": ("badinv01", "clerr", "ncl", "scalar02", "scalarlg", "quotbal", "ltgtruri", "lwsruri",
                      "lwsstart", "trws", "escruri", "baddate", "regbadct", "badaspec", "baddn", "badvers",
                      "mismatch01", "mismatch02", "bigcode"),
    "3.2 transaction": ("badbranch",),
    "3.3 application": ("insuf", "unkscm", "novelsc", "unksm2", "bext01", "invut", "regaut01", "multi01",
                        "mcl01", "bcast", "zeromf", "cparam01", "cparam02", "regescrt", "sdp01"),
    "3.4 backward compatibility": ("inv2543",),
}
SCANNER_TIMEOUT = 60  # seconds any one scanner run may take

# svwar/svcrack 0.3.8 ignore their own -b (bind address) option: this wrapper binds
# every socket they open to the address given first, then runs the tool unchanged.
_SV_WRAPPER = textwrap.dedent("""
    import importlib, socket, sys
    source = sys.argv[1]
    _bind = socket.socket.bind
    def bind(sock, address):
        if isinstance(address, tuple) and address[0] in ("", "0.0.0.0"):
            address = (source, *address[1:])
        return _bind(sock, address)
    socket.socket.bind = bind
    tool = sys.argv[2]
    sys.argv = [tool, *sys.argv[3:]]
    importlib.import_module("sipvicious." + tool).main()
""")


def _sipvicious(source: str, tool: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _SV_WRAPPER, source, tool, *args, "-x", source],
        capture_output=True, text=True, timeout=SCANNER_TIMEOUT,
    )
    return done.stdout + done.stderr




async def _canary_call(e2e: E2E) -> None:
    """A terminal on 127.0.0.1 reaches the diagnostic greeting (the call is answered)."""
    t = e2e.terminal
    agent = await SipAgent.start("call", "--target", e2e.target(), "--user", t.name, "--password", t.password,
                                 "--rtp-port", "20400")
    try:
        await agent.wait_for("state", lambda e: e["state"] == "CONFIRMED", timeout=15)
        await agent.send("hangup")
        await agent.ended()
    finally:
        await agent.close()


def test_trunk_is_reached_only_from_the_carrier_address_and_port(e2e: E2E) -> None:
    target = (e2e.config.host, e2e.config.sip_port)
    with RawUac(("127.0.0.7", 0), target) as elsewhere:
        as_trunk = elsewhere.invite("trunk")
        unknown = elsewhere.invite("nobody-here")
    with RawUac(("127.0.0.1", 0), target) as other_port:  # the carrier's host, another port
        same_host = other_port.invite("trunk")
    assert as_trunk.codes == unknown.codes == same_host.codes == (401,)
    # From the carrier's own address and port the trunk endpoint answers (and the
    # dial plan refuses calls from the phone network): no challenge at all.
    with RawUac((e2e.config.host, e2e.config.trunk_port), target) as carrier:
        from_carrier = carrier.invite("anyone")
    assert from_carrier.code is not None and from_carrier.code != 401 and 401 not in from_carrier.codes


def test_svwar_finds_no_extension(e2e: E2E, tmp_path: Path) -> None:
    # A short list (under the guard's threshold), "trunk" first: when the trunk
    # answered INVITEs by name (100 Trying, then 403), svwar listed it.
    words = tmp_path / "words.txt"
    names = ["trunk", e2e.terminal.name, *(t.name for t in e2e.terminals.values()), "100", "9999"]
    words.write_text("\n".join(names) + "\n")
    port = str(e2e.config.sip_port)
    for source, method in (("127.0.0.3", "INVITE"), ("127.0.0.4", "REGISTER"), ("127.0.0.9", "OPTIONS")):
        out = _sipvicious(source, "svwar", "-d", str(words), "--force", "-m", method, "-p", port, e2e.config.host)
        assert "401" in out, f"svwar ({method}) got no answer:\n{out}"  # it reached Asterisk
        assert "found nothing" in out, out
        assert "exists" not in out, out


def test_svcrack_finds_no_password_before_it_is_blocked(e2e: E2E, tmp_path: Path) -> None:
    t = e2e.terminal
    port = str(e2e.config.sip_port)
    # The control: with the password early in its list, svcrack finds it (the tool works).
    early = tmp_path / "early.txt"
    early.write_text(f"wrong1\n{t.password}\n")
    out = _sipvicious("127.0.0.6", "svcrack", "-u", t.name, "-d", str(early), "-p", port, e2e.config.host)
    assert t.password in out, out
    # The attack: the password is 25th. The guard blocks the source after 10 failures.
    late = tmp_path / "late.txt"
    late.write_text("".join(f"wrong{n}\n" for n in range(24)) + f"{t.password}\n")
    try:
        out = _sipvicious("127.0.0.5", "svcrack", "-u", t.name, "-d", str(late), "-p", port, e2e.config.host)
        assert t.password not in out, out
        assert "found nothing" in out, out
        assert "127.0.0.5" in guard_blocked(e2e.config)
    finally:
        guard_unblock(e2e.config, "127.0.0.5")


async def test_twenty_bad_passwords_block_the_source_but_not_other_terminals(e2e: E2E) -> None:
    t = e2e.terminal
    target = (e2e.config.host, e2e.config.sip_port)
    attacker = "127.0.0.2"
    guard_unblock(e2e.config, attacker)
    try:
        with RawUac((attacker, 0), target) as uac:
            outcomes = [uac.invite(t.name, f"badpassword{n}", exten="9999", timeout=1.0) for n in range(20)]
            # The block follows the 10th failure by the time an AMI event and an nft
            # command take; the 20 attempts may all be answered before it lands.
            for _ in range(50):
                if attacker in guard_blocked(e2e.config):
                    break
                await asyncio.sleep(0.1)
            # Blocked: even the right password from there gets no answer at all.
            right = uac.invite(t.name, t.password, exten="9999", timeout=2.0)
        finals = [o.code for o in outcomes]
        assert finals[0] == 401
        first_silent = finals.index(None) if None in finals else len(finals)
        assert all(code == 401 for code in finals[:first_silent]), finals
        assert all(code is None for code in finals[first_silent:]), finals
        assert attacker in guard_blocked(e2e.config)
        assert right.codes == ()
        guard_log = e2e.config.path("logs", "guard.log").read_text()
        assert f"[{attacker}] blocked for 300 s after 10 SIP authentication failures" in guard_log
        # The terminals on 127.0.0.1 still call.
        with RawUac(("127.0.0.1", 0), target) as good:
            assert good.invite(t.name, t.password, exten="9999").code == 200
        await _canary_call(e2e)
    finally:
        guard_unblock(e2e.config, attacker)


def test_the_torture_set_is_the_whole_of_rfc4475_section_3() -> None:
    names = [name for section in RFC4475_MESSAGES.values() for name in section]
    assert len(names) == len(set(names)) == 49
    assert sorted(p.stem for p in TORTURE.glob("*.dat")) == sorted(names)
    for name in names:
        data = (TORTURE / f"{name}.dat").read_bytes()
        head, blank, _ = data.partition(b"\r\n\r\n")
        # CRLF line ends (bare LFs occur only in mpart01's binary body, after the blank line).
        assert b"\n" not in head.replace(b"\r\n", b""), name
        assert blank or name == "baddn", name  # baddn is the one message the RFC ends without a blank line
    # What the RFC spells as <hex> escapes is real bytes: intmeth's BEL, NUL and DEL,
    # mpart01's binary signature and unreason's UTF-8 reason phrase.
    assert b'"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f"' in (TORTURE / "intmeth.dat").read_bytes()
    assert b"\x30\x82\x01\x52\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02" in (TORTURE / "mpart01.dat").read_bytes()
    assert "простое".encode() in (TORTURE / "unreason.dat").read_bytes()
    mpart = (TORTURE / "mpart01.dat").read_bytes()
    assert len(mpart.partition(b"\r\n\r\n")[2]) == 553  # its Content-Length


async def test_rfc4475_torture_messages_leave_asterisk_up(e2e: E2E) -> None:
    names = [name for section in RFC4475_MESSAGES.values() for name in section]
    target = (e2e.config.host, e2e.config.sip_port)
    pid = stack.service_state(e2e.config, "asterisk").pid
    assert pid is not None
    for n, name in enumerate(names):
        # Each from its own address, so the guard's count never hides one from Asterisk.
        with RawUac((f"127.0.1.{n + 1}", 0), target) as uac:
            uac.sock.sendto((TORTURE / f"{name}.dat").read_bytes(), uac.target)
            # Asterisk still answers SIP, from the same address: an unknown caller is challenged.
            after = uac.invite("nobody-here", timeout=3.0)
        assert after.code == 401, f"after {name}.dat Asterisk answered {after.codes}"
    assert stack.service_state(e2e.config, "asterisk").alive
    assert stack.service_state(e2e.config, "asterisk").pid == pid
    assert "Asterisk" in stack.asterisk_cli(e2e.config, "core show version")
    await _canary_call(e2e)


async def test_ami_users_cannot_run_commands(e2e: E2E) -> None:
    secrets = load_secrets(e2e.config)
    users = ((secrets.ami_user, secrets.ami_secret), (secrets.ami_originate_user, secrets.ami_originate_secret))
    for user, secret in users:
        client = AmiClient(e2e.config.host, e2e.config.ami_port, user, secret)
        await client.start()
        try:
            await client.action("Ping")  # logged in and talking
            for action, fields in (("Command", {"Command": "core show settings"}),
                                   ("Reload", {}), ("GetConfig", {"Filename": "manager.conf"}),
                                   ("Getvar", {"Variable": "KINLINE_AGI"})):
                with pytest.raises(AmiActionError, match="Permission denied"):
                    await client.action(action, **fields)
        finally:
            await client.close()


def test_no_dtmf_feature_codes_and_no_chanspy(e2e: E2E) -> None:
    features = stack.asterisk_cli(e2e.config, "features show")
    builtin = features.split("Dynamic Feature")[0]
    rows = [line for line in builtin.splitlines()[2:] if line.strip()]
    assert len(rows) >= 5, features
    for row in rows:  # "Name  Default  Current": the current code is empty for every feature
        assert row[34:].strip() == "", row
    assert "(none)" in features.split("Dynamic Feature")[1]
    assert "0 modules loaded" in stack.asterisk_cli(e2e.config, "module show like chanspy")
    assert "1 modules loaded" in stack.asterisk_cli(e2e.config, "module show like res_pjsip_endpoint_identifier_ip")


def test_asterisk_runs_as_its_own_user_with_its_own_dirs(e2e: E2E) -> None:
    pid = stack.service_state(e2e.config, "asterisk").pid
    assert pid is not None
    ids = asterisk_ids(e2e.config)
    assert ids is not None and ids[0] != 0
    # The unshare/chroot wrapper execs Asterisk: the pid is Asterisk itself.
    status = Path(f"/proc/{pid}/status").read_text()
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert set(uid_line.split()[1:]) == {str(ids[0])}, uid_line
    settings = stack.asterisk_cli(e2e.config, "core show settings")
    assert "/var/lib/kinline/run" in settings
    # This stack's own control socket and astdb, in its state folder.
    assert e2e.config.path("run", "asterisk", "asterisk.ctl").is_socket()
    assert e2e.config.path("astdb", "astdb.sqlite3").exists()
    # The shared root is read-only for Asterisk.
    probe = subprocess.run(["nsenter", "-t", str(pid), "-m", "-r", "/bin/sh", "-c", "touch /var/lib/asterisk/probe"],
                           capture_output=True, text=True, timeout=10)
    assert probe.returncode != 0 and "Read-only" in probe.stderr, probe.stderr


def test_state_files_are_private(e2e: E2E) -> None:
    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(e2e.config.path("secrets.toml")) == 0o600
    assert mode(stack.redis_acl_path(e2e.config)) == 0o600
    redis_files = [p for p in e2e.config.path("redis").rglob("*") if p.is_file()]
    assert redis_files
    assert {mode(p) for p in redis_files} == {0o600}
    assert {mode(p) for p in e2e.config.path("redis").rglob("*") if p.is_dir()} == {0o700}
    assert mode(e2e.config.path("astdb", "astdb.sqlite3")) == 0o600
    for name in ("asterisk.log", "agi.log", "redis.log"):
        assert mode(e2e.config.path("logs", name)) == 0o600, name
    for recording in e2e.config.path("recordings").iterdir():
        assert mode(recording) == 0o600, recording
    generated = e2e.config.path("generated", "pjsip_terminals.conf")
    assert mode(generated) == 0o640
    text = generated.read_text()
    assert e2e.terminal.password not in text and "md5_cred" in text


def test_redis_requires_the_password(e2e: E2E) -> None:
    host, port = e2e.config.host, str(e2e.config.redis_port)
    anonymous = subprocess.run(["redis-cli", "-h", host, "-p", port, "PING"],
                               capture_output=True, text=True, timeout=10)
    assert "NOAUTH" in anonymous.stdout + anonymous.stderr
    env = dict(os.environ, REDISCLI_AUTH=load_secrets(e2e.config).redis_password)
    user = subprocess.run(["redis-cli", "-h", host, "-p", port, "--user", "kinline", "PING"],
                          capture_output=True, text=True, timeout=10, env=env)
    assert user.stdout.strip() == "PONG"
    admin = subprocess.run(["redis-cli", "-h", host, "-p", port, "--user", "kinline", "CONFIG", "GET", "dir"],
                           capture_output=True, text=True, timeout=10, env=env)
    assert "NOPERM" in admin.stdout + admin.stderr
