"""Who may call in, and what a caller hears when the AGI server is down."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.e2e.audio import rms
from tests.e2e.conftest import E2E
from tests.e2e.harness import AmiWatch, SipAgent
from tools import stack

pytestmark = pytest.mark.e2e


async def _refused(e2e: E2E, ami: AmiWatch, *auth: str) -> dict[str, object]:
    agent = await SipAgent.start("call", "--target", e2e.target(), *auth, "--rtp-port", "20200")
    try:
        end = await agent.ended(timeout=15)
    finally:
        await agent.close()
    await ami.drain(0.3)
    assert not any(m.event == "Newchannel" for m in ami.events), "a channel was created"
    assert not any(m.event == "AGIExecStart" for m in ami.events), "the AGI was reached"
    return end


async def test_invite_without_credentials_is_rejected(e2e: E2E, ami: AmiWatch) -> None:
    end = await _refused(e2e, ami, "--user", e2e.terminal.name)
    assert end["code"] == 401


async def test_wrong_terminal_password_is_rejected(e2e: E2E, ami: AmiWatch) -> None:
    end = await _refused(e2e, ami, "--user", e2e.terminal.name, "--password", "wrongpassword99")
    assert end["code"] in (401, 403)


async def test_unknown_terminal_is_rejected(e2e: E2E, ami: AmiWatch) -> None:
    end = await _refused(e2e, ami, "--user", "intruder", "--password", "whatever12345")
    assert end["code"] in (401, 403)



async def test_agi_down_caller_hears_apology_and_call_ends(
    e2e: E2E, ami: AmiWatch, tmp_path: Path
) -> None:
    t = e2e.terminal
    record = tmp_path / "heard.wav"
    stack.stop_service(e2e.config, "agi")
    try:
        agent = await SipAgent.start(
            "call", "--target", e2e.target(), "--user", t.name, "--password", t.password,
            "--rtp-port", "20300", "--record", str(record),
        )
        try:
            started = time.monotonic()
            channel = await ami.wait_for("Newchannel", lambda m: m.get("Channel").startswith(f"PJSIP/{t.name}-"))
            uid = channel.get("Uniqueid")
            played = await ami.wait_for(
                "Newexten", lambda m: m.get("Uniqueid") == uid and m.get("Application") == "Playback"
            )
            assert played.get("AppData") == "kinline/en/apology"
            hangup = await ami.wait_for("Hangup", lambda m: m.get("Uniqueid") == uid, timeout=20)
            took = time.monotonic() - started
            await agent.ended()
        finally:
            await agent.close()
        assert hangup.get("Cause") == "41"
        assert took < 15, f"call lasted {took:.1f} s"
        assert not any(
            m.event == "Newexten" and m.get("Uniqueid") == uid and m.get("Application") == "Dial"
            for m in ami.events
        )
        # The caller really heard something: the recording of the received audio is not silence.
        assert record.exists()
        assert rms(record) > 200
    finally:
        await asyncio.to_thread(_restart_agi, e2e)


def _restart_agi(e2e: E2E) -> None:
    stack.start_service(e2e.config, "agi")


async def test_redis_down_caller_hears_apology_and_nothing_is_dialed(e2e: E2E, ami: AmiWatch) -> None:
    t = e2e.terminals["open"]
    stack.stop_service(e2e.config, "redis")
    try:
        agent = await SipAgent.start(
            "call", "--target", e2e.target("100"), "--user", t.name, "--password", t.password,
            "--rtp-port", "20300",
        )
        try:
            channel = await ami.wait_for("Newchannel", lambda m: m.get("Channel").startswith(f"PJSIP/{t.name}-"))
            uid = channel.get("Uniqueid")
            played = await ami.wait_for(
                "Newexten", lambda m: m.get("Uniqueid") == uid and m.get("Application") == "Playback", timeout=20
            )
            assert played.get("AppData") == "kinline/en/apology"
            hangup = await ami.wait_for("Hangup", lambda m: m.get("Uniqueid") == uid, timeout=20)
            await agent.ended()
        finally:
            await agent.close()
        assert hangup.get("Cause") == "41"
        assert not any(m.event == "DialBegin" and m.get("Uniqueid") == uid for m in ami.events)
    finally:
        await asyncio.to_thread(stack.start_service, e2e.config, "redis")
