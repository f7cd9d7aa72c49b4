"""`kinline relative show | unblock | refund-inactive` against a real Redis."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ivr.relatives import CardSettings
from store.redis_store import RedisStore
from store.relatives import RelativeStore
from tests.component.test_cli import CliRunner, cli, ok

__all__ = ["cli"]  # the fixture, shared

PHONE = "+79161234567"
IDLE = "+79031234567"


async def _accounts(store: RedisStore) -> None:
    """PHONE: active, blocked card 1001 and a capped card 1002. IDLE: 37.50 and no
    movement for 200 days (an account as it stands after that long: written directly)."""
    rel = RelativeStore(store.redis)
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    await store.redis.hset(f"kl:rel:{PHONE}", mapping={"phone": PHONE, "balance": "1500", "created": str(now_ms)})
    await rel.put_card_settings(PHONE, "1001", CardSettings(always_in_touch=True, blocked=True))
    await rel.put_card_settings(PHONE, "1002", CardSettings(always_in_touch=True, cap_day=30000))
    old_ms = now_ms - 200 * 86_400_000
    await store.redis.hset(f"kl:rel:{IDLE}", mapping={"phone": IDLE, "balance": "3750", "created": str(old_ms)})
    await store.redis.xadd(f"kl:rel:{IDLE}:ledger", {
        "ts": str(old_ms), "phone": IDLE, "ref": "pay-1", "kind": "topup", "amount": "3750",
        "balance_after": "3750", "card": ""})


def test_relative_show_and_unblock(cli: CliRunner, capsys: pytest.CaptureFixture[str]) -> None:
    cli.run(_accounts)
    out = ok(cli(capsys, "relative", "show", PHONE))
    assert "balance        15.00" in out
    assert "card 1001       BLOCKED; no caps" in out
    assert "card 1002       always in touch; day 300.00" in out
    assert ok(cli(capsys, "relative", "unblock", PHONE, "1001")).startswith(f"card 1001 unblocked for {PHONE}")
    assert "card 1001       always in touch; no caps" in ok(cli(capsys, "relative", "show", PHONE))
    assert ok(cli(capsys, "relative", "unblock", PHONE, "1001")) == f"card 1001 was not blocked by {PHONE}\n"
    code, _, err = cli(capsys, "relative", "show", "+79990000000")
    assert code == 2 and "no relative's account" in err
    code, _, err = cli(capsys, "relative", "show", "8916")
    assert code == 2 and "E.164" in err


def test_relative_refund_inactive(cli: CliRunner, capsys: pytest.CaptureFixture[str]) -> None:
    cli.run(_accounts)
    out = ok(cli(capsys, "relative", "refund-inactive", "--dry-run"))
    assert IDLE in out and "37.50" in out and "would refund" in out and PHONE not in out
    assert out.endswith("1 account(s), 37.50 to refund (dry run)\n")
    assert ok(cli(capsys, "relative", "refund-inactive", "--days", "201")) == "0 account(s), 0.00 refunded\n"
    out = ok(cli(capsys, "relative", "refund-inactive"))
    assert IDLE in out and "refunded, payout" in out and out.endswith("1 account(s), 37.50 refunded\n")
    assert ok(cli(capsys, "relative", "refund-inactive")) == "0 account(s), 0.00 refunded\n"  # once
    listed = ok(cli(capsys, "payout", "list"))
    assert IDLE in listed and "37.50" in listed and "requested" in listed
    assert "balance        0.00" in ok(cli(capsys, "relative", "show", IDLE))
    code, _, err = cli(capsys, "relative", "refund-inactive", "--days", "0")
    assert code == 2 and "--days" in err


def test_refund_inactive_does_not_touch_an_account_idle_less_than_days(
        cli: CliRunner, capsys: pytest.CaptureFixture[str]) -> None:
    cli.run(_accounts)
    assert ok(cli(capsys, "relative", "refund-inactive", "--days", "365")) == "0 account(s), 0.00 refunded\n"
    assert cli.run(lambda s: RelativeStore(s.redis).balance(IDLE)) == 3750
