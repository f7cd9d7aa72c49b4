"""Blocks as nftables set elements with a timeout: the kernel ends each block by itself.

One table per stack, named after its terminals' SIP port; its rules drop only packets
from a blocked address to that stack's SIP ports (the terminals' and the apps' doors),
so other stacks and services are untouched. An address blocked for failures on one
door is blocked on both: it is the same attacker.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import Protocol

log = logging.getLogger(__name__)


class FirewallError(Exception):
    """nft refused a command or could not be run."""


def table_name(sip_port: int) -> str:
    return f"kinline_guard_{sip_port}"


def _ports(sip_port: int, other_ports: tuple[int, ...]) -> str:
    ports = [sip_port, *(p for p in other_ports if p != sip_port)]
    for port in ports:
        if type(port) is not int or not 0 < port < 65536:
            raise ValueError(f"not a port number: {port!r}")
    return str(ports[0]) if len(ports) == 1 else "{ " + ", ".join(map(str, ports)) + " }"


def ruleset(sip_port: int, other_ports: tuple[int, ...] = ()) -> str:
    """The table, emptied if it existed (a guard killed earlier leaves it behind): a
    blocked address's packets to ``sip_port`` and ``other_ports`` (the apps' door) drop."""
    table = table_name(sip_port)
    ports = _ports(sip_port, other_ports)
    return (
        f"add table inet {table}\n"
        f"delete table inet {table}\n"
        f"table inet {table} {{\n"
        "  set blocked4 { type ipv4_addr; flags timeout; }\n"
        "  set blocked6 { type ipv6_addr; flags timeout; }\n"
        "  chain input {\n"
        "    type filter hook input priority -10; policy accept;\n"
        f"    ip saddr @blocked4 meta l4proto {{ udp, tcp }} th dport {ports} drop\n"
        f"    ip6 saddr @blocked6 meta l4proto {{ udp, tcp }} th dport {ports} drop\n"
        "  }\n"
        "}\n"
    )


def block_command(sip_port: int, address: str, seconds: int) -> str:
    ip = ipaddress.ip_address(address)  # ValueError on anything that is not an address
    if not 1 <= seconds <= 86_400:
        raise ValueError(f"block time must be 1 s to 1 day, not {seconds}")
    family = "blocked4" if ip.version == 4 else "blocked6"
    return f"add element inet {table_name(sip_port)} {family} {{ {ip} timeout {seconds}s }}\n"


class Firewall(Protocol):
    async def block(self, address: str, seconds: int) -> None: ...


class NftFirewall:
    """Runs ``nft -f -`` for each change."""

    def __init__(self, sip_port: int, other_ports: tuple[int, ...] = (), nft: str = "nft") -> None:
        self.sip_port = sip_port
        self.other_ports = other_ports
        self.nft = nft

    async def _run(self, script: str) -> None:
        try:
            proc = await asyncio.create_subprocess_exec(
                self.nft, "-f", "-", stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise FirewallError(f"cannot run {self.nft}: {exc}") from exc
        _, err = await asyncio.wait_for(proc.communicate(script.encode()), 10)
        if proc.returncode != 0:
            raise FirewallError(f"nft failed ({proc.returncode}): {err.decode(errors='replace').strip()}")

    async def setup(self) -> None:
        await self._run(ruleset(self.sip_port, self.other_ports))

    async def block(self, address: str, seconds: int) -> None:
        await self._run(block_command(self.sip_port, address, seconds))

    async def teardown(self) -> None:
        table = table_name(self.sip_port)
        await self._run(f"add table inet {table}\ndelete table inet {table}\n")
