"""`kinline payout list` / `kinline payout paid ID` over refunds asked in the relatives' API."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ivr.relatives import code_hash, token_hash
from store.redis_store import RedisStore
from store.relatives import RelativeStore
from tests.component.test_cli import CliRunner, cli, ok

__all__ = ["cli"]  # the fixture, shared

PHONE = "+79161234567"


async def _refund_asked(store: RedisStore) -> str:
    rel = RelativeStore(store.redis)
    assert await rel.issue_code(PHONE, code_hash(PHONE, "123456"), datetime.now(UTC))
    assert await rel.check_code(PHONE, code_hash(PHONE, "123456"), token_hash("t")) == "ok"
    await rel.create_payment("p1", PHONE, 5000)
    await rel.credit_payment("p1", 5000)
    payout = await rel.refund("op-refund-1", PHONE, 1250)
    return payout.id


def test_payout_list_and_paid(cli: CliRunner, capsys: pytest.CaptureFixture[str]) -> None:
    assert ok(cli(capsys, "payout", "list")) == "no payouts to pay\n"
    payout_id = cli.run(_refund_asked)
    out = ok(cli(capsys, "payout", "list"))
    assert payout_id in out and PHONE in out and "12.50" in out and "requested" in out
    assert ok(cli(capsys, "payout", "paid", str(payout_id))) == f"payout {payout_id} marked paid\n"
    assert ok(cli(capsys, "payout", "paid", str(payout_id))) == f"payout {payout_id} was already paid\n"
    assert ok(cli(capsys, "payout", "list")) == "no payouts to pay\n"
    out = ok(cli(capsys, "payout", "list", "--all"))
    assert payout_id in out and "paid" in out
    code, _, err = cli(capsys, "payout", "paid", "nope")
    assert code == 2 and "no payout nope" in err
