"""New contacts of the app, from AMI events (no polling), published to the relative's channel:

    PUBLISH kl:contact:<phone> {"device_id", "uri", "status", "ts", "source"}   (ts: epoch ms)

status: Created (a new contact stored), Updated (a re-REGISTER), Removed (an unREGISTER
or its expiry); Reachable, Unreachable, NonQualified when Asterisk sends ContactStatus;
Authenticated for a bare hint (below). source: registrar, contact_status or auth. A
waiting call dials on anything but Removed/Unreachable (`ContactEvent.registering`) and
asks Asterisk for the contacts itself (PJSIP_DIAL_CONTACTS): the message is a wake-up.
The wake service (pushbridge/wakes.py) publishes one more kind on the same channel, with
no device_id: Unwakeable for a call whose wake reached no device (store/app_wake.py).

Which events, measured on the stack's Asterisk 22.10 (Debian's package, the one the
production image installs) with an app REGISTERing on the apps' door
(`bench/app_wake_latency.py events`, offset 3, times after the app got its 200 OK):

- TestEvent AOR_CONTACT_ADDED / _REFRESHED / _REMOVED (class reporting), sent by
  res_pjsip_registrar once it has stored or deleted the contact, with its AOR and URI:
  -1.7 to +3.6 ms around it on REGISTER, re-REGISTER and unREGISTER (15 of 15;
  the app's socket and AMI race); on expiry
  (Expires: 60, not refreshed) REMOVED came at +88 s (res_pjsip prunes every 30 s).
  PJSIP_AOR(app-<id>,contact) listed the contact 0.4-9.6 ms (p50 1.8) after the event
  reached us, i.e. within our Getvar poll (one round trip every ~2 ms): a dialer woken
  by it finds the contact. These exist because Debian builds Asterisk with
  TEST_FRAMEWORK (`core show settings`: Build Options OPTIONAL_API, TEST_FRAMEWORK).
  The bridge trusts them.
- ContactStatus: none at all with sorcery.conf's allow_unqualified_fetch=no (pjsip_options.c
  publishes contact states through endpoint state compositors, which an app endpoint
  gets only from a fetch of every endpoint). With the endpoints' fetch allowed:
  NonQualified at +1.7 to +11.7 ms, Removed on unREGISTER, nothing on re-REGISTER, a
  later Reachable (and PeerStatus) when the first qualify came (+0.7 s); but Asterisk
  then boots in 6.5-7.0 s with 10 000 devices instead of 0.34-0.54 s (same box, same
  restart). Not worth it: the registrar events come first and say more. Still published
  if Asterisk sends them.
- SuccessfulAuth (class security), AccountID app-<id>: -4.0 to +1.8 ms, i.e. *before*
  the contact is stored (a dialer acting on it may find nothing yet), with no URI, and
  the same for an unREGISTER or any authenticated request. Used only as a fallback
  hint (status Authenticated) while this bridge has not seen a registrar event since
  it started: an Asterisk built without TEST_FRAMEWORK still wakes the waiting calls.

No reachability key is kept: nothing read it, and the API's status light asks Asterisk
(api/contacts.py)."""

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
from store.app_wake import contact_channel

log = logging.getLogger(__name__)

APP_AOR_PREFIX = "app-"
# res_pjsip_registrar's test events, as the ContactStatus labels a contact's arrival carries.
REGISTRAR = {"AOR_CONTACT_ADDED": "Created", "AOR_CONTACT_REFRESHED": "Updated", "AOR_CONTACT_REMOVED": "Removed"}
# Asterisk 22's ContactStatus labels: Created, Updated (core), Reachable, Unreachable,
# NonQualified (registered, qualify off), Unknown (not yet qualified), Removed (res_pjsip).
REACHABLE = frozenset({"Created", "Reachable", "Updated", "NonQualified"})
GONE = frozenset({"Removed", "Unreachable"})
# The AMI events contact_event reads (the stack's services' AMI user gets these and a few others only).
FOLLOWED_EVENTS = frozenset({"TestEvent", "ContactStatus", "SuccessfulAuth"})
AUTHENTICATED = "Authenticated"  # our own status: a SuccessfulAuth hint (see the module's docstring)
SOURCE_REGISTRAR, SOURCE_CONTACT_STATUS, SOURCE_AUTH = "registrar", "contact_status", "auth"
PHONE_CACHE_MAX = 10_000


