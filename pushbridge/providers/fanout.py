"""Push every device of a relative at once: one task per device, results in device order.

A wake's cost is the slowest device, not the sum. A provider that raises (a bug, not an
answer) fails that device only; a device whose platform has no provider fails too."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

from pushbridge.providers.base import Device, Outcome, Platform, PushProvider, PushResult, Wake

log = logging.getLogger(__name__)


async def push_all(
    providers: Mapping[Platform, PushProvider], devices: Sequence[Device], wake: Wake
) -> list[PushResult]:
    return list(await asyncio.gather(*(_push_one(providers, device, wake) for device in devices)))


async def _push_one(providers: Mapping[Platform, PushProvider], device: Device, wake: Wake) -> PushResult:
    provider = providers.get(device.platform)
    if provider is None:
        log.warning("call %s: no %s provider configured for %s", wake.call_id, device.platform, device)
        return PushResult(device, Outcome.FAILED, 0, f"no {device.platform} provider configured")
    try:
        return await provider.send(device, wake)
    except Exception as exc:  # one device's bug must not lose the others' results
        log.exception("call %s: %s push to %s raised", wake.call_id, device.platform, device)
        return PushResult(device, Outcome.FAILED, 0, f"provider error: {type(exc).__name__}: {exc}")
