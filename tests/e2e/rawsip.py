"""A minimal SIP UAC over a raw UDP socket, for tests that need a chosen source
address and port or a hand-made request (pjsua2 picks its own). It answers
digest challenges (MD5, qop=auth) and ACKs final responses; nothing else."""

from __future__ import annotations

import hashlib
import re
import secrets
import socket
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    code: int | None  # final response code, None when nothing came back in time
    codes: tuple[int, ...]  # every response code seen, in order


def _header(message: str, name: str) -> str:
    match = re.search(rf"^{name}\s*:\s*(.*?)\r?$", message, re.IGNORECASE | re.MULTILINE)
    return match.group(1) if match else ""


def _code(message: str) -> int:
    return int(message.split(" ", 2)[1])


def _param(challenge: str, name: str) -> str:
    match = re.search(rf'{name}="?([^",]*)"?', challenge)
    return match.group(1) if match else ""


def digest(method: str, uri: str, user: str, password: str, challenge: str, cnonce: str = "0a4f113b") -> str:
    """The Authorization header value answering ``challenge`` (RFC 2617, MD5)."""
    realm, nonce, opaque = _param(challenge, "realm"), _param(challenge, "nonce"), _param(challenge, "opaque")
    qop = "auth" if "auth" in _param(challenge, "qop").split(",") else ""

    def md5(text: str) -> str:
        return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()

    ha1, ha2 = md5(f"{user}:{realm}:{password}"), md5(f"{method}:{uri}")
    nc = "00000001"
    if qop:
        response = md5(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
        extra = f', qop={qop}, nc={nc}, cnonce="{cnonce}"'
    else:
        response = md5(f"{ha1}:{nonce}:{ha2}")
        extra = ""
    value = (f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
             f'response="{response}", algorithm=MD5{extra}')
    return value + (f', opaque="{opaque}"' if opaque else "")


class RawUac:
    """One UDP socket bound to (host, port); sends INVITEs to ``target``."""

    def __init__(self, bind: tuple[str, int], target: tuple[str, int]) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(bind)
        self.local = self.sock.getsockname()
        self.target = target

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawUac:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _request(self, method: str, user: str, exten: str, call_id: str, cseq: int, tag: str,
                 auth: str = "", to_tag: str = "") -> tuple[str, str]:
        host, port = self.target
        lhost, lport = self.local
        uri = f"sip:{exten}@{host}:{port}"
        branch = "z9hG4bK" + secrets.token_hex(8)
        body = "" if method == "ACK" else (
            f"v=0\r\no=- 1 1 IN IP4 {lhost}\r\ns=-\r\nc=IN IP4 {lhost}\r\nt=0 0\r\n"
            f"m=audio {lport + 2} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
        )
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {lhost}:{lport};branch={branch};rport",
            "Max-Forwards: 70",
            f"From: <sip:{user}@{host}>;tag={tag}",
            f"To: <{uri}>" + (f";tag={to_tag}" if to_tag else ""),
            f"Call-ID: {call_id}",
            f"CSeq: {cseq} {method}",
            f"Contact: <sip:{user}@{lhost}:{lport}>",
        ]
        if auth:
            lines.append(f"Authorization: {auth}")
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body)}")
        self.sock.sendto(("\r\n".join(lines) + "\r\n\r\n" + body).encode(), self.target)
        return uri, branch

    def _responses(self, call_id: str, timeout: float) -> list[str]:
        """Responses of this call until a final one or ``timeout`` (provisional ones included)."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data, _ = self.sock.recvfrom(65535)
            except TimeoutError:
                break
            text = data.decode(errors="replace")
            if not text.startswith("SIP/2.0 ") or _header(text, "Call-ID") != call_id:
                continue
            seen.append(text)
            if _code(text) >= 200:
                break
        return seen

    def _ack(self, user: str, exten: str, call_id: str, cseq: int, tag: str, final: str) -> None:
        to_tag = _param(_header(final, "To"), "tag")
        self._request("ACK", user, exten, call_id, cseq, tag, to_tag=to_tag)

    def invite(self, user: str, password: str | None = None, exten: str = "100", timeout: float = 3.0) -> Outcome:
        """INVITE as ``user``; answer one challenge with ``password`` if given. A call
        that is answered (2xx) is ACKed and hung up at once."""
        call_id, tag = secrets.token_hex(10), secrets.token_hex(4)
        codes: list[int] = []
        uri, _ = self._request("INVITE", user, exten, call_id, 1, tag)
        replies = self._responses(call_id, timeout)
        codes += [_code(r) for r in replies]
        if not replies or _code(replies[-1]) < 200:
            return Outcome(None, tuple(codes))
        final = replies[-1]
        self._ack(user, exten, call_id, 1, tag, final)
        challenge = _header(final, "WWW-Authenticate")
        if _code(final) == 401 and password is not None and challenge:
            auth = digest("INVITE", uri, user, password, challenge)
            self._request("INVITE", user, exten, call_id, 2, tag, auth=auth)
            replies = self._responses(call_id, timeout)
            codes += [_code(r) for r in replies]
            if not replies or _code(replies[-1]) < 200:
                return Outcome(None, tuple(codes))
            final = replies[-1]
            self._ack(user, exten, call_id, 2, tag, final)
            if _code(final) < 300:
                to_tag = _param(_header(final, "To"), "tag")
                self._request("BYE", user, exten, call_id, 3, tag, to_tag=to_tag)
        return Outcome(_code(final), tuple(codes))
