"""`make bench`: Kinline against a bare Asterisk on this box, one table.

    .venv/bin/python -m bench.make_bench [--quick] [--out var/bench/latest.md]

Both switches run from the same cached Asterisk root, each in a throwaway state
folder of its own, on ports apart from the dev and test stacks:
- Kinline: the whole stack (tools/stack.py) from config/test.toml moved by
  KINLINE_PORT_OFFSET=9 (SIP 15960, trunk 15980; RTP 60000-63999, KINLINE_RTP);
- bare: Asterisk alone (bench/bare_stack.py; SIP 25960, trunk 25980, RTP 40000-43999),
  digest-authenticated terminals, Answer, MixMonitor, Dial to the trunk;
- then the same bare Asterisk, started again, with Kinline's call and no Kinline behind it
  (bench/bare_asterisk/extensions.conf [shaped]: Kinline's prompts and entries in Read(),
  the relative's introduction in Dial's U() with ringback, L(), MixMonitor, goodbye): what
  the call's audio costs Asterisk, so that the table says what Kinline's decisions add.
All are stopped at the end, also on failure or Ctrl-C.

SIPp terminals call with digest auth (bench/sipp/terminal.xml); Kinline's get the card,
PIN and number as SIP INFO digits, each after the prompts before it (their lengths read
from the stack's own prompt files). A SIPp relative on the trunk answers, streams G.711
and hangs up after the talk time (Kinline: after the relative's introduction too).

The rate is stepped (RFC 7501 style). A call is good only if the relative answered an
INVITE for exactly its number (each call dials its own) and, for Kinline, its card has
exactly one call record, answered, for that number, with the tariff's amount for its
answered seconds; for the bare Asterisk, its recording (named by the number) holds audio,
so the call was bridged. The knee is the highest rate whose step had no failure.
--quick: one small step per switch (1 call/s for 5 s) that proves the pipeline; its
figures are not a measurement. CPU is summed per process from /proc/<pid>/stat
(/proc/stat under-counts bursty load here); per call = the step's CPU / its calls.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.request
import wave
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from agi.deps import say_facility_name
from agi.prompts import facility_file, sound_file
from bench import agi_calls, bare_stack
from bench.procstat import AGI_LINE, CLK_TCK, cpu_ticks, pct, rss_kb
from bench.sipp_load import CallSpec, Entry, HoldRun, Step, StepLogs
from ivr import prompts as p
from ivr.billing import charge
from ivr.model import AllowedNumber, Facility, Inmate, InmateStatus
from ivr.pin import PinHasher
from ivr.tariffs import RouteKind, demo_tariff
from store.redis_store import RedisStore
from tools import stack
from tools.asterisk_conf import TerminalLogin, save_terminals
from tools.config import StackConfig, load_config, load_secrets
from tools.prompts import generate as generate_prompts

REPO = Path(__file__).resolve().parent.parent
OFFSET = "9"  # Kinline's bench stack: config/test.toml ports + 900
HOST = "127.0.0.1"
BARE_SIP, BARE_TRUNK, BARE_TERMINAL = 25960, 25980, 25990
BARE_RTP = (40000, 43999)  # 1000 calls' two legs (RTP and RTCP ports for each)
KINLINE_RTP = (60000, 63999)  # the same for Kinline (offset 9's own range, 39000-39999, holds 250)
KINLINE_TERMINAL_PORT = 15995  # the SIPp terminal's own SIP port (inside offset 9's block)
MEDIA = {"kinline": 44000, "bare": 52000}  # SIPp media: relative from here, terminal from here + 4000 (Step)
PROMPT_CACHE = REPO / "var" / "bench" / "prompts"
REJECT_PREFIX = "7999"  # the relative answers 486 to these numbers
PIN = "2468"
FACILITY = "bench"
BENCH_FACILITY = Facility(FACILITY, "Bench colony", "UTC", "RUB", "en", "mon-sun 00:00-23:59")
BALANCE = 10_000  # minor units on every bench card: the balance said in words (Kinline and its call on bare)
TERMINALS = 10
INTRO_ALLOWANCE_S = 9  # Kinline: the relative hears who calls and that it is recorded first
AGI_ALONE_CALLS = 10_000  # the AGI server's memory over this many calls (bench/agi_calls.py, ~1 min)
STACK_CPU = ("asterisk", "agi", "redis")  # the call path; the others are summed as "other services"


@dataclass
class Plan:
    quick: bool
    kinline_rates: tuple[float, ...]
    bare_rates: tuple[float, ...]
    step_s: int  # seconds of arrivals per step
    talk_s: int  # the relative hangs up this long after the bridge (both switches)
    reject: int  # calls per step dialing a number the relative rejects (the test's failure check)
    # Recorded calls held (full mode): long calls placed at these rates, at most this many.
    hold_rates: dict[str, float] = field(default_factory=dict)
    hold_max: dict[str, int] = field(default_factory=dict)
    shaped_rates: tuple[float, ...] = ()  # Kinline's call on the bare Asterisk (none: not run)
    max_in_ivr: int | None = None  # Kinline's overload level for the run (None: config/test.toml's)


@dataclass
class StepResult:
    stack: str
    rate: float
    placed: int
    good: int
    failures: Counter[str]
    cpu_ms: dict[str, float]  # process -> CPU ms per placed call
    agi_own_ms: list[float] = field(default_factory=list)  # per call, all routes
    agi_wall_ms: list[float] = field(default_factory=list)
    pdd_ms: list[float] = field(default_factory=list)  # number complete -> INVITE at the relative
    seconds: float = 0.0
    load: float = field(default_factory=lambda: os.getloadavg()[0])  # the box's, at the step's end
    wrong: int = 0  # INVITEs for a number no call of the step typed
    refused: Counter[str] = field(default_factory=Counter)  # the AGI server's refusals by reason (metrics label)
    peak_ivr: float = 0.0  # most calls in the IVR at once (the AGI server's gauge, read every WATCH_EVERY_S)
    peak_latency_ms: float = 0.0  # highest p90 of quick AGI round trips overload control saw

    @property
    def failed(self) -> int:
        return self.placed - self.good

    @property
    def busy(self) -> int:
        """Calls overload control refused ("all lines are busy", heard before the hangup)."""
        return self.refused[OVERLOAD]

    def refused_text(self) -> str:
        """``"126 busy; 11 no_valid_number"``: every refusal, overload's first."""
        others = [f"{n} {reason}" for reason, n in sorted(self.refused.items()) if reason != OVERLOAD and n]
        return "; ".join([f"{self.busy} busy", *others])


