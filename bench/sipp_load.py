"""SIPp for `make bench`: the scenarios (bench/sipp/), their CSV, one step's run, its logs.

A step starts one SIPp relative (UAS on the trunk's port) and one SIPp terminal
(UAC) placing ``rate`` calls per second for ``calls`` calls. Each call dials its own
number, so the relative's log says which call reached it; the terminal logs when
its number was complete (the last '#', or the INVITE for the bare switch).
"""

from __future__ import annotations

import contextlib
import math
import re
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

SIPP = "/usr/bin/sipp"
SCENARIOS = Path(__file__).resolve().parent / "sipp"
DIGIT_GAP_MS = 80  # from one key's start to the next (each held DTMF_MS)
DTMF_MS = 60
INFO_TEMPLATE = """  <send retrans="500">
    <![CDATA[

      INFO [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[field0]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: [$peer_to]
      Call-ID: [call_id]
      CSeq: {cseq} INFO
      [routes]
      Max-Forwards: 70
      Content-Type: application/dtmf-relay
      Content-Length: [len]

      Signal=[field{field}]
      Duration={duration}

    ]]>
  </send>
  <recv response="200"/>
"""
DIALED_LOG = """  <nop>
    <action>
      <gettimeofday assign_to="s,us"/>
      <log message="dialed [field2] [$s] [$us] [call_id]"/>
    </action>
  </nop>
"""


@dataclass(frozen=True)
class Entry:
    """Keys sent after waiting ``wait_ms`` from the previous entry (or the answer)."""

    wait_ms: int
    keys: str  # digits and '#': each becomes one CSV field


@dataclass(frozen=True)
class CallSpec:
    user: str
    password: str
    number: str  # what the relative must see (E.164 digits, no '+')
    entries: tuple[Entry, ...] = ()  # for Kinline: card, PIN, number


@dataclass
class StepLogs:
    """What the relative and the terminal logged, by number."""

    invites: dict[str, list[float]] = field(default_factory=dict)  # number -> arrival times
    answered: dict[str, int] = field(default_factory=dict)  # number -> answers at the relative
    dialed: dict[str, float] = field(default_factory=dict)  # number -> last key (or INVITE) sent
    gave_up: set[str] = field(default_factory=set)  # terminal hung up itself (no BYE in time)


def terminal_xml(exten: str, audio: Path, max_ms: int, entries: Sequence[Entry]) -> str:
    """The terminal scenario: with ``entries`` the Kinline IVR is driven by SIP INFO."""
    blocks: list[str] = []
    cseq, fieldno = 3, 3
    for n, entry in enumerate(entries):
        blocks.append(f'  <pause milliseconds="{entry.wait_ms}"/>\n')
        for i, _key in enumerate(entry.keys):
            if i:  # a key is pressed after the last one ended, the '#' too
                blocks.append(f'  <pause milliseconds="{DIGIT_GAP_MS}"/>\n')
            if n == len(entries) - 1 and i == len(entry.keys) - 1:
                blocks.append(DIALED_LOG)
            blocks.append(INFO_TEMPLATE.format(cseq=cseq, field=fieldno, duration=DTMF_MS))
            cseq += 1
            fieldno += 1
    template = (SCENARIOS / "terminal.xml").read_text()
    return template.format(exten=exten, audio=audio, max_ms=max_ms, digits="".join(blocks),
                           dial_log="" if entries else DIALED_LOG)


def relative_xml(audio: Path, hold_ms: int, reject_prefix: str) -> str:
    template = (SCENARIOS / "relative.xml").read_text()
    return template.format(audio=audio, hold_ms=hold_ms, reject_prefix=reject_prefix)


def csv_text(calls: Sequence[CallSpec]) -> str:
    lines = ["SEQUENTIAL"]
    for call in calls:
        keys = [k for entry in call.entries for k in entry.keys]
        auth = f"[authentication username={call.user} password={call.password}]"
        lines.append(";".join([call.user, auth, call.number, *keys]) + ";")
    return "\n".join(lines) + "\n"


def write_audio(path: Path, seconds: int = 10) -> Path:
    """Raw G.711 u-law (what rtp_stream sends as it is): a 440 Hz tone."""
    samples = bytearray()
    for i in range(8000 * seconds):
        samples.append(_ulaw(round(6000 * math.sin(2 * math.pi * 440 * i / 8000))))
    path.write_bytes(bytes(samples))
    return path


def _ulaw(sample: int) -> int:
    sign = 0x80 if sample < 0 else 0
    magnitude = min(abs(sample), 32635) + 0x84
    exponent = max(0, magnitude.bit_length() - 8)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def _sipp(scenario: Path, host: str, port: int, media_port: int, extra: list[str]) -> list[str]:
    return [SIPP, "-sf", str(scenario), "-i", host, "-p", str(port), "-mi", host, "-mp", str(media_port),
            "-trace_logs", "-trace_err", "-nostdin", *extra]


