"""Calls to the relative's app ("00"): what plan_and_dial dials instead of the trunk.

The contacts come from Asterisk (``PJSIP_DIAL_CONTACTS(app-<device>)`` on the caller's
channel), the wake goes to the push bridge through Redis (XADD ``kl:wake``, after the
SUBSCRIBE to ``kl:contact:<phone>``), and the attempt's steps (INVITE sent, answered)
go to ``kl:wakeattempt:<call_id>`` (pushbridge/records.py). The logic is ivr/app_call.py."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis

from agi import variables as v
from agi.caller import AgiCaller
from agi.channel import AgiChannel
from agi.protocol import AgiHangup
from ivr import prompts as p
from ivr.app_call import GRACE_S, WINDOW_S, AppDevices, Reach, reach
from ivr.call_plan import CallPlan
from pushbridge import records
from pushbridge.contacts import contact_channel
from pushbridge.providers import Kind
from pushbridge.requests import STREAM_MAXLEN, WAKE_STREAM, wake_fields
from store.devices import DeviceStore

log = logging.getLogger(__name__)

APP_ENDPOINT = "app-{device_id}"
PEER_PREFIX = "PJSIP/app-"


class ChannelContacts:
    """Registered contacts as Asterisk knows them now (GET FULL VARIABLE on the caller)."""

    def __init__(self, channel: AgiChannel) -> None:
        self.channel = channel

    async def dial_string(self, device_id: str) -> str:
        endpoint = APP_ENDPOINT.format(device_id=device_id)
        result = await self.channel.command("GET FULL VARIABLE", f"${{PJSIP_DIAL_CONTACTS({endpoint})}}")
        return result.data if result.result == 1 else ""


class ChannelLine:
    def __init__(self, channel: AgiChannel) -> None:
        self.channel = channel

    async def still_there(self) -> bool:
        try:
            await self.channel.get_variable(v.CALL_ID)  # answered 511 (AgiHangup) once hung up
        except AgiHangup:
            return False
        return not self.channel.hung_up


class RedisWake:
    """Listening on kl:contact:<phone> (subscribed on entry), the wake and its cancel in kl:wake."""

    def __init__(self, redis: aioredis.Redis, pubsub: aioredis.client.PubSub, call_id: str, phone: str,
                 caller: str, window_s: float) -> None:
        self.redis = redis
        self.pubsub = pubsub
        self.call_id = call_id
        self.phone = phone
        self.caller = caller
        self.window_s = window_s
        self.cancelled = False

    async def _xadd(self, kind: Kind) -> None:
        fields = wake_fields(self.call_id, self.phone, self.caller, self.window_s, kind)
        await self.redis.xadd(WAKE_STREAM, fields, maxlen=STREAM_MAXLEN, approximate=True)  # type: ignore[arg-type]

    async def push(self) -> None:
        await self._xadd(Kind.WAKE)

    async def next_contact(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            message = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
            if message is not None and message.get("type") == "message":
                return True
        return False

    async def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            await cancel_wake(self.redis, self.call_id, self.phone, self.caller, self.window_s)


async def cancel_wake(redis: aioredis.Redis, call_id: str, phone: str, caller: str, window_s: float) -> None:
    """A cancel push: answered elsewhere, the caller gone, or the wait over."""
    fields = wake_fields(call_id, phone, caller, window_s, Kind.CANCEL)
    await redis.xadd(WAKE_STREAM, fields, maxlen=STREAM_MAXLEN, approximate=True)  # type: ignore[arg-type]


class AppRouting:
    """What plan_and_dial and after_dial need for app calls (wired in agi/main.py)."""

    def __init__(self, redis: aioredis.Redis, devices: AppDevices, *, window_s: float = WINDOW_S,
                 grace_s: float = GRACE_S) -> None:
        self.redis = redis
        self.devices = devices
        self.window_s = window_s
        self.grace_s = grace_s

    async def target(self, channel: AgiChannel, caller: AgiCaller, plan: CallPlan, facility_name: str) -> Reach:
        """The contacts to dial for ``plan`` (waking the app if none is registered);
        the inmate hears "connecting to the app" and ringback while it waits."""
        phone = plan.e164
        device_ids = await self.devices.active_devices(phone)
        contacts = ChannelContacts(channel)

        @asynccontextmanager
        async def waking() -> AsyncIterator[RedisWake]:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(contact_channel(phone))  # before the push: no contact is missed
                yield RedisWake(self.redis, pubsub, plan.call_id, phone, facility_name, self.window_s)
            finally:
                await asyncio.shield(pubsub.aclose())  # type: ignore[no-untyped-call]

        ringing = False

        class Announced:
            """The wake's line: says "connecting" and starts ringback once, then watches the caller."""

            async def still_there(self) -> bool:
                nonlocal ringing
                if not ringing:
                    ringing = True
                    await caller.play([p.APP_CONNECTING])
                    await channel.exec("Playtones", "ring")
                return await ChannelLine(channel).still_there()

        try:
            found = await reach(device_ids, contacts, waking, Announced(), window_s=self.window_s,
                                grace_s=self.grace_s)
        finally:
            if ringing and not channel.hung_up:
                await channel.exec("StopPlaytones")
        channel.log.info("app of %s...: %s, %d device(s) to dial of %d", phone[:5], found.outcome,
                         len(found.dialed), len(device_ids))
        if found.target:
            now = time.time_ns() // 1_000_000
            await records.record(self.redis, plan.call_id, *(
                records.AttemptEvent(records.INVITE_SENT, now, device_id=d) for d in found.dialed))
        return found

    async def after_dial(self, channel: AgiChannel, plan: CallPlan, status: str, facility_name: str) -> None:
        """After Dial: record who answered (at the bridge's time) and cancel the other devices' ringing."""
        bridged_at = await channel.get_variable(v.BRIDGED_AT) or ""
        peer = await channel.get_variable("DIALEDPEERNAME") or ""
        if status == "ANSWER" and bridged_at.isdigit() and peer.startswith(PEER_PREFIX):
            device_id = peer[len(PEER_PREFIX):].rsplit("-", 1)[0]
            await records.record(self.redis, plan.call_id,
                                 records.AttemptEvent(records.ANSWERED, int(bridged_at), device_id=device_id))
        await cancel_wake(self.redis, plan.call_id, plan.e164, facility_name, self.window_s)


class StoreDevices:
    """The relative's active devices from the device registry (store/devices.py)."""

    def __init__(self, store: DeviceStore) -> None:
        self.store = store

    async def active_devices(self, phone: str) -> list[str]:
        return [d.device_id for d in await self.store.devices(phone) if d.active]