@dataclass
class StackReport:
    name: str
    rejected_per_step: int = 0  # deliberate failures (--reject): not held against the knee
    steps: list[StepResult] = field(default_factory=list)
    rss_kb: int | None = None  # AGI server's RSS at the end
    calls_served: int = 0
    held: str = "not measured"  # recorded calls bridged while the switch and SIPp stayed <= 80 % of the box
    overload_step: StepResult | None = None  # Kinline's step at 1.5x its knee

    @property
    def knee(self) -> float | None:
        clean = [s.rate for s in self.steps if s.failed <= self.rejected_per_step and s is not self.overload_step]
        return max(clean) if clean else None


# -- processes and CPU ------------------------------------------------------

class CpuMeter:
    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.start = {name: cpu_ticks(pid) or 0 for name, pid in pids.items()}

    def per_call_ms(self, calls: int) -> dict[str, float]:
        out = {}
        for name, pid in self.pids.items():
            now = cpu_ticks(pid)
            used = (now - self.start[name]) if now is not None else 0
            out[name] = used * 1000 / CLK_TCK / max(calls, 1)
        return out


HOLD_CPU = 0.8  # of the whole box (every core)
HOLD_S = 900  # long calls: none ends during the ramp
HOLD_BATCH = 40
# Long calls placed at these rates (calls/s) in the ramp: Kinline's stay under its overload level.
HOLD_RATES = {"kinline": 2.0, "bare": 10.0, "shaped": 4.0}
# Near the limit the batches shrink, so the count held is known to a few calls, not to 40:
# (box CPU below, calls per batch), the first that applies.
HOLD_STEPS = ((0.60, 40), (0.72, 20), (1.0, 10))
BRIDGE_ROW = re.compile(r"^\S+\s.*\s(\d+)\s+\S+\s+\S+\s+\d+:\d\d:\d\d$")


def count_bridged(cli_output: str) -> int:
    """Two-party bridges in `bridge show all` (a connected call each)."""
    return sum(1 for line in cli_output.splitlines()[1:] if (m := BRIDGE_ROW.match(line)) and m.group(1) == "2")


def next_batch(cpu: float, largest: int) -> int:
    """Calls in the next batch of the ramp, the box at ``cpu`` (0-1) now."""
    return min(largest, next(n for below, n in HOLD_STEPS if cpu < below))


def hold_ramp(run: HoldRun, batch_calls: Callable[[int, int], list[CallSpec]], switch_pids: dict[str, int],
              bridged: Callable[[], int], rate: float, batch: int, max_calls: int, setup_s: float) -> str:
    """Recorded calls held: batches of long calls (``batch`` at most, fewer as the box nears
    HOLD_CPU: HOLD_STEPS); after each, once every call of it is bridged (no set-up under
    way), the CPU of the switch's processes and every SIPp over 5 s, as a share of the box.
    The answer: the calls bridged in the last batch that stayed within HOLD_CPU (">= n"
    when max_calls stayed within it)."""
    held, placed, cpu = 0, 0, 0.0
    with run:
        while (size := min(next_batch(cpu, batch), max_calls - placed)) > 0:
            run.add_batch(batch_calls(placed, size), rate)
            placed += size
            deadline = time.monotonic() + size / rate + setup_s + 20
            while bridged() < placed and time.monotonic() < deadline:
                time.sleep(1)
            now = bridged()
            if now < placed:
                return f"{held} (then {now} bridged of {placed} placed)"
            time.sleep(1)
            pids = {**switch_pids, **run.pids()}
            meter = CpuMeter(pids)
            time.sleep(5)
            used = meter.per_call_ms(1)  # ms over the 5 s, by process
            cpu = sum(used.values()) / 5000 / (os.cpu_count() or 1)
            sipp = sum(v for k, v in used.items() if k not in switch_pids)
            parts = ", ".join(f"{k} {v / 50:.1f}" for k, v in sorted(used.items(), key=lambda kv: -kv[1])
                              if k in switch_pids and v >= 50)
            sys.stderr.write(f"bench: {now} recorded calls bridged, box CPU {cpu:.0%} (% of a core: {parts}, "
                             f"SIPp {sipp / 50:.1f})\n")
            if cpu > HOLD_CPU:
                return f"{held} ({now} at {cpu:.0%})"
            held = now
        if linger := float(os.environ.get("KINLINE_BENCH_LINGER_S") or 0):  # time to profile the calls held
            sys.stderr.write(f"bench: holding the {held} calls {linger:.0f} s more (KINLINE_BENCH_LINGER_S)\n")
            time.sleep(linger)
    return f">= {held} (CPU {cpu:.0%})"


# -- Kinline ----------------------------------------------------------------

# What AgiWatch reads (every WATCH_EVERY_S): only these series (metrics/endpoint.py name[]), so the
# bench's own polling costs the AGI server little (the whole text cost ~9 ms a scrape).
WATCHED = ("kinline_calls_in_ivr", "kinline_agi_command_latency_seconds", "kinline_call_refusals_total")


def scrape(port: int) -> dict[str, float]:
    """The AGI server's WATCHED series as {series{labels}: value} ({} when unreachable)."""
    query = "&".join(f"name[]={name}" for name in WATCHED)
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/metrics?{query}", timeout=2) as reply:
            text = reply.read().decode()
    except OSError:
        return {}
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                values[name] = float(value)
    return values


REFUSALS = 'kinline_call_refusals_total{reason="'
OVERLOAD = "overload"  # the refusal reason of overload control


def refusals(values: dict[str, float]) -> Counter[str]:
    """{reason: count} from a scrape's refusal series."""
    return Counter({name[len(REFUSALS):-2]: round(v) for name, v in values.items()
                    if name.startswith(REFUSALS) and name.endswith('"}')})


