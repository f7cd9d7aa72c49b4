"""Lua scripts of the Redis store: every money movement is one of these.

Conventions shared by all scripts:

- every key a script touches is passed in KEYS (nothing is built inside);
- numbers handed to Redis commands go through ``s()`` (``%d``), never through
  Lua's float formatting, so large integers stay exact;
- money scripts return a table whose first element is a status word
  (``ok``, ``duplicate``, ``insufficient``, ``nocard``, ``conflict``...);
  the Python side turns the non-``ok`` words into typed errors;
- ledger entries go to the global stream and to the card's own stream in the
  same script, so both always agree.
"""

# Helpers every money script needs (cards here, relatives in store/relatives.py).
HELPERS = """
local function s(n) return string.format('%d', n) end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

# Prepended to the cards' money scripts.
_PRELUDE = HELPERS + """
-- A card's entry (ts card ref kind amount balance_after [note]) or, when
-- ``phone`` is given, a relative's (ts phone ref kind amount balance_after card [note]):
-- the payer of a call "01" is the relative (store/relatives.py streams).
local function ledger(kglobal, kown, ts, card, ref, kind, amount, after, note, phone)
  local f
  if phone and phone ~= '' then
    f = {'ts', s(ts), 'phone', phone, 'ref', ref, 'kind', kind,
         'amount', s(amount), 'balance_after', s(after), 'card', card}
  else
    f = {'ts', s(ts), 'card', card, 'ref', ref, 'kind', kind,
         'amount', s(amount), 'balance_after', s(after)}
  end
  if note and note ~= '' then
    table.insert(f, 'note')
    table.insert(f, note)
  end
  redis.call('XADD', kglobal, '*', unpack(f))
  redis.call('XADD', kown, '*', unpack(f))
end
"""

# KEYS: lock key, locks index. ARGV: uniqueid, ttl_s, card. Re-acquiring with
# the same uniqueid refreshes the TTL (idempotent); any other holder wins. The
# index (card -> uniqueid) lets the reconciler free locks whose call is gone;
# the TTL is only a last resort.
ACQUIRE_CARD = """
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  redis.call('HSET', KEYS[2], ARGV[3], ARGV[1])
  return 1
end
if cur then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[1])
return 1
"""

# KEYS: lock key, locks index. ARGV: uniqueid, card.
RELEASE_CARD = """
if redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[1] then
  redis.call('HDEL', KEYS[2], ARGV[2])
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# The payer's account is the card's hash, or for a call the relative pays
# ("01") the relative's (kl:rel:<phone>, same 'balance' field), with its ledgers.
#
# KEYS: payer account, res:{call}, settled:{call}, holds, payer's global ledger, payer's own ledger
# ARGV: call_id, card, amount, hold_ms, plan (JSON, kept for the reconciler),
# payer phone ('' when the card pays)
RESERVE = _PRELUDE + """
if redis.call('EXISTS', KEYS[3]) == 1 then return {'settled'} end
local r = redis.call('HMGET', KEYS[2], 'card', 'amount', 'balance_after', 'payer')
if r[1] then
  if r[1] ~= ARGV[2] or (r[4] or '') ~= ARGV[6] then return {'conflict', r[1]} end
  return {'ok', r[2], r[3]}
end
local bal = redis.call('HGET', KEYS[1], 'balance')
if not bal then return {'nocard'} end
local amount = tonumber(ARGV[3])
if tonumber(bal) < amount then return {'insufficient', bal} end
local after = redis.call('HINCRBY', KEYS[1], 'balance', s(-amount))
local now = now_ms()
local deadline = now + tonumber(ARGV[4])
redis.call('HSET', KEYS[2], 'card', ARGV[2], 'amount', s(amount), 'balance_after', s(after),
           'created', s(now), 'deadline', s(deadline), 'plan', ARGV[5], 'payer', ARGV[6])
redis.call('ZADD', KEYS[4], s(deadline), ARGV[1])
ledger(KEYS[5], KEYS[6], now, ARGV[2], ARGV[1], 'reserve', amount, after, '', ARGV[6])
return {'ok', s(amount), s(after)}
"""

