"""Calls to the relative's app ("00"): what plan_and_dial dials instead of the trunk.

The contacts come from Asterisk (``PJSIP_DIAL_CONTACTS(app-<device>)`` on the channel),
the wake goes to the push bridge through Redis (XADD ``kl:wake``, after the SUBSCRIBE to
``kl:contact:<phone>``), and the attempt's steps (INVITE sent, answered) go to
``kl:wakeattempt:<call_id>`` (store/wake_records.py). The logic is ivr/app_call.py.

A woken call dials one leg per device, ``Local/<device>@kinline-app-leg/n``: the leg's
channel runs ``app_leg`` (wait for that device's contact, within the window the caller's
channel passed down in ``KINLINE_APP_WAIT``), then Dials the device's contacts with the
intro (or accept menu) gosub on the app's own channel, as a registered app is dialed.
Each app INVITE is recorded as it goes (``app_invite``, the pre-dial handler)."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as aioredis

from agi import variables as v
from agi.apps_node import AppsNodeUnavailable
from agi.caller import AgiCaller
from agi.channel import AgiChannel
from agi.plan_vars import plan_from_text
from agi.prompts import sound_file
from agi.protocol import AgiEnvironment, AgiHangup
from agi.server import Route
from ivr import prompts as p
from ivr.app_call import WINDOW_S, AppDevices, Contacts, Reach, reach, ring_leg
from ivr.call_plan import CallPlan
from ivr.clock import now_ms
from ivr.devices import device_of_endpoint, endpoint_id, is_device_id
from ivr.inmate_call import RING_S
from ivr.tariffs import RouteKind
from store import wake_records as records
from store.app_wake import (
    CANCEL,
    STREAM_MAXLEN,
    WAKE,
    WAKE_STREAM,
    contact_channel,
    device_of,
    unwakeable_call,
    unwakeable_key,
    wake_fields,
)
from store.devices import DeviceStore

log = logging.getLogger(__name__)

LEG = "Local/{device_id}@kinline-app-leg/n"  # dialplan [kinline-app-leg]
RELAY = "PJSIP/{device_id}@{endpoint}"  # a cluster: through the apps' node (dialplan [kinline-from-node])
CANCELLED_KEY = "kl:appcancel:{call_id}"
CANCELLED_KEEP_S = 3600


class ChannelContacts:
    """Registered contacts as Asterisk knows them now (GET FULL VARIABLE on the caller)."""

    def __init__(self, channel: AgiChannel) -> None:
        self.channel = channel

    async def dial_string(self, device_id: str) -> str:
        endpoint = endpoint_id(device_id)
        result = await self.channel.command("GET FULL VARIABLE", f"${{PJSIP_DIAL_CONTACTS({endpoint})}}")
        return result.data if result.result == 1 else ""

    def leg(self, device_id: str) -> str:
        return LEG.format(device_id=device_id)


class AppsNode(Protocol):
    async def registered(self, endpoint: str) -> bool:
        """Whether the app endpoint has a contact on the apps' node now (agi/apps_node.py);
        raises AppsNodeUnavailable when that node does not answer."""
        ...


class RelayedContacts:
    """On a cluster's node other than the apps' node: apps register there, so a device is
    registered when the apps' node lists a contact for it, and both its registered dial
    string and its leg are a relay to that node (``PJSIP/<device>@kinline-node1``), whose
    dial plan (``kinline-from-node``) rings the device's contacts now or once woken."""

    def __init__(self, apps_node: AppsNode, endpoint: str) -> None:
        self.apps_node = apps_node
        self.endpoint = endpoint

    async def dial_string(self, device_id: str) -> str:
        return self.leg(device_id) if await self.apps_node.registered(endpoint_id(device_id)) else ""

    def leg(self, device_id: str) -> str:
        return RELAY.format(device_id=device_id, endpoint=self.endpoint)


class ChannelLine:
    def __init__(self, channel: AgiChannel) -> None:
        self.channel = channel

    async def still_there(self) -> bool:
        try:
            await self.channel.get_variable(v.CALL_ID)  # answered 511 (AgiHangup) once hung up
        except AgiHangup:
            return False
        return not self.channel.hung_up


