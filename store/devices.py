"""The app devices in PostgreSQL: the device registry (``devices``) and the SIP
accounts Asterisk reads by PJSIP realtime (``ps_endpoints``, ``ps_auths``,
``ps_aors``, through res_config_pgsql as the read-only role ``asterisk_rt``).

A device and its three ``ps_*`` rows are written and deleted in one transaction:
Asterisk sees a whole account or none. It reads them on each REGISTER and INVITE
(no cache), so a new, rotated or deleted account counts at once, with no reload.
Only the digest of the SIP password is stored (``md5_cred``).

The ``ps_*`` tables hold only the columns Kinline sets (names and values as in
Asterisk's contrib/ast-db-manage); every setting that is the same for all apps
is the column's DEFAULT, so a row is just its id and the links between the three.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import asyncpg.pool

from ivr.devices import MAX_DEVICES, SIP_REALM, Device, endpoint_id, md5_cred, new_device_id, new_sip_password
from store.pg import DOWN, LazyPool

log = logging.getLogger(__name__)

REALTIME_ROLE = "asterisk_rt"  # tools/stack.py makes it; it may only SELECT the ps_* tables
APP_TRANSPORT = "transport-app"  # tools/asterisk_conf.py: the apps' own SIP door
APP_CONTEXT = "from-app"  # dialplan/kinline.conf: calls from apps are refused
APP_ACL = "kinline-apps"  # acl.conf (generated): apps are refused from the terminals' subnets
QUALIFY_S = 30  # OPTIONS to each contact: "reachable now" for the status light
EXPIRATION_S = 300  # a mobile app re-registers every 5 min at most (NAT bindings)
_LOCK = 7_202_612  # advisory lock: the schema is made once when two APIs start together

DDL = (
    """CREATE TABLE IF NOT EXISTS devices (
        id text PRIMARY KEY,
        phone text NOT NULL,
        platform text NOT NULL,
        token text NOT NULL UNIQUE,
        app_id text NOT NULL,
        created timestamptz NOT NULL DEFAULT now(),
        active boolean NOT NULL DEFAULT true,
        deactivated_reason text NOT NULL DEFAULT '')""",
    "CREATE INDEX IF NOT EXISTS devices_by_phone ON devices (phone)",
    f"""CREATE TABLE IF NOT EXISTS ps_endpoints (
        id text PRIMARY KEY,
        transport text NOT NULL DEFAULT '{APP_TRANSPORT}',
        aors text NOT NULL,
        auth text NOT NULL,
        context text NOT NULL DEFAULT '{APP_CONTEXT}',
        disallow text NOT NULL DEFAULT 'all',
        allow text NOT NULL DEFAULT 'ulaw,alaw',
        identify_by text NOT NULL DEFAULT 'username',
        direct_media text NOT NULL DEFAULT 'no',
        rtp_symmetric text NOT NULL DEFAULT 'yes',
        force_rport text NOT NULL DEFAULT 'yes',
        rewrite_contact text NOT NULL DEFAULT 'yes',
        dtmf_mode text NOT NULL DEFAULT 'rfc4733',
        allow_subscribe text NOT NULL DEFAULT 'no',
        allow_transfer text NOT NULL DEFAULT 'no',
        send_rpid text NOT NULL DEFAULT 'no',
        trust_id_inbound text NOT NULL DEFAULT 'no',
        trust_id_outbound text NOT NULL DEFAULT 'no',
        acl text NOT NULL DEFAULT '{APP_ACL}')""",
    f"""CREATE TABLE IF NOT EXISTS ps_auths (
        id text PRIMARY KEY,
        auth_type text NOT NULL DEFAULT 'md5',
        username text NOT NULL,
        realm text NOT NULL DEFAULT '{SIP_REALM}',
        md5_cred text NOT NULL)""",
    f"""CREATE TABLE IF NOT EXISTS ps_aors (
        id text PRIMARY KEY,
        max_contacts integer NOT NULL DEFAULT 1,
        remove_existing text NOT NULL DEFAULT 'yes',
        qualify_frequency integer NOT NULL DEFAULT {QUALIFY_S},
        default_expiration integer NOT NULL DEFAULT {EXPIRATION_S},
        maximum_expiration integer NOT NULL DEFAULT {EXPIRATION_S})""",
)
PS_TABLES = ("ps_endpoints", "ps_auths", "ps_aors")


class DevicesUnavailable(Exception):
    """The device database cannot be reached (the API answers 503)."""


class TooManyDevices(Exception):
    """The relative already has MAX_DEVICES devices."""


async def ensure_schema(conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy) -> None:
    """Make the tables if missing; let the realtime role read the ps_* tables (if the
    stack made it: a bare test database has none)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
        for statement in DDL:
            await conn.execute(statement)
        if await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", REALTIME_ROLE):
            await conn.execute(f"GRANT SELECT ON {', '.join(PS_TABLES)} TO {REALTIME_ROLE}")


