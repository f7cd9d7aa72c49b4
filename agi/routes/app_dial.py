"""Calls to the relative's app ("00"): what plan_and_dial dials instead of the trunk.

The contacts come from Asterisk (``PJSIP_DIAL_CONTACTS(app-<device>)`` on the caller's
channel), the wake goes to the push bridge through Redis (XADD ``kl:wake``, after the
SUBSCRIBE to ``kl:contact:<phone>``), and the attempt's steps (INVITE sent, answered)
go to ``kl:wakeattempt:<call_id>`` (store/wake_records.py). The logic is ivr/app_call.py."""

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
from agi.protocol import AgiEnvironment, AgiHangup
from agi.server import Route
from ivr import prompts as p
from ivr.app_call import GRACE_S, WINDOW_S, AppDevices, Reach, reach
from ivr.call_plan import CallPlan, plan_from_json
from ivr.tariffs import RouteKind
from store import wake_records as records
from store.app_wake import CANCEL, STREAM_MAXLEN, WAKE, WAKE_STREAM, contact_channel, wake_fields
from store.devices import DeviceStore

log = logging.getLogger(__name__)

APP_ENDPOINT = "app-{device_id}"
CANCELLED_KEY = "kl:appcancel:{call_id}"
CANCELLED_KEEP_S = 3600


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

    async def _xadd(self, kind: str) -> None:
        fields = wake_fields(self.call_id, self.phone, self.caller, self.window_s, kind)
        await self.redis.xadd(WAKE_STREAM, fields, maxlen=STREAM_MAXLEN, approximate=True)  # type: ignore[arg-type]

    async def push(self) -> None:
        await self._xadd(WAKE)

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


async def cancel_wake(redis: aioredis.Redis, call_id: str, phone: str, caller: str, window_s: float) -> bool:
    """A cancel push: answered (the bridge), the caller gone, or the wait over. Once per
    call, whichever path asks first (``kl:appcancel:<call_id>``); False if already asked."""
    if not await redis.set(CANCELLED_KEY.format(call_id=call_id), "1", nx=True, ex=CANCELLED_KEEP_S):
        return False
    fields = wake_fields(call_id, phone, caller, window_s, CANCEL)
    await redis.xadd(WAKE_STREAM, fields, maxlen=STREAM_MAXLEN, approximate=True)  # type: ignore[arg-type]
    return True


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
        return await self.reach_app(channel, caller, plan.call_id, plan.e164, facility_name)

    async def reach_app(self, channel: AgiChannel, caller: AgiCaller, call_id: str, phone: str,
                        caller_name: str) -> Reach:
        """The contacts to dial for call ``call_id`` to the app of ``phone`` (E.164 with +),
        waking it if none is registered (the push shows ``caller_name``)."""
        device_ids = await self.devices.active_devices(phone)
        contacts = ChannelContacts(channel)

        @asynccontextmanager
        async def waking() -> AsyncIterator[RedisWake]:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(contact_channel(phone))  # before the push: no contact is missed
                yield RedisWake(self.redis, pubsub, call_id, phone, caller_name, self.window_s)
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
                    # Ringback: "Ringing" on the answered channel makes the core play the
                    # zone's ring tone (app_playtones is not loaded); the next prompt or
                    # Dial's own ringback replaces it.
                    await channel.exec("Ringing")
                return await ChannelLine(channel).still_there()

        found = await reach(device_ids, contacts, waking, Announced(), window_s=self.window_s, grace_s=self.grace_s)
        channel.log.info("app of %s...: %s, %d device(s) to dial of %d", phone[:5], found.outcome,
                         len(found.dialed), len(device_ids))
        if found.target:
            now = time.time_ns() // 1_000_000
            await records.record(self.redis, call_id, *(
                records.AttemptEvent(records.INVITE_SENT, now, device_id=d) for d in found.dialed))
        return found

    async def answered(self, channel: AgiChannel, caller_channel: str, call_id: str) -> None:
        """At the bridge, on the answering app's leg: record who answered and when, and
        cancel the push (devices woken but not dialed stop ringing)."""
        result = await channel.command("GET FULL VARIABLE", v.PLAN_EXPR, caller_channel)
        plan = plan_from_json(result.data) if result.result == 1 and result.data else None
        if plan is None or plan.call_id != call_id or plan.route_kind != RouteKind.APP_AUDIO.value:
            channel.log.error("call %s: no app plan on %s: nothing recorded", call_id, caller_channel)
            return
        endpoint = await channel.get_variable(v.ENDPOINT) or ""
        at = await channel.get_variable(v.BRIDGE_STAMP) or ""
        await records.record(self.redis, call_id, records.AttemptEvent(
            records.ANSWERED, int(at) if at.isdigit() else time.time_ns() // 1_000_000,
            device_id=endpoint.removeprefix(APP_ENDPOINT.format(device_id=""))))
        await cancel_wake(self.redis, call_id, plan.e164, "", self.window_s)

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


class StoreDevices:
    """The relative's active devices from the device registry (store/devices.py)."""

    def __init__(self, store: DeviceStore) -> None:
        self.store = store

    async def active_devices(self, phone: str) -> list[str]:
        return [d.device_id for d in await self.store.devices(phone) if d.active]
