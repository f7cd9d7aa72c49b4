"""The `make run` supervisor and `stack status` with real processes: services are
killed with SIGKILL, left as zombies, replaced by strangers, and restarted with backoff."""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tools import stack
from tools.config import REPO, StackConfig, load_config
from tools.supervise import Supervisor, describe_exit

NAMES = ("svc-a", "svc-b")
SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StackConfig]:
    monkeypatch.setenv("KINLINE_STATE", str(tmp_path / "state"))
    cfg = load_config(REPO / "config" / "test.toml")
    for sub in ("run", "logs"):
        cfg.path(sub).mkdir(parents=True)
    try:
        yield cfg
    finally:
        for name in NAMES:
            stack.stop_service(cfg, name, timeout=5)


def start_sleeper(config: StackConfig) -> Callable[[str], None]:
    def start(name: str) -> None:
        stack._spawn(config, name, SLEEPER)
    return start


def pid_of(config: StackConfig, name: str) -> int:
    state = stack.service_state(config, name)
    assert state.alive, state
    assert state.pid is not None
    return state.pid


def wait_for(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


def restarted(sup: Supervisor, config: StackConfig, name: str, old: int | None) -> bool:
    """One supervisor pass; then: does ``name`` run, with a pid other than ``old``?"""
    sup.poll()
    state = stack.service_state(config, name)
    return state.alive and state.pid != old


def is_zombie(pid: int) -> bool:
    stat = stack._proc_stat(pid)
    return stat is not None and stat[0] == "Z"


def test_status_tells_a_zombie_from_a_live_process(config: StackConfig, capsys: pytest.CaptureFixture[str]) -> None:
    start = start_sleeper(config)
    for name in NAMES:
        start(name)
    pid_a, pid_b = pid_of(config, "svc-a"), pid_of(config, "svc-b")
    capsys.readouterr()
    assert stack.status(config, NAMES)
    assert capsys.readouterr().out == f"svc-a: running, pid {pid_a}\nsvc-b: running, pid {pid_b}\n"

    os.kill(pid_a, signal.SIGKILL)
    wait_for(lambda: is_zombie(pid_a))
    os.kill(pid_a, 0)  # a zombie still answers kill(0): that alone cannot tell it is dead
    assert not stack.status(config, NAMES)
    assert capsys.readouterr().out == (
        f"svc-a: dead (pid {pid_a} exited, not yet reaped: zombie)\nsvc-b: running, pid {pid_b}\n"
    )
    # `up` does not say "already running" for a zombie: it starts a new process.
    start("svc-a")
    new_a = pid_of(config, "svc-a")
    assert new_a != pid_a
    assert "svc-a: started" in capsys.readouterr().out
    assert stack.reap(pid_a) == -signal.SIGKILL
    assert stack._proc_stat(pid_a) is None  # reaped: the zombie is gone


def test_status_does_not_take_another_process_for_the_service(
    config: StackConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    pidfile = config.path("run", "svc-a.pid")
    stat = stack._proc_stat(os.getpid())
    assert stat is not None
    pidfile.write_text(f"{os.getpid()} {stat[1] + 1}\n")  # our pid, but started at another time
    assert stack.service_state(config, "svc-a").alive is False
    assert stack._pid(config, "svc-a") is None
    pidfile.write_text(f"{os.getpid()} {stat[1]}\n")
    assert stack.service_state(config, "svc-a").alive is True
    pidfile.write_text("4194304 1\n")  # above pid_max: never a process
    assert not stack.status(config, ("svc-a",))
    assert capsys.readouterr().out == "svc-a: dead (pid 4194304 is gone)\n"
    pidfile.unlink()
    assert not stack.status(config, ("svc-a",))
    assert capsys.readouterr().out == "svc-a: stopped\n"


def test_supervisor_restarts_a_killed_service_with_capped_backoff(
    config: StackConfig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tools.supervise")
    start = start_sleeper(config)
    for name in NAMES:
        start(name)
    sup = Supervisor(config, NAMES, start, base_s=0.2, cap_s=0.8, stable_s=60)
    pid_b = pid_of(config, "svc-b")
    waits = []
    for kill in range(1, 5):
        old = pid_of(config, "svc-a")
        os.kill(old, signal.SIGKILL)
        wait_for(functools.partial(is_zombie, old))
        caplog.clear()
        sup.poll()
        died = time.monotonic()
        assert not is_zombie(old) and stack._proc_stat(old) is None, "the supervisor reaps the dead child"
        expected = min(0.2 * 2 ** (kill - 1), 0.8)
        assert [r.getMessage() for r in caplog.records] == [
            f"svc-a is down: dead (pid {old} exited, not yet reaped: zombie); killed by SIGKILL; "
            f"restart in {expected:.1f} s (failure {kill} in a row)"
        ]
        wait_for(functools.partial(restarted, sup, config, "svc-a", old))
        waits.append(time.monotonic() - died)
        new = pid_of(config, "svc-a")
        assert caplog.records[-1].getMessage() == f"svc-a restarted (pid {new}, restart {kill})"
        assert waits[-1] >= expected, "restarted before its backoff"
        assert pid_of(config, "svc-b") == pid_b, "the other service is left alone"
    assert sup.failures == {"svc-a": 4, "svc-b": 0}
    assert stack.status(config, NAMES)


def test_supervisor_retries_a_failed_restart(config: StackConfig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tools.supervise")
    attempts = []

    def start(name: str) -> None:
        attempts.append(name)
        if len(attempts) <= 2:
            raise stack.StackError("port 127.0.0.1:1 did not open")
        stack._spawn(config, name, SLEEPER)

    sup = Supervisor(config, ("svc-a",), start, base_s=0.1, cap_s=0.3)
    # Never started: no pid file, so the supervisor starts it, failing twice first.
    wait_for(lambda: restarted(sup, config, "svc-a", None))
    assert len(attempts) == 3
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == ("svc-a is down: stopped; exit status unknown (not our child, or already collected); "
                           "restart in 0.1 s (failure 1 in a row)")
    failed = "svc-a is down: restart failed: port 127.0.0.1:1 did not open; restart in"
    assert messages[1:3] == [f"{failed} 0.2 s (failure 2 in a row)", f"{failed} 0.3 s (failure 3 in a row)"]
    assert messages[3].startswith("svc-a restarted (pid ")


def test_describe_exit() -> None:
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(3) == "exit status 3"
    assert describe_exit(None).startswith("exit status unknown")