def _device(row: asyncpg.Record | None) -> Device:
    assert row is not None
    return Device(device_id=row["id"], phone=row["phone"], platform=row["platform"], token=row["token"],
                  app_id=row["app_id"], created_ms=int(row["created"].timestamp() * 1000), active=row["active"],
                  deactivated_reason=row["deactivated_reason"])


async def _insert_account(conn: Any, device_id: str, password: str) -> None:
    sip = endpoint_id(device_id)
    await conn.execute("INSERT INTO ps_auths (id, username, md5_cred) VALUES ($1, $1, $2)",
                       sip, md5_cred(sip, password))
    await conn.execute("INSERT INTO ps_aors (id) VALUES ($1)", sip)
    await conn.execute("INSERT INTO ps_endpoints (id, aors, auth) VALUES ($1, $1, $1)", sip)


async def _delete_account(conn: Any, device_id: str) -> None:
    sip = endpoint_id(device_id)
    for table in ("ps_endpoints", "ps_auths", "ps_aors"):
        await conn.execute(f"DELETE FROM {table} WHERE id = $1", sip)


class DeviceStore:
    """Devices over a small asyncpg pool, opened on first use (the API starts without it)."""

    def __init__(self, url: str, max_size: int = 4) -> None:
        self._pool = LazyPool(url, ensure_schema, max_size)

    async def aclose(self) -> None:
        await self._pool.aclose()

    async def _pool_or_down(self) -> asyncpg.Pool:
        try:
            return await self._pool.get()
        except DOWN as err:
            raise DevicesUnavailable(f"{type(err).__name__}: {err}") from err

    async def register(self, phone: str, platform: str, token: str, app_id: str) -> tuple[Device, str]:
        """The relative's device for this push token and a new SIP password (shown once).

        The same token again for the same relative rotates that device's password (the
        old one stops working at once) instead of adding a device. A token held by
        another relative's device moves here: that install now belongs to this login,
        and the other device is revoked."""
        password = new_sip_password()
        pool = await self._pool_or_down()
        try:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", phone)
                row = await conn.fetchrow("SELECT * FROM devices WHERE token = $1 FOR UPDATE", token)
                if row is not None and row["phone"] == phone:
                    device_id = row["id"]
                    sip = endpoint_id(device_id)
                    await conn.execute("UPDATE ps_auths SET md5_cred = $2 WHERE id = $1", sip, md5_cred(sip, password))
                    row = await conn.fetchrow(
                        "UPDATE devices SET platform = $2, app_id = $3, active = true, deactivated_reason = ''"
                        " WHERE id = $1 RETURNING *", device_id, platform, app_id)
                    log.info("phone %s: device %s re-registered, SIP password rotated", phone, device_id)
                    return _device(row), password
                if row is not None:
                    await _delete_account(conn, row["id"])
                    await conn.execute("DELETE FROM devices WHERE id = $1", row["id"])
                    log.info("phone %s: device %s revoked, its token registered by another relative",
                             row["phone"], row["id"])
                count = await conn.fetchval("SELECT count(*) FROM devices WHERE phone = $1", phone)
                if count >= MAX_DEVICES:
                    raise TooManyDevices(f"at most {MAX_DEVICES} devices")
                device_id = new_device_id()
                row = await conn.fetchrow(
                    "INSERT INTO devices (id, phone, platform, token, app_id) VALUES ($1, $2, $3, $4, $5) RETURNING *",
                    device_id, phone, platform, token, app_id)
                await _insert_account(conn, device_id, password)
                log.info("phone %s: device %s registered (%s, %s)", phone, device_id, platform, app_id)
                return _device(row), password
        except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError, TimeoutError) as err:
            raise DevicesUnavailable(f"{type(err).__name__}: {err}") from err

    async def devices(self, phone: str) -> list[Device]:
        """The relative's devices, oldest first."""
        pool = await self._pool_or_down()
        try:
            rows = await pool.fetch("SELECT * FROM devices WHERE phone = $1 ORDER BY created, id", phone)
        except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError, TimeoutError) as err:
            raise DevicesUnavailable(f"{type(err).__name__}: {err}") from err
        return [_device(r) for r in rows]

    async def delete(self, phone: str, device_id: str) -> bool:
        """Revoke the relative's device: its SIP account is gone for Asterisk's next
        request. False if the relative has no such device."""
        pool = await self._pool_or_down()
        try:
            async with pool.acquire() as conn, conn.transaction():
                gone = await conn.fetchval("DELETE FROM devices WHERE id = $1 AND phone = $2 RETURNING id",
                                           device_id, phone)
                if gone is None:
                    return False
                await _delete_account(conn, device_id)
        except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError, TimeoutError) as err:
            raise DevicesUnavailable(f"{type(err).__name__}: {err}") from err
        log.info("phone %s: device %s deleted, SIP account revoked", phone, device_id)
        return True

    async def deactivate_token(self, device_id: str, reason: str) -> None:
        """The push service refused the token (FCM UNREGISTERED, APNs 410): never pushed
        again until the app registers a token anew. Its SIP account stays."""
        pool = await self._pool_or_down()
        await pool.execute("UPDATE devices SET active = false, deactivated_reason = $2 WHERE id = $1",
                           device_id, reason[:200])