# How often AgiWatch scrapes: each scrape costs the AGI server ~1.2 ms (measured: a filtered
# scrape a second was ~1.2 ms/s, 0.6 ms of the per-call figure at 2 calls/s). Calls in the IVR
# and the latency's p90 move over seconds (a call spends ~11 s there): 5 s finds their peaks.
WATCH_EVERY_S = 5.0


class AgiWatch:
    """Reads the AGI server's gauges every WATCH_EVERY_S while a step runs: the peaks of
    calls in the IVR and of overload control's latency, and the calls it refused by reason."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.peak_ivr = self.peak_latency_ms = 0.0
        self._refused_before = refusals(scrape(port))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(WATCH_EVERY_S):
            now = scrape(self.port)
            self.peak_ivr = max(self.peak_ivr, now.get("kinline_calls_in_ivr", 0.0))
            self.peak_latency_ms = max(self.peak_latency_ms, now.get("kinline_agi_command_latency_seconds", 0.0) * 1000)

    def stop(self) -> Counter[str]:
        """Stop; the calls refused since the start, by reason."""
        self._stop.set()
        self._thread.join()
        refused = refusals(scrape(self.port))
        refused.subtract(self._refused_before)
        return +refused


def copy_prompts(folder: Path) -> None:
    """Kinline's prompt files into ``folder``. espeak takes ~30 s for every prompt: they are kept
    between runs (PROMPT_CACHE) and made again only when a text changes."""
    PROMPT_CACHE.mkdir(parents=True, exist_ok=True)
    generate_prompts(PROMPT_CACHE)
    shutil.copytree(PROMPT_CACHE, folder, dirs_exist_ok=True)


@contextmanager
def kinline_stack(state: Path, max_in_ivr: int | None = None) -> Iterator[tuple[StackConfig, list[TerminalLogin]]]:
    """The whole Kinline stack in ``state``, on offset 9's ports, stopped on the way out."""
    os.environ["KINLINE_STATE"] = str(state)
    os.environ["KINLINE_PORT_OFFSET"] = OFFSET
    # Its own RTP range, wide enough for the hold ramp (offset 9's 39000-39999 holds 250 calls).
    config = dataclasses.replace(load_config("config/test.toml"), rtp_start=KINLINE_RTP[0], rtp_end=KINLINE_RTP[1])
    if max_in_ivr is not None:
        config = dataclasses.replace(config, agi_max_in_ivr=max_in_ivr)
    logins = [TerminalLogin(f"bench-term-{i}", secrets.token_hex(12), "en", FACILITY) for i in range(TERMINALS)]
    config.state.mkdir(mode=0o700, parents=True, exist_ok=True)
    save_terminals(config, [t.stored() for t in logins])
    copy_prompts(config.path("prompts"))
    started = time.monotonic()
    stack.up(config)
    sys.stderr.write(f"bench: Kinline stack up in {time.monotonic() - started:.0f} s\n")
    try:
        yield config, logins
    finally:
        stack.down(config)


def prompt_seconds(prompts: Path, items: Sequence[str], language: str = "en") -> float:
    total = 0.0
    for item in items:
        path = prompts / (sound_file(language, item).removeprefix("kinline/") + ".wav")
        with wave.open(str(path)) as wav:
            total += wav.getnframes() / wav.getframerate()
    return total


def entry_waits(prompts: Path) -> tuple[int, int, int]:
    """How long (ms) to wait before each entry: after the welcome, after the card, after the
    balance of BALANCE in words (the prompt files in ``prompts``)."""
    welcome = prompt_seconds(prompts, [p.WELCOME])
    balance_s = prompt_seconds(prompts, [p.YOUR_BALANCE, *p.money(BALANCE, "RUB", "en")])
    return int((welcome + 0.8) * 1000), 700, int((balance_s + 1.0) * 1000)


def keyed(waits: Sequence[int], card: str, number: str) -> tuple[Entry, ...]:
    """One call's entries: its card, the PIN and its number, each '#'-ended, after ``waits``."""
    return tuple(Entry(wait, keys + "#") for wait, keys in zip(waits, (card, PIN, number), strict=True))


def _number(i: int, reject: bool) -> str:
    return f"{REJECT_PREFIX if reject else '7916'}{i:07d}"


async def provision(config: StackConfig, step_no: int, count: int, reject: int) -> list[tuple[str, str]]:
    """``count`` new cards (an inmate each, named, topped up with BALANCE, one allowed number each):
    (card, number) pairs; the first ``reject`` numbers are ones the relative refuses."""
    store = RedisStore.from_url(config.redis_url, PinHasher.from_hex(load_secrets(config).pin_key))
    pairs = []
    try:
        if step_no == 0:
            await store.put_facility(BENCH_FACILITY)
            say_facility_name(config.path("prompts"), BENCH_FACILITY)  # as `kinline facility add` does
            await store.put_tariff(FACILITY, demo_tariff())
        for i in range(count):
            card = f"{step_no + 1}{i:05d}"
            number = _number((step_no + 1) * 100_000 + i, i < reject)
            inmate = Inmate(f"bench-{card}", "Bench Inmate", FACILITY, InmateStatus.CONVICTED)
            await store.put_inmate(inmate)
            agi_calls.give_name(config.path("names", f"{inmate.id}.wav"))
            await store.create_card(card, inmate.id, FACILITY, PIN, "en")
            await store.top_up(card, BALANCE, f"bench-{card}")
            await store.allow_number(card, AllowedNumber(f"+{number}", "Relative"))
            pairs.append((card, number))
    finally:
        await store.aclose()
    return pairs


async def judge_kinline(config: StackConfig, pairs: Sequence[tuple[str, str]], logs: StepLogs,
                        timeout_s: float = 20.0) -> Counter[str]:
    """Failure reasons by call ('' = good). Waits (bounded) for the call records."""
    tariff = demo_tariff()
    rate = tariff.lookup("+79160000000", RouteKind.MOBILE).per_minute
    store = RedisStore.from_url(config.redis_url)
    verdicts: Counter[str] = Counter()
    try:
        deadline = time.monotonic() + timeout_s
        for card, number in pairs:
            reached = logs.answered.get(number, 0) == 1
            while True:
                records = await store.call_records(card)
                if records or not reached or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            if not logs.invites.get(number):
                verdicts["never dialed"] += 1
            elif len(logs.invites[number]) > 1 or logs.answered.get(number, 0) > 1:
                verdicts["dialed more than once"] += 1
            elif not reached:
                verdicts["not answered"] += 1
            elif len(records) != 1:
                verdicts[f"{len(records)} call records"] += 1
            elif (records[0].number != f"+{number}" or records[0].dial_status != "ANSWER"
                  or records[0].answered_s <= 0):
                verdicts["record wrong"] += 1
            elif records[0].amount != charge(records[0].answered_s, rate, tariff):
                verdicts["amount wrong"] += 1
            else:
                verdicts[""] += 1
    finally:
        await store.aclose()
    return verdicts


