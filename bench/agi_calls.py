"""Benchmark: the FastAGI server alone, complete inmate calls from a fake Asterisk.

    nice -n 19 .venv/bin/python -m bench.agi_calls --calls 10000 [--concurrency 20]

No Asterisk, no SIP. The bench starts its own redis-server (127.0.0.1, a free port, a
temporary folder, no persistence) and the real AGI server process as tools/stack.py does
(``python -m agi.main``, Redis' URL in $KINLINE_REDIS_URL, the PIN key in --secrets,
temporary prompts, names and recordings folders). It provisions one facility (the demo
tariff, a schedule open for hours from now), one card per concurrent caller (its own
inmate with a recorded name, a PIN, a large balance, one allowed mobile number) and makes
the facility's spoken name beforehand (espeak-ng, as `kinline facility add`): no espeak
work in the measured loop.

A fake Asterisk (asyncio TCP clients, replying to every command as res_agi does) then
drives ``--calls`` calls, ``--concurrency`` at a time, each through the dial plan's
sessions: ``inmate_call`` (card, PIN, number: every entry answered at once, no prompt
takes time), Dial simulated (answered, ``--talk-s`` seconds bridged, a recording of
``--recording-kb`` written where MixMonitor would), ``after_dial`` on the same channel,
and ``hangup`` only if after_dial did not close the call (KINLINE_CLOSED). Unknown
commands get ``200 result=0`` and are counted.

Reported, as one markdown table:
- AGI CPU ms per call: the server's utime + stime (/proc/<pid>/stat, every thread) over
  the calls, divided by the calls run;
- commands per call (every AGI command of every session of the call);
- route wall p50/p99, seen by the fake: environment sent -> the server closes; and the
  server's own time per call (its "done in ... (own ...)" log lines, waits excluded);
- the server's RSS (VmRSS) before the first call, after every 1000 calls and at the end;
- failures: a call is good only if it dialed its own number, after_dial closed it, and
  it was settled exactly once: one call record (ANSWER, the talk time, the tariff's
  amount, the recording's hash), one charge in the ledger, one "settled" log line. At
  the end no hold may be open, no card locked, and every balance must add up.

By default the calls come as fast as the server answers (no prompt lasts), far above a
real switch's rate; the server then wakes once for many replies, and its CPU per call is
lower than at a real rate. ``--rate N`` starts N calls a second instead (on a 2-core box:
~4 ms per call unpaced, ~9 ms at 20/s). The exit status is 1 on any failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import wave
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from agi import variables as v
from agi.deps import say_facility_name
from bench.procstat import AGI_LINE, CLK_TCK, cpu_ticks, pct, rss_kb
from ivr import billing
from ivr.model import AllowedNumber, Facility, Inmate, InmateStatus
from ivr.pin import PinHasher
from ivr.tariffs import RouteKind, demo_tariff
from store.redis_store import HOLDS, LEDGER, LOCKS, RedisStore, connect

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
FACILITY = "agibench"
PIN = "2468"
BALANCE = 10_000_000  # minor units: every card outlives 10 000 calls without a short-money announcement
RSS_EVERY = 1000  # calls between two RSS samples
SESSION_TIMEOUT_S = 30.0  # one FastAGI session, start to close
ENDPOS = "endpos=13029"  # what a prompt played to its end reports
SETTLED_LINE = re.compile(r"\] settled (\S+) \(\w+\): .*?( \(already settled\))?$", re.MULTILINE)
WORDS = re.compile(r'"((?:[^"\\]|\\.)*)"|(\S+)')
UNESCAPE = re.compile(r"\\(.)")
VARIABLE_REF = re.compile(r"\$\{([^}]*)\}")


# -- the fake Asterisk ---------------------------------------------------------

def parse_command(line: str) -> tuple[str, list[str]]:
    """``GET DATA "a" "10000" "16"`` -> ("GET DATA", ["a", "10000", "16"]): the leading
    unquoted words are the verb, then each argument unquoted as res_agi does."""
    verb: list[str] = []
    args: list[str] = []
    for match in WORDS.finditer(line):
        quoted, bare = match.groups()
        if quoted is not None:
            args.append(UNESCAPE.sub(r"\1", quoted))
        elif args:
            args.append(bare)
        else:
            verb.append(bare)
    return " ".join(verb), args


@dataclass
class Entries:
    """What the inmate keys at each entry prompt."""

    card: str
    pin: str
    number: str

    def for_prompt(self, prompt: str) -> str | None:
        name = prompt.rsplit("/", 1)[-1]
        return {"enter-card": self.card, "enter-pin": self.pin, "enter-number": self.number}.get(name)


@dataclass
class FakeChannel:
    """One Asterisk channel as the AGI sessions see it: its variables survive between them."""

    name: str
    uniqueid: str
    terminal: str
    entries: Entries
    variables: dict[str, str]
    commands: Counter[str] = field(default_factory=Counter)  # by route
    unknown: Counter[str] = field(default_factory=Counter)  # commands the fake does not know
    played: list[str] = field(default_factory=list)  # the last prompts (a refusal's diagnosis)
    said: list[str] = field(default_factory=list)  # VERBOSE messages (a route failing says so)

    def _read(self, files: str) -> str | None:
        """A Read of ``files`` ('&'-joined): the entry its last file asks for (None: not an
        entry this fake answers); the files are then the last played."""
        digits = self.entries.for_prompt(files.rsplit("&", 1)[-1])
        if digits is not None:
            self.played = [*self.played, *files.split("&")][-2:]
        return digits

    def reply(self, route: str, line: str) -> str:
        """res_agi's reply to one command line."""
        self.commands[route] += 1
        verb, args = parse_command(line)
        if verb == "GET FULL VARIABLE" and args:
            return f"200 result=1 ({VARIABLE_REF.sub(lambda m: self.variables.get(m[1], ''), args[0])})"
        if verb == "STREAM FILE" and args:
            self.played = [*self.played[-1:], args[0]]
            return f"200 result=0 {ENDPOS}"
        if verb == "EXEC" and args and args[0] == "MSet":
            for pair in (args[1] if len(args) > 1 else "").split(","):
                name, _, value = pair.partition("=")
                self.variables[name] = value
            return "200 result=0"
        if verb == "EXEC" and len(args) > 1 and args[0] == "Read":
            # Read(variable,file1&file2...,maxdigits,,attempts,timeout): the entry after the last file.
            name, files = args[1].split(",")[:2]
            digits = self._read(files)
            if digits is not None:
                self.variables.update({name: digits, "READSTATUS": "OK"})
                return "200 result=0"
        if verb == "GOSUB" and args[:3] == ["kinline-entries", "s", "1"] and len(args) == 4:
            # Entries back to back (dialplan [kinline-entries]): triples of files, digits, timeout.
            parts = args[3].split(",")
            for n, files in enumerate(parts[0::3], start=1):
                digits = self._read(files)
                if digits is None:
                    break
                self.variables.update({f"KINLINE_ENTRY{n}": digits, f"KINLINE_ENTRY{n}_STATUS": "OK",
                                       "KINLINE_ENTRIES_DONE": str(n)})
            else:
                return "100 result=0 Trying...\n200 result=0 Gosub complete"
        if verb == "SET VARIABLE" and len(args) == 2:
            self.variables[args[0]] = args[1]
            return "200 result=1"
        if verb == "GET DATA" and args:
            digits = self.entries.for_prompt(args[0])
            if digits is not None:
                return f"200 result={digits}"
        elif verb == "GET VARIABLE" and args:
            return f"200 result=1 ({self.variables[args[0]]})" if args[0] in self.variables else "200 result=0"
        elif verb in ("ANSWER", "HANGUP", "NOOP"):
            return "200 result=0" if verb == "ANSWER" else "200 result=1"
        elif verb == "VERBOSE":
            self.said.append(args[0] if args else "")
            return "200 result=1"
        self.unknown[verb or line[:30]] += 1
        return "200 result=0"

    def environment(self, route: str, port: int) -> bytes:
        # kinline-ivr passes the terminal's facility and endpoint to inmate_call.
        args = [f"agi_arg_1: {self.variables[v.FACILITY]}", f"agi_arg_2: {self.terminal}"] \
            if route == "inmate_call" else []
        lines = [
            "agi_network: yes", f"agi_network_script: {route}", f"agi_request: agi://{HOST}:{port}/{route}",
            f"agi_channel: {self.name}", "agi_language: en", "agi_type: PJSIP", f"agi_uniqueid: {self.uniqueid}",
            "agi_version: 22.0.0", f"agi_callerid: {self.terminal}", f"agi_calleridname: {self.terminal}",
            "agi_callingpres: 0", "agi_callingani2: 0", "agi_callington: 0", "agi_callingtns: 0",
            "agi_dnid: s", "agi_rdnis: unknown",
            f"agi_context: {'kinline-hangup' if route == 'hangup' else 'kinline-ivr'}", "agi_extension: s",
            "agi_priority: 5", "agi_enhanced: 0.0", "agi_accountcode: ", "agi_threadid: 140245123456768", *args,
        ]
        return ("\n".join(lines) + "\n\n").encode()


