"""Serving wake requests: push every active device of the relative at once, deactivate dead
tokens, record every attempt; on a cancel, push a cancel to each device the wake reached.

Each device's push runs on its own (P's `push_all`, one device per call), so its result is
recorded as soon as it is known and a cancel that comes while another device is still being
retried reaches the devices already woken at once, and a late one as soon as it is woken.

A wake that reached no device (every push invalid_token or failed, no provider, no active
device, the registry unreadable) is told to the waiting call at once: Unwakeable on
`kl:contact:<phone>` for its call id, and `kl:unwakeable:<call_id>` for the window
(store/app_wake.py), so the inmate does not wait out the window. Never once a device's
push was delivered: that device may still register (and only it is pushed again)."""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import replace

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from pushbridge.devices import DeviceDirectory
from pushbridge.errors import DirectoryError
from pushbridge.inflight import InFlight, Pending
from pushbridge.providers import Device, Kind, Outcome, Platform, PushProvider, PushResult, push_all
from pushbridge.requests import WakeRequest
from store import wake_records as records
from store.app_wake import contact_channel, unwakeable_key, unwakeable_message
from store.wake_records import AttemptEvent

log = logging.getLogger(__name__)


# A data message (FCM, HMS) may be pushed again for the same call: the app keys on the call id.
# A VoIP push (APNs) is not: iOS wants each one reported to CallKit as a call.
REPUSH_PLATFORMS: frozenset[str] = frozenset({"fcm", "hms"})
REPUSH_MIN_LEFT_S = 3.0  # no repeat that would leave the app less than this to register


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


