"""The free audio test call to the relative's app: ``POST /v1/app/test-call`` and its outcome.

The rules are ivr/app_test.py; the limit and the records store/app_test.py; the switch is
asked over AMI (api/originate.py). Never billed."""

from __future__ import annotations

import logging
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Header, HTTPException, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from api.deps import ApiDeps, current_phone, get_deps
from api.idempotency import once
from api.models import Problem
from ivr.app_test import WINDOW_S, NoAppDevice, SwitchUnavailable, TestCalls, TooManyTestCalls
from ivr.clock import now_ms
from store import wake_records as records
from store.devices import DeviceStore

log = logging.getLogger(__name__)

CallPath = Annotated[str, Path(pattern=r"^test-[0-9a-f]{16}$")]


class TestCallBody(BaseModel):
    __test__ = False  # not a pytest class
    model_config = ConfigDict(extra="forbid")
    language: Literal["ru", "fr", "en"] = "ru"


class TestCallStarted(BaseModel):
    call_id: str
    status: str  # "calling": the switch took it; the app is woken if needed
    language: str
    used: int  # test calls in the rolling window, this one included
    limit: int
    window_s: int


class Step(BaseModel):
    event: str  # push_sent, contact_registered, invite_sent, answered, ...
    ms: int  # epoch milliseconds
    device_id: str = ""
    result: str = ""


class TestCallOutcome(BaseModel):
    call_id: str
    status: str  # requested, pushed, registered, ringing, answered, failed (never started: not counted)
    requested_ms: int
    steps: list[Step]


# failed: the switch ended the call before waking or dialing anything (not counted).
_STATUS = ((records.NOT_STARTED, "failed"), (records.ANSWERED, "answered"), (records.INVITE_SENT, "ringing"),
           (records.CONTACT_REGISTERED, "registered"), (records.PUSH_SENT, "pushed"))


class ActiveDevices:
    """``ivr.app_test.Devices`` from the device registry."""

    def __init__(self, store: DeviceStore) -> None:
        self.store = store

    async def active_devices(self, phone: str) -> list[str]:
        return [d.device_id for d in await self.store.devices(phone) if d.active]


def _service(deps: ApiDeps) -> TestCalls:
    if deps.app_tests is None:
        raise HTTPException(503, "test calls are unavailable", headers={"Retry-After": "5"})
    return deps.app_tests


async def _start(deps: ApiDeps, phone: str, body: TestCallBody) -> tuple[int, dict[str, object]]:
    try:
        call = await _service(deps).start(phone, body.language, now_ms())
    except NoAppDevice as err:
        raise HTTPException(409, f"{err}: the test call needs the app installed and registered") from err
    except TooManyTestCalls as err:
        raise HTTPException(429, str(err), headers={"Retry-After": str(err.retry_after_s)}) from err
    except SwitchUnavailable as err:
        log.warning("phone %s...: test call refused: %s", phone[:5], err)
        raise HTTPException(503, "the switch is unavailable: try again later (not counted)",
                            headers={"Retry-After": "30"}) from err
    log.info("phone %s...: test call %s started (%d of %d)", phone[:5], call.call_id, call.used, call.limit)
    return 202, TestCallStarted(call_id=call.call_id, status="calling", language=call.language, used=call.used,
                                limit=call.limit, window_s=WINDOW_S).model_dump()


def router() -> APIRouter:
    r = APIRouter(prefix="/v1/app", tags=["app"], responses={401: {"model": Problem}, 503: {"model": Problem}})

    @r.post("/test-call", status_code=202, response_model=TestCallStarted,
            responses={409: {"model": Problem}, 429: {"model": Problem}})
    async def test_call(body: Annotated[TestCallBody | None, Body()] = None,
                        key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
                        phone: str = Depends(current_phone),
                        deps: ApiDeps = Depends(get_deps)) -> JSONResponse:  # noqa: B008
        """The platform calls my app (woken by push if needed): a voice guide, then I hear
        myself for a few seconds. Free; at most 5 per rolling hour (429 with Retry-After until
        the oldest leaves the hour); 409 without an active device; 503 if the switch cannot be
        asked (neither counted). A call the switch took but could not start (its outcome
        "failed") is given back once the switch ends it. With an Idempotency-Key, a repeat gets the first answer."""
        wanted = body or TestCallBody()

        async def act(_: str) -> tuple[int, dict[str, object]]:
            return await _start(deps, phone, wanted)

        if key is not None:
            return await once(deps.idempotency, phone, key, "test-call", wanted, act)
        status, answer = await act("")
        return JSONResponse(answer, status_code=status)

    @r.get("/test-call/{call_id}", responses={404: {"model": Problem}})
    async def outcome(call_id: CallPath, phone: str = Depends(current_phone),
                      deps: ApiDeps = Depends(get_deps)) -> TestCallOutcome:  # noqa: B008
        """How far my test call got, from its wake records ("failed": the switch never
        started it, and it is not counted)."""
        if deps.test_records is None:
            raise HTTPException(503, "test calls are unavailable", headers={"Retry-After": "5"})
        found = await deps.test_records.get(call_id)
        if found is None or found.phone != phone:
            raise HTTPException(404, "no such test call")
        steps = await deps.test_records.steps(call_id)
        if not steps and deps.app_tests is not None:  # its end may have been lost: settle it now
            await deps.app_tests.sweep(phone, now_ms())
            steps = await deps.test_records.steps(call_id)
        seen = {s.event for s in steps}
        status = next((name for event, name in _STATUS if event in seen), "requested")
        return TestCallOutcome(call_id=call_id, status=status, requested_ms=found.requested_ms,
                               steps=[Step(event=s.event, ms=s.ms, device_id=s.device_id, result=s.result)
                                      for s in steps])

    return r