WAV_HEADER = 44
RECORDED_MIN_BYTES = WAV_HEADER + 16_000  # one second of 8 kHz 16-bit audio: the call was bridged


def judge_bare(numbers: Sequence[str], logs: StepLogs, recordings: Path) -> Counter[str]:
    """Failure reasons by call ('' = good): the relative answered its number once, and the
    call was bridged (its recording, named by the number, holds a second of audio or more:
    MixMonitor's b() records only once bridged)."""
    verdicts: Counter[str] = Counter()
    for number in numbers:
        recording = recordings / f"{number}.wav"
        if not logs.invites.get(number):
            verdicts["never dialed"] += 1
        elif len(logs.invites[number]) > 1 or logs.answered.get(number, 0) > 1:
            verdicts["dialed more than once"] += 1
        elif logs.answered.get(number, 0) != 1:
            verdicts["not answered"] += 1
        elif not recording.exists() or recording.stat().st_size < RECORDED_MIN_BYTES:
            verdicts["not bridged"] += 1
        else:
            verdicts[""] += 1
    return verdicts


def agi_times(text: str) -> tuple[list[float], list[float]]:
    own: dict[str, float] = {}
    wall: dict[str, float] = {}
    for m in AGI_LINE.finditer(text):
        own[m.group(1)] = own.get(m.group(1), 0.0) + float(m.group(3))
        wall[m.group(1)] = wall.get(m.group(1), 0.0) + float(m.group(2))
    return list(own.values()), list(wall.values())


def wrong_numbers(numbers: Sequence[str], logs: StepLogs) -> int:
    """INVITEs that reached the relative for a number none of the step's calls typed."""
    typed = set(numbers)
    return sum(len(times) for number, times in logs.invites.items() if number not in typed)


def pdd(numbers: Sequence[str], logs: StepLogs) -> list[float]:
    return [(logs.invites[n][0] - logs.dialed[n]) * 1000 for n in numbers if logs.invites.get(n) and n in logs.dialed]


def run_kinline(plan: Plan, work: Path) -> StackReport:
    report = StackReport("Kinline", plan.reject)
    with kinline_stack(work / "kinline", plan.max_in_ivr) as (config, logins):
        pids = {name: stack.service_state(config, name).pid for name in stack.SERVICES}
        alive = {name: pid for name, pid in pids.items() if pid is not None}
        waits = entry_waits(config.path("prompts"))
        agi_log = config.path("logs", "agi.log")
        def step_at(n: int, rate: float) -> StepResult:
            count = max(1, round(rate * plan.step_s))
            pairs = asyncio.run(provision(config, n, count, plan.reject))
            calls = [CallSpec(logins[i % len(logins)].name, logins[i % len(logins)].password, number,
                              keyed(waits, card, number))
                     for i, (card, number) in enumerate(pairs)]
            step = Step(work / f"kinline-step{n + 1}", HOST, config.sip_port, config.trunk_port,
                        KINLINE_TERMINAL_PORT, MEDIA["kinline"], "100", (INTRO_ALLOWANCE_S + plan.talk_s) * 1000,
                        REJECT_PREFIX)
            offset = agi_log.stat().st_size if agi_log.exists() else 0
            meter = CpuMeter(alive)
            watch = AgiWatch(config.agi_metrics_port)
            started = time.monotonic()
            logs = step.run(calls, rate, call_max_s=INTRO_ALLOWANCE_S + plan.talk_s + 3)
            refused = watch.stop()
            verdicts = asyncio.run(judge_kinline(config, pairs, logs))
            cpu = meter.per_call_ms(count)
            with agi_log.open("rb") as fh:
                fh.seek(offset)
                own, wall = agi_times(fh.read().decode(errors="replace"))
            result = StepResult("Kinline", rate, count, verdicts[""], Counter({k: v for k, v in verdicts.items() if k}),
                                cpu, own, wall, pdd([number for _, number in pairs], logs),
                                time.monotonic() - started, wrong=wrong_numbers([n for _, n in pairs], logs),
                                refused=refused, peak_ivr=watch.peak_ivr, peak_latency_ms=watch.peak_latency_ms)
            report.steps.append(result)
            report.calls_served += count
            _progress(result)
            return result

        for n, rate in enumerate(plan.kinline_rates):
            if step_at(n, rate).failed > plan.reject and not plan.quick:
                break  # past the knee
        # The goal past the knee: at 1.5x it, no wrong number and every refused caller hears "busy".
        if not plan.quick and report.knee and all(s.rate != report.knee * 1.5 for s in report.steps):
            report.overload_step = step_at(len(plan.kinline_rates) + 1, report.knee * 1.5)
        else:
            report.overload_step = next((s for s in report.steps if report.knee and s.rate == report.knee * 1.5),
                                        None)
        agi_pid = alive.get("agi")
        report.rss_kb = rss_kb(agi_pid) if agi_pid else None
        if "kinline" in plan.hold_rates:
            # A fresh Asterisk for the ramp, as the bare one gets: the steps before,
            # some past the knee, leave it costlier per held call (its history, not the calls held).
            stack.stop_service(config, "asterisk")
            stack.start_service(config, "asterisk")
            alive["asterisk"] = stack.service_state(config, "asterisk").pid or 0
            count = plan.hold_max["kinline"]
            pairs = asyncio.run(provision(config, len(plan.kinline_rates) + 2, count, 0))
            run = HoldRun(work / "kinline-hold", HOST, config.sip_port, config.trunk_port, 16000, MEDIA["kinline"],
                          "100", HOLD_S * 1000)

            def kinline_batch(first: int, n: int) -> list[CallSpec]:
                return [CallSpec(logins[i % len(logins)].name, logins[i % len(logins)].password, number,
                                 keyed(waits, card, number))
                        for i, (card, number) in enumerate(pairs[first:first + n], start=first)]

            setup_s = sum(waits) / 1000 + INTRO_ALLOWANCE_S + 5
            report.held = hold_ramp(run, kinline_batch, alive,
                                    lambda: count_bridged(stack.asterisk_cli(config, "bridge show all")),
                                    plan.hold_rates["kinline"], HOLD_BATCH, count, setup_s)
            sys.stderr.write(f"bench: Kinline held {report.held} recorded calls\n")
    return report


