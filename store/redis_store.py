"""Redis implementation of ``ivr.ports.Directory`` and ``ivr.ports.Wallet``.

Every money movement is one Lua script (store/lua.py): atomic, idempotent by
call or payment id, and written to the ledger. Redis errors are never
swallowed: they propagate, and callers refuse the call (fail closed).

Key layout (all under ``kl:``)::

    kl:facility:<id>            hash   id name timezone currency language schedule max_call_s
    kl:tariff:<facility>        string Tariff as JSON
    kl:inmate:<id>              hash   id name facility_id status permission_until suspended_until
    kl:inmate:<id>:cards        set    card numbers of the inmate
    kl:card:<n>                 hash   number inmate_id facility_id pin_hash language status balance
    kl:card:<n>:numbers         hash   e164 -> {"label", "privileged"} JSON
    kl:card:<n>:pinfail         zset   wrong PINs, score = time in ms (last 24 h)
    kl:terminal:<name>:loginfail zset  failed logins at a terminal, score = time in ms (ivr/throttle.py)
    kl:card:<n>:active          string uniqueid of the call holding the card (with TTL)
    kl:card:<n>:cdrs            list   call ids, newest first
    kl:card:<n>:ledger          stream the card's ledger entries
    kl:ledger                   stream every ledger entry: ts card ref kind amount balance_after [note]
    kl:res:<call_id>            hash   card amount balance_after created deadline (ms) plan (JSON)
                                       payer (the relative's phone when they pay, "01"; else empty)
    kl:locks                    hash   card -> uniqueid of the call holding it (for the reconciler)
    kl:ev:<call_id>             hash   what Asterisk proved of an attempt: bridged_ms ended_ms
                                       dial_status hangup_cause heartbeat_ms caller_gone_ms (7 days)
    kl:gone:<uniqueid>          string ms when Asterisk logged the channel's end (2 days)
    kl:cel:<node>               string bytes of the node's CEL log already read
    kl:holds                    zset   call_id by hold deadline (ms), for the reaper
    kl:settled:<call_id>        hash   card charged released balance_after ts
    kl:cdr:<call_id>            string CallRecord as JSON (amount = what was really charged)
    kl:payment:<payment_id>     hash   card kind amount balance_after ts
    kl:cdr-log                  stream every settled call: call_id cdr (copied to PostgreSQL by history/)
    kl:rel:<phone>:spent:<card> zset   "<charged>:<call_id>" by time (ms): what the card's calls cost
                                       the relative (their caps), last 40 days

A call the relative pays ("01") holds and charges the relative's balance
(``kl:rel:<phone>``, store/relatives.py) with the same scripts, and writes its
entries to the relative's ledgers instead of the card's.

Times inside Redis are integer milliseconds since the epoch; money is integer
minor units. Hold deadlines use the Redis server's clock (``TIME``).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError

from ivr.errors import InsufficientFunds, NotFound, PinHashError, StoreConflict
from ivr.model import (
    AllowedNumber,
    CallRecord,
    Card,
    CardStatus,
    Evidence,
    Facility,
    Inmate,
    InmateStatus,
    OpenAttempt,
    Reservation,
    Settlement,
)
from ivr.numbering import Payer
from ivr.pin import PinHasher
from ivr.ports import PIN_FAILURE_WINDOW_S, PIN_FAILURES_TO_LOCK, Attempts, Directory, Wallet
from ivr.tariffs import Rate, RouteKind, Tariff
from store import lua
from store.redis_wire import WireRedis

PREFIX = "kl:"
LEDGER = f"{PREFIX}ledger"
HOLDS = f"{PREFIX}holds"
REL_LEDGER = f"{PREFIX}rel-ledger"  # every relative's ledger entries (store/relatives.py)
CDR_LOG = f"{PREFIX}cdr-log"  # every settled call: call_id cdr (JSON), copied to the history database
LOCKS = f"{PREFIX}locks"
EVIDENCE_TTL_S = 7 * 24 * 3600
LEDGER_KINDS = ("topup", "reserve", "charge", "release", "refund", "adjust")
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_REAP_BATCH = 100
MAX_AMOUNT = 10**15  # minor units; keeps every sum exact in Lua's doubles


def connect(url: str) -> aioredis.Redis:
    """A client whose plain commands share one pipelined connection (store/redis_wire.py);
    pipelines, pub/sub and blocking commands use a blocking pool: under load a caller waits
    up to 2 s for a connection instead of failing at once. Every reply is awaited at most
    2 s (then RedisError propagates: the call is refused).

    After Redis restarts, every connection is stale: the wire's is replaced at once (the
    kernel closed it), a pooled one idle for a second is checked with a PING first, and a
    command that meets a dropped connection is sent once more on a new one. (A money script
    run twice moves nothing: each is idempotent by its id.)"""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=64,
        timeout=2,
        socket_timeout=2,
        socket_connect_timeout=2,
        decode_responses=True,
        health_check_interval=1,
        retry=Retry(NoBackoff(), 1),
        retry_on_error=[RedisConnectionError],
        protocol=2,  # WireRedis parses RESP2; the pool's connections speak the same
    )
    return WireRedis.from_pool(pool)


@dataclass(frozen=True)
class LedgerEntry:
    id: str  # stream entry id
    ts: datetime
    card: str
    ref: str  # call_id, payment id or "open:<card>"
    kind: str  # one of LEDGER_KINDS
    amount: int  # always >= 0; the kind says which way it moved
    balance_after: int
    note: str = ""  # why, when it needs saying (a dropped call's credited increment)


# --- (de)serialization -------------------------------------------------------


def _ms(when: datetime) -> int:
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError("time must be timezone-aware")
    return int(when.timestamp() * 1000)


def _from_ms(ms: str | int) -> datetime:
    return datetime.fromtimestamp(int(ms) / 1000, UTC)


def _dt_out(when: datetime | None) -> str:
    if when is None:
        return ""
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError("time must be timezone-aware")
    return when.astimezone(UTC).isoformat()


def _dt_in(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def tariff_to_json(tariff: Tariff) -> str:
    return json.dumps(
        {
            "rates": [{"prefix": r.prefix, "kind": r.kind.value, "per_minute": r.per_minute} for r in tariff.rates],
            "connection_fee": tariff.connection_fee,
            "free_threshold_s": tariff.free_threshold_s,
            "increment_s": tariff.increment_s,
        },
        sort_keys=True,
    )


def tariff_from_json(text: str) -> Tariff:
    raw = json.loads(text)
    return Tariff(
        rates=tuple(Rate(r["prefix"], RouteKind(r["kind"]), int(r["per_minute"])) for r in raw["rates"]),
        connection_fee=int(raw["connection_fee"]),
        free_threshold_s=int(raw["free_threshold_s"]),
        increment_s=int(raw["increment_s"]),
    )


_CDR_TIMES = ("started_at", "connected_at", "ended_at")


def _cdr_json_prefix(record: CallRecord) -> str:
    """The record as JSON with ``amount`` last and its value left out: the
    settle script appends the amount really charged and the closing brace."""
    data = {f.name: getattr(record, f.name) for f in fields(record) if f.name != "amount"}
    for name in _CDR_TIMES:
        data[name] = _dt_out(getattr(record, name))
    text = json.dumps(data, ensure_ascii=False)
    return text[:-1] + ', "amount": '


def payer_phone(record: CallRecord) -> str:
    """The relative who pays for the call ("01": the number called), or '' when the card pays."""
    return record.number if record.payer == Payer.CALLEE.value else ""


def spent_key(phone: str, card: str) -> str:
    """What calls from ``card`` cost the relative ``phone``: zset "<charged>:<call_id>" by time (ms)."""
    return f"{PREFIX}rel:{phone}:spent:{card}"


def cdr_from_json(text: str) -> CallRecord:
    raw: dict[str, Any] = json.loads(text)
    for name in _CDR_TIMES:
        raw[name] = datetime.fromisoformat(raw[name]) if raw.get(name) else None
    return CallRecord(**raw)


def _card_from_hash(h: dict[str, str]) -> Card:
    return Card(
        number=h["number"],
        inmate_id=h["inmate_id"],
        facility_id=h["facility_id"],
        pin_hash=h["pin_hash"],
        language=h["language"],
        status=CardStatus(h["status"]),
        balance=int(h["balance"]),
    )


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _opt(value: bytes | str | None) -> str | None:
    return None if value is None else _str(value)


def _hash(raw: Mapping[bytes | str, bytes | str] | None) -> dict[str, str]:
    return {_str(k): _str(v) for k, v in (raw or {}).items()}


def _evidence(h: dict[str, str]) -> Evidence:
    """An attempt's evidence from its hash (a field missing or not a number: not known)."""

    def num(name: str) -> int | None:
        return int(h[name]) if h.get(name, "").isdigit() else None

    return Evidence(bridged_ms=num("bridged_ms"), ended_ms=num("ended_ms"),
                    dial_status=h.get("dial_status", ""), hangup_cause=h.get("hangup_cause", ""),
                    heartbeat_ms=num("heartbeat_ms"), caller_gone_ms=num("caller_gone_ms"))


