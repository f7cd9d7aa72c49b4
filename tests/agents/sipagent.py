"""A real SIP user agent (PJSIP through pjsua2) driven over stdin/stdout.

One agent per process (pjsua2 allows one library per process). It prints
JSON lines (events) on stdout and reads commands on stdin:

    dtmf <digits> <rfc2833|info>    send digits on the current call
    play <file.wav>                 say a WAV file once on the current call
    hangup [cause]                  end the current call (a BYE carrying Reason: Q.850;cause=N)
    quit                            end everything and exit

Caller:  sipagent.py call --target sip:100@127.0.0.1:15060 --user U --password P
Callee:  sipagent.py answer --port 15080 --mode answer|busy|noanswer [--ring 0.5]
App:     sipagent.py register --registrar sip:127.0.0.1:15070 --user app-... --password P
         [--expires 300] [--mode ...]: REGISTERs (event "reg" with the final code of each
         attempt) and answers incoming calls like a callee. More commands:
    register                        REGISTER again now (a refresh)
    unregister                      REGISTER with Expires: 0
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
import time
from typing import Any

import pjsua2 as pj


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, "t": time.time(), **fields}) + "\n")
    sys.stdout.flush()


class Call(pj.Call):  # type: ignore[misc]
    def __init__(self, agent: Agent, acc: pj.Account, call_id: int = pj.PJSUA_INVALID_ID) -> None:
        super().__init__(acc, call_id)
        self.agent = agent
        self.recorder: pj.AudioMediaRecorder | None = None
        self.audio: pj.AudioMedia | None = None
        self.done = False

    def onCallState(self, prm: Any) -> None:
        info = self.getInfo()
        emit("state", state=info.stateText, code=int(info.lastStatusCode), reason=info.lastReason,
             call_id=info.callIdString)
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.done = True

    def onCallMediaState(self, prm: Any) -> None:
        info = self.getInfo()
        for i, media in enumerate(info.media):
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                # Keep the stream clocked (null sound device): RTP and RFC 4733
                # digits are only sent while the conference bridge runs it.
                audio = self.getAudioMedia(i)
                self.audio = audio
                devices = pj.Endpoint.instance().audDevManager()
                devices.getCaptureDevMedia().startTransmit(audio)
                audio.startTransmit(devices.getPlaybackDevMedia())
                if self.agent.record and self.recorder is None:
                    self.recorder = pj.AudioMediaRecorder()
                    self.recorder.createRecorder(self.agent.record)
                    self.getAudioMedia(i).startTransmit(self.recorder)
                if self.agent.play and self.agent.player is None:
                    self.agent.player = pj.AudioMediaPlayer()
                    self.agent.player.createPlayer(self.agent.play)
                    self.agent.player.startTransmit(self.getAudioMedia(i))
                emit("media", active=True)

    def onDtmfDigit(self, prm: Any) -> None:
        emit("dtmf_received", digit=prm.digit)


class Account(pj.Account):  # type: ignore[misc]
    def __init__(self, agent: Agent) -> None:
        super().__init__()
        self.agent = agent

    def onRegState(self, prm: Any) -> None:
        emit("reg", code=int(prm.code), reason=prm.reason, expiration=int(prm.expiration))

    def onIncomingCall(self, prm: Any) -> None:
        call = Call(self.agent, self, prm.callId)
        self.agent.call = call
        info = call.getInfo()
        emit("incoming", remote=info.remoteUri, local=info.localUri, call_id=info.callIdString)
        op = pj.CallOpParam()
        if self.agent.mode == "busy":
            op.statusCode = 486
            call.hangup(op)
            return
        op.statusCode = 180
        call.answer(op)
        if self.agent.mode == "answer":
            self.agent.answer_at = time.monotonic() + self.agent.ring


class Agent:
    def __init__(self, opts: argparse.Namespace) -> None:
        self.opts = opts
        self.mode: str = getattr(opts, "mode", "answer")
        self.ring: float = getattr(opts, "ring", 0.0)
        self.record: str = opts.record or ""
        self.play: str = opts.play or ""
        self.player: pj.AudioMediaPlayer | None = None
        self.call: Call | None = None
        self.answer_at: float | None = None
        self.commands: queue.Queue[str] = queue.Queue()

    def run(self) -> None:
        ep = pj.Endpoint()
        ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = True
        cfg.uaConfig.userAgent = "kinline-test-agent"
        cfg.logConfig.level = self.opts.log_level
        cfg.logConfig.consoleLevel = self.opts.log_level
        cfg.medConfig.noVad = True
        ep.libInit(cfg)
        tcfg = pj.TransportConfig()
        tcfg.port = self.opts.port
        tcfg.boundAddress = self.opts.bind
        tcfg.publicAddress = self.opts.bind
        ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
        ep.audDevManager().setNullDev()
        ep.libStart()
        acfg = pj.AccountConfig()
        acfg.idUri = f"sip:{self.opts.user}@{self.opts.bind}"
        acfg.mediaConfig.transportConfig.boundAddress = self.opts.bind
        acfg.mediaConfig.transportConfig.publicAddress = self.opts.bind
        acfg.mediaConfig.transportConfig.port = self.opts.rtp_port
        acfg.natConfig.iceEnabled = False
        acfg.natConfig.sipStunUse = pj.PJSUA_STUN_USE_DISABLED
        acfg.natConfig.mediaStunUse = pj.PJSUA_STUN_USE_DISABLED
        if self.opts.password:
            acfg.sipConfig.authCreds.append(
                pj.AuthCredInfo("digest", "*", self.opts.user, 0, self.opts.password)
            )
        if self.opts.command == "register":
            host = self.opts.registrar.removeprefix("sip:")
            acfg.idUri = f"sip:{self.opts.user}@{host.rsplit(':', 1)[0]}"
            acfg.regConfig.registrarUri = self.opts.registrar
            acfg.regConfig.timeoutSec = self.opts.expires
            acfg.regConfig.retryIntervalSec = 0  # a refused REGISTER is not retried by itself
            acfg.regConfig.registerOnAdd = True
        acc = Account(self)
        acc.create(acfg)
        emit("ready", port=self.opts.port)
        threading.Thread(target=self._read_stdin, daemon=True).start()
        try:
            self._loop(acc)
        finally:
            self.player = None
            if self.call is not None and self.call.recorder is not None:
                self.call.recorder = None
            self.call = None
            acc.shutdown()
            del acc
            ep.libDestroy()
            emit("exit")

    def _read_stdin(self) -> None:
        for line in sys.stdin:
            self.commands.put(line.strip())
        self.commands.put("quit")

    def _loop(self, acc: Account) -> None:
        if self.opts.command == "call":
            self.call = Call(self, acc)
            op = pj.CallOpParam(True)
            self.call.makeCall(self.opts.target, op)
        deadline = time.monotonic() + self.opts.max_seconds
        while time.monotonic() < deadline:
            pj.Endpoint.instance().libHandleEvents(20)
            if self.answer_at is not None and time.monotonic() >= self.answer_at and self.call:
                self.answer_at = None
                op = pj.CallOpParam()
                op.statusCode = 200
                self.call.answer(op)
            try:
                command = self.commands.get_nowait()
            except queue.Empty:
                if self.ended and self.opts.command == "call":
                    return
                if self.ended:
                    self.call = None  # callee: ready for the next call
                continue
            if not self._do(command, acc):
                return
        emit("timeout", seconds=self.opts.max_seconds)

    @property
    def ended(self) -> bool:
        return self.call is not None and self.call.done

    def _do(self, command: str, acc: Account) -> bool:
        words = command.split()
        if not words:
            return True
        if words[0] in ("register", "unregister"):
            acc.setRegistration(words[0] == "register")
            return True
        if words[0] == "quit":
            if self.call is not None and not self.ended:
                self.call.hangup(pj.CallOpParam())
                for _ in range(50):
                    pj.Endpoint.instance().libHandleEvents(20)
                    if self.ended:
                        break
            return False
        if self.call is None or self.ended:
            emit("error", message=f"no call for {words[0]}")
            return True
        if words[0] == "hangup":
            op = pj.CallOpParam()
            if len(words) == 2 and words[1].isdigit():  # a failure's cause in the BYE (RFC 3326)
                reason = pj.SipHeader()
                reason.hName, reason.hValue = "Reason", f"Q.850;cause={words[1]}"
                op.txOption.headers.append(reason)
            self.call.hangup(op)
        elif words[0] == "play" and len(words) == 2:
            if self.call.audio is None:
                emit("error", message="no audio yet")
                return True
            self.player = pj.AudioMediaPlayer()
            self.player.createPlayer(words[1], pj.PJMEDIA_FILE_NO_LOOP)
            self.player.startTransmit(self.call.audio)
            emit("playing", file=words[1])
        elif words[0] == "dtmf":
            digits, method = words[1], (words[2] if len(words) > 2 else "rfc2833")
            param = pj.CallSendDtmfParam()
            param.digits = digits
            param.duration = 160
            param.method = (pj.PJSUA_DTMF_METHOD_SIP_INFO if method == "info"
                            else pj.PJSUA_DTMF_METHOD_RFC2833)
            self.call.sendDtmf(param)
            emit("dtmf_sent", digits=digits, method=method)
        else:
            emit("error", message=f"unknown command {words[0]}")
        return True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=("call", "answer", "register"))
    parser.add_argument("--registrar", default="", help="register: sip:host:port")
    parser.add_argument("--expires", type=int, default=300)
    parser.add_argument("--target", default="")
    parser.add_argument("--user", default="relative")
    parser.add_argument("--password", default="")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--bind", default="127.0.0.1", help="local address for SIP and RTP")
    parser.add_argument("--rtp-port", type=int, default=20000)
    parser.add_argument("--mode", choices=("answer", "busy", "noanswer"), default="answer")
    parser.add_argument("--ring", type=float, default=0.2)
    parser.add_argument("--record", default="")
    parser.add_argument("--play", default="")
    parser.add_argument("--max-seconds", type=float, default=120)
    parser.add_argument("--log-level", type=int, default=1)
    Agent(parser.parse_args()).run()


if __name__ == "__main__":
    main()
