# ruff: noqa: F811 (the cli fixture imported from test_cli is a parameter here)
"""A dropped call's settlement against a real redis-server: the charge entry
carries the reason as its note (other entries have none), the record keeps it,
the reconciler credits a drop it reads from the event log, and the CLI shows it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ivr.call_plan import call_record, plan_to_json
from ivr.settlement import Bridged, Ended, Reconciler, SwitchView
from reconciler.cel import parse_line
from store.redis_store import RedisStore
from tests.component.test_cli import CliRunner, cli, ok  # noqa: F401 (the cli fixture)
from tests.component.test_cli import provision as provision_cli
from tests.component.test_redis_store import CARD, balance, provision
from tests.unit.test_settlement import PLAN, T0

REASON = "dropped: network cause 44, last increment credited"


async def _recording(plan: object) -> tuple[str, str]:
    return "", ""


async def test_settle_writes_the_reason_on_the_charge_entry(store: RedisStore) -> None:
    await provision(store, balance=10_000)
    plan = replace(PLAN, card=CARD, increment_s=6, record=False)
    await store.reserve(plan.call_id, CARD, plan.reserved, 60, plan_to_json(plan))
    record = call_record(plan, "ANSWER", 13_400, "44")
    assert (record.billed_s, record.amount, record.credit_reason) == (12, 150 + 72, REASON)
    settled = await store.settle(record)
    assert settled.charged == 150 + 72
    assert await balance(store) == 10_000 - 222
    ledger = await store.ledger(CARD)
    assert [(e.kind, e.amount, e.note) for e in ledger] == [
        ("release", plan.reserved - 222, ""),
        ("charge", 222, REASON),
        ("reserve", plan.reserved, ""),
        ("topup", 10_000, ""),
    ]
    assert await store.call_record(plan.call_id) == record
    # a second settle moves nothing and writes no second note
    assert (await store.settle(record)).duplicate
    assert len(await store.ledger(CARD)) == 4


async def test_a_normal_call_has_no_note(store: RedisStore) -> None:
    await provision(store, balance=10_000)
    plan = replace(PLAN, card=CARD, record=False)
    await store.reserve(plan.call_id, CARD, plan.reserved, 60, plan_to_json(plan))
    await store.settle(call_record(plan, "ANSWER", 13_400, "16"))
    assert [(e.kind, e.note) for e in await store.ledger(CARD, 2)] == [("release", ""), ("charge", "")]
    raw = await store.redis.xrevrange(f"kl:card:{CARD}:ledger", count=2)
    assert all("note" not in fields for _, fields in raw)  # old readers see the same entry as before


async def test_the_reconciler_credits_a_drop_read_from_the_event_log(store: RedisStore) -> None:
    await provision(store, balance=10_000)
    plan = replace(PLAN, card=CARD, record=False)
    await store.reserve(plan.call_id, CARD, plan.reserved, 1200, plan_to_json(plan))
    reconciler = Reconciler(store, store, _recording)
    await reconciler.record(Bridged(plan.call_id, T0))
    line = ('"kinline_end","1795000075.0","1795000000.7","kinline_end",'
            f'"{{""extra"":""kl2 {plan.call_id} {T0 + 75_000} ANSWER 16 44""}}"')
    fact = parse_line(line)
    assert fact == Ended(plan.call_id, T0 + 75_000, "ANSWER", "44")
    await reconciler.record(fact)
    report = await reconciler.run_once(T0 + 90_000, SwitchView(alive_at_ms=T0 + 90_000))
    assert report.settled == [plan.call_id]
    [cdr] = await store.call_records(CARD)
    # 75 s talked at 60 s increments: one whole minute billed, the second credited
    assert (cdr.answered_s, cdr.billed_s, cdr.amount, cdr.evidence) == (75, 60, 150 + 359, "exact")
    assert cdr.credit_reason == REASON
    charge = [e for e in await store.ledger(CARD) if e.kind == "charge"]
    assert [(e.amount, e.note) for e in charge] == [(150 + 359, REASON)]


def test_card_ledger_shows_the_note(cli: CliRunner, capsys: pytest.CaptureFixture[str]) -> None:
    provision_cli(cli, capsys)
    plan = replace(PLAN, card="1001", facility_id="f1", record=False, reserved=1000)

    async def dropped(store: RedisStore) -> None:
        await store.reserve(plan.call_id, "1001", 1000, 60, plan_to_json(plan))
        await store.settle(call_record(plan, "ANSWER", 13_400, "44"))

    cli.run(dropped)
    lines = ok(cli(capsys, "card", "ledger", "1001")).splitlines()
    charge = [line for line in lines if " charge " in line]
    assert len(charge) == 1
    assert charge[0].endswith(f"{plan.call_id}  ({REASON})")
    assert not any("(" in line for line in lines[1:] if " charge " not in line)