BARE = "bare Asterisk + MixMonitor"
SHAPED = "bare Asterisk, Kinline's call"


def shaped_sounds(work: Path) -> tuple[Path, Path, dict[str, str]]:
    """For the bare Asterisk's [shaped] call: Kinline's prompts (the bench's cache and the bench
    facility's name) and one inmate's recorded name, in ``work``; and the dial plan's globals,
    the files Kinline's Asterisk plays at each point of a bench call (agi/routes/inmate_call.py):
    the welcome and the card's prompt, the PIN's, the balance in words and the number's, the
    relative's introduction (who calls, that the call is recorded), the limit's warning, goodbye."""
    sounds, names = work / "sounds", work / "names"
    copy_prompts(sounds)
    say_facility_name(sounds, BENCH_FACILITY)
    names.mkdir(parents=True, exist_ok=True)
    agi_calls.give_name(names / "bench-inmate.wav")

    def files(*items: str) -> str:
        return "&".join(sound_file("en", item) for item in items)

    return sounds, names, {
        "SHAPED_CARD": files(p.WELCOME, p.ENTER_CARD),
        "SHAPED_PIN": files(p.ENTER_PIN),
        "SHAPED_NUMBER": files(p.YOUR_BALANCE, *p.money(BALANCE, "RUB", "en"), p.ENTER_NUMBER),
        "SHAPED_INTRO": files(p.CALLEE_INTRO, f"file:kinline/{facility_file('en', BENCH_FACILITY.name)}",
                              f"file:{bare_stack.NAMES}/bench-inmate", p.CALL_RECORDED),
        "SHAPED_WARNING": files(p.LIMIT_WARNING),
        "SHAPED_GOODBYE": files(p.GOODBYE),
    }


def run_bare(plan: Plan, work: Path, shaped: bool = False) -> StackReport:
    """The bare Asterisk: its own call (Answer, MixMonitor, Dial) or, ``shaped``, Kinline's
    call without Kinline (bench/bare_asterisk/extensions.conf [shaped]: the same prompts,
    entries, introduction, ringback and goodbye, no AGI behind them)."""
    key = "shaped" if shaped else "bare"
    report = StackReport(SHAPED if shaped else BARE, plan.reject)
    root = Path(os.environ.get("KINLINE_ASTERISK_ROOT", "/var/cache/kinline/asterisk-root"))
    cfg = bare_stack.BareConfig(root, work / key, HOST, BARE_SIP, BARE_TRUNK, *BARE_RTP)
    waits: tuple[int, ...] = ()
    exten, intro_s = "[field2]", 0
    if shaped:
        sounds, names, files = shaped_sounds(work / key)
        cfg = dataclasses.replace(cfg, sounds=sounds, names=names, shaped=files)
        waits, exten, intro_s = entry_waits(sounds), "100", INTRO_ALLOWANCE_S
    terminals = [bare_stack.Terminal(f"bare-term-{i}", secrets.token_hex(12)) for i in range(TERMINALS)]

    def spec(i: int, number: str) -> CallSpec:
        terminal = terminals[i % len(terminals)]
        return CallSpec(terminal.name, terminal.password, number,
                        keyed(waits, f"{i + 1:06d}", number) if waits else ())

    proc = bare_stack.start(cfg, terminals)
    try:
        for n, rate in enumerate(plan.shaped_rates if shaped else plan.bare_rates):
            count = max(1, round(rate * plan.step_s))
            numbers = [_number((n + 1) * 100_000 + i, i < plan.reject) for i in range(count)]
            calls = [spec(i, number) for i, number in enumerate(numbers)]
            step = Step(work / f"{key}-step{n + 1}", HOST, BARE_SIP, BARE_TRUNK, BARE_TERMINAL, MEDIA["bare"],
                        exten, (intro_s + plan.talk_s) * 1000, REJECT_PREFIX)
            meter = CpuMeter({"asterisk": proc.pid})
            started = time.monotonic()
            logs = step.run(calls, rate, call_max_s=intro_s + plan.talk_s + 3)
            verdicts = judge_bare(numbers, logs, cfg.path("recordings"))
            result = StepResult(key, rate, count, verdicts[""], Counter({k: v for k, v in verdicts.items() if k}),
                                meter.per_call_ms(count), pdd_ms=pdd(numbers, logs),
                                seconds=time.monotonic() - started, wrong=wrong_numbers(numbers, logs))
            report.steps.append(result)
            report.calls_served += count
            _progress(result)
            if result.failed > plan.reject and not plan.quick:
                break
        if key in plan.hold_rates:
            # The recorded-calls ramp on a freshly started Asterisk: the steps before it, the last
            # past the knee, leave the process costlier per held call (seen: 100 % of a core for
            # 200 held calls after an overloaded step, 72-87 % fresh).
            bare_stack.stop(proc)
            proc = bare_stack.start(cfg, terminals)
            count = plan.hold_max[key]
            numbers = [_number(900_000 + i, False) for i in range(count)]
            run = HoldRun(work / f"{key}-hold", HOST, BARE_SIP, BARE_TRUNK, 26000, MEDIA["bare"], exten,
                          HOLD_S * 1000)

            def batch(first: int, n: int) -> list[CallSpec]:
                return [spec(i, number) for i, number in enumerate(numbers[first:first + n], start=first)]

            setup_s = sum(waits) / 1000 + intro_s + 5
            report.held = hold_ramp(run, batch, {"asterisk": proc.pid},
                                    lambda: count_bridged(bare_stack.cli(proc.pid, "bridge show all").stdout),
                                    plan.hold_rates[key], HOLD_BATCH, count, setup_s)
            sys.stderr.write(f"bench: {report.name} held {report.held} recorded calls\n")
    finally:
        bare_stack.stop(proc)
    return report


