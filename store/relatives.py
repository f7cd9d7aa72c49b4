"""Redis implementation of ``ivr.ports.RelativeAccounts``, ``LoginCodes`` and ``Idempotency``.

Same discipline as the cards (store/lua.py): every money movement is one Lua
script, idempotent by its id, never below zero, with a ledger entry in the
relative's stream and the global relatives' stream (and, for a transfer, the
card's streams, in the same script).

Key layout (all under ``kl:``)::

    kl:rel:<phone>              hash   phone balance created (ms)
    kl:rel:<phone>:ledger       stream ts phone ref kind amount balance_after card
    kl:rel:<phone>:cards        hash   card -> CardSettings as JSON
    kl:rel-ledger               stream every relative's entries
    kl:relpay:<payment_id>      hash   phone amount status (pending|credited) created balance_after
    kl:relop:<op_id>            hash   kind phone card amount balance_after (transfers, refunds)
    kl:payout:<id>              hash   id phone amount status (requested|paid) created paid_at [note]
    kl:payouts                  zset   payout ids by creation time (ms)
    kl:auth:code:<phone>        hash   hash tries (expires after CODE_TTL_S)
    kl:auth:sent:<phone>        zset   codes issued in the last hour, score = ms
    kl:session:<sha256(token)>  string phone (expires after SESSION_TTL_S)
    kl:idem:<scope>             hash   fingerprint state (pending|done) status body (24 h; pending: 60 s)
    kl:auth:client:<address>    zset   codes asked from a client address in the last hour, score = ms
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from datetime import UTC, datetime, timedelta

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from ivr.errors import InsufficientFunds, NotFound, StoreConflict
from ivr.relatives import (
    CODE_TTL_S,
    CODES_PER_HOUR,
    SESSION_TTL_S,
    TRIES_PER_CODE,
    CardSettings,
    InactiveRefund,
    Payout,
    RelativeEntry,
    Transfer,
    check_amount,
    check_phone,
)
from store.lua import HELPERS
from store.redis_store import LEDGER, PREFIX, REL_LEDGER, _hash, _str, spent_key

log = logging.getLogger(__name__)


PAYOUTS = f"{PREFIX}payouts"
IDEMPOTENCY_TTL_S = 24 * 3600
PENDING_TTL_S = 60

_PRELUDE = HELPERS + """
local function rel_ledger(kglobal, kmine, ts, phone, ref, kind, amount, after, card)
  local f = {'ts', s(ts), 'phone', phone, 'ref', ref, 'kind', kind,
             'amount', s(amount), 'balance_after', s(after), 'card', card}
  redis.call('XADD', kglobal, '*', unpack(f))
  redis.call('XADD', kmine, '*', unpack(f))
end
"""

# KEYS: payment. ARGV: phone, amount. Creates a pending payment once.
CREATE_PAYMENT = _PRELUDE + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'phone', ARGV[1], 'amount', ARGV[2], 'status', 'pending', 'created', s(now_ms()))
return 1
"""

# KEYS: payment, account, its ledger, relatives' ledger. ARGV: payment_id, phone, amount
CREDIT_PAYMENT = _PRELUDE + """
local p = redis.call('HMGET', KEYS[1], 'phone', 'amount', 'status', 'balance_after')
if not p[1] then return {'nopayment'} end
if p[1] ~= ARGV[2] or p[2] ~= ARGV[3] then return {'conflict', p[2]} end
if p[3] == 'credited' then return {'duplicate', p[4]} end
if redis.call('EXISTS', KEYS[2]) == 0 then return {'noaccount'} end
local amount = tonumber(ARGV[3])
local after = redis.call('HINCRBY', KEYS[2], 'balance', s(amount))
local now = now_ms()
redis.call('HSET', KEYS[1], 'status', 'credited', 'balance_after', s(after), 'credited', s(now))
rel_ledger(KEYS[4], KEYS[3], now, ARGV[2], ARGV[1], 'topup', amount, after, '')
return {'ok', s(after)}
"""