async def agi_session(port: int, route: str, channel: FakeChannel) -> float:
    """One FastAGI session, as Asterisk's AGI() runs it: the environment, then a reply
    to each command until the server closes. Returns its wall time (s)."""
    async with asyncio.timeout(SESSION_TIMEOUT_S):
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            started = time.perf_counter()
            writer.write(channel.environment(route, port))
            while line := await reader.readline():
                writer.write(channel.reply(route, line.decode().rstrip("\r\n")).encode() + b"\n")
                await writer.drain()
            return time.perf_counter() - started
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


# -- one call ---------------------------------------------------------------------

@dataclass(frozen=True)
class Card:
    number: str  # the card's number
    dialed: str  # the number the inmate keys (its allowed number without '+')
    terminal: str


@dataclass
class CallResult:
    card: Card
    uniqueid: str
    call_id: str = ""
    commands: Counter[str] = field(default_factory=Counter)
    walls: dict[str, float] = field(default_factory=dict)  # route -> s
    unknown: Counter[str] = field(default_factory=Counter)
    failure: str = ""  # what went wrong ('' = nothing, so far)


@dataclass(frozen=True)
class Setup:
    port: int
    recordings: Path
    talk_s: int
    recording: bytes  # what "MixMonitor" writes for every call


async def one_call(setup: Setup, card: Card, index: int, stamp: int) -> CallResult:
    """A whole call through the dial plan (dialplan/kinline.conf, kinline-ivr and kinline-hangup)."""
    uniqueid = f"{stamp}.{index}"
    channel = FakeChannel(f"PJSIP/{card.terminal}-{index:08x}", uniqueid, card.terminal,
                          Entries(card.number, PIN, card.dialed),
                          {v.FACILITY: FACILITY, v.ENDPOINT: card.terminal, v.ACTION: ""})
    result = CallResult(card, uniqueid)
    recording: Path | None = None
    try:
        result.walls["inmate_call"] = await agi_session(setup.port, "inmate_call", channel)
        action = channel.variables.get(v.ACTION, "")
        if action != v.ACTION_DIAL:
            said = channel.variables.get(v.FINAL_PROMPT) or " ".join(channel.played)
            result.failure = f"not dialed (action {action or 'unset'}, last prompts {said})"
        elif channel.variables.get(v.DIAL_TARGET) != f"PJSIP/+{card.dialed}@trunk":
            result.failure = f"wrong dial target {channel.variables.get(v.DIAL_TARGET)!r}"
        else:
            result.call_id = channel.variables.get(v.CALL_ID, "")
            recording = dial(setup, channel)
            result.walls["after_dial"] = await agi_session(setup.port, "after_dial", channel)
            closed = (channel.variables.get(v.CLOSED), channel.variables.get(v.SETTLED),
                      channel.variables.get(v.ACTION))
            if closed != ("1", result.call_id, v.ACTION_DONE):
                result.failure = f"after_dial did not close the call (closed, settled, action = {closed})"
        # kinline-hangup: the end stamp if Dial never ended, then the route unless after_dial closed the call.
        if not channel.variables.get(v.DIAL_END):
            channel.variables[v.DIAL_END] = str(int(time.time() * 1000))
        if channel.variables.get(v.CLOSED) != "1":
            result.walls["hangup"] = await agi_session(setup.port, "hangup", channel)
    except (OSError, TimeoutError) as exc:
        result.failure = f"session failed: {type(exc).__name__} {exc}".strip()
    finally:
        if recording is not None:
            recording.unlink(missing_ok=True)
    if channel.said:  # a route that fails tells Asterisk's log: the best diagnosis
        result.failure = f"the server said: {channel.said[0]}"
    result.commands, result.unknown = channel.commands, channel.unknown
    return result


