"""New contacts of the app: AMI `ContactStatus` events (class system, which the read-only
AMI user receives) for an AOR `app-<device_id>` are published to the relative's channel
and kept as the device's reachability, with no polling.

    PUBLISH kl:contact:<phone> {"device_id", "uri", "status", "ts"}   (ts: epoch ms)
    kl:reach:<device_id> = the contact URI, TTL `reach_ttl`; deleted when it goes

Created, Reachable, Updated (a re-registration) and NonQualified mean the app can be
called; Removed and Unreachable that it cannot; Unknown changes nothing. The TTL bounds a stale key if the Removed
event was missed (the bridge down): set it a little above the contacts' expiration."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ami.protocol import AmiMessage
from pushbridge.devices import DeviceDirectory
from pushbridge.errors import DirectoryError
from pushbridge.inflight import InFlight
from store import wake_records as records
from store.app_wake import contact_channel, reach_key

log = logging.getLogger(__name__)

APP_AOR_PREFIX = "app-"
# Asterisk 22's labels: Created, Updated (core), Reachable, Unreachable, NonQualified (registered,
# qualify off), Unknown (not yet qualified), Removed (res_pjsip).
REACHABLE = frozenset({"Created", "Reachable", "Updated", "NonQualified"})
GONE = frozenset({"Removed", "Unreachable"})
AUTHENTICATED = "Authenticated"  # our own status: a SuccessfulAuth hint (see contact_event)
PHONE_CACHE_MAX = 10_000


@dataclass(frozen=True)
class ContactEvent:
    device_id: str
    uri: str
    status: str
    aor: str

    @property
    def reachable(self) -> bool:
        return self.status in REACHABLE

    @property
    def gone(self) -> bool:
        return self.status in GONE

    @property
    def registering(self) -> bool:
        """A contact came or is coming: what a waiting call is told."""
        return self.reachable or self.status == AUTHENTICATED


def contact_event(message: AmiMessage) -> ContactEvent | None:
    """The app contact an AMI event reports, or None (another event, another AOR).

    Besides ContactStatus, a PJSIP SuccessfulAuth (class security) of an app's account is a
    hint, status `Authenticated`: the app just authenticated a request, in practice its
    REGISTER, whose contact Asterisk stores in the same breath. Asterisk publishes
    ContactStatus only for endpoints its qualify set-up knows, and with the realtime
    tables' allow_unqualified_fetch=no it knows no app endpoint: then the hint is the only
    event. It says nothing of reachability (an unREGISTER authenticates too): no reach key."""
    if message.event == "SuccessfulAuth":
        account = message.get("AccountID")
        if message.get("Service") != "PJSIP" or not account.startswith(APP_AOR_PREFIX):
            return None
        device_id = account[len(APP_AOR_PREFIX):]
        if not device_id or len(device_id) > 64 or not device_id.isprintable():
            return None
        return ContactEvent(device_id, "", AUTHENTICATED, account)
    if message.event != "ContactStatus":
        return None
    aor = message.get("AOR")
    device_id = aor[len(APP_AOR_PREFIX):] if aor.startswith(APP_AOR_PREFIX) else ""
    status = message.get("ContactStatus")
    if not device_id or not status or len(device_id) > 64 or not device_id.isprintable():
        return None
    return ContactEvent(device_id, message.get("URI"), status, aor)


class ContactHandler:
    def __init__(self, redis: aioredis.Redis, directory: DeviceDirectory, inflight: InFlight, *,
                 reach_ttl: int = 330, clock: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self.directory = directory
        self.inflight = inflight
        self.reach_ttl = reach_ttl
        self.clock = clock
        self._phones: dict[str, str] = {}  # device id -> phone: a device never changes owner

    async def _phone(self, device_id: str) -> str | None:
        phone = self.inflight.phone_of(device_id) or self._phones.get(device_id)
        if phone is None:
            phone = await self.directory.phone_of(device_id)
            if phone is not None:
                if len(self._phones) >= PHONE_CACHE_MAX:
                    self._phones.clear()
                self._phones[device_id] = phone
        return phone

    async def handle(self, event: ContactEvent) -> bool:
        """Publish and keep the reach key in one round trip; True if published."""
        ms = int(self.clock() * 1000)
        try:
            phone = await self._phone(event.device_id)
        except DirectoryError as exc:
            log.error("device %s contact %s: whose device is unknown (%s): not published",
                      event.device_id, event.status, exc)
            phone = None
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                if phone is not None:
                    pipe.publish(contact_channel(phone), json.dumps(
                        {"device_id": event.device_id, "uri": event.uri, "status": event.status, "ts": ms}))
                if event.reachable:
                    pipe.set(reach_key(event.device_id), event.uri, ex=self.reach_ttl)
                elif event.gone:
                    pipe.delete(reach_key(event.device_id))
                if event.registering:
                    for pending in self.inflight.waiting_for(event.device_id):
                        if event.device_id not in pending.registered:
                            pending.registered.add(event.device_id)
                            records.add_to(pipe, pending.call_id, records.AttemptEvent(
                                records.CONTACT_REGISTERED, ms, event.device_id,
                                pending.devices[event.device_id].platform, event.status, event.uri))
                            log.info("call %s: device %s registered (%s)", pending.call_id, event.device_id, event.uri)
                await pipe.execute()
        except RedisError as exc:
            log.error("device %s contact %s: Redis failed: %s", event.device_id, event.status, exc)
            return False
        if phone is None:
            log.warning("device %s contact %s: no such device in the directory", event.device_id, event.status)
            return False
        log.debug("device %s contact %s %s published", event.device_id, event.status, event.uri)
        return True