# KEYS: op, account, its ledger, relatives' ledger, card, card's numbers, card ledger, ledger
# ARGV: op_id, phone, card, amount
TRANSFER = _PRELUDE + """
local o = redis.call('HMGET', KEYS[1], 'kind', 'phone', 'card', 'amount', 'balance_after')
if o[1] then
  if o[1] ~= 'transfer' or o[2] ~= ARGV[2] or o[3] ~= ARGV[3] or o[4] ~= ARGV[4] then return {'conflict'} end
  return {'duplicate', o[5]}
end
if redis.call('EXISTS', KEYS[5]) == 0 or redis.call('HEXISTS', KEYS[6], ARGV[2]) == 0 then return {'nocard'} end
local bal = redis.call('HGET', KEYS[2], 'balance')
if not bal then return {'noaccount'} end
local amount = tonumber(ARGV[4])
if tonumber(bal) < amount then return {'insufficient', bal} end
local after = redis.call('HINCRBY', KEYS[2], 'balance', s(-amount))
local card_after = redis.call('HINCRBY', KEYS[5], 'balance', s(amount))
local now = now_ms()
local ref = 'transfer:' .. ARGV[1]
rel_ledger(KEYS[4], KEYS[3], now, ARGV[2], ref, 'transfer', amount, after, ARGV[3])
local f = {'ts', s(now), 'card', ARGV[3], 'ref', ref, 'kind', 'topup',
           'amount', s(amount), 'balance_after', s(card_after)}
redis.call('XADD', KEYS[8], '*', unpack(f))
redis.call('XADD', KEYS[7], '*', unpack(f))
redis.call('HSET', KEYS[1], 'kind', 'transfer', 'phone', ARGV[2], 'card', ARGV[3], 'amount', ARGV[4],
           'balance_after', s(after), 'ts', s(now))
return {'ok', s(after)}
"""

# KEYS: op, account, its ledger, relatives' ledger, payout, payouts index
# ARGV: op_id, phone, amount
REFUND = _PRELUDE + """
local o = redis.call('HMGET', KEYS[1], 'kind', 'phone', 'amount')
if o[1] then
  if o[1] ~= 'refund' or o[2] ~= ARGV[2] or o[3] ~= ARGV[3] then return {'conflict'} end
  return {'duplicate'}
end
local bal = redis.call('HGET', KEYS[2], 'balance')
if not bal then return {'noaccount'} end
local amount = tonumber(ARGV[3])
if tonumber(bal) < amount then return {'insufficient', bal} end
local after = redis.call('HINCRBY', KEYS[2], 'balance', s(-amount))
local now = now_ms()
rel_ledger(KEYS[4], KEYS[3], now, ARGV[2], 'refund:' .. ARGV[1], 'refund', amount, after, '')
redis.call('HSET', KEYS[5], 'id', ARGV[1], 'phone', ARGV[2], 'amount', ARGV[3], 'status', 'requested',
           'created', s(now))
redis.call('ZADD', KEYS[6], s(now), ARGV[1])
redis.call('HSET', KEYS[1], 'kind', 'refund', 'phone', ARGV[2], 'amount', ARGV[3],
           'balance_after', s(after), 'ts', s(now))
return {'ok'}
"""

# KEYS: payout. Returns 0 unknown, 1 marked paid now, 2 already paid.
PAYOUT_PAID = _PRELUDE + """
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return 0 end
if st == 'paid' then return 2 end
redis.call('HSET', KEYS[1], 'status', 'paid', 'paid_at', s(now_ms()))
return 1
"""

# KEYS: codes issued, code. ARGV: now_ms, unique token, window_ms, limit, code hash, ttl_ms
ISSUE_CODE = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now - tonumber(ARGV[3])))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[1] .. ':' .. ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'hash', ARGV[5], 'tries', '0')
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return 1
"""

# KEYS: code, account, session. ARGV: code hash, tries allowed, phone, session ttl_s
CHECK_CODE = _PRELUDE + """
local c = redis.call('HMGET', KEYS[1], 'hash', 'tries')
if not c[1] then return 'expired' end
if tonumber(c[2]) >= tonumber(ARGV[2]) then return 'exhausted' end
if c[1] ~= ARGV[1] then
  redis.call('HINCRBY', KEYS[1], 'tries', 1)
  return 'wrong'
end
redis.call('DEL', KEYS[1])
redis.call('HSETNX', KEYS[2], 'phone', ARGV[3])
redis.call('HSETNX', KEYS[2], 'balance', '0')
redis.call('HSETNX', KEYS[2], 'created', s(now_ms()))
redis.call('SET', KEYS[3], ARGV[3], 'EX', ARGV[4])
return 'ok'
"""

# KEYS: idempotency record. ARGV: fingerprint, pending_ttl_s. A pending record
# lives only pending_ttl_s: if the server died mid-request, the key is free again
# then (the store's own operation id still makes the retry move money once).
IDEM_BEGIN = """
local r = redis.call('HMGET', KEYS[1], 'fingerprint', 'state', 'status', 'body')
if r[1] then
  if r[1] ~= ARGV[1] then return {'mismatch'} end
  if r[2] == 'done' then return {'done', r[3], r[4]} end
  return {'busy'}