class Announcement:
    """The waiting caller's line: "connecting to the app" (cut short by ``quiet``: a new
    AGI command ends the prompt), then ringback: "Ringing" on the answered channel makes
    the core play the zone's ring tone (app_playtones is not loaded) until Dial's own."""

    def __init__(self, channel: AgiChannel, caller: AgiCaller) -> None:
        self.channel = channel
        self.caller = caller
        self._stop = asyncio.Event()
        self._over = asyncio.Event()

    async def announce(self) -> None:
        try:
            await self.caller.play([])  # what was queued to be said first
            file = sound_file(self.caller.language, p.APP_CONNECTING)
            if await self.channel.stream_file_until(file, self._stop):
                self.channel.log.info("'connecting to the app' cut short: a contact came")
            await self.channel.exec("Ringing")
        except AgiHangup:
            pass  # still_there says so
        finally:
            self._over.set()

    async def quiet(self) -> None:
        self._stop.set()
        await self._over.wait()

    async def still_there(self) -> bool:
        return await ChannelLine(self.channel).still_there()


class RedisWake:
    """Listening on kl:contact:<phone> (subscribed on entry), the wake and its cancel in kl:wake.
    The bridge's Unwakeable for this call (on the channel, or its key for a leg) ends the wait."""

    def __init__(self, redis: aioredis.Redis, pubsub: aioredis.client.PubSub, call_id: str, phone: str,
                 caller: str, window_s: float, device_id: str = "") -> None:
        self.redis = redis
        self.pubsub = pubsub
        self.call_id = call_id
        self.phone = phone
        self.caller = caller
        self.window_s = window_s
        self.device_id = device_id  # '' = any device of the relative (the call's wait), else a leg's
        self.cancelled = False
        self.unwakeable = False  # the bridge said no device of this call was woken

    async def listen(self) -> None:
        """On entry, once subscribed: a leg subscribing late learns a past Unwakeable from its key."""
        if await self.redis.exists(unwakeable_key(self.call_id)):
            self.unwakeable = True

    async def _xadd(self, kind: str) -> None:
        fields = wake_fields(self.call_id, self.phone, self.caller, self.window_s, kind)
        await self.redis.xadd(WAKE_STREAM, fields, maxlen=STREAM_MAXLEN, approximate=True)  # type: ignore[arg-type]

    async def push(self) -> None:
        await self._xadd(WAKE)

    async def next_contact(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not self.unwakeable and (left := deadline - time.monotonic()) > 0:
            message = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
            if message is None or message.get("type") != "message":
                continue
            data = message.get("data")
            if unwakeable_call(data) == self.call_id:
                log.info("call %s: the bridge woke no device of %s...: the wait ends", self.call_id, self.phone[:5])
                self.unwakeable = True
            elif self._mine(device_of(data)):
                return True
        return False

    def _mine(self, device_id: str) -> bool:
        """A contact of a device (another call's Unwakeable names none); a leg: its own device's."""
        return bool(device_id) and (not self.device_id or device_id == self.device_id)

    async def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            await cancel_wake(self.redis, self.call_id, self.phone, self.caller, self.window_s)


async def cancel_wake(redis: aioredis.Redis, call_id: str, phone: str, caller: str, window_s: float) -> bool:
    """A cancel push: answered (the bridge), the caller gone, or the wait over. Once per
    call, whichever path asks first (``kl:appcancel:<call_id>``); False if already asked."""
    if not await redis.set(CANCELLED_KEY.format(call_id=call_id), "1", nx=True, ex=CANCELLED_KEEP_S):
        return False
    fields = wake_fields(call_id, phone, caller, window_s, CANCEL)
    await redis.xadd(WAKE_STREAM, fields, maxlen=STREAM_MAXLEN, approximate=True)  # type: ignore[arg-type]
    return True


@dataclass(frozen=True)
class LegWait:
    """What a woken call's legs need, passed down from the caller's channel (inherited
    ``KINLINE_APP_WAIT``: "<call id> <phone> <window's end, epoch ms>")."""

    call_id: str
    phone: str
    deadline_ms: int

    def encode(self) -> str:
        return f"{self.call_id} {self.phone} {self.deadline_ms}"

    @classmethod
    def decode(cls, text: str) -> LegWait | None:
        parts = text.split()
        if len(parts) != 3 or not parts[2].isdigit() or not parts[1].startswith("+"):
            return None
        return cls(parts[0], parts[1], int(parts[2]))


class AppRouting:
    """What plan_and_dial and after_dial need for app calls (wired in agi/main.py)."""

    def __init__(self, redis: aioredis.Redis, devices: AppDevices, *, window_s: float = WINDOW_S,
                 ring_s: int = RING_S, apps_node: AppsNode | None = None, relay_endpoint: str = "") -> None:
        """``apps_node`` and ``relay_endpoint``: on a cluster's node that is not the apps'
        node, where the apps register and how this node's dial plan reaches it."""
        self.redis = redis
        self.devices = devices
        self.window_s = window_s
        self.ring_s = ring_s
        self.relay = RelayedContacts(apps_node, relay_endpoint) if apps_node is not None else None

    def _contacts(self, channel: AgiChannel) -> Contacts:
        return self.relay if self.relay is not None else ChannelContacts(channel)

    async def target(self, channel: AgiChannel, caller: AgiCaller, plan: CallPlan, facility_name: str) -> Reach:
        """The contacts to dial for ``plan`` (waking the app if none is registered);
        the inmate hears "connecting to the app" and ringback while it waits."""
        return await self.reach_app(channel, caller, plan.call_id, plan.e164, facility_name)

    def _listening(self, call_id: str, phone: str, caller_name: str, device_id: str = "",
                   ) -> Callable[[], AbstractAsyncContextManager[RedisWake]]:
        @asynccontextmanager
        async def listening() -> AsyncIterator[RedisWake]:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(contact_channel(phone))  # before the push: no contact is missed
                wake = RedisWake(self.redis, pubsub, call_id, phone, caller_name, self.window_s, device_id)
                if device_id:
                    await wake.listen()
                yield wake
            finally:
                await asyncio.shield(pubsub.aclose())  # type: ignore[no-untyped-call, unused-ignore]  # typed from redis 8.2

        return listening

    async def reach_app(self, channel: AgiChannel, caller: AgiCaller, call_id: str, phone: str,
                        caller_name: str) -> Reach:
        """The contacts to dial for call ``call_id`` to the app of ``phone`` (E.164 with +),
        waking it if none is registered (the push shows ``caller_name``). Woken: one leg
        per device; the legs' wait is left on the channel (inherited by Dial's channels)
        and Dial's timeout is the rest of the window plus a leg's own ring time."""
        device_ids = await self.devices.active_devices(phone)
        try:
            found = await reach(device_ids, self._contacts(channel), self._listening(call_id, phone, caller_name),
                                Announcement(channel, caller), window_s=self.window_s)
        except AppsNodeUnavailable as err:  # a cluster's apps' node down: the app cannot be reached
            channel.log.error("app of %s...: not reached: %s", phone[:5], err)
            return Reach("", (), False, "apps' node unavailable")
        channel.log.info("app of %s...: %s, %d device(s) to dial of %d%s", phone[:5], found.outcome,
                         len(found.dialed), len(device_ids), " (through the apps' node)" if self.relay else "")
        if found.outcome == "woken":
            wait = LegWait(call_id, phone, now_ms() + int(found.left_s * 1000))
            await channel.set_variable(f"__{v.APP_WAIT}", wait.encode())
            await channel.set_variable(v.RING_S, self.ring_s + math.ceil(found.left_s))
        elif found.target and self.relay is not None:
            # Registered: the apps' node's legs dial the contacts it lists now, no wait.
            await channel.set_variable(f"__{v.APP_WAIT}", LegWait(call_id, phone, now_ms()).encode())
        return found

    async def leg(self, channel: AgiChannel, device_id: str) -> str:
        """On a woken call's leg (its own Local channel): the device's contacts once
        listed, within the window ('' = none: the leg ends and the others ring on).
        The leg's INVITE names the call (``KINLINE_LEG_CALL_ID``, from the wait)."""
        wait = LegWait.decode(await channel.get_variable(v.APP_WAIT) or "")
        if wait is None or not is_device_id(device_id):
            channel.log.error("app leg %r without its call's wait: nothing to dial", device_id)
            return ""
        await channel.set_variable(v.LEG_CALL_ID, wait.call_id)
        found = await ring_leg(device_id, ChannelContacts(channel),  # on the apps' node: its own contacts
                               self._listening(wait.call_id, wait.phone, "", device_id), ChannelLine(channel),
                               left_s=(wait.deadline_ms - now_ms()) / 1000)
        channel.log.info("call %s: app device %s: %s", wait.call_id, device_id, found.outcome)
        return found.target

    async def invite_sent(self, channel: AgiChannel, call_id: str) -> None:
        """On each app channel, just before its INVITE (Dial's pre-dial handler)."""
        device_id = device_of_endpoint(await channel.get_variable(v.ENDPOINT) or "")
        if device_id is None:
            channel.log.error("call %s: app_invite on a channel that is no app's", call_id)
            return
        await records.record(self.redis, call_id, records.AttemptEvent(records.INVITE_SENT, now_ms(),
                                                                         device_id=device_id))

    async def answered(self, channel: AgiChannel, caller_channel: str, call_id: str) -> None:
        """At the bridge, on the answering app's leg: record who answered and when, and
        cancel the push (devices woken but not dialed stop ringing)."""
        result = await channel.command("GET FULL VARIABLE", v.PLAN_EXPR, caller_channel)
        plan = plan_from_text(result.data) if result.result == 1 and result.data else None
        if plan is None or plan.call_id != call_id or plan.route_kind != RouteKind.APP_AUDIO.value:
            channel.log.error("call %s: no app plan on %s: nothing recorded", call_id, caller_channel)
            return
        endpoint = await channel.get_variable(v.ENDPOINT) or ""
        at = await channel.get_variable(v.BRIDGE_STAMP) or ""
        await records.record(self.redis, call_id, records.AttemptEvent(
            records.ANSWERED, int(at) if at.isdigit() else now_ms(),
            device_id=device_of_endpoint(endpoint) or ""))
        await cancel_wake(self.redis, call_id, plan.e164, "", self.window_s)

    async def relay_answered(self, channel: AgiChannel, call_id: str) -> None:
        """On the apps' node, at the answer of an app dialed for another node's call (its
        relay: the wait on the channel names the call and the relative): record who answered
        and cancel the push, as ``answered`` does where the caller is."""
        wait = LegWait.decode(await channel.get_variable(v.APP_WAIT) or "")
        device_id = device_of_endpoint(await channel.get_variable(v.ENDPOINT) or "")
        if wait is None or wait.call_id != call_id or device_id is None:
            channel.log.error("call %s: app_relay_answered without the call's wait or on no app's channel", call_id)
            return
        await records.record(self.redis, call_id, records.AttemptEvent(records.ANSWERED, now_ms(), device_id=device_id))
        await cancel_wake(self.redis, call_id, wait.phone, "", self.window_s)

    async def after_dial(self, plan: CallPlan) -> None:
        """After Dial, whatever happened: the cancel, if the bridge did not send it."""
        await cancel_wake(self.redis, plan.call_id, plan.e164, "", self.window_s)


def make_app_answered(app: AppRouting) -> Route:
    """``app_answered`` (dialplan kinline-callee, on an app's leg at the bridge; arguments:
    the caller's channel and the call id)."""
    async def app_answered(channel: AgiChannel, env: AgiEnvironment) -> None:
        if len(env.arguments) < 2:
            channel.log.error("app_answered needs the caller's channel and the call id")
            return
        await app.answered(channel, env.arguments[0], env.arguments[1])

    return app_answered


def make_app_relay_answered(app: AppRouting) -> Route:
    """``app_relay_answered`` (dialplan kinline-relay-answered, on the apps' node, on the app's
    channel at its answer; argument: the call id)."""
    async def app_relay_answered(channel: AgiChannel, env: AgiEnvironment) -> None:
        if not env.arguments:
            channel.log.error("app_relay_answered needs the call id")
            return
        await app.relay_answered(channel, env.arguments[0])

    return app_relay_answered


def make_app_leg(app: AppRouting) -> Route:
    """``app_leg`` (dialplan kinline-app-leg; argument: the device id): leaves the
    device's contacts in ``KINLINE_LEG_TARGET`` and its ring time, or nothing."""
    async def app_leg(channel: AgiChannel, env: AgiEnvironment) -> None:
        target = await app.leg(channel, env.arguments[0] if env.arguments else "")
        if target:
            await channel.set_variable(v.LEG_RING_S, app.ring_s)
            await channel.set_variable(v.LEG_TARGET, target)

    return app_leg


def make_app_invite(app: AppRouting) -> Route:
    """``app_invite`` (dialplan kinline-predial, on an app's channel; argument: the call id)."""
    async def app_invite(channel: AgiChannel, env: AgiEnvironment) -> None:
        if not env.arguments:
            channel.log.error("app_invite needs the call id")
            return
        await app.invite_sent(channel, env.arguments[0])

    return app_invite


class StoreDevices:
    """The relative's active devices from the device registry (store/devices.py)."""

    def __init__(self, store: DeviceStore) -> None:
        self.store = store

    async def active_devices(self, phone: str) -> list[str]:
        return [d.device_id for d in await self.store.devices(phone) if d.active]