# KEYS: payer account, res:{call}, settled:{call}, holds, payer's global ledger, payer's own ledger,
# cdr:{call}, card cdrs, cdr log (stream copied to the history database), the relative's spending
# on this card (zset "<charged>:<call_id>" by time; unused when the card pays)
# ARGV: call_id, card, amount wanted, CDR JSON without its closing amount,
# note for the charge entry (why it is less than the time answered; may be empty),
# payer phone ('' when the card pays)
SETTLE = _PRELUDE + """
local done = redis.call('HMGET', KEYS[3], 'charged', 'released', 'balance_after')
if done[1] then return {'duplicate', done[1], done[2], done[3]} end
local bal = redis.call('HGET', KEYS[1], 'balance')
if not bal then return {'nocard'} end
local r = redis.call('HMGET', KEYS[2], 'card', 'amount', 'payer')
if r[1] and (r[1] ~= ARGV[2] or (r[3] or '') ~= ARGV[6]) then return {'conflict', r[1]} end
local want = tonumber(ARGV[3])
local now = now_ms()
local charged, released, after
if r[1] then
  local held = tonumber(r[2])
  charged = math.min(want, held)
  released = held - charged
  ledger(KEYS[5], KEYS[6], now, ARGV[2], ARGV[1], 'charge', charged, tonumber(bal), ARGV[5], ARGV[6])
  after = redis.call('HINCRBY', KEYS[1], 'balance', s(released))
  ledger(KEYS[5], KEYS[6], now, ARGV[2], ARGV[1], 'release', released, after, '', ARGV[6])
else
  -- no hold (the reaper returned it, or none was made): charge what the
  -- balance can pay, never below zero
  charged = math.max(0, math.min(want, tonumber(bal)))
  released = 0
  after = redis.call('HINCRBY', KEYS[1], 'balance', s(-charged))
  ledger(KEYS[5], KEYS[6], now, ARGV[2], ARGV[1], 'charge', charged, after, ARGV[5], ARGV[6])
end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[4], ARGV[1])
local cdr = ARGV[4] .. s(charged) .. '}'
redis.call('SET', KEYS[7], cdr)
redis.call('LPUSH', KEYS[8], ARGV[1])
redis.call('XADD', KEYS[9], '*', 'call_id', ARGV[1], 'cdr', cdr)
if ARGV[6] ~= '' and charged > 0 then
  redis.call('ZADD', KEYS[10], s(now), s(charged) .. ':' .. ARGV[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[10], '-inf', s(now - 40 * 86400000))
end
redis.call('HSET', KEYS[3], 'card', ARGV[2], 'charged', s(charged), 'released', s(released),
           'balance_after', s(after), 'ts', s(now))
return {'ok', s(charged), s(released), s(after)}
"""

# KEYS: payer account, res:{call}, settled:{call}, holds, payer's global ledger, payer's own ledger
# ARGV: call_id, card, now_ms, payer phone ('' when the card pays). Returns 1 released, 0 dropped from the holds
# (settled meanwhile, or no reservation), 2 not due yet (left in place), -1 the
# hold belongs to another card than the caller read (read again).
RELEASE_HOLD = _PRELUDE + """
local r = redis.call('HMGET', KEYS[2], 'card', 'amount', 'deadline')
if not r[1] then
  redis.call('ZREM', KEYS[4], ARGV[1])
  return 0
end
if r[1] ~= ARGV[2] then return -1 end
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('DEL', KEYS[2])
  redis.call('ZREM', KEYS[4], ARGV[1])
  return 0
end
if tonumber(r[3]) > tonumber(ARGV[3]) then return 2 end
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('hold of a missing account: ' .. ARGV[2]) end
local amount = tonumber(r[2])
local after = redis.call('HINCRBY', KEYS[1], 'balance', s(amount))
ledger(KEYS[5], KEYS[6], now_ms(), ARGV[2], ARGV[1], 'release', amount, after, '', ARGV[4])
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[4], ARGV[1])
return 1
"""