def _progress(result: StepResult) -> None:
    reasons = ", ".join(f"{k}: {v}" for k, v in result.failures.items())
    refused = f", refused {result.refused_text()}" if result.refused else ""
    sys.stderr.write(f"bench: {result.stack} {result.rate:g} calls/s: {result.good}/{result.placed} good"
                     f"{f' ({reasons})' if reasons else ''}{refused} in {result.seconds:.0f} s\n")


# -- the table --------------------------------------------------------------

def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _num(text: str) -> float | None:
    first = text.split(" ", 1)[0]
    return float(first) if first.isdigit() else None


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}"


def marginal_ms(report: StackReport, processes: Sequence[str] | None = None) -> float | None:
    """CPU ms per call of ``processes`` (all: None) as the calls' own cost: a least-squares fit
    over the zero-failure steps of total ms = per_call * calls + per_second * step seconds, whose
    per_call it returns. A step's average also spreads the work done every second whatever the
    calls (health checks, the services' cycles, the bench's own watcher) over its calls, most at
    the lowest rate. None with fewer than two steps or when they cannot tell the two apart."""
    clean = [s for s in report.steps
             if s.failed <= report.rejected_per_step and s is not report.overload_step and s.seconds > 0]
    points = [(float(s.placed), s.seconds,
               s.placed * sum(v for k, v in s.cpu_ms.items() if processes is None or k in processes))
              for s in clean]
    if len(points) < 2:
        return None
    a = sum(n * n for n, _, _ in points)
    b = sum(n * t for n, t, _ in points)
    d = sum(t * t for _, t, _ in points)
    det = a * d - b * b
    if det <= 1e-9 * a * d:  # every step the same calls per second: no way to split them
        return None
    return (d * sum(n * y for n, _, y in points) - b * sum(t * y for _, t, y in points)) / det


# The marginal rows: the AGI server, Asterisk and the whole switch (every process).
MARGINAL = {"AGI server": ("agi",), "Asterisk": ("asterisk",), "whole switch": None}


def marginals(report: StackReport) -> dict[str, float | None]:
    """marginal_ms of each MARGINAL row."""
    return {name: marginal_ms(report, processes) for name, processes in MARGINAL.items()}


def goals(kinline: StackReport, bare: StackReport, k_marginal: dict[str, float | None],
          b_marginal: dict[str, float | None]) -> list[str]:
    """The issue's goals against this run: one line each, met or not (``*_marginal``: the
    reports' ``marginals``)."""
    k0, b0 = kinline.steps[0], bare.steps[0]
    k_total, b_total = sum(k0.cpu_ms.values()), sum(b0.cpu_ms.values())
    # CPU goals on the calls' own cost (marginal_ms) when the steps give it, else the first step's.
    k_cost, b_cost = k_marginal["whole switch"], b_marginal["whole switch"]
    k_cost, b_cost, basis = ((k_cost, b_cost, "marginal") if k_cost is not None and b_cost is not None
                             else (k_total, b_total, "first step"))
    agi = k_marginal["AGI server"]
    agi, agi_basis = (agi, "marginal") if agi is not None else (k0.cpu_ms.get("agi", 0.0), "first step")
    half = max((s for s in kinline.steps if kinline.knee and s.rate <= kinline.knee / 2),
               key=lambda s: s.rate, default=None)
    over = kinline.overload_step
    held_k, held_b = _num(kinline.held), _num(bare.held)

    def line(goal: str, ok: bool | None, measured: str) -> str:
        return f"- {goal}: {'not measured' if ok is None else 'met' if ok else 'NOT met'} ({measured})"

    knee_ratio = kinline.knee / bare.knee if kinline.knee and bare.knee else None
    p99 = pct(half.pdd_ms, 0.99) if half else None
    return [
        "Goals (issue 9):",
        line("knee >= 0.5 of bare + MixMonitor", None if knee_ratio is None else knee_ratio >= 0.5,
             f"{_ratio(kinline.knee, bare.knee)}"),
        line("whole switch CPU per call <= 2x bare + MixMonitor", k_cost <= 2 * b_cost if b_cost else None,
             f"{basis}: {_ratio(k_cost, b_cost)}x"
             + (f"; first step {_ratio(k_total, b_total)}x" if basis == "marginal" else "")),
        line("AGI server CPU per call <= 10 ms", agi <= 10,
             f"{agi_basis}: {_ms(agi)} ms"
             + (f"; first step ({k0.rate:g}/s) {_ms(k0.cpu_ms.get('agi'))} ms" if agi_basis == "marginal" else "")),
        line("post-dial delay p99 < 20 ms at half the knee", None if p99 is None else p99 < 20,
             f"{_ms(p99)} ms at {half.rate:g} calls/s" if half else "no step at half the knee"),
        line("at 1.5x the knee: no wrong number, every refused caller hears busy",
             None if over is None else over.wrong == 0 and over.placed - over.good == over.busy,
             f"{over.rate:g} calls/s: {over.wrong} wrong, {over.placed - over.good} not connected, "
             f"refused: {over.refused_text()}" if over else "no such step"),
        line("recorded calls held >= 0.8 of bare + MixMonitor",
             None if held_k is None or not held_b else held_k / held_b >= 0.8, _ratio(held_k, held_b)),
    ]


def alone_rss(alone: agi_calls.Report) -> str:
    """The AGI server's RSS before and after the lone calls, and how many were good."""
    (_, first), (done, last) = alone.rss_kb[0], alone.rss_kb[-1]
    mb = [f"{kb / 1024:.1f}" if kb is not None else "?" for kb in (first, last)]
    failed = sum(alone.failures().values())
    return f"{mb[0]} / {mb[1]} MB after {done} calls" + (f" ({failed} FAILED)" if failed else "")