@dataclass
class Step:
    """One step's SIPp processes; ``run`` starts them and waits (bounded)."""

    folder: Path
    host: str
    switch_port: int  # the switch's terminals' port
    relative_port: int
    terminal_port: int
    media_base: int  # the relative's media ports from here, the terminal's from here + 4000
    exten: str  # what the terminal INVITEs (bare: the number)
    relative_hold_ms: int
    reject_prefix: str
    pids: dict[str, int] = field(default_factory=dict)

    def run(self, calls: Sequence[CallSpec], rate: float, call_max_s: float) -> StepLogs:
        """Place ``calls`` at ``rate``; a terminal hangs up itself ``call_max_s`` after its
        number if the far end has not. Bounded: arrivals + entries + call_max_s + margins."""
        entry_s = sum(e.wait_ms + DIGIT_GAP_MS * len(e.keys) for e in (calls[0].entries if calls else ())) / 1000
        timeout_s = len(calls) / rate + entry_s + call_max_s + 20
        self.folder.mkdir(parents=True, exist_ok=True)
        audio = write_audio(self.folder / "tone.ulaw")
        relative = self.folder / "relative.xml"
        relative.write_text(relative_xml(audio, self.relative_hold_ms, self.reject_prefix))
        terminal = self.folder / "terminal.xml"
        entries = calls[0].entries if calls else ()
        max_ms = int(call_max_s * 1000)
        terminal.write_text(terminal_xml(self.exten, audio, max_ms, entries))
        (self.folder / "calls.csv").write_text(csv_text(calls))
        out = (self.folder / "sipp.out").open("ab")
        uas_options = ["-m", str(len(calls)), "-timeout", f"{int(timeout_s) + 30}s"]
        uas = subprocess.Popen(
            _sipp(relative, self.host, self.relative_port, self.media_base, uas_options),
            cwd=self.folder, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        self.pids["sipp relative"] = uas.pid
        uac: subprocess.Popen[bytes] | None = None
        try:
            time.sleep(0.3)  # the UAS binds its port (a first INVITE would get ICMP otherwise)
            if uas.poll() is not None:
                raise RuntimeError(f"SIPp relative exited at once ({uas.returncode}): see {self.folder}/sipp.out")
            uac = subprocess.Popen(
                [*_sipp(terminal, self.host, self.terminal_port, self.media_base + 4000,
                        ["-inf", str(self.folder / "calls.csv"), "-r", f"{rate:g}", "-m", str(len(calls)),
                         "-l", str(max(10, len(calls))), "-timeout", f"{int(timeout_s)}s",
                         "-max_recv_loops", "1000"]),
                 f"{self.host}:{self.switch_port}"],
                cwd=self.folder, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
            self.pids["sipp terminal"] = uac.pid
            try:
                uac.wait(timeout_s + 15)
            except subprocess.TimeoutExpired:
                uac.kill()
                uac.wait(5)
            # The relative's last calls end with its BYE; give it its hold time, then stop it.
            with contextlib.suppress(subprocess.TimeoutExpired):
                uas.wait(self.relative_hold_ms / 1000 + 5)
        finally:
            for proc in (uac, uas):
                if proc is not None and proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(5)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait(5)
            out.close()
        return read_logs(self.folder)


LINE = re.compile(r"^(invite|answered|dialed|gave-up) (\S+)(?: ([\d.]+) ([\d.]+))?")


def read_logs(folder: Path) -> StepLogs:
    logs = StepLogs()
    for path in sorted(folder.glob("*_logs.log")):
        for line in path.read_text(errors="replace").splitlines():
            m = LINE.match(line)
            if m is None:
                continue
            kind, number = m.group(1), m.group(2)
            at = int(float(m.group(3))) + float(m.group(4)) / 1e6 if m.group(3) else 0.0
            if kind == "invite":
                logs.invites.setdefault(number, []).append(at)
            elif kind == "answered" and path.name.startswith("relative"):
                logs.answered[number] = logs.answered.get(number, 0) + 1
            elif kind == "dialed":
                logs.dialed[number] = at
            elif kind == "gave-up":
                logs.gave_up.add(number)
    return logs


@dataclass
class HoldRun:
    """Long calls placed in batches, each by a SIPp terminal of its own (its own SIP port and
    media ports), all to one SIPp relative that holds every call ``hold_ms``. The caller adds a
    batch, waits for it to be bridged, measures, and adds the next; ``stop`` ends them all."""

    folder: Path
    host: str
    switch_port: int
    relative_port: int
    first_terminal_port: int  # batch k's terminal listens on this + k
    media_base: int  # the relative's media ports from here; batch k's from here + 4000 + 200 k
    exten: str
    hold_ms: int
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __enter__(self) -> HoldRun:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.audio = write_audio(self.folder / "tone.ulaw")
        relative = self.folder / "relative.xml"
        relative.write_text(relative_xml(self.audio, self.hold_ms, "none"))
        self.out = (self.folder / "sipp.out").open("ab")
        self.procs["sipp relative"] = subprocess.Popen(
            _sipp(relative, self.host, self.relative_port, self.media_base,
                  ["-timeout", f"{self.hold_ms // 1000 + 60}s"]),
            cwd=self.folder, stdin=subprocess.DEVNULL, stdout=self.out, stderr=subprocess.STDOUT)
        time.sleep(0.3)
        return self

    def add_batch(self, calls: Sequence[CallSpec], rate: float) -> None:
        k = len(self.procs) - 1
        if k >= 20:
            raise RuntimeError("at most 20 batches")
        terminal = self.folder / f"terminal{k}.xml"
        terminal.write_text(terminal_xml(self.exten, self.audio, self.hold_ms + 60_000, calls[0].entries))
        (self.folder / f"calls{k}.csv").write_text(csv_text(calls))
        self.procs[f"sipp terminal {k}"] = subprocess.Popen(
            [*_sipp(terminal, self.host, self.first_terminal_port + k, self.media_base + 4000 + 200 * k,
                    ["-inf", str(self.folder / f"calls{k}.csv"), "-r", f"{rate:g}", "-m", str(len(calls)),
                     "-l", str(len(calls)), "-timeout", f"{self.hold_ms // 1000 + 60}s"]),
             f"{self.host}:{self.switch_port}"],
            cwd=self.folder, stdin=subprocess.DEVNULL, stdout=self.out, stderr=subprocess.STDOUT)

    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self.procs.items()}

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        self.out.close()