def _check_amount(amount: int, *, positive: bool = False) -> None:
    if type(amount) is not int or not 0 <= amount <= MAX_AMOUNT or (positive and amount == 0):
        raise ValueError(f"amount must be a {'positive' if positive else 'non-negative'} integer: {amount!r}")


def _check_id(what: str, value: str) -> None:
    if not value or any(c.isspace() for c in value):
        raise ValueError(f"bad {what}: {value!r}")


def check_e164(e164: str) -> None:
    if not _E164.match(e164):
        raise ValueError(f"not an E.164 number (+ and 7 to 15 digits): {e164!r}")


# --- the store ---------------------------------------------------------------


class RedisStore:
    """Directory + Wallet + provisioning on one Redis (see the module doc)."""

    def __init__(self, client: aioredis.Redis, pins: PinHasher | None = None) -> None:
        """``pins`` hashes new PINs (create_card, set_pin) with the server's
        key; a store without it can read and bill but not set a PIN."""
        self.redis = client
        self.pins = pins
        self._lua_acquire = self._script(lua.ACQUIRE_CARD)
        self._lua_release_card = self._script(lua.RELEASE_CARD)
        self._lua_reserve = self._script(lua.RESERVE)
        self._lua_settle = self._script(lua.SETTLE)
        self._lua_release_hold = self._script(lua.RELEASE_HOLD)
        self._lua_payment = self._script(lua.PAYMENT)
        self._lua_put_card = self._script(lua.PUT_CARD)
        self._lua_update_card = self._script(lua.UPDATE_CARD)
        self._lua_set_number = self._script(lua.SET_NUMBER)
        self._lua_pin_failure = self._script(lua.PIN_FAILURE)
        self._lua_upgrade_pin = self._script(lua.UPGRADE_PIN_HASH)
        self._lua_login_failure = self._script(lua.LOGIN_FAILURE)

    def _script(self, source: str) -> AsyncScript:
        return self.redis.register_script(source)

    @classmethod
    def from_url(cls, url: str, pins: PinHasher | None = None) -> RedisStore:
        return cls(connect(url), pins)

    async def aclose(self) -> None:
        await self.redis.aclose()

    # keys
    @staticmethod
    def _facility_key(facility_id: str) -> str:
        return f"{PREFIX}facility:{facility_id}"

    @staticmethod
    def _tariff_key(facility_id: str) -> str:
        return f"{PREFIX}tariff:{facility_id}"

    @staticmethod
    def _inmate_key(inmate_id: str) -> str:
        return f"{PREFIX}inmate:{inmate_id}"

    @staticmethod
    def _card_key(number: str, sub: str = "") -> str:
        return f"{PREFIX}card:{number}" + (f":{sub}" if sub else "")

    @staticmethod
    def _res_key(call_id: str) -> str:
        return f"{PREFIX}res:{call_id}"

    @staticmethod
    def _settled_key(call_id: str) -> str:
        return f"{PREFIX}settled:{call_id}"

    @staticmethod
    def _cdr_key(call_id: str) -> str:
        return f"{PREFIX}cdr:{call_id}"

    @staticmethod
    def _evidence_key(call_id: str) -> str:
        return f"{PREFIX}ev:{call_id}"

    @staticmethod
    def _gone_key(uniqueid: str) -> str:
        return f"{PREFIX}gone:{uniqueid}"

    def _payer_keys(self, card: str, phone: str) -> list[str]:
        """The paying account's hash and its two ledger streams: the card's, or
        the relative's (``phone``) for a call the relative pays ("01")."""
        if phone:
            return [f"{PREFIX}rel:{phone}", REL_LEDGER, f"{PREFIX}rel:{phone}:ledger"]
        return [self._card_key(card), LEDGER, self._card_key(card, "ledger")]

    # --- Directory -------------------------------------------------------

    async def facility(self, facility_id: str) -> Facility | None:
        h = _hash(await self.redis.hgetall(self._facility_key(facility_id)))
        if not h:
            return None
        return Facility(
            id=h["id"],
            name=h["name"],
            timezone=h["timezone"],
            currency=h["currency"],
            language=h["language"],
            schedule=h["schedule"],
            max_call_s=int(h["max_call_s"]),
        )

    async def card(self, number: str) -> Card | None:
        h = _hash(await self.redis.hgetall(self._card_key(number)))
        return _card_from_hash(h) if h else None

    async def inmate(self, inmate_id: str) -> Inmate | None:
        h = _hash(await self.redis.hgetall(self._inmate_key(inmate_id)))
        if not h:
            return None
        return Inmate(
            id=h["id"],
            name=h["name"],
            facility_id=h["facility_id"],
            status=InmateStatus(h["status"]),
            permission_until=_dt_in(h.get("permission_until")),
            suspended_until=_dt_in(h.get("suspended_until")),
        )

    async def allowed_number(self, card: str, e164: str) -> AllowedNumber | None:
        raw = _opt(await self.redis.hget(self._card_key(card, "numbers"), e164))
        if raw is None:
            return None
        data = json.loads(raw)
        return AllowedNumber(e164=e164, label=data["label"], privileged=bool(data["privileged"]))

    async def tariff(self, facility_id: str) -> Tariff | None:
        raw = _opt(await self.redis.get(self._tariff_key(facility_id)))
        return tariff_from_json(raw) if raw is not None else None

    async def record_pin_failure(self, card: str, now: datetime) -> int:
        count = await self._lua_pin_failure(
            keys=[self._card_key(card), self._card_key(card, "pinfail")],
            args=[_ms(now), secrets.token_hex(8), PIN_FAILURE_WINDOW_S * 1000, PIN_FAILURES_TO_LOCK],
        )
        return int(count)

    async def upgrade_pin_hash(self, card: str, old: str, new: str) -> bool:
        done = await self._lua_upgrade_pin(keys=[self._card_key(card)], args=[old, new])
        return bool(int(done))

    @staticmethod
    def _login_fail_key(terminal: str) -> str:
        _check_id("terminal", terminal)
        return f"{PREFIX}terminal:{terminal}:loginfail"

    async def login_failures(self, terminal: str, since: datetime) -> list[datetime]:
        # Members are "<ms>:<token>" (the score again, made unique).
        members = await self.redis.zrangebyscore(self._login_fail_key(terminal), f"({_ms(since)}", "+inf")
        return [_from_ms(_str(m).split(":", 1)[0]) for m in members]  # type: ignore[arg-type]

    async def record_login_failure(self, terminal: str, now: datetime, keep_s: int) -> list[datetime]:
        if type(keep_s) is not int or keep_s <= 0:
            raise ValueError(f"keep_s must be a positive integer: {keep_s!r}")
        kept = await self._lua_login_failure(keys=[self._login_fail_key(terminal)],
                                             args=[_ms(now), secrets.token_hex(8), keep_s * 1000])
        return [_from_ms(int(_str(ms))) for ms in kept]

    async def clear_login_failures(self, terminal: str) -> None:
        """Staff: let a throttled terminal try again at once."""
        await self.redis.delete(self._login_fail_key(terminal))

    # --- Wallet ----------------------------------------------------------

    async def acquire_card(self, card: str, uniqueid: str, ttl_s: int) -> bool:
        _check_id("uniqueid", uniqueid)
        if type(ttl_s) is not int or ttl_s <= 0:
            raise ValueError(f"ttl_s must be a positive integer: {ttl_s!r}")
        got = await self._lua_acquire(keys=[self._card_key(card, "active"), LOCKS], args=[uniqueid, ttl_s, card])
        return bool(got)

    async def release_card(self, card: str, uniqueid: str) -> None:
        await self._lua_release_card(keys=[self._card_key(card, "active"), LOCKS], args=[uniqueid, card])

    async def reserve(self, call_id: str, card: str, amount: int, hold_s: int, plan: str = "{}",
                      payer_phone: str = "") -> Reservation:
        _check_id("call_id", call_id)
        _check_amount(amount)
        if type(hold_s) is not int or hold_s <= 0:
            raise ValueError(f"hold_s must be a positive integer: {hold_s!r}")
        if payer_phone:
            check_e164(payer_phone)
        account, ledger, own_ledger = self._payer_keys(card, payer_phone)
        out = await self._lua_reserve(
            keys=[account, self._res_key(call_id), self._settled_key(call_id), HOLDS, ledger, own_ledger],
            args=[call_id, card, amount, hold_s * 1000, plan, payer_phone],
        )
        status = out[0]
        payer = f"relative {payer_phone}" if payer_phone else f"card {card}"
        if status == "ok":
            return Reservation(call_id=call_id, card=card, amount=int(out[1]), balance_after=int(out[2]))
        if status == "insufficient":
            raise InsufficientFunds(f"{payer}: balance {out[1]} < {amount}")
        if status == "nocard":
            raise NotFound(f"no account of {payer}")
        if status == "settled":
            raise StoreConflict(f"call {call_id} is already settled")
        raise StoreConflict(f"call {call_id} already holds money of card {out[1]}")

    async def settle(self, record: CallRecord) -> Settlement:
        _check_id("call_id", record.call_id)
        _check_amount(record.amount)
        phone = payer_phone(record)
        account, ledger, own_ledger = self._payer_keys(record.card, phone)
        out = await self._lua_settle(
            keys=[
                account,
                self._res_key(record.call_id),
                self._settled_key(record.call_id),
                HOLDS,
                ledger,
                own_ledger,
                self._cdr_key(record.call_id),
                self._card_key(record.card, "cdrs"),
                CDR_LOG,
                spent_key(phone, record.card) if phone else account,
            ],
            args=[record.call_id, record.card, record.amount, _cdr_json_prefix(record), record.credit_reason,
                  phone],
        )
        status = out[0]
        if status in ("ok", "duplicate"):
            return Settlement(
                call_id=record.call_id,
                charged=int(out[1]),
                released=int(out[2]),
                balance_after=int(out[3]),
                duplicate=status == "duplicate",
            )
        if status == "nocard":
            raise NotFound(f"no card {record.card}")
        raise StoreConflict(f"call {record.call_id} holds money of card {out[1]}, not {record.card}")

    async def release_expired(self, now: datetime) -> list[str]:
        now_ms = _ms(now)
        released: list[str] = []
        kept = 0  # due entries left in place (their hold says later): skip them
        while True:
            batch = await self.redis.zrangebyscore(HOLDS, "-inf", now_ms, start=kept, num=_REAP_BATCH)
            due = [_str(x) for x in batch if isinstance(x, bytes | str)]
            if not due:
                return released
            for call_id in due:
                result = await self._release_one(call_id, now_ms)
                if result == 1:
                    released.append(call_id)
                elif result == 2:
                    kept += 1

    async def _release_one(self, call_id: str, now_ms: int) -> int:
        """1 released, 0 dropped (settled or stale), 2 not due yet (kept)."""
        for _ in range(3):
            # an empty card means a stale entry in the holds: the script drops it
            card, phone = (_opt(x) or "" for x in await self.redis.hmget(self._res_key(call_id), "card", "payer"))
            account, ledger, own_ledger = self._payer_keys(card, phone)
            result = int(
                await self._lua_release_hold(
                    keys=[account, self._res_key(call_id), self._settled_key(call_id), HOLDS, ledger, own_ledger],
                    args=[call_id, card, now_ms, phone],
                )
            )
            if result != -1:
                return result
        raise StoreConflict(f"reservation {call_id} keeps changing card")

    async def top_up(self, card: str, amount: int, payment_id: str) -> int:
        return await self._move_payment(card, amount, payment_id, "topup")

    # --- more money ------------------------------------------------------

    async def refund(self, card: str, amount: int, payment_id: str) -> int:
        """Give unspent money back (amount <= balance); idempotent by payment_id.
        Returns the balance."""
        return await self._move_payment(card, amount, payment_id, "refund")

    async def _move_payment(self, card: str, amount: int, payment_id: str, kind: str) -> int:
        _check_id("payment id", payment_id)
        _check_amount(amount, positive=True)
        out = await self._lua_payment(
            keys=[
                self._card_key(card),
                f"{PREFIX}payment:{payment_id}",
                LEDGER,
                self._card_key(card, "ledger"),
            ],
            args=[payment_id, card, amount, kind],
        )
        status = out[0]
        if status in ("ok", "duplicate"):
            if out[1] is None:
                raise NotFound(f"no card {card}")
            return int(out[1])
        if status == "nocard":
            raise NotFound(f"no card {card}")
        if status == "insufficient":
            raise InsufficientFunds(f"card {card}: balance {out[1]} < refund {amount}")
        raise StoreConflict(f"payment id {payment_id} was already used ({out[2]} on card {out[1]})")

    # --- provisioning ----------------------------------------------------

    async def put_facility(self, facility: Facility) -> None:
        _check_id("facility id", facility.id)
        await self.redis.hset(
            self._facility_key(facility.id),
            mapping={
                "id": facility.id,
                "name": facility.name,
                "timezone": facility.timezone,
                "currency": facility.currency,
                "language": facility.language,
                "schedule": facility.schedule,
                "max_call_s": facility.max_call_s,
            },
        )

    async def put_tariff(self, facility_id: str, tariff: Tariff) -> None:
        if await self.facility(facility_id) is None:
            raise NotFound(f"no facility {facility_id}")
        await self.redis.set(self._tariff_key(facility_id), tariff_to_json(tariff))

    async def put_inmate(self, inmate: Inmate) -> None:
        _check_id("inmate id", inmate.id)
        if await self.facility(inmate.facility_id) is None:
            raise NotFound(f"no facility {inmate.facility_id}")
        old = await self.inmate(inmate.id)
        if old is not None and old.facility_id != inmate.facility_id and await self.cards_of(inmate.id):
            raise StoreConflict(f"inmate {inmate.id} has cards of facility {old.facility_id}")
        await self.redis.hset(
            self._inmate_key(inmate.id),
            mapping={
                "id": inmate.id,
                "name": inmate.name,
                "facility_id": inmate.facility_id,
                "status": inmate.status.value,
                "permission_until": _dt_out(inmate.permission_until),
                "suspended_until": _dt_out(inmate.suspended_until),
            },
        )

    async def put_card(self, card: Card) -> None:
        """Create or update a card. ``balance`` is the opening balance of a new
        card (ledger kind=adjust); for an existing card it is ignored: money
        moves only through top_up, refund, reserve and settle."""
        await self._store_card(card, create_only=False)

    async def create_card(
        self, number: str, inmate_id: str, facility_id: str, pin: str, language: str
    ) -> Card:
        """A new ACTIVE card with balance 0; the PIN is stored as a keyed,
        salted hash (ivr/pin.py). Raises StoreConflict if the card exists."""
        pin_hash = self._pin_hasher().hash(pin)
        card = Card(number, inmate_id, facility_id, pin_hash, language, CardStatus.ACTIVE, 0)
        await self._store_card(card, create_only=True)
        return card

    async def _store_card(self, card: Card, *, create_only: bool) -> None:
        _check_id("card number", card.number)
        _check_amount(card.balance)
        inmate = await self.inmate(card.inmate_id)
        if inmate is None:
            raise NotFound(f"no inmate {card.inmate_id}")
        if inmate.facility_id != card.facility_id:
            raise StoreConflict(f"inmate {inmate.id} is in facility {inmate.facility_id}, not {card.facility_id}")
        out = await self._lua_put_card(
            keys=[
                self._card_key(card.number),
                f"{self._inmate_key(card.inmate_id)}:cards",
                LEDGER,
                self._card_key(card.number, "ledger"),
            ],
            args=[
                card.number,
                card.inmate_id,
                card.facility_id,
                card.pin_hash,
                card.language,
                card.status.value,
                card.balance,
                "1" if create_only else "0",
            ],
        )
        if out[0] == "exists":
            raise StoreConflict(f"card {card.number} exists")
        if out[0] == "conflict":
            raise StoreConflict(f"card {card.number} belongs to inmate {out[1]}")

    async def _update_card(self, number: str, clear_failures: bool, **values: str) -> None:
        args: list[str] = ["1" if clear_failures else "0"]
        for k, v in values.items():
            args += [k, v]
        done = await self._lua_update_card(keys=[self._card_key(number), self._card_key(number, "pinfail")], args=args)
        if not int(done):
            raise NotFound(f"no card {number}")

    async def set_card_status(self, number: str, status: CardStatus) -> None:
        await self._update_card(number, False, status=status.value)

    async def unlock_card(self, number: str) -> None:
        """Status ACTIVE and the wrong-PIN count cleared."""
        await self._update_card(number, True, status=CardStatus.ACTIVE.value)

    async def set_pin(self, number: str, pin: str) -> None:
        """New PIN (hashed); clears the wrong-PIN count but not a lock."""
        pin_hash = self._pin_hasher().hash(pin)
        await self._update_card(number, True, pin_hash=pin_hash)

    def _pin_hasher(self) -> PinHasher:
        if self.pins is None:
            raise PinHashError("this store has no PIN key: build it with pins=PinHasher(...)")
        return self.pins

    async def cards_of(self, inmate_id: str) -> list[str]:
        members = await self.redis.smembers(f"{self._inmate_key(inmate_id)}:cards")
        return sorted(_str(m) for m in members)

    async def pin_failures(self, card: str, now: datetime) -> int:
        """Wrong PINs counted in the 24 h before ``now``."""
        low = _ms(now) - PIN_FAILURE_WINDOW_S * 1000
        return int(await self.redis.zcount(self._card_key(card, "pinfail"), f"({low}", "+inf"))

    async def allow_number(self, card: str, number: AllowedNumber) -> None:
        check_e164(number.e164)
        value = json.dumps({"label": number.label, "privileged": number.privileged}, ensure_ascii=False)
        done = await self._lua_set_number(
            keys=[self._card_key(card), self._card_key(card, "numbers")], args=[number.e164, value]
        )
        if int(done) == -1:
            raise NotFound(f"no card {card}")

    async def remove_number(self, card: str, e164: str) -> bool:
        """False if the number was not on the list."""
        done = await self._lua_set_number(keys=[self._card_key(card), self._card_key(card, "numbers")], args=[e164, ""])
        if int(done) == -1:
            raise NotFound(f"no card {card}")
        return int(done) == 1

    async def list_numbers(self, card: str) -> list[AllowedNumber]:
        raw = _hash(await self.redis.hgetall(self._card_key(card, "numbers")))
        out = []
        for e164 in sorted(raw):
            data = json.loads(raw[e164])
            out.append(AllowedNumber(e164=e164, label=data["label"], privileged=bool(data["privileged"])))
        return out

    # --- reports -----------------------------------------------------------

    async def call_records(self, card: str, limit: int = 20) -> list[CallRecord]:
        """The card's call detail records, newest first."""
        if limit <= 0:
            return []
        ids = [_str(i) for i in await self.redis.lrange(self._card_key(card, "cdrs"), 0, limit - 1)]
        if not ids:
            return []
        raws = await self.redis.mget([self._cdr_key(i) for i in ids])
        return [cdr_from_json(_str(r)) for r in raws if r is not None]

    async def call_record(self, call_id: str) -> CallRecord | None:
        raw = _opt(await self.redis.get(self._cdr_key(call_id)))
        return cdr_from_json(raw) if raw is not None else None

    async def ledger(self, card: str, limit: int = 50) -> list[LedgerEntry]:
        """The card's ledger entries, newest first."""
        if limit <= 0:
            return []
        rows = await self.redis.xrevrange(self._card_key(card, "ledger"), count=limit) or []
        out = []
        for entry_id, raw in rows:
            f = _hash(raw)
            out.append(
                LedgerEntry(
                    id=_str(entry_id or ""),
                    ts=_from_ms(f["ts"]),
                    card=f["card"],
                    ref=f["ref"],
                    kind=f["kind"],
                    amount=int(f["amount"]),
                    balance_after=int(f["balance_after"]),
                    note=f.get("note", ""),
                )
            )
        return out

    async def reservation(self, call_id: str) -> Reservation | None:
        """The open hold of a call, if any."""
        h = _hash(await self.redis.hgetall(self._res_key(call_id)))
        if not h:
            return None
        return Reservation(call_id=call_id, card=h["card"], amount=int(h["amount"]),
                           balance_after=int(h["balance_after"]))

    async def open_holds(self, card: str) -> list[tuple[Reservation, datetime]]:
        """The card's open holds (from ``kl:holds``) with their deadlines, oldest first."""
        call_ids: list[str] = [_str(c) for c in await self.redis.zrange(HOLDS, 0, -1)]  # type: ignore[arg-type]
        out = []
        for call_id in call_ids:
            h = _hash(await self.redis.hgetall(self._res_key(call_id)))
            if h.get("card") != card:
                continue
            res = Reservation(call_id=call_id, card=card, amount=int(h["amount"]),
                              balance_after=int(h["balance_after"]))
            out.append((res, _from_ms(h["deadline"])))
        return out

    async def card_lock(self, card: str) -> tuple[str, int] | None:
        """(uniqueid of the call holding the card, seconds left of its TTL; -1 if none), or None."""
        key = self._card_key(card, "active")
        holder = _opt(await self.redis.get(key))
        if holder is None:
            return None
        return holder, int(await self.redis.ttl(key))


    # --- reconciliation (ivr.ports.Attempts) ------------------------------------

    async def open_attempts(self) -> list[OpenAttempt]:
        """Every attempt that still holds money, oldest first."""
        ids = [_str(i) for i in await self.redis.zrange(HOLDS, 0, -1) if isinstance(i, bytes | str)]
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for call_id in ids:
                pipe.hmget(self._res_key(call_id), "plan", "deadline")
            rows = await pipe.execute()
        out = []
        for call_id, (plan, deadline) in zip(ids, rows, strict=True):
            if plan and plan != "{}" and deadline:
                out.append(OpenAttempt(call_id=call_id, plan=_str(plan), deadline_ms=int(deadline)))
        return out

    async def evidences(self, call_ids: Sequence[str]) -> list[Evidence]:
        """The evidence of each attempt, in the order asked: one pipeline of HGETALLs."""
        if not call_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for call_id in call_ids:
                pipe.hgetall(self._evidence_key(call_id))
            rows = await pipe.execute()
        return [_evidence(_hash(row)) for row in rows]

    async def add_evidence(self, call_id: str, **values: str | int) -> None:
        """Record what is proven of an attempt (fields of ``Evidence``)."""
        await self.add_evidences({call_id: values})

    async def add_evidences(self, values: Mapping[str, Mapping[str, str | int]]) -> None:
        """Record what is proven of several attempts (call_id -> fields of ``Evidence``)
        in one transaction."""
        for call_id in values:
            _check_id("call_id", call_id)
        if not values:
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            for call_id, proven in values.items():
                key = self._evidence_key(call_id)
                pipe.hset(key, mapping={k: str(v) for k, v in proven.items()})
                pipe.expire(key, EVIDENCE_TTL_S)
            await pipe.execute()

    async def mark_gone(self, uniqueid: str, at_ms: int) -> None:
        await self.redis.set(self._gone_key(uniqueid), str(at_ms), ex=2 * 24 * 3600, nx=True)

    async def gone_times(self, uniqueids: Sequence[str]) -> dict[str, int]:
        """When each of these channels was logged gone (one MGET); those not gone are left out."""
        asked = list(dict.fromkeys(uniqueids))
        if not asked:
            return {}
        raw = await self.redis.mget([self._gone_key(uniqueid) for uniqueid in asked])
        return {uniqueid: int(_str(at)) for uniqueid, at in zip(asked, raw, strict=True) if at is not None}

    async def card_locks(self) -> dict[str, str]:
        """card -> uniqueid of the call holding it."""
        return _hash(await self.redis.hgetall(LOCKS))

    async def log_offset(self, node: str) -> int:
        raw = _opt(await self.redis.get(f"{PREFIX}cel:{node}"))
        return int(raw) if raw is not None else 0

    async def set_log_offset(self, node: str, offset: int) -> None:
        await self.redis.set(f"{PREFIX}cel:{node}", str(offset))


def _implements_ports(store: RedisStore) -> tuple[Directory, Wallet, Attempts]:
    """Never called: mypy checks here that RedisStore matches the Protocols."""
    return store, store, store
