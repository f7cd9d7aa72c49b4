"""A call sends nothing off the loopback interface: no DNS, no SIP, no RTP."""

from __future__ import annotations

import asyncio
import shutil
import signal
from pathlib import Path

import pytest

from tests.e2e.conftest import E2E
from tests.e2e.harness import AmiWatch, SipAgent

pytestmark = pytest.mark.e2e


class Capture:
    def __init__(self, path: Path, interface: str, bpf: str) -> None:
        self.path, self.interface, self.bpf = path, interface, bpf
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Capture:
        self.proc = await asyncio.create_subprocess_exec(
            "tcpdump", "-i", self.interface, "-n", "-p", "-U", "--immediate-mode",
            "-w", str(self.path), self.bpf,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        assert self.proc.stderr is not None
        for _ in range(5):
            line = await asyncio.wait_for(self.proc.stderr.readline(), 10)
            if b"listening on" in line:
                break
        else:
            raise AssertionError(f"tcpdump did not start: {line!r}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.proc is not None
        await asyncio.sleep(0.5)
        self.proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(self.proc.wait(), 10)

    async def packets(self) -> list[str]:
        proc = await asyncio.create_subprocess_exec(
            "tcpdump", "-n", "-r", str(self.path),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )
        out, _ = await proc.communicate()
        return [line for line in out.decode().splitlines() if line.strip()]


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is installed by tools/setup.sh")
async def test_call_sends_no_packet_off_loopback(e2e: E2E, ami: AmiWatch, tmp_path: Path) -> None:
    c = e2e.config
    ports = (
        f"port 53 or port 5353 or portrange {c.sip_port}-{c.trunk_port} "
        f"or portrange {c.rtp_start}-{c.rtp_end} or port {c.agi_port} or port {c.ami_port} "
        f"or port {c.redis_port} or portrange 20000-20999"
    )
    off_loopback = f"not net 127.0.0.0/8 and not host ::1 and ({ports})"
    t = e2e.terminal
    async with Capture(tmp_path / "off.pcap", "any", off_loopback) as off, \
            Capture(tmp_path / "lo.pcap", "lo", f"udp port {c.sip_port}") as lo:
        agent = await SipAgent.start(
            "call", "--target", e2e.target(), "--user", t.name, "--password", t.password,
            "--rtp-port", "20400",
        )
        try:
            channel = await ami.wait_for("Newchannel", lambda m: m.get("Channel").startswith(f"PJSIP/{t.name}-"))
            uid = channel.get("Uniqueid")
            await ami.wait_for(  # the greeting (9999) asks for digits with GET DATA
                "AGIExecStart", lambda m: m.get("Uniqueid") == uid and m.get("Command").startswith("GET DATA")
            )
            await agent.send("dtmf 12# info")
            await ami.wait_for("Hangup", lambda m: m.get("Uniqueid") == uid)
        finally:
            await agent.close()
    # The capture works: it saw the call's SIP on the loopback interface...
    assert len(await lo.packets()) >= 4
    # ...and nothing of ours, DNS included, left it.
    assert await off.packets() == []
