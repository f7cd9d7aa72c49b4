"""The free audio test calls in Redis: the per-relative limit and each call's record.

- ``kl:apptests:<phone>``: sorted set, one member per counted test call (its id), scored
  by when it was counted (epoch ms); expires with the window.
- ``kl:apptest:<call_id>``: hash ``phone``, ``language``, ``requested_ms``: what the
  switch's side (agi/routes/app_test.py) needs, kept two days. The call's steps (push
  sent, contact, INVITE sent, answered) are its wake records (store/wake_records.py).

The check and the count are one Lua script (``ivr.app_test.admit``'s rule), so concurrent
requests of one relative never pass the limit together."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from ivr.app_test import Admission, TestCall, retry_after_s
from store import wake_records
from store.lua import HELPERS

COUNT_KEY = "kl:apptests:{phone}"
CALL_KEY = "kl:apptest:{call_id}"
KEEP_S = 2 * 24 * 3600

# KEYS: the relative's counted calls, the new call's record.
# ARGV: now_ms, window_ms, limit, call_id, phone, language, keep_s.
# Returns {1, '0', used} (counted and recorded) or {0, oldest_ms, used} (refused).
ADMIT = HELPERS + """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', s(now - window))
local n = redis.call('ZCARD', KEYS[1])
if n >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], n - limit, n - limit, 'WITHSCORES')
  return {0, oldest[2], n}
end
redis.call('ZADD', KEYS[1], s(now), ARGV[4])
redis.call('PEXPIRE', KEYS[1], s(window))
redis.call('HSET', KEYS[2], 'phone', ARGV[5], 'language', ARGV[6], 'requested_ms', s(now))
redis.call('EXPIRE', KEYS[2], ARGV[7])
return {1, '0', n + 1}
"""


@dataclass(frozen=True)
class TestCallRecord:
    __test__ = False  # not a pytest class

    call_id: str
    phone: str
    language: str
    requested_ms: int


def _text(item: str | bytes) -> str:
    return item.decode() if isinstance(item, bytes) else item


class RedisTestCalls:
    """``ivr.app_test.Limiter`` on Redis, and the calls' records for the switch's side."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._admit = redis.register_script(ADMIT)

    async def admit(self, phone: str, call: TestCall, now_ms: int, limit: int, window_s: int) -> Admission:
        allowed, oldest, used = await self._admit(
            keys=[COUNT_KEY.format(phone=phone), CALL_KEY.format(call_id=call.call_id)],
            args=[now_ms, window_s * 1000, limit, call.call_id, phone, call.language, KEEP_S])
        if int(allowed):
            return Admission(True, 0, int(used))
        return Admission(False, retry_after_s(int(float(_text(oldest))), now_ms, window_s), int(used))

    async def give_back(self, phone: str, call_id: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(COUNT_KEY.format(phone=phone), call_id)
            pipe.delete(CALL_KEY.format(call_id=call_id))
            await pipe.execute()

    async def get(self, call_id: str) -> TestCallRecord | None:
        raw = {_text(k): _text(v) for k, v in (await self.redis.hgetall(CALL_KEY.format(call_id=call_id))).items()}
        if not raw.get("phone"):
            return None
        return TestCallRecord(call_id, raw["phone"], raw.get("language", ""), int(raw.get("requested_ms") or 0))

    async def steps(self, call_id: str) -> list[wake_records.AttemptEvent]:
        """The call's wake records: push sent, contact registered, INVITE sent, answered."""
        return await wake_records.read_attempts(self.redis, call_id)