# KEYS: card, payment:{id}, ledger, card ledger
# ARGV: payment_id, card, amount, kind (topup|refund)
PAYMENT = _PRELUDE + """
local p = redis.call('HMGET', KEYS[2], 'card', 'kind')
if p[1] then
  if p[1] ~= ARGV[2] or p[2] ~= ARGV[4] then return {'conflict', p[1], p[2]} end
  return {'duplicate', redis.call('HGET', KEYS[1], 'balance')}
end
local bal = redis.call('HGET', KEYS[1], 'balance')
if not bal then return {'nocard'} end
local amount = tonumber(ARGV[3])
local delta = amount
if ARGV[4] == 'refund' then
  if tonumber(bal) < amount then return {'insufficient', bal} end
  delta = -amount
end
local after = redis.call('HINCRBY', KEYS[1], 'balance', s(delta))
local now = now_ms()
redis.call('HSET', KEYS[2], 'card', ARGV[2], 'kind', ARGV[4], 'amount', s(amount),
           'balance_after', s(after), 'ts', s(now))
ledger(KEYS[3], KEYS[4], now, ARGV[2], ARGV[1], ARGV[4], amount, after)
return {'ok', s(after)}
"""

# KEYS: card, inmate's card set, ledger, card ledger
# ARGV: number, inmate_id, facility_id, pin_hash, language, status, opening balance, create_only
PUT_CARD = _PRELUDE + """
local old = redis.call('HGET', KEYS[1], 'inmate_id')
if old then
  if ARGV[8] == '1' then return {'exists'} end
  if old ~= ARGV[2] then return {'conflict', old} end
  redis.call('HSET', KEYS[1], 'facility_id', ARGV[3], 'pin_hash', ARGV[4],
             'language', ARGV[5], 'status', ARGV[6])
  return {'ok', redis.call('HGET', KEYS[1], 'balance')}
end
redis.call('HSET', KEYS[1], 'number', ARGV[1], 'inmate_id', ARGV[2], 'facility_id', ARGV[3],
           'pin_hash', ARGV[4], 'language', ARGV[5], 'status', ARGV[6], 'balance', '0')
redis.call('SADD', KEYS[2], ARGV[1])
local opening = tonumber(ARGV[7])
if opening > 0 then
  local after = redis.call('HINCRBY', KEYS[1], 'balance', s(opening))
  ledger(KEYS[3], KEYS[4], now_ms(), ARGV[1], 'open:' .. ARGV[1], 'adjust', opening, after)
  return {'ok', s(after)}
end
return {'ok', '0'}
"""

# KEYS: card, pin failures. ARGV: clear_failures (0|1), field, value, ...
UPDATE_CARD = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if #ARGV > 1 then redis.call('HSET', KEYS[1], unpack(ARGV, 2)) end
if ARGV[1] == '1' then redis.call('DEL', KEYS[2]) end
return 1
"""

# KEYS: card, card's allowed numbers. ARGV: e164, JSON (empty: remove).
SET_NUMBER = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if ARGV[2] == '' then return redis.call('HDEL', KEYS[2], ARGV[1]) end
return redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
"""

# KEYS: card, pin failures. ARGV: now_ms, unique token, window_ms, limit
PIN_FAILURE = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 0 end
local now = tonumber(ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[1] .. ':' .. ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', string.format('%d', now - tonumber(ARGV[3])))
redis.call('PEXPIRE', KEYS[2], ARGV[3])
local count = redis.call('ZCARD', KEYS[2])
if count >= tonumber(ARGV[4]) and status == 'active' then
  redis.call('HSET', KEYS[1], 'status', 'locked')
end
return count
"""

# KEYS: card. ARGV: old hash, new hash. Compare-and-set: a PIN changed
# meanwhile (CLI 'card pin') is never overwritten by an upgrade.
UPGRADE_PIN_HASH = """
if redis.call('HGET', KEYS[1], 'pin_hash') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'pin_hash', ARGV[2])
return 1
"""

# KEYS: terminal's failed logins. ARGV: now_ms, unique token, keep_ms.
# Returns the scores (ms) kept, oldest first.
LOGIN_FAILURE = """
local now = tonumber(ARGV[1])
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[1] .. ':' .. ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now - tonumber(ARGV[3])))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local kept = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local out = {}
for i = 2, #kept, 2 do out[#out + 1] = kept[i] end
return out
"""
