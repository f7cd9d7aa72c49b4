"""The app call's wake over a real Redis (agi/routes/app_dial.py): listening before the
push, a contact published on kl:contact:<phone> ends the wait, the wake and the cancel
are entries of kl:wake the push bridge parses, and a call's cancel is asked once."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from agi.routes.app_dial import RedisWake, cancel_wake
from pushbridge.providers import Kind
from pushbridge.requests import parse_request
from store.app_wake import WAKE_STREAM, contact_channel
from store.redis_store import connect
from tests.component.conftest import RedisServer

PHONE = "+79161234567"


@pytest.fixture
async def redis(flushed: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = connect(flushed.url)
    try:
        yield client
    finally:
        await client.aclose()


async def test_a_contact_published_after_the_push_ends_the_wait(redis: aioredis.Redis) -> None:
    pubsub = redis.pubsub()
    await pubsub.subscribe(contact_channel(PHONE))
    try:
        wake = RedisWake(redis, pubsub, "call-1", PHONE, "Colony number one", 8)
        await wake.push()
        [(_, fields)] = await redis.xrange(WAKE_STREAM)
        request = parse_request(fields)
        assert (request.call_id, request.phone, request.caller, request.window_s, request.kind) == (
            "call-1", PHONE, "Colony number one", 8.0, Kind.WAKE)
        started = time.monotonic()
        assert not await wake.next_contact(0.3)  # nothing yet: bounded by its timeout
        assert 0.25 <= time.monotonic() - started < 2
        # The bridge publishes the new contact: it was listened to before the push.
        contact = {"device_id": "d1", "uri": "sip:x", "status": "Created"}
        await redis.publish(contact_channel(PHONE), json.dumps(contact))
        assert await wake.next_contact(2.0)
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]


async def test_another_relatives_contact_does_not_end_the_wait(redis: aioredis.Redis) -> None:
    pubsub = redis.pubsub()
    await pubsub.subscribe(contact_channel(PHONE))
    try:
        wake = RedisWake(redis, pubsub, "call-2", PHONE, "", 8)
        await redis.publish(contact_channel("+79031234567"), "{}")
        assert not await wake.next_contact(0.3)
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]


async def test_a_calls_cancel_is_asked_once_whoever_asks(redis: aioredis.Redis) -> None:
    pubsub = redis.pubsub()
    wake = RedisWake(redis, pubsub, "call-3", PHONE, "", 8)
    await wake.cancel()
    assert not await cancel_wake(redis, "call-3", PHONE, "", 8)  # the bridge's or after_dial's, later
    assert await cancel_wake(redis, "call-4", PHONE, "", 8)  # another call
    kinds = [(f["call_id"], parse_request(f).kind) for _, f in await redis.xrange(WAKE_STREAM)]
    assert kinds == [("call-3", Kind.CANCEL), ("call-4", Kind.CANCEL)]
    await pubsub.aclose()  # type: ignore[no-untyped-call]
