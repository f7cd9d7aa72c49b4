"""A terminal calls in, the greeting route answers and receives its digits."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import E2E
from tests.e2e.harness import AmiWatch, SipAgent

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("method", ["rfc2833", "info"])
async def test_terminal_call_reaches_greeting_and_digits_arrive(
    e2e: E2E, ami: AmiWatch, method: str
) -> None:
    t = e2e.terminal
    agent = await SipAgent.start(
        "call", "--target", e2e.target(), "--user", t.name, "--password", t.password,
        "--rtp-port", "20100",
    )
    try:
        await agent.wait_for("state", lambda e: e["state"] == "CONFIRMED")
        channel = await ami.wait_for("Newchannel", lambda m: m.get("Channel").startswith(f"PJSIP/{t.name}-"))
        uid = channel.get("Uniqueid")
        # Digits pressed before the route asks for them are lost: wait for GET DATA.
        await ami.wait_for(
            "AGIExecStart",
            lambda m: m.get("Uniqueid") == uid and m.get("Command").startswith("GET DATA"),
        )
        digits = "4071#" if method == "rfc2833" else "98*5#"
        await agent.send(f"dtmf {digits} {method}")
        got = await ami.wait_for(
            "VarSet", lambda m: m.get("Uniqueid") == uid and m.get("Variable") == "KINLINE_DIGITS"
        )
        assert got.get("Value") == digits.rstrip("#")
        hangup = await ami.wait_for("Hangup", lambda m: m.get("Uniqueid") == uid)
        assert hangup.get("Cause") == "16"  # normal clearing, not the apology path
        end = await agent.ended()
        assert end["code"] == 200
        seen = ami.of(uid)
        for name in ("Newchannel", "AGIExecStart", "AGIExecEnd", "VarSet", "Hangup"):
            assert name in seen, f"AMI did not report {name}: {seen}"
        assert not any(
            m.event == "Newexten" and "apology" in m.get("AppData") for m in ami.events
            if m.get("Uniqueid") == uid
        )
    finally:
        await agent.close()