def dial(setup: Setup, channel: FakeChannel) -> Path | None:
    """What Dial() and the dial plan around it leave on the channel: answered, bridged
    ``talk_s`` before its end, the relative hung up; the recording (MixMonitor) written."""
    variables = channel.variables
    variables.update({v.ACTION: "", v.DIAL_END: "", v.BRIDGED_AT: "", v.ACCEPT_ON_CALLER: "", v.FAR_CAUSE: ""})
    recording = None
    if variables.get(v.RECORD) == "1":
        recording = setup.recordings / Path(variables.get(v.RECORDING, "")).name
        recording.write_bytes(setup.recording)
    end_ms = int(time.time() * 1000)
    variables.update({v.DIALSTATUS: "ANSWER", v.HANGUPCAUSE: "16", v.FAR_CAUSE: "16",
                      v.BRIDGED_AT: str(end_ms - setup.talk_s * 1000), v.DIAL_END: str(end_ms)})
    return recording


# -- processes ----------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@contextlib.asynccontextmanager
async def redis_server(folder: Path) -> AsyncIterator[str]:
    """A redis-server of our own: 127.0.0.1, a free port, no persistence. Yields its URL."""
    folder.mkdir()
    port = free_port()
    with (folder / "redis.log").open("ab") as log:
        proc = subprocess.Popen(
            ["redis-server", "--bind", HOST, "--port", str(port), "--dir", str(folder), "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes", "--logfile", ""],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"redis://{HOST}:{port}/0"
    try:
        client = connect(url)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    await client.ping()
                    break
                except Exception as exc:  # redis' ConnectionError, whatever the client version
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"redis-server did not start; see {folder / 'redis.log'}") from exc
                    await asyncio.sleep(0.05)
        finally:
            await client.aclose()
        yield url
    finally:
        stop(proc)


