"""Where the bridge finds a relative's app installs: the `DeviceDirectory` Protocol, its
PostgreSQL implementation (the API's `devices` table) and an in-memory one (tests, bench).

The bridge only reads active devices, looks up whose a device is (a contact event names
the device, the publish goes to its relative) and deactivates a token a provider called
dead (never pushed again)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Protocol

import asyncpg

from pushbridge.errors import DirectoryError
from pushbridge.providers import PLATFORMS, Device

log = logging.getLogger(__name__)


class DeviceDirectory(Protocol):
    async def active_devices(self, phone: str) -> list[Device]: ...

    async def phone_of(self, device_id: str) -> str | None: ...

    async def deactivate(self, device_id: str, reason: str) -> None: ...


@dataclass
class Registered:
    phone: str
    device: Device
    active: bool = True
    reason: str = ""


@dataclass
class MemoryDirectory:
    """Devices in a dict: what the tests and the bench use."""

    devices: dict[str, Registered] = field(default_factory=dict)
    reads: int = 0

    def add(self, phone: str, device: Device) -> Device:
        self.devices[device.device_id] = Registered(phone, device)
        return device

    def is_active(self, device_id: str) -> bool:
        return self.devices[device_id].active

    async def active_devices(self, phone: str) -> list[Device]:
        self.reads += 1
        return [r.device for r in self.devices.values() if r.phone == phone and r.active]

    async def phone_of(self, device_id: str) -> str | None:
        found = self.devices.get(device_id)
        return found.phone if found else None

    async def deactivate(self, device_id: str, reason: str) -> None:
        if device_id in self.devices:
            self.devices[device_id] = replace(self.devices[device_id], active=False, reason=reason)


ACTIVE = "SELECT id::text, platform, token, app_id FROM devices WHERE phone = $1 AND active ORDER BY id"
PHONE = "SELECT phone FROM devices WHERE id::text = $1"
DEACTIVATE = "UPDATE devices SET active = false, deactivated_reason = $2 WHERE id::text = $1 AND active"


class PgDirectory:
    """The `devices` table (id, phone, platform, token, app_id, active, deactivated_reason),
    made by the relatives' API. A pool that connects on first use: the bridge starts while
    PostgreSQL is still down, and a wake then fails with DirectoryError (recorded)."""

    def __init__(self, url: str, *, timeout: float = 2.0) -> None:
        self._url = url
        self._timeout = timeout
        self._pool: asyncpg.Pool | None = None

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            self._pool = await asyncpg.create_pool(self._url, min_size=0, max_size=4, timeout=self._timeout,
                                                   command_timeout=self._timeout)
        return self._pool

    async def _fetch(self, query: str, *args: str) -> list[asyncpg.Record]:
        try:
            pool = await self._get_pool()
            return await pool.fetch(query, *args, timeout=self._timeout)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            raise DirectoryError(f"devices: {type(exc).__name__}: {exc}") from exc

    async def active_devices(self, phone: str) -> list[Device]:
        return list(_devices(await self._fetch(ACTIVE, phone)))

    async def phone_of(self, device_id: str) -> str | None:
        rows = await self._fetch(PHONE, device_id)
        return str(rows[0]["phone"]) if rows else None

    async def deactivate(self, device_id: str, reason: str) -> None:
        await self._fetch(DEACTIVATE, device_id, reason[:200])

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.close()


def _devices(rows: Iterable[asyncpg.Record]) -> Iterable[Device]:
    for row in rows:
        platform = str(row["platform"])
        if platform not in PLATFORMS:
            log.warning("device %s has an unknown platform %r: skipped", row["id"], platform)
            continue
        yield Device(platform, str(row["token"]), str(row["app_id"]), str(row["id"]))
