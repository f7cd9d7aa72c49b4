"""Asterisk security events (AMI class ``security``) as plain values, parsed at the edge."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ami.protocol import AmiMessage

# Security events that mean "this source tried and failed": a wrong or unknown
# user, a wrong digest, a request an ACL or the endpoint refuses. ChallengeSent
# and SuccessfulAuth are normal steps of every good call and are not counted.
FAILURE_EVENTS = frozenset({
    "InvalidAccountID",
    "InvalidPassword",
    "ChallengeResponseFailed",
    "FailedACL",
    "AuthMethodNotAllowed",
    "RequestNotAllowed",
    "UnexpectedAddress",
})


@dataclass(frozen=True)
class AuthFailure:
    """One failed attempt by ``address`` (an IPv4 or IPv6 address, validated)."""

    kind: str  # the security event's name
    address: str
    account: str  # the AccountID the source claimed (may be empty)


def parse_remote_address(value: str) -> str | None:
    """``IPV4/UDP/127.0.0.2/5060`` -> ``127.0.0.2``; None for anything else."""
    parts = value.split("/")
    if len(parts) < 3 or parts[0] not in ("IPV4", "IPV6"):
        return None
    host = "/".join(parts[2:-1]) if len(parts) > 3 else parts[2]
    host = host.strip("[]")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def auth_failure(message: AmiMessage, service: str = "PJSIP") -> AuthFailure | None:
    """The SIP failure an AMI event reports, or None (other events, other services, no address)."""
    if message.event not in FAILURE_EVENTS or message.get("Service") != service:
        return None
    address = parse_remote_address(message.get("RemoteAddress"))
    if address is None:
        return None
    return AuthFailure(message.event, address, message.get("AccountID"))
