"""The plan of one dial attempt: what to dial and how to bill it.

As compact JSON it is kept on the channel between routes and stored with the
reservation, so an attempt can be settled without its channel.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from ivr import billing, drops
from ivr import prompts as p
from ivr.model import CallRecord, Settlement
from ivr.ports import Wallet
from ivr.tariffs import Tariff

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallPlan:
    """Everything needed to dial one number and to bill it afterwards."""

    call_id: str
    uniqueid: str
    card: str
    inmate_id: str
    facility_id: str
    e164: str
    route_kind: str
    payer: str
    rate: int
    fee: int
    free_threshold_s: int
    increment_s: int
    max_s: int
    warn_s: int
    record: bool
    reserved: int
    started_at: datetime

    @property
    def warning_prompt(self) -> str:
        """"One minute left" when that is true; a short call only hears "ending soon"."""
        return p.LIMIT_WARNING if self.warn_s == 60 else p.LIMIT_WARNING_SOON

    def tariff(self) -> Tariff:
        return Tariff(rates=(), connection_fee=self.fee, free_threshold_s=self.free_threshold_s,
                      increment_s=self.increment_s)


def plan_to_json(plan: CallPlan) -> str:
    data: dict[str, Any] = {}
    for f in fields(CallPlan):
        value = getattr(plan, f.name)
        data[f.name] = int(value.timestamp() * 1000) if isinstance(value, datetime) else value
    return json.dumps(data, separators=(",", ":"))


def plan_from_json(text: str) -> CallPlan:
    data: dict[str, Any] = json.loads(text)
    for f in fields(CallPlan):
        if f.type == "datetime":
            data[f.name] = datetime.fromtimestamp(data[f.name] / 1000, UTC)
    return CallPlan(**data)


def answered_seconds(answered_ms: int, plan: CallPlan) -> int:
    """Whole seconds to bill: a started second counts once past the free
    threshold (2.9 s is free, 60.2 s is 61 s); never more than the call's limit."""
    ms = max(0, answered_ms)
    seconds = -(-ms // 1000) if ms >= plan.free_threshold_s * 1000 else ms // 1000
    return min(seconds, plan.max_s)


def completed_seconds(answered_ms: int, plan: CallPlan) -> int:
    """Seconds of a dropped call that are billed: the whole increments completed
    before the drop (the increment in which it dropped is credited)."""
    whole_s = min(max(0, answered_ms) // 1000, plan.max_s)
    return whole_s - whole_s % plan.increment_s


def call_record(plan: CallPlan, dial_status: str, answered_ms: int, hangup_cause: str,
                recording_path: str = "", recording_sha256: str = "",
                connected_at: datetime | None = None, ended_at: datetime | None = None,
                evidence: str = "call") -> CallRecord:
    """The call detail record of an attempt, priced by its plan.

    A call that dropped (``ivr.drops``: the network or the platform failed) is
    billed for its completed increments only; ``credit_reason`` says why."""
    answered = answered_seconds(answered_ms, plan) if dial_status == "ANSWER" else 0
    tariff = plan.tariff()
    credit_reason = drops.drop_reason(dial_status, hangup_cause)
    billable = completed_seconds(answered_ms, plan) if credit_reason else answered
    return CallRecord(
        call_id=plan.call_id, uniqueid=plan.uniqueid, card=plan.card, inmate_id=plan.inmate_id,
        facility_id=plan.facility_id, number=plan.e164, route_kind=plan.route_kind, payer=plan.payer,
        started_at=plan.started_at, answered_s=answered,
        billed_s=billing.billed_seconds(billable, tariff),
        amount=billing.charge(billable, plan.rate, tariff),
        dial_status=dial_status or "NONE", hangup_cause=hangup_cause,
        recording_path=recording_path, recording_sha256=recording_sha256,
        connected_at=connected_at, ended_at=ended_at, evidence=evidence, credit_reason=credit_reason,
    )


async def settle_record(wallet: Wallet, plan: CallPlan, record: CallRecord) -> Settlement:
    """Charge the record from the attempt's hold (once: a second time moves nothing)."""
    settlement = await wallet.settle(record)
    log.info("[%s] settled %s (%s): %s answered %d s, charged %d, released %d%s%s", plan.uniqueid,
             plan.call_id, record.evidence, record.dial_status, record.answered_s, settlement.charged,
             settlement.released, f" ({record.credit_reason})" if record.credit_reason else "",
             " (already settled)" if settlement.duplicate else "")
    return settlement