class WakeService:
    def __init__(self, redis: aioredis.Redis, directory: DeviceDirectory, providers: Mapping[Platform, PushProvider],
                 inflight: InFlight, *, repush_after: float = 0.0, clock: Callable[[], float] = time.time) -> None:
        """`repush_after` > 0: a woken FCM/HMS device whose contact has not come that many
        seconds after its push is pushed once more (a push the provider accepted may still be
        lost on the way to the phone); 0: never."""
        self.redis = redis
        self.repush_after = repush_after
        self.directory = directory
        self.providers = providers
        self.inflight = inflight
        self.clock = clock
        self._wakes: dict[str, asyncio.Task[None]] = {}

    def start(self, request: WakeRequest, read_at: float) -> asyncio.Task[None]:
        """Serve a request in a task of its own; a wake is known to a later cancel at once."""
        task = asyncio.create_task(self.handle(request, read_at), name=f"{request.kind}-{request.call_id}")
        if request.kind is Kind.WAKE:
            self._wakes[request.call_id] = task
            task.add_done_callback(functools.partial(self._forget, request.call_id))
        return task

    def _forget(self, call_id: str, task: asyncio.Task[None]) -> None:
        if self._wakes.get(call_id) is task:
            del self._wakes[call_id]

    async def handle(self, request: WakeRequest, read_at: float) -> None:
        read = AttemptEvent(records.REQUEST_READ, _ms(read_at), result=str(request.kind),
                            latency_ms=round(read_at * 1000 - request.ts_ms, 1))
        if request.expired(read_at):
            log.info("call %s: %s request read %.1f s after its window closed: dropped",
                     request.call_id, request.kind, read_at - request.deadline)
            await self._record(request.call_id, read, AttemptEvent(records.DROPPED, _ms(read_at),
                                                                   detail="window over"))
            return
        if request.kind is Kind.WAKE:
            await self._wake(request, read)
        else:
            await self._cancel(request, read)

    async def _wake(self, request: WakeRequest, read: AttemptEvent) -> None:
        if not self.providers:
            log.warning("call %s: no push provider configured: the app cannot be woken", request.call_id)
            await self._record(request.call_id, read, AttemptEvent(records.NO_PROVIDER, _ms(self.clock()),
                                                                   detail="pushes disabled"))
            await self._unwakeable(request, "pushes disabled")
            return
        try:
            devices = await self.directory.active_devices(request.phone)
        except DirectoryError as exc:
            log.error("call %s: devices of %s unknown: %s", request.call_id, request.phone, exc)
            await self._record(request.call_id, read, AttemptEvent(records.DIRECTORY_ERROR, _ms(self.clock()),
                                                                   detail=str(exc)[:200]))
            await self._unwakeable(request, "devices unknown")
            return
        if not devices:
            log.info("call %s: %s has no active device", request.call_id, request.phone)
            await self._record(request.call_id, read, AttemptEvent(records.NO_DEVICE, _ms(self.clock())))
            await self._unwakeable(request, "no active device")
            return
        pending = self.inflight.add(request, devices)
        log.info("call %s: waking %d device(s) of %s", request.call_id, len(devices), request.phone)
        _, *delivered = await asyncio.gather(
            self._record(request.call_id, read),
            *(self._wake_one(pending, device, request.call_id) for device in devices))
        if not any(delivered) and not pending.cancelled:
            await self._unwakeable(request, f"no push delivered to {len(devices)} device(s)")

    async def _unwakeable(self, request: WakeRequest, why: str) -> None:
        """Tell the waiting call that no device was woken and nothing more will be tried."""
        now = self.clock()
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.set(unwakeable_key(request.call_id), "1", ex=max(1, math.ceil(request.deadline - now)))
                pipe.publish(contact_channel(request.phone), unwakeable_message(request.call_id, _ms(now)))
                await pipe.execute()
        except RedisError as exc:
            log.error("call %s: unwakeable (%s) not told to the call (%s): it waits out its window",
                      request.call_id, why, exc)
            return
        log.info("call %s: unwakeable: %s", request.call_id, why)

    async def _wake_one(self, pending: Pending, device: Device, call_id: str) -> bool:
        """Push one device (and push it again later if need be); True if its first push was delivered."""
        sent = self.clock()
        if device.platform not in self.providers:
            log.warning("call %s: no %s provider configured for %s", call_id, device.platform, device)
            await self._record(call_id, AttemptEvent(records.PUSH_SENT, _ms(sent), device.device_id,
                                                     device.platform, records.NO_PROVIDER))
            return False
        [result] = await push_all(self.providers, [device], pending.request.wake())
        events = [self._push_event(records.PUSH_SENT, sent, result)]
        if result.outcome is Outcome.INVALID_TOKEN:
            events.append(await self._deactivate(device, result.reason, call_id))
        elif result.delivered:
            pending.woken.add(device.device_id)
        await self._record(call_id, *events)
        if result.delivered and pending.cancelled:
            log.info("call %s: %s woken after the cancel: cancelling it too", call_id, device)
            await self._send_cancels(pending.request, [device])
        elif result.delivered and self.repush_after > 0 and device.platform in REPUSH_PLATFORMS:
            await self._repush(pending, device, sent)
        return result.delivered

    async def _repush(self, pending: Pending, device: Device, sent: float) -> None:
        """Once, if the device's contact has not come `repush_after` s after its push."""
        at = sent + self.repush_after
        if pending.request.deadline - at < REPUSH_MIN_LEFT_S:
            return
        await asyncio.sleep(max(0.0, at - self.clock()))
        if pending.cancelled or device.device_id in pending.registered:
            return
        call_id = pending.call_id
        log.info("call %s: no contact from %s %.1f s after its push: pushing it again", call_id, device,
                 self.repush_after)
        again = self.clock()
        [result] = await push_all(self.providers, [device], pending.request.wake())
        event = self._push_event(records.PUSH_SENT, again, result)
        events = [replace(event, detail=f"repeat: {event.detail}"[:200])]
        if result.outcome is Outcome.INVALID_TOKEN:
            pending.woken.discard(device.device_id)
            events.append(await self._deactivate(device, result.reason, call_id))
        await self._record(call_id, *events)
        if result.delivered and pending.cancelled:
            await self._send_cancels(pending.request, [device])

    def _push_event(self, event: str, sent: float, result: PushResult) -> AttemptEvent:
        return AttemptEvent(event, _ms(sent), result.device.device_id, result.device.platform, str(result.outcome),
                            result.reason[:200] or result.message_id, result.attempts, round(result.elapsed * 1000, 1))

    async def _deactivate(self, device: Device, reason: str, call_id: str) -> AttemptEvent:
        now = _ms(self.clock())
        try:
            await self.directory.deactivate(device.device_id, f"{device.platform}: {reason}")
        except DirectoryError as exc:
            log.error("call %s: could not deactivate %s: %s", call_id, device, exc)
            return AttemptEvent(records.DEACTIVATED, now, device.device_id, device.platform, "failed", str(exc)[:200])
        log.warning("call %s: %s deactivated: its token is invalid (%s)", call_id, device, reason)
        return AttemptEvent(records.DEACTIVATED, now, device.device_id, device.platform, "done", reason[:200])

    async def _cancel(self, request: WakeRequest, read: AttemptEvent) -> None:
        """To each device the wake reached, but the one that answered (the call side records it)."""
        pending = self.inflight.get(request.call_id)
        if pending is not None:
            pending.cancelled = True
        try:
            events = await records.read_attempts(self.redis, request.call_id)
        except RedisError as exc:
            log.error("call %s: cancel: records unreadable (%s): cancelling every woken device", request.call_id, exc)
            events = []
        answered = {e.device_id for e in events if e.event == records.ANSWERED}
        if pending is not None:
            woken = [d for d_id, d in pending.devices.items() if d_id in pending.woken and d_id not in answered]
        else:
            woken = [d for d in await self._woken_from_records(request, events) if d.device_id not in answered]
        await self._record(request.call_id, read)
        if not woken:
            log.info("call %s: cancel: no device to cancel (woken and not the one that answered)", request.call_id)
            return
        await self._send_cancels(request, woken)

    async def _woken_from_records(self, request: WakeRequest, events: list[AttemptEvent]) -> list[Device]:
        """After a restart: the devices the records say took the wake, still active."""
        ids = {e.device_id for e in events if e.event == records.PUSH_SENT and e.result == Outcome.DELIVERED}
        if not ids:
            return []
        try:
            return [d for d in await self.directory.active_devices(request.phone) if d.device_id in ids]
        except DirectoryError as exc:
            log.error("call %s: cancel: devices of %s unknown: %s", request.call_id, request.phone, exc)
            return []

    async def _send_cancels(self, request: WakeRequest, devices: list[Device]) -> None:
        sent = self.clock()
        results = await push_all(self.providers, devices, request.cancel(sent))
        await self._record(request.call_id, *(self._push_event(records.CANCEL_SENT, sent, r) for r in results))

    async def _record(self, call_id: str, *events: AttemptEvent) -> None:
        try:
            await records.record(self.redis, call_id, *events)
        except RedisError as exc:  # the push went out; only its record is lost
            log.error("call %s: attempt records lost (%s): %s", call_id, exc, [e.event for e in events])