def table(plan: Plan, kinline: StackReport, bare: StackReport, load: tuple[float, float],
          alone: agi_calls.Report, shaped: StackReport | None = None) -> str:
    """The bench's table. ``shaped``: Kinline's call on the bare Asterisk (no AGI, Redis or
    billing behind it), in two more columns: the switch and Kinline's ratio to it."""
    k0, b0 = kinline.steps[0], bare.steps[0]
    s0 = shaped.steps[0] if shaped and shaped.steps else None
    k_cpu = {name: k0.cpu_ms.get(name, 0.0) for name in STACK_CPU}
    k_other = sum(v for name, v in k0.cpu_ms.items() if name not in STACK_CPU)
    k_total = sum(k0.cpu_ms.values())
    b_total = sum(b0.cpu_ms.values())
    s_total = sum(s0.cpu_ms.values()) if s0 else None
    k_marginal, b_marginal = marginals(kinline), marginals(bare)
    s_marginal = marginals(shaped) if shaped else dict.fromkeys(MARGINAL)
    mode = "QUICK (pipeline check, not a measurement)" if plan.quick else "full"

    Value = float | None | str

    def row(label: str, k: Value, b: Value = None, s: Value = None,
            number: Callable[[str], float | None] | None = None) -> str:
        """A row of the summary: the values, Kinline / bare and, with ``shaped``, Kinline / shaped
        (of text values: the ratio of what ``number`` reads in them, none without it)."""
        def num(value: Value) -> float | None:
            return (number(value) if number else None) if isinstance(value, str) else value

        cells = [label, *(v if isinstance(v, str) else _ms(v) for v in (k, b)), _ratio(num(k), num(b))]
        if shaped:
            cells += [s if isinstance(s, str) else _ms(s), _ratio(num(k), num(s))]
        return "| " + " | ".join(cells) + " |"

    def p50_99(values: list[float]) -> str:
        return f"{_ms(pct(values, 0.5))} / {_ms(pct(values, 0.99))}"

    def calls(report: StackReport | None) -> str:
        return f"{sum(s.good for s in report.steps)} / {sum(s.placed for s in report.steps)}" if report else "-"

    firsts = f"Kinline {k0.rate:g}/s, bare {b0.rate:g}/s" + (f", Kinline's call on bare {s0.rate:g}/s" if s0 else "")
    lines = [
        f"`make bench` {mode}, {time.strftime('%Y-%m-%d %H:%M')}, load average {load[0]:.2f} before, "
        f"{load[1]:.2f} after, {os.cpu_count()} cores; talk {plan.talk_s} s, steps of {plan.step_s} s of arrivals. "
        f"Per-call figures at the first step ({firsts}).",
        "",
        f"| | Kinline | {BARE} | Kinline / bare |" + (f" {SHAPED} (no AGI) | Kinline / that |" if shaped else ""),
        "|---|---|---|---|" + ("---|---|" if shaped else ""),
        row("zero-failure knee, calls/s", kinline.knee, bare.knee, shaped.knee if shaped else None),
        row("good / placed calls, all steps", calls(kinline), calls(bare), calls(shaped)),
        row("CPU ms per call: Asterisk", k_cpu["asterisk"], b0.cpu_ms.get("asterisk"),
            s0.cpu_ms.get("asterisk") if s0 else None),
        row("CPU ms per call: AGI server", k_cpu["agi"], "-", "-"),
        row("CPU ms per call: Redis", k_cpu["redis"], "-", "-"),
        row("CPU ms per call: other services", k_other, "-", "-"),
        row("CPU ms per call: whole switch", k_total, b_total, s_total),
        row("CPU ms per call, marginal (fit over the zero-failure steps): AGI server", k_marginal["AGI server"],
            "-", "-"),
        *(row(f"CPU ms per call, marginal: {name}", k_marginal[name], b_marginal[name], s_marginal[name])
          for name in ("Asterisk", "whole switch")),
        row("AGI own time per call p50 / p99, ms", p50_99(k0.agi_own_ms), "-", "-"),
        row("AGI wall time per call p50 / p99, ms", p50_99(k0.agi_wall_ms), "-", "-"),
        row("post-dial delay p50 / p99, ms", p50_99(k0.pdd_ms), p50_99(b0.pdd_ms), p50_99(s0.pdd_ms) if s0 else "-",
            number=pct_text),
        row(f"recorded calls held at <= {HOLD_CPU:.0%} box CPU (switch + SIPp)", kinline.held, bare.held,
            shaped.held if shaped else "-", number=_num),
        row(f"AGI server RSS after {kinline.calls_served} calls",
            "-" if kinline.rss_kb is None else f"{kinline.rss_kb / 1024:.0f} MB", "-", "-"),
        row("AGI server alone (bench/agi_calls.py, a fake Asterisk): RSS before / after", alone_rss(alone), "-", "-"),
        "",
        "| switch | calls/s | placed | good | failures | wrong numbers | refused (by reason) "
        "| whole switch CPU ms/call | post-dial p50 / p99 ms | peak in IVR / AGI p90 ms | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for report in (kinline, bare, *([shaped] if shaped else [])):
        for s in report.steps:
            reasons = ", ".join(f"{k}: {v}" for k, v in s.failures.items()) or "0"
            peaks = f"{s.peak_ivr:.0f} / {s.peak_latency_ms:.0f}" if report is kinline else "-"
            lines.append(f"| {report.name} | {s.rate:g} | {s.placed} | {s.good} | {reasons} | {s.wrong} | "
                         f"{s.refused_text() if report is kinline else '-'} | {_ms(sum(s.cpu_ms.values()))} | "
                         f"{_ms(pct(s.pdd_ms, 0.5))} / {_ms(pct(s.pdd_ms, 0.99))} | {peaks} | {s.load:.1f} |")
    lines += ["", *goals(kinline, bare, k_marginal, b_marginal)]
    if shaped:
        lines += ["", *like_for_like(kinline, shaped, k_marginal, s_marginal)]
    if plan.reject:
        lines += ["", f"{plan.reject} call(s) per step dialed a number the relative refuses (486): they must "
                  "count as failed; the knee does not hold them against a step."]
    lines += ["", "Post-dial delay: Kinline (and its call on bare) from the last '#' (SIP INFO) to the INVITE at the "
              "relative; bare from the terminal's authenticated INVITE to the INVITE at the relative (Answer() waits "
              "for the caller's first RTP). A call is good only if the relative answered its own number once and "
              "(Kinline) its card has one call record with the tariff's amount. Kinline's call on bare (bench/"
              "bare_asterisk/extensions.conf [shaped]): the same prompts, entries, introduction, ringback, limit, "
              "recording and goodbye, from a static dial plan; no check, reservation or bill behind them."]
    return "\n".join(lines) + "\n"


def pct_text(text: str) -> float | None:
    """The p50 of a "p50 / p99" cell (None for "-")."""
    first = text.split(" / ", 1)[0]
    return None if first == "-" else float(first)


def like_for_like(kinline: StackReport, shaped: StackReport, k_marginal: dict[str, float | None],
                  s_marginal: dict[str, float | None]) -> list[str]:
    """What Kinline's decisions cost over its own call's media (not goals of the issue)."""
    k, s = k_marginal["whole switch"], s_marginal["whole switch"]
    basis = "marginal"
    if k is None or s is None:
        k, s, basis = sum(kinline.steps[0].cpu_ms.values()), sum(shaped.steps[0].cpu_ms.values()), "first step"
    return [
        "Against Kinline's call on the bare Asterisk (the same audio, no decision behind it):",
        f"- knee: {_ratio(kinline.knee, shaped.knee)} of it ({_ms(kinline.knee)} vs {_ms(shaped.knee)} calls/s)",
        f"- whole switch CPU per call: {_ratio(k, s)}x ({basis}: {_ms(k)} vs {_ms(s)} ms; Kinline's decisions "
        f"{_ms(None if k is None or s is None else k - s)} ms a call)",
        f"- recorded calls held: {_ratio(_num(kinline.held), _num(shaped.held))} of it",
    ]


def _stop(signum: int, _frame: object) -> None:
    """SIGTERM (and SIGINT, which a shell's background job ignores) end the run through its
    finally blocks: the stacks, SIPp and the state folder go with it, nothing is left running."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stop)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one small step per switch (a few seconds each)")
    parser.add_argument("--out", default=str(REPO / "var" / "bench" / "latest.md"))
    parser.add_argument("--reject", type=int, default=0,
                        help="calls per step that dial a number the relative refuses (they must count as failed)")
    parser.add_argument("--keep", action="store_true", help="keep the state folders (SIPp logs) after the run")
    parser.add_argument("--only", choices=("kinline", "bare", "shaped"),
                        help="one switch only, at --rates, no hold ramp (for profiling; prints no table); "
                             "shaped: Kinline's call on the bare Asterisk")
    parser.add_argument("--rates", default="4", help="with --only: comma-separated calls/s, one step each")
    parser.add_argument("--step-s", type=int, default=30, help="with --only: seconds of arrivals per step")
    parser.add_argument("--hold", type=int, default=0,
                        help="with --only: then the recorded-calls ramp, up to this many calls")
    parser.add_argument("--max-in-ivr", type=int, default=None,
                        help="Kinline's overload level (calls in the IVR) for this run; default config/test.toml's")
    opts = parser.parse_args(argv)
    if opts.only:
        rates = tuple(float(r) for r in opts.rates.split(","))
        hold: dict[str, float] = HOLD_RATES if opts.hold else {}
        plan = Plan(False, rates, rates, opts.step_s, 5, opts.reject, hold, dict.fromkeys(HOLD_RATES, opts.hold),
                    rates, opts.max_in_ivr)
        work = Path(tempfile.mkdtemp(prefix="kinline-bench-"))
        try:
            report = (run_kinline(plan, work) if opts.only == "kinline"
                      else run_bare(plan, work, shaped=opts.only == "shaped"))
        finally:
            if not opts.keep:
                shutil.rmtree(work, ignore_errors=True)
        for s in report.steps:
            sys.stdout.write(f"{report.name} {s.rate:g}/s: {s.good}/{s.placed} good, CPU ms/call "
                             + ", ".join(f"{k} {v:.1f}" for k, v in s.cpu_ms.items())
                             + f", AGI own p50 {_ms(pct(s.agi_own_ms, 0.5))}, post-dial p50/p99 "
                             f"{_ms(pct(s.pdd_ms, 0.5))}/{_ms(pct(s.pdd_ms, 0.99))}, wrong {s.wrong}, "
                             f"refused {s.refused_text()}, "
                             f"peak in IVR {s.peak_ivr:.0f}, peak AGI p90 {s.peak_latency_ms:.0f} ms, "
                             f"failures {dict(s.failures)}\n")
        sys.stdout.write(f"{report.name} CPU ms per call, marginal (bench.make_bench.marginal_ms): "
                         + ", ".join(f"{name} {_ms(ms)}" for name, ms in marginals(report).items()) + "\n")
        if opts.hold:
            sys.stdout.write(f"{report.name} recorded calls held: {report.held}\n")
        return 0
    if opts.quick:
        plan = Plan(True, (1,), (1,), 5, 2, opts.reject, shaped_rates=(1,))
    else:
        # Batches of 40 long calls; the CPU is read once a batch is bridged (no set-up under way).
        plan = Plan(False, (2, 4, 6, 8, 10, 12, 16), (10, 20, 30, 40, 50, 60, 80), 30, 5, opts.reject,
                    HOLD_RATES, dict.fromkeys(HOLD_RATES, 480), (4, 8, 12, 16, 20, 24, 30))
    work = Path(tempfile.mkdtemp(prefix="kinline-bench-"))
    load_before = os.getloadavg()[0]
    try:
        bare = run_bare(plan, work)
        shaped = run_bare(plan, work, shaped=True)
        kinline = run_kinline(plan, work)
        # The AGI server alone over many calls (bench/agi_calls.py): does its memory grow?
        alone = agi_calls.run(agi_calls.Options(calls=30 if plan.quick else AGI_ALONE_CALLS))
    finally:
        if opts.keep:
            sys.stderr.write(f"bench: state kept in {work}\n")
        else:
            shutil.rmtree(work, ignore_errors=True)
    text = table(plan, kinline, bare, (load_before, os.getloadavg()[0]), alone, shaped)
    out = Path(opts.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    sys.stdout.write(text)
    sys.stdout.write(f"\n(written to {out})\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
