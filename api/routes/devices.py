"""The relative's app devices: register (SIP credentials shown once), list, delete
(revoked at once), and the app's status light."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Response
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from api.deps import ApiDeps, AppSip, current_phone, get_deps
from api.models import Problem
from ivr.devices import MAX_DEVICES, PLATFORMS, Device, DeviceError, Light, check_registration, status_light
from store.devices import DeviceStore, TooManyDevices

log = logging.getLogger(__name__)

DevicePath = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$")]


class DeviceBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    platform: Annotated[StrictStr, Field(description=" | ".join(PLATFORMS), examples=["fcm"])]
    token: Annotated[StrictStr, Field(min_length=16, max_length=512, description="the push token")]
    app_id: Annotated[StrictStr, Field(min_length=1, max_length=200,
                                       description="Android package, iOS bundle id or AppGallery app id")]


class SipAccount(BaseModel):
    username: str
    password: str  # shown once: only its digest is kept
    server: str
    port: int
    transport: str
    domain: str


class DeviceCreated(BaseModel):
    device_id: str
    sip: SipAccount


class DeviceInfo(BaseModel):
    device_id: str
    platform: str
    app_id: str
    created: datetime
    push_active: bool  # the push token is usable
    deactivated_reason: str
    reachable: bool | None = None  # a SIP contact answers now (None: Asterisk not asked or not answering)


class AppStatus(BaseModel):
    light: Light
    devices: list[DeviceInfo]


def _info(device: Device, reachable: set[str] | None = None) -> DeviceInfo:
    return DeviceInfo(device_id=device.device_id, platform=device.platform, app_id=device.app_id,
                      created=datetime.fromtimestamp(device.created_ms / 1000, UTC), push_active=device.active,
                      deactivated_reason=device.deactivated_reason,
                      reachable=None if reachable is None else device.endpoint in reachable)


def _store(deps: ApiDeps) -> DeviceStore:
    if deps.devices is None:
        raise HTTPException(503, "devices unavailable", headers={"Retry-After": "5"})
    return deps.devices


def _app_sip(deps: ApiDeps) -> AppSip:
    if deps.app_sip is None:
        raise HTTPException(503, "the app's SIP door is not configured", headers={"Retry-After": "5"})
    return deps.app_sip


def router() -> APIRouter:
    r = APIRouter(prefix="/v1/app", tags=["app"], responses={401: {"model": Problem}, 503: {"model": Problem}})

    @r.post("/devices", status_code=201, responses={409: {"model": Problem}, 422: {"model": Problem}})
    async def register(body: DeviceBody, phone: str = Depends(current_phone),
                       deps: ApiDeps = Depends(get_deps)) -> DeviceCreated:  # noqa: B008
        """Register this app install (or rotate its SIP password if its push token is
        already registered for this relative). The password is shown only here."""
        try:
            platform = check_registration(body.platform, body.token, body.app_id)
        except DeviceError as err:
            raise HTTPException(422, str(err)) from err
        door = _app_sip(deps)
        try:
            device, password = await _store(deps).register(phone, platform, body.token, body.app_id)
        except TooManyDevices as err:
            raise HTTPException(409, f"too many devices (at most {MAX_DEVICES}): delete one first") from err
        return DeviceCreated(device_id=device.device_id, sip=SipAccount(
            username=device.endpoint, password=password, server=door.host, port=door.port,
            transport=door.transport, domain=door.host))

    @r.get("/devices")
    async def devices(phone: str = Depends(current_phone),
                      deps: ApiDeps = Depends(get_deps)) -> list[DeviceInfo]:  # noqa: B008
        """My devices, oldest first (never their SIP secrets)."""
        return [_info(d) for d in await _store(deps).devices(phone)]

    @r.delete("/devices/{device_id}", status_code=204, responses={404: {"model": Problem}})
    async def delete(device_id: DevicePath, phone: str = Depends(current_phone),
                     deps: ApiDeps = Depends(get_deps)) -> Response:  # noqa: B008
        """Revoke a device: its SIP account is refused from Asterisk's next request on."""
        if not await _store(deps).delete(phone, device_id):
            raise HTTPException(404, "no such device")
        return Response(status_code=204)

    @r.get("/status")
    async def status(phone: str = Depends(current_phone),
                     deps: ApiDeps = Depends(get_deps)) -> AppStatus:  # noqa: B008
        """green: a device is reachable now; yellow: a device can be woken by push; red: nothing usable."""
        mine = await _store(deps).devices(phone)
        reachable: set[str] | None = None
        if mine and deps.contacts is not None:
            reachable = await deps.contacts.reachable([d.endpoint for d in mine])
        ids = {d.device_id for d in mine if reachable is not None and d.endpoint in reachable}
        return AppStatus(light=status_light(mine, ids), devices=[_info(d, reachable) for d in mine])

    return r