end
redis.call('HSET', KEYS[1], 'fingerprint', ARGV[1], 'state', 'pending')
redis.call('EXPIRE', KEYS[1], ARGV[2])
return {'new'}
"""

# KEYS: idempotency record. ARGV: status, body, ttl_s
IDEM_FINISH = """
if redis.call('HGET', KEYS[1], 'state') ~= 'pending' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'done', 'status', ARGV[1], 'body', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""

# KEYS: idempotency record
IDEM_ABANDON = """
if redis.call('HGET', KEYS[1], 'state') == 'pending' then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _ms_to_dt(ms: str | int) -> datetime:
    return datetime.fromtimestamp(int(ms) / 1000, UTC)


def _card_key(card: str, sub: str = "") -> str:
    """The card keys of store/redis_store.py (same layout)."""
    return f"{PREFIX}card:{card}" + (f":{sub}" if sub else "")


def _words(result: object) -> list[str]:
    if not isinstance(result, list):
        raise TypeError(f"unexpected script result: {result!r}")
    return [str(x) for x in result]


class RelativeStore:
    """Relatives' accounts, login codes, sessions and idempotency records on Redis."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.redis = client
        self._create_payment = self._script(CREATE_PAYMENT)
        self._credit = self._script(CREDIT_PAYMENT)
        self._transfer = self._script(TRANSFER)
        self._refund = self._script(REFUND)
        self._payout_paid = self._script(PAYOUT_PAID)
        self._issue = self._script(ISSUE_CODE)
        self._check = self._script(CHECK_CODE)
        self._idem_begin = self._script(IDEM_BEGIN)
        self._idem_finish = self._script(IDEM_FINISH)
        self._idem_abandon = self._script(IDEM_ABANDON)
        self._take_slot = self._script(TAKE_SLOT)
        self._refund_inactive = self._script(REFUND_INACTIVE)

    def _script(self, source: str) -> AsyncScript:
        return self.redis.register_script(source)

    # keys
    @staticmethod
    def _account(phone: str, sub: str = "") -> str:
        return f"{PREFIX}rel:{phone}" + (f":{sub}" if sub else "")

    # --- accounts ------------------------------------------------------------

    async def balance(self, phone: str) -> int | None:
        raw = await self.redis.hget(self._account(check_phone(phone)), "balance")
        return None if raw is None else int(raw)

    async def entries(self, phone: str, limit: int = 50) -> list[RelativeEntry]:
        """The relative's ledger, newest first."""
        if limit <= 0:
            return []
        rows = await self.redis.xrevrange(self._account(check_phone(phone), "ledger"), count=limit) or []
        out = []
        for entry_id, raw in rows:
            f = _hash(raw)
            out.append(RelativeEntry(id=_str(entry_id or ""), ts=_ms_to_dt(f["ts"]), ref=f["ref"], kind=f["kind"],
                                     amount=int(f["amount"]), balance_after=int(f["balance_after"]),
                                     card=f.get("card", ""), note=f.get("note", "")))
        return out

    async def create_payment(self, payment_id: str, phone: str, amount: int) -> None:
        check_amount(amount)
        created = await self._create_payment(keys=[f"{PREFIX}relpay:{payment_id}"],
                                             args=[check_phone(phone), str(amount)])
        if int(created) != 1:
            raise StoreConflict(f"payment id already used: {payment_id}")

    async def credit_payment(self, payment_id: str, amount: int) -> tuple[bool, int]:
        key = f"{PREFIX}relpay:{payment_id}"
        raw_phone = await self.redis.hget(key, "phone")
        if raw_phone is None:
            raise NotFound(f"no payment {payment_id}")
        phone = _str(raw_phone)
        out = _words(await self._credit(
            keys=[key, self._account(phone), self._account(phone, "ledger"), REL_LEDGER],
            args=[payment_id, phone, str(amount)],
        ))
        if out[0] == "ok":
            return True, int(out[1])
        if out[0] == "duplicate":
            return False, int(out[1])
        if out[0] == "conflict":
            raise StoreConflict(f"payment {payment_id} is for {out[1]}, not {amount}")
        raise NotFound(f"payment {payment_id}: {out[0]}")

    async def card_allows(self, phone: str, card: str) -> bool:
        return bool(await self.redis.hexists(_card_key(card, "numbers"), check_phone(phone)))

    async def transfer(self, op_id: str, phone: str, card: str, amount: int) -> Transfer:
        check_amount(amount)
        out = _words(await self._transfer(
            keys=[f"{PREFIX}relop:{op_id}", self._account(check_phone(phone)), self._account(phone, "ledger"),
                  REL_LEDGER, _card_key(card), _card_key(card, "numbers"), _card_key(card, "ledger"), LEDGER],
            args=[op_id, phone, card, str(amount)],
        ))
        if out[0] in ("ok", "duplicate"):
            return Transfer(op_id=op_id, card=card, amount=amount, balance_after=int(out[1]))
        if out[0] == "insufficient":
            raise InsufficientFunds(f"balance {out[1]} < {amount}")
        if out[0] == "conflict":
            raise StoreConflict(f"operation {op_id} was another transfer")
        raise NotFound(f"transfer to {card}: {out[0]}")

    async def refund(self, op_id: str, phone: str, amount: int) -> Payout:
        check_amount(amount)
        out = _words(await self._refund(
            keys=[f"{PREFIX}relop:{op_id}", self._account(check_phone(phone)), self._account(phone, "ledger"),
                  REL_LEDGER, f"{PREFIX}payout:{op_id}", PAYOUTS],
            args=[op_id, phone, str(amount)],
        ))
        if out[0] == "insufficient":
            raise InsufficientFunds(f"balance {out[1]} < {amount}")
        if out[0] == "conflict":
            raise StoreConflict(f"operation {op_id} was another movement")
        if out[0] == "noaccount":
            raise NotFound(f"no account {phone}")
        payout = await self.payout(op_id)
        if payout is None:
            raise NotFound(f"payout {op_id} is gone")
        return payout

    async def card_settings(self, phone: str, card: str) -> CardSettings | None:
        raw = await self.redis.hget(self._account(check_phone(phone), "cards"), card)
        if raw is None:
            return None
        data = json.loads(raw)
        return CardSettings(always_in_touch=bool(data["always_in_touch"]), cap_day=data["cap_day"],
                            cap_month=data["cap_month"], blocked=bool(data["blocked"]))

    async def put_card_settings(self, phone: str, card: str, settings: CardSettings) -> None:
        data = {"always_in_touch": settings.always_in_touch, "cap_day": settings.cap_day,
                "cap_month": settings.cap_month, "blocked": settings.blocked}
        await self.redis.hset(self._account(check_phone(phone), "cards"), card, json.dumps(data, sort_keys=True))

    # --- calls the relative pays ("01"; reserve and settle are store/redis_store.py's) ---

    async def spent_since(self, phone: str, card: str, since: datetime) -> int:
        """What calls from ``card`` cost the relative since ``since`` (settled charges)."""
        since_ms = int(since.timestamp() * 1000)
        members: list[bytes | str] = await self.redis.zrangebyscore(  # type: ignore[assignment]
            spent_key(check_phone(phone), card), since_ms, "+inf")
        return sum(int(_str(m).split(":", 1)[0]) for m in members)

    async def paying_relatives(self, card: str) -> list[str]:
        """The numbers on the card's approved list whose relative lets the
        inmate call at their expense (always in touch, not blocked)."""
        phones = sorted(_str(p) for p in await self.redis.hkeys(_card_key(card, "numbers")))
        if not phones:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for phone in phones:
                pipe.hget(self._account(phone, "cards"), card)
            raws = await pipe.execute()
        out = []
        for phone, raw in zip(phones, raws, strict=True):
            if raw is None:
                continue
            data = json.loads(raw)
            if data["always_in_touch"] and not data["blocked"]:
                out.append(phone)
        return out

    # --- payouts (staff, CLI) ------------------------------------------------

    async def payout(self, payout_id: str) -> Payout | None:
        h = _hash(await self.redis.hgetall(f"{PREFIX}payout:{payout_id}"))
        if not h:
            return None
        return Payout(id=h["id"], phone=h["phone"], amount=int(h["amount"]), status=h["status"],
                      created=_ms_to_dt(h["created"]),
                      paid_at=_ms_to_dt(h["paid_at"]) if h.get("paid_at") else None, note=h.get("note", ""))

    async def payouts(self, limit: int = 100) -> list[Payout]:
        """Payout records, oldest first."""
        ids = await self.redis.zrange(PAYOUTS, 0, limit - 1)
        out = [await self.payout(str(i)) for i in ids]
        return [p for p in out if p is not None]

    async def mark_payout_paid(self, payout_id: str) -> bool:
        """True if it is marked paid now, False if it was already; NotFound if unknown."""
        done = int(await self._payout_paid(keys=[f"{PREFIX}payout:{payout_id}"], args=[]))
        if done == 0:
            raise NotFound(f"no payout {payout_id}")
        return done == 1

    # --- login codes and sessions ------------------------------------------

    async def issue_code(self, phone: str, code_hash: str, now: datetime) -> bool:
        ms = int(now.timestamp() * 1000)
        ok = await self._issue(
            keys=[f"{PREFIX}auth:sent:{check_phone(phone)}", f"{PREFIX}auth:code:{phone}"],
            args=[str(ms), secrets.token_hex(8), str(3600 * 1000), str(CODES_PER_HOUR), code_hash,
                  str(CODE_TTL_S * 1000)],
        )
        return int(ok) == 1

    async def check_code(self, phone: str, code_hash: str, token_hash: str) -> str:
        return str(await self._check(
            keys=[f"{PREFIX}auth:code:{check_phone(phone)}", self._account(phone), f"{PREFIX}session:{token_hash}"],
            args=[code_hash, str(TRIES_PER_CODE), phone, str(SESSION_TTL_S)],
        ))

    async def session_phone(self, token_hash: str) -> str | None:
        raw = await self.redis.get(f"{PREFIX}session:{token_hash}")
        return None if raw is None else str(raw)

    # --- idempotency records -------------------------------------------------

    async def begin(self, scope: str, fingerprint: str) -> tuple[str, int, str]:
        out = _words(await self._idem_begin(keys=[f"{PREFIX}idem:{scope}"],
                                            args=[fingerprint, str(PENDING_TTL_S)]))
        if out[0] == "done":
            return "done", int(out[1]), out[2]
        return out[0], 0, ""

    async def finish(self, scope: str, status: int, body: str) -> None:
        await self._idem_finish(keys=[f"{PREFIX}idem:{scope}"], args=[str(status), body, str(IDEMPOTENCY_TTL_S)])

    async def abandon(self, scope: str) -> None:
        await self._idem_abandon(keys=[f"{PREFIX}idem:{scope}"], args=[])

    # --- abuse limit per client address ---------------------------------------

    async def code_wait(self, phone: str, now: datetime) -> int:
        """Seconds until the oldest code of the last hour leaves the hour (at least 1)."""
        oldest = await self.redis.zrange(f"{PREFIX}auth:sent:{check_phone(phone)}", 0, 0, withscores=True)
        if not oldest:
            return 1
        wait_ms = int(oldest[0][1]) + 3600 * 1000 - int(now.timestamp() * 1000)
        return max(1, -(-wait_ms // 1000))

    async def take_code_slot(self, client: str, now: datetime, limit: int) -> int:
        """Count one code request from ``client`` (an IP address) unless ``limit``
        were counted in the last hour: 0 if counted, else the seconds until a slot frees."""
        ms = int(now.timestamp() * 1000)
        wait_ms = int(await self._take_slot(
            keys=[f"{PREFIX}auth:client:{client}"],
            args=[str(ms), secrets.token_hex(8), str(3600 * 1000), str(limit)],
        ))
        return 0 if wait_ms == 0 else max(1, -(-wait_ms // 1000))

    # --- staff (CLI) ------------------------------------------------------------------

    async def all_card_settings(self, phone: str) -> dict[str, CardSettings]:
        """Every card the relative set something for, by card number."""
        raw = _hash(await self.redis.hgetall(self._account(check_phone(phone), "cards")))
        out = {}
        for card, text in sorted(raw.items()):
            data = json.loads(text)
            out[card] = CardSettings(always_in_touch=bool(data["always_in_touch"]), cap_day=data["cap_day"],
                                     cap_month=data["cap_month"], blocked=bool(data["blocked"]))
        return out

    # --- refund after inactivity (47 CFR 64.6130) ---------------------------------

    async def account_phones(self) -> list[str]:
        """Every relative's phone number (SCAN: the staff's hourly pass, not a request path)."""
        phones = []
        async for raw in self.redis.scan_iter(match=f"{PREFIX}rel:+*", count=1000):
            phone = _str(raw)[len(f"{PREFIX}rel:"):]
            if ":" not in phone:
                phones.append(phone)
        return sorted(phones)

    async def last_activity(self, phone: str) -> datetime | None:
        """When the account last moved (its newest ledger entry), or was opened; None: no account."""
        rows = await self.redis.xrevrange(self._account(check_phone(phone), "ledger"), count=1)
        if rows:
            return _ms_to_dt(_hash(rows[0][1])["ts"])
        created = await self.redis.hget(self._account(phone), "created")
        return None if created is None else _ms_to_dt(_str(created))

    async def refund_inactive(self, now: datetime, days: int, dry_run: bool = False) -> list[InactiveRefund]:
        """Move the whole balance of every account with money and no ledger entry for
        ``days`` to a payout record (entry kind refund, note "inactivity"). Each account is
        one script that checks again, so a call reserving the money meanwhile wins and the
        account is left alone; a second run finds nothing (the refund is activity)."""
        if days < 1:
            raise ValueError(f"days must be >= 1: {days}")
        cutoff = now - timedelta(days=days)
        done = []
        for phone in await self.account_phones():
            bal = await self.balance(phone)
            last = await self.last_activity(phone)
            if bal is None or bal <= 0 or last is None or last >= cutoff:
                continue
            if dry_run:
                done.append(InactiveRefund(phone, bal, last))
                continue
            last_ms = int(last.timestamp() * 1000)
            op_id = hashlib.sha256(f"inactive\x00{phone}\x00{last_ms}".encode()).hexdigest()[:32]
            out = _words(await self._refund_inactive(
                keys=[f"{PREFIX}relop:{op_id}", self._account(phone), self._account(phone, "ledger"), REL_LEDGER,
                      f"{PREFIX}payout:{op_id}", PAYOUTS],
                args=[op_id, phone, str(int(cutoff.timestamp() * 1000))],
            ))
            if out[0] == "ok":
                log.info("phone %s: %s refunded after inactivity since %s, payout %s", phone, out[1],
                         last.isoformat(), op_id)
                done.append(InactiveRefund(phone, int(out[1]), last, op_id))
            else:
                log.info("phone %s: not refunded after inactivity (%s)", phone, out[0])
        return done


# KEYS: the client's requests (zset). ARGV: now_ms, unique token, window_ms, limit.
# Returns 0 (counted) or the ms until the oldest request leaves the window.
TAKE_SLOT = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now - window))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[1] .. ':' .. ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 0
"""

# KEYS: op, account, its ledger, relatives' ledger, payout, payouts index
# ARGV: op_id, phone, cutoff_ms. The whole balance leaves an account whose newest
# ledger entry (or, with none, its creation) is older than cutoff_ms, checked here,
# in the same script that moves it: a reservation (an entry) in between wins.
REFUND_INACTIVE = _PRELUDE + """
if redis.call('EXISTS', KEYS[1]) == 1 then return {'duplicate'} end
local a = redis.call('HMGET', KEYS[2], 'balance', 'created')
if not a[1] then return {'noaccount'} end
local bal = tonumber(a[1])
if bal <= 0 then return {'empty'} end
local last = tonumber(a[2] or '0')
local newest = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
if newest[1] then
  local f = newest[1][2]
  for i = 1, #f, 2 do
    if f[i] == 'ts' then last = tonumber(f[i + 1]) end
  end
end
if last >= tonumber(ARGV[3]) then return {'active'} end
local now = now_ms()
redis.call('HSET', KEYS[2], 'balance', '0')
local f = {'ts', s(now), 'phone', ARGV[2], 'ref', 'refund:' .. ARGV[1], 'kind', 'refund',
           'amount', s(bal), 'balance_after', '0', 'card', '', 'note', 'inactivity'}
redis.call('XADD', KEYS[4], '*', unpack(f))
redis.call('XADD', KEYS[3], '*', unpack(f))
redis.call('HSET', KEYS[5], 'id', ARGV[1], 'phone', ARGV[2], 'amount', s(bal), 'status', 'requested',
           'created', s(now), 'note', 'inactivity')
redis.call('ZADD', KEYS[6], s(now), ARGV[1])
redis.call('HSET', KEYS[1], 'kind', 'refund', 'phone', ARGV[2], 'amount', s(bal), 'balance_after', '0',
           'ts', s(now))
return {'ok', s(bal)}
"""