@dataclass(frozen=True)
class ContactEvent:
    device_id: str
    uri: str
    status: str
    aor: str
    source: str = SOURCE_REGISTRAR

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


def _device(aor: str) -> str:
    device_id = aor[len(APP_AOR_PREFIX):] if aor.startswith(APP_AOR_PREFIX) else ""
    return device_id if device_id and len(device_id) <= 64 and device_id.isprintable() else ""


def contact_event(message: AmiMessage) -> ContactEvent | None:
    """The app contact an AMI event reports, or None (another event, another AOR)."""
    if message.event == "TestEvent":
        status = REGISTRAR.get(message.get("State"), "")
        device_id = _device(message.get("AOR"))
        if not status or not device_id:
            return None
        return ContactEvent(device_id, message.get("Contact"), status, message.get("AOR"), SOURCE_REGISTRAR)
    if message.event == "ContactStatus":
        status, device_id = message.get("ContactStatus"), _device(message.get("AOR"))
        if not status or not device_id:
            return None
        return ContactEvent(device_id, message.get("URI"), status, message.get("AOR"), SOURCE_CONTACT_STATUS)
    if message.event == "SuccessfulAuth" and message.get("Service") == "PJSIP":
        device_id = _device(message.get("AccountID"))
        return ContactEvent(device_id, "", AUTHENTICATED, message.get("AccountID"), SOURCE_AUTH) if device_id else None
    return None


class ContactHandler:
    def __init__(self, redis: aioredis.Redis, directory: DeviceDirectory, inflight: InFlight, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self.directory = directory
        self.inflight = inflight
        self.clock = clock
        self.registrar_seen = False  # then SuccessfulAuth hints are redundant and ignored
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
        """Publish (and record a waited-for device's first contact) in one round trip; True if published."""
        if event.source == SOURCE_AUTH and self.registrar_seen:
            return False
        if event.source == SOURCE_REGISTRAR and not self.registrar_seen:
            self.registrar_seen = True
            log.info("Asterisk sends registrar events: SuccessfulAuth hints are ignored from now on")
        ms = int(self.clock() * 1000)
        try:
            phone = await self._phone(event.device_id)
        except DirectoryError as exc:
            log.error("device %s contact %s: whose device is unknown (%s): not published",
                      event.device_id, event.status, exc)
            phone = None
        waiting = self.inflight.waiting_for(event.device_id) if event.registering else []
        fresh = [p for p in waiting if event.device_id not in p.registered]
        if phone is None and not fresh:
            log.warning("device %s contact %s: no such device in the directory", event.device_id, event.status)
            return False
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                if phone is not None:
                    pipe.publish(contact_channel(phone), json.dumps(
                        {"device_id": event.device_id, "uri": event.uri, "status": event.status, "ts": ms,
                         "source": event.source}))
                for pending in fresh:
                    pending.registered.add(event.device_id)
                    records.add_to(pipe, pending.call_id, records.AttemptEvent(
                        records.CONTACT_REGISTERED, ms, event.device_id,
                        pending.devices[event.device_id].platform, event.status, event.uri))
                    log.info("call %s: device %s registered (%s %s)", pending.call_id, event.device_id,
                             event.status, event.uri)
                await pipe.execute()
        except RedisError as exc:
            log.error("device %s contact %s: Redis failed: %s", event.device_id, event.status, exc)
            return False
        log.debug("device %s contact %s %s published", event.device_id, event.status, event.uri)
        return phone is not None