@contextlib.asynccontextmanager
async def agi_server(work: Path, redis_url: str, pin_key: str) -> AsyncIterator[tuple[int, int, Path]]:
    """The AGI server as tools/stack.py starts it. Yields (pid, port, its log file)."""
    secrets_file = work / "secrets.toml"
    secrets_file.write_text(f'pin_key = "{pin_key}"\n')
    secrets_file.chmod(0o600)
    port = free_port()
    log_path = work / "agi.log"
    argv = [sys.executable, "-m", "agi.main", "--host", HOST, "--port", str(port),
            "--recordings", str(work / "recordings"), "--names", str(work / "names"),
            "--prompts", str(work / "prompts"), "--secrets", str(secrets_file),
            "--log-level", os.environ.get("KINLINE_AGI_LOG_LEVEL", "INFO")]
    with log_path.open("ab") as log:
        proc = subprocess.Popen(argv, cwd=REPO, env={**os.environ, "KINLINE_REDIS_URL": redis_url},
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while "FastAGI listening" not in log_path.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the AGI server did not start:\n{log_path.read_text(errors='replace')[-2000:]}")
            await asyncio.sleep(0.05)
        yield proc.pid, port, log_path
    finally:
        stop(proc)


# -- provisioning ------------------------------------------------------------------

def open_zone(now: datetime) -> str:
    """A fixed-offset zone where it is about noon now: the schedule (its windows end at
    23:59 at the latest) stays open for hours, whatever the time of day of the run."""
    offset = round(12 - (now.hour + now.minute / 60))
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


def give_name(path: Path) -> None:
    """The inmate recorded their name already (else the first login asks for it)."""
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"\0\0" * 4000)
    path.chmod(0o644)  # Asterisk (its own user, in the root) plays it


