"""The free audio test calls in Redis: the per-relative limit and each call's record.

- ``kl:apptests:<phone>``: sorted set, one member per counted test call (its id), scored
  by when it was counted (epoch ms); expires with the window.
- ``kl:apptest:<call_id>``: hash ``phone``, ``language``, ``requested_ms``: what the
  switch's side (agi/routes/app_test.py) needs, kept two days. The call's steps (push
  sent, contact, INVITE sent, answered) are its wake records (store/wake_records.py).

The check and the count are one Lua script (``ivr.app_test.admit``'s rule), so concurrent
requests of one relative never pass the limit together. A call the switch ended without a
single wake step is uncounted and marked ``not_started`` by one script too (``NOT_STARTED``),
so a step written at that moment either keeps it counted or comes after the mark."""

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

# KEYS: the relative's counted calls, the call's wake records. ARGV: call_id, the
# not_started step (JSON), keep_s. A call with any wake step was tried: left as it is (0);
# else uncounted and its not_started step written (1). Once only: the step is a step.
NOT_STARTED = """
if redis.call('LLEN', KEYS[2]) > 0 then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
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
        self._not_started = redis.register_script(NOT_STARTED)

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

    async def not_started(self, phone: str, call_id: str, now_ms: int) -> bool:
        step = wake_records.AttemptEvent(wake_records.NOT_STARTED, now_ms, result="the switch did not start the call")
        done = await self._not_started(keys=[COUNT_KEY.format(phone=phone), wake_records.attempt_key(call_id)],
                                       args=[call_id, step.to_json(), wake_records.KEEP_S])
        return bool(int(done))

    async def counted_before(self, phone: str, before_ms: int) -> list[str]:
        found: list[str | bytes] = await self.redis.zrangebyscore(  # type: ignore[assignment]
            COUNT_KEY.format(phone=phone), "-inf", f"({before_ms}")
        return [_text(item) for item in found]

    async def get(self, call_id: str) -> TestCallRecord | None:
        raw = {_text(k): _text(v) for k, v in (await self.redis.hgetall(CALL_KEY.format(call_id=call_id))).items()}
        if not raw.get("phone"):
            return None
        return TestCallRecord(call_id, raw["phone"], raw.get("language", ""), int(raw.get("requested_ms") or 0))

    async def steps(self, call_id: str) -> list[wake_records.AttemptEvent]:
        """The call's wake records: push sent, contact registered, INVITE sent, answered."""
        return await wake_records.read_attempts(self.redis, call_id)