async def provision(store: RedisStore, work: Path, count: int) -> list[Card]:
    """The facility, its tariff and ``count`` cards (an inmate, a name, a balance and an
    allowed number each); the facility's spoken name made now, not during a call."""
    facility = Facility(FACILITY, "Bench colony", open_zone(datetime.now(UTC)), "RUB", "en", "mon-sun 00:00-23:59")
    await store.put_facility(facility)
    await store.put_tariff(FACILITY, demo_tariff())
    await asyncio.to_thread(say_facility_name, work / "prompts", facility)  # as `kinline facility add`
    cards = []
    for i in range(count):
        card = Card(f"1{i:05d}", f"7916{i:07d}", f"agibench-term-{i}")
        inmate = Inmate(f"agibench-{card.number}", "Bench Inmate", FACILITY, InmateStatus.CONVICTED)
        await store.put_inmate(inmate)
        give_name(work / "names" / f"{inmate.id}.wav")
        await store.create_card(card.number, inmate.id, FACILITY, PIN, "en")
        await store.top_up(card.number, BALANCE, f"agibench-{card.number}")
        await store.allow_number(card.number, AllowedNumber(f"+{card.dialed}", "Relative"))
        cards.append(card)
    return cards


# -- checks ------------------------------------------------------------------------

async def verify(store: RedisStore, results: Sequence[CallResult], setup: Setup, agi_log: str) -> Counter[str]:
    """Why each call that looked good is not (failure set on it) and what is wrong with
    the run as a whole (returned): holds left open, cards locked, balances that do not add up."""
    tariff = demo_tariff()
    rate = tariff.lookup("+79160000000", RouteKind.MOBILE).per_minute
    expected = billing.charge(setup.talk_s, rate, tariff)
    sha = hashlib.sha256(setup.recording).hexdigest()
    settled: Counter[str] = Counter()
    for m in SETTLED_LINE.finditer(agi_log):
        settled[m[1]] += 1
    charges: Counter[str] = Counter()
    charged: Counter[str] = Counter()  # card -> amount
    cursor = "-"
    while rows := await store.redis.xrange(LEDGER, min=cursor, count=1000):
        for _, raw in rows:
            fields = {_text(k): _text(val) for k, val in (raw or {}).items()}
            if fields.get("kind") == "charge":
                charges[fields["ref"]] += 1
                charged[fields["card"]] += int(fields["amount"])
        cursor = "(" + _text(rows[-1][0] or "")
    for result in results:
        if result.failure:
            continue
        record = await store.call_record(result.call_id)
        if record is None:
            result.failure = "no call record"
        elif (record.dial_status, record.answered_s, record.amount) != ("ANSWER", setup.talk_s, expected):
            result.failure = (f"call record wrong: {record.dial_status} {record.answered_s} s charged "
                              f"{record.amount} (want ANSWER {setup.talk_s} s {expected})")
        elif record.recording_sha256 != sha:
            result.failure = "call record without the recording's hash"
        elif charges[result.call_id] != 1:
            result.failure = f"{charges[result.call_id]} charges in the ledger"
        elif settled[result.call_id] != 1:
            result.failure = f"{settled[result.call_id]} 'settled' log lines"
    problems: Counter[str] = Counter()
    if holds := await store.redis.zcard(HOLDS):
        problems[f"holds still open at the end: {holds}"] += 1
    if locks := await store.redis.hlen(LOCKS):
        problems[f"cards still locked at the end: {locks}"] += 1
    for card in {r.card for r in results}:
        now = await store.card(card.number)
        if now is None or now.balance != BALANCE - charged[card.number]:
            problems[f"card {card.number}: balance does not add up"] += 1
    return problems


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# -- the run -----------------------------------------------------------------------

@dataclass
class Report:
    calls: int  # asked for
    concurrency: int
    rate: float = 0.0  # calls started per second (0: unpaced)
    seconds: float = 0.0
    results: list[CallResult] = field(default_factory=list)
    cpu_ms: float = 0.0  # the AGI server's, over every call
    rss_kb: list[tuple[int, int | None]] = field(default_factory=list)  # (calls done, VmRSS kB)
    own_ms: list[float] = field(default_factory=list)  # per call, from the server's log
    problems: Counter[str] = field(default_factory=Counter)  # run-level
    log_warnings: list[str] = field(default_factory=list)  # WARNING and ERROR lines of the AGI server

    @property
    def good(self) -> int:
        return sum(1 for r in self.results if not r.failure)

    def failures(self) -> Counter[str]:
        reasons = Counter(r.failure for r in self.results if r.failure)
        if len(self.results) < self.calls:
            reasons["not run (time limit)"] += self.calls - len(self.results)
        if self.log_warnings:
            reasons[f"AGI log warnings/errors: {self.log_warnings[0][-160:]}"] += len(self.log_warnings)
        return reasons + self.problems

    def table(self) -> str:
        run = max(len(self.results), 1)
        commands: Counter[str] = Counter()
        walls: dict[str, list[float]] = defaultdict(list)
        unknown: Counter[str] = Counter()
        for r in self.results:
            commands.update(r.commands)
            unknown.update(r.unknown)
            for route, wall in r.walls.items():
                walls[route].append(wall * 1000)
        by_route = ", ".join(f"{route} {n / run:.1f}" for route, n in commands.items())
        wall_text = "; ".join(f"{route} {pct(ms, 0.5) or 0:.1f} / {pct(ms, 0.99) or 0:.1f}"
                              for route, ms in walls.items())
        rss = [f"{kb / 1024:.1f}" if kb is not None else "?" for _, kb in self.rss_kb]
        rss_text = (f"{rss[0]} / {', '.join(rss[1:-1]) or '-'} / {rss[-1]}" if len(rss) > 1
                    else (rss[0] if rss else "-"))
        failures = self.failures()
        failure_text = (f"{sum(failures.values())}: " + "; ".join(f"{n} {why}" for why, n in failures.most_common())
                        if failures else "0")
        rows = [
            ("calls (good / run / asked)", f"{self.good} / {len(self.results)} / {self.calls}"),
            ("concurrency", f"{self.concurrency}" + (f", started at {self.rate:g}/s" if self.rate else ", unpaced")),
            ("run", f"{self.seconds:.1f} s, {len(self.results) / max(self.seconds, 1e-9):.1f} calls/s"),
            ("AGI CPU ms per call", f"{self.cpu_ms / run:.2f}"),
            ("AGI own ms per call p50 / p99 (its log)",
             f"{pct(self.own_ms, 0.5) or 0:.1f} / {pct(self.own_ms, 0.99) or 0:.1f}"),
            ("commands per call", f"{sum(commands.values()) / run:.1f} ({by_route})"),
            ("route wall ms p50 / p99", wall_text or "-"),
            (f"AGI RSS MB start / every {RSS_EVERY} calls / end", rss_text),
            ("unknown commands", ", ".join(f"{n} {verb}" for verb, n in unknown.items()) or "0"),
            ("failures", failure_text),
        ]
        return "\n".join(["| measure | value |", "|---|---|", *(f"| {k} | {val} |" for k, val in rows)])


@dataclass(frozen=True)
class Options:
    calls: int = 100
    concurrency: int = 20
    talk_s: int = 60
    recording_kb: int = 16
    max_seconds: float = 600.0
    rate: float = 0.0  # calls started per second (0: each as soon as a concurrent slot is free)
    agi_log: Path | None = None  # keep the AGI server's log here


async def bench(options: Options) -> Report:
    report = Report(options.calls, options.concurrency, options.rate)
    with tempfile.TemporaryDirectory(prefix="kinline-agi-calls-") as tmp:
        work = Path(tmp)
        for folder in ("recordings", "names", "prompts"):
            (work / folder).mkdir()
        pin_key = secrets.token_hex(32)
        async with redis_server(work / "redis") as redis_url:
            store = RedisStore(connect(redis_url), PinHasher.from_hex(pin_key))
            try:
                cards = await provision(store, work, options.concurrency)
                async with agi_server(work, redis_url, pin_key) as (pid, port, log_path):
                    setup = Setup(port, work / "recordings", options.talk_s, bytes(options.recording_kb * 1024))
                    await drive(setup, cards, options, report, pid)
                log_text = log_path.read_text(errors="replace")
                if options.agi_log is not None:
                    options.agi_log.write_text(log_text)
                report.problems = await verify(store, report.results, setup, log_text)
            finally:
                await store.aclose()
        own: dict[str, float] = defaultdict(float)
        for m in AGI_LINE.finditer(log_text):
            own[m[1]] += float(m[3])
        report.own_ms = list(own.values())
        report.log_warnings = [line for line in log_text.splitlines() if " WARNING " in line or " ERROR " in line]
    return report


async def drive(setup: Setup, cards: Sequence[Card], options: Options, report: Report, pid: int) -> None:
    """``options.calls`` calls, one worker (and card) per concurrent call, until the time limit."""
    stamp = int(time.time())
    deadline = time.monotonic() + options.max_seconds
    next_index = iter(range(options.calls))

    async def worker(card: Card) -> None:
        for index in next_index:
            if options.rate > 0 and (wait := started + index / options.rate - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            if time.monotonic() > deadline:
                return
            report.results.append(await one_call(setup, card, index, stamp))
            if len(report.results) % RSS_EVERY == 0 and len(report.results) < options.calls:
                report.rss_kb.append((len(report.results), rss_kb(pid)))

    report.rss_kb.append((0, rss_kb(pid)))
    ticks = cpu_ticks(pid) or 0
    started = time.monotonic()
    await asyncio.gather(*(worker(card) for card in cards))
    report.seconds = time.monotonic() - started
    report.cpu_ms = ((cpu_ticks(pid) or ticks) - ticks) * 1000 / CLK_TCK
    report.rss_kb.append((len(report.results), rss_kb(pid)))


def run(options: Options) -> Report:
    return asyncio.run(bench(options))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=Options.calls, help="calls to make (default %(default)s)")
    parser.add_argument("--concurrency", type=int, default=Options.concurrency,
                        help="calls at once, one card each (default %(default)s)")
    parser.add_argument("--talk-s", type=int, default=Options.talk_s, help="billed seconds per call")
    parser.add_argument("--recording-kb", type=int, default=Options.recording_kb,
                        help="each call's recording, hashed by after_dial (default 16: 1 s of 8 kHz audio)")
    parser.add_argument("--max-seconds", type=float, default=Options.max_seconds,
                        help="no call starts after this (default %(default)s)")
    parser.add_argument("--rate", type=float, default=Options.rate,
                        help="calls started per second (default 0: as fast as the server answers)")
    parser.add_argument("--agi-log", type=Path, help="keep the AGI server's log in this file")
    args = parser.parse_args(argv)
    if min(args.calls, args.concurrency, args.talk_s) < 1 or min(args.recording_kb, args.rate) < 0:
        parser.error("--calls, --concurrency and --talk-s must be positive, --recording-kb and --rate >= 0")
    report = run(Options(args.calls, args.concurrency, args.talk_s, args.recording_kb, args.max_seconds,
                         args.rate, args.agi_log))
    for line in report.log_warnings[:10]:
        sys.stderr.write(f"agi log: {line}\n")
    sys.stdout.write(report.table() + "\n")
    return 1 if report.failures() else 0


if __name__ == "__main__":
    sys.exit(main())
