"""`kinline` (tools.cli.main) against the test redis-server and a temp state folder."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import hashlib
import io
import json
import re
import stat
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from ivr.model import CallRecord, CardStatus, InmateStatus
from ivr.pin import PinHasher
from ivr.tariffs import RouteKind, demo_tariff
from store.redis_store import RedisStore, connect
from tests.component.conftest import RedisServer
from tools.cli import UsageError, main, parse_money
from tools.config import REPO, load_config, load_secrets


@pytest.fixture
def cli(flushed: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    text = (REPO / "config" / "test.toml").read_text()
    text, count = re.subn(r"(?m)^redis\s*=\s*\d+", f"redis = {flushed.port}", text)
    assert count == 1
    config = tmp_path / "kinline.toml"
    config.write_text(text)
    state = tmp_path / "state"
    monkeypatch.setenv("KINLINE_STATE", str(state))
    monkeypatch.delenv("KINLINE_CONFIG", raising=False)
    # The services' Redis user, with this state folder's password (as the stack's ACL file makes it).
    password = load_secrets(load_config(config)).redis_password
    with contextlib.closing(redis.Redis(host=flushed.host, port=flushed.port)) as client:
        client.acl_setuser("kinline", enabled=True, reset_passwords=True, passwords=[f"+{password}"],
                           keys=["*"], channels=["*"], commands=["+@all", "-@admin"])
    return CliRunner(config, state, flushed)


class CliRunner:
    def __init__(self, config: Path, state: Path, server: RedisServer) -> None:
        self.config, self.state, self.server = config, state, server

    def __call__(self, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
        code = main(["--config", str(self.config), *args])
        out, err = capsys.readouterr()
        return code, out, err

    def pins(self) -> PinHasher:
        """The CLI's PIN key: the one in the state folder's secrets file."""
        return PinHasher.from_hex(load_secrets(load_config(self.config)).pin_key)

    def run(self, coro_fn: object) -> object:
        async def go() -> object:
            store = RedisStore(connect(self.server.url))
            try:
                return await coro_fn(store)  # type: ignore[operator]
            finally:
                await store.aclose()

        return asyncio.run(go())


def ok(result: tuple[int, str, str]) -> str:
    code, out, err = result
    assert code == 0, err
    assert err == ""
    return out


def provision(cli: CliRunner, capsys: pytest.CaptureFixture[str]) -> None:
    ok(cli(capsys, "facility", "add", "f1", "Facility One", "--tz", "Europe/Moscow", "--currency", "RUB",
           "--language", "ru", "--schedule", "mon-sun 08:00-21:00", "--max-minutes", "15"))
    ok(cli(capsys, "inmate", "add", "i1", "Ivan Petrov", "--facility", "f1", "--status", "convicted"))
    ok(cli(capsys, "card", "add", "1001", "--inmate", "i1", "--pin", "2468"))
    ok(cli(capsys, "number", "allow", "1001", "+79161234567", "--label", "Mother"))
    ok(cli(capsys, "tariff", "set", "--facility", "f1", "--fee", "1.50", "--free-seconds", "3",
           "--increment", "60", "--rate", "mobile:7:3.59", "--rate", "landline:7:3.07",
           "--rate", "app_audio::2.05", "--rate", "app_video::7", "--rate", "international::3.59"))
    ok(cli(capsys, "topup", "1001", "500.00", "--payment-id", "pay-1"))


def test_round_trip(cli: CliRunner, capsys: pytest.CaptureFixture[str]) -> None:
    provision(cli, capsys)
    ok(cli(capsys, "number", "allow", "1001", "+79031234567", "--label", "Lawyer", "--privileged"))
    ok(cli(capsys, "inmate", "add", "i2", "Jean Dupont", "--facility", "f1", "--status", "suspect",
           "--permission-until", "2025-12-31"))
    # the same payment twice moves money once
    assert "500.00 RUB" in ok(cli(capsys, "topup", "1001", "500.00", "--payment-id", "pay-1"))
    assert "510.50 RUB" in ok(cli(capsys, "topup", "1001", "10.5", "--payment-id", "pay-2"))
    assert "500.50 RUB" in ok(cli(capsys, "refund", "1001", "10", "--payment-id", "ref-1"))

    async def check(store: RedisStore) -> None:
        facility = await store.facility("f1")
        assert facility is not None
        assert (facility.timezone, facility.currency, facility.language, facility.max_call_s) == (
            "Europe/Moscow", "RUB", "ru", 900)
        assert await store.tariff("f1") == demo_tariff()
        card = await store.card("1001")
        assert card is not None and card.balance == 50050 and card.language == "ru"
        assert card.status is CardStatus.ACTIVE and cli.pins().verify("2468", card.pin_hash)
        assert card.pin_hash.startswith(f"hmac-sha256${cli.pins().key_id}$")
        numbers = await store.list_numbers("1001")
        assert [(n.e164, n.label, n.privileged) for n in numbers] == [
            ("+79031234567", "Lawyer", True), ("+79161234567", "Mother", False)]
        suspect = await store.inmate("i2")
        assert suspect is not None and suspect.status is InmateStatus.SUSPECT
        # valid through 31 December, Moscow time
        assert suspect.permission_until == datetime(2025, 12, 31, 21, 0, tzinfo=UTC)
        assert [e.kind for e in await store.ledger("1001")] == ["refund", "topup", "topup"]

    cli.run(check)

    ok(cli(capsys, "inmate", "suspend", "i1", "--until", "2030-01-01T10:00"))
    ok(cli(capsys, "card", "block", "1001"))

    async def check_blocked(store: RedisStore) -> None:
        inmate = await store.inmate("i1")
        assert inmate is not None and inmate.suspended_until == datetime(2030, 1, 1, 7, 0, tzinfo=UTC)
        assert (await store.card("1001")).status is CardStatus.BLOCKED  # type: ignore[union-attr]

    cli.run(check_blocked)
    ok(cli(capsys, "inmate", "unsuspend", "i1"))
    ok(cli(capsys, "card", "unlock", "1001"))
    ok(cli(capsys, "card", "pin", "1001", "--pin", "97531"))
    ok(cli(capsys, "number", "remove", "1001", "+79031234567"))

    async def check_back(store: RedisStore) -> None:
        inmate = await store.inmate("i1")
        assert inmate is not None and inmate.suspended_until is None
        card = await store.card("1001")
        assert card is not None and card.status is CardStatus.ACTIVE and cli.pins().verify("97531", card.pin_hash)
        assert [n.e164 for n in await store.list_numbers("1001")] == ["+79161234567"]

    cli.run(check_back)

    out = ok(cli(capsys, "facility", "show", "f1"))
    assert "Facility One" in out and "mobile" in out and "3.59 RUB/min" in out and "1.50 RUB" in out
    out = ok(cli(capsys, "tariff", "show", "--facility", "f1"))
    assert "+7" in out and "3.07 RUB/min" in out
    assert "1001" in ok(cli(capsys, "inmate", "show", "i1"))


def test_card_show(cli: CliRunner, capsys: pytest.CaptureFixture[str]) -> None:
    provision(cli, capsys)
    out = ok(cli(capsys, "card", "show", "1001"))
    assert "balance      500.00 RUB" in out
    assert "status       active" in out
    assert "Ivan Petrov" in out and "+79161234567" in out and "Mother" in out
    assert "no calls yet" in out
    assert "2468" not in out


def test_card_show_shows_the_lock_and_the_open_hold(cli: CliRunner, capsys: pytest.CaptureFixture[str]) -> None:
    provision(cli, capsys)
    out = ok(cli(capsys, "card", "show", "1001"))
    assert "in a call    no" in out and "holds        none" in out

    async def dialing(store: RedisStore) -> None:
        assert await store.acquire_card("1001", "1718031234.7", 300)
        await store.reserve("1718031234.7", "1001", 1234, 600)

    cli.run(dialing)
    out = ok(cli(capsys, "card", "show", "1001"))
    lock = re.search(r"in a call    yes, locked by call 1718031234\.7 \(lock expires in (\d+) s\)", out)
    assert lock is not None and 290 <= int(lock.group(1)) <= 300
    assert re.search(r"holds        12\.34 RUB for call 1718031234\.7 \(returned by \d{4}-", out)
    assert "balance      487.66 RUB" in out

    async def settled(store: RedisStore) -> None:
        await store.settle(_record("1718031234.7", 868))
        await store.release_card("1001", "1718031234.7")

    cli.run(settled)
    out = ok(cli(capsys, "card", "show", "1001"))
    assert "in a call    no" in out and "holds        none" in out


def test_card_ledger_lists_every_movement(cli: CliRunner, capsys: pytest.CaptureFixture[str]) -> None:
    provision(cli, capsys)

    async def call(store: RedisStore) -> None:
        await store.reserve("1718031234.5", "1001", 1000, 60)
        await store.settle(_record("1718031234.5", 868))

    cli.run(call)
    out = ok(cli(capsys, "card", "ledger", "1001"))
    lines = out.splitlines()
    assert lines[0] == "card 1001 ledger (4, newest first):"
    kinds = [line.split()[3] for line in lines[1:]]
    assert kinds == ["release", "charge", "reserve", "topup"]
    assert re.search(r"topup +\+ +500\.00  balance +500\.00 RUB  pay-1$", lines[4])
    assert re.search(r"reserve +- +10\.00  balance +490\.00 RUB  1718031234\.5$", lines[3])
    assert re.search(r"release +\+ +1\.32  balance +491\.32 RUB  1718031234\.5$", lines[1])
    out = ok(cli(capsys, "card", "ledger", "1001", "--limit", "1"))
    assert len(out.splitlines()) == 2 and "release" in out
    code, _, err = cli(capsys, "card", "ledger", "4242")
    assert code == 2 and "4242" in err


def test_terminal_remove(cli: CliRunner, capsys: pytest.CaptureFixture[str]) -> None:
    provision(cli, capsys)
    ok(cli(capsys, "terminal", "add", "term1", "--facility", "f1"))
    ok(cli(capsys, "terminal", "add", "term2", "--facility", "f1"))
    out = ok(cli(capsys, "terminal", "remove", "term1"))
    assert "terminal term1 removed" in out and "not running" in out
    saved = json.loads((cli.state / "terminals.json").read_text())
    assert [t["name"] for t in saved] == ["term2"]
    conf = (cli.state / "generated" / "pjsip_terminals.conf").read_text()
    assert "[term1]" not in conf and "[term2](terminal-auth)" in conf
    assert "term1" not in ok(cli(capsys, "facility", "show", "f1"))
    code, _, err = cli(capsys, "terminal", "remove", "term1")
    assert code == 2 and "no terminal term1" in err


def _record(call_id: str, amount: int) -> CallRecord:
    return CallRecord(
        call_id=call_id, uniqueid=call_id, card="1001", inmate_id="i1", facility_id="f1",
        number="+79161234567", route_kind=RouteKind.MOBILE.value, payer="caller",
        started_at=datetime(2025, 3, 1, 12, 0, tzinfo=UTC), answered_s=61, billed_s=120, amount=amount,
        dial_status="ANSWER", hangup_cause="16", recording_path="/rec/call, \"one\".wav", recording_sha256="ab" * 32,
    )


def test_export_cdr_after_a_settle(cli: CliRunner, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    provision(cli, capsys)
    out = ok(cli(capsys, "card", "export-cdr", "1001"))
    columns = [f.name for f in fields(CallRecord)]
    assert list(csv.reader(io.StringIO(out))) == [columns]

    async def call(store: RedisStore) -> None:
        await store.reserve("1718031234.5", "1001", 1000, 60)
        await store.settle(_record("1718031234.5", 868))

    cli.run(call)
    out = ok(cli(capsys, "card", "export-cdr", "1001"))
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 1
    row = rows[0]
    assert list(row) == columns
    assert row["call_id"] == "1718031234.5" and row["amount"] == "868" and row["billed_s"] == "120"
    assert row["started_at"] == "2025-03-01T12:00:00+00:00"
    assert row["recording_path"] == "/rec/call, \"one\".wav"

    target = tmp_path / "cdr.csv"
    code, out, err = cli(capsys, "card", "export-cdr", "1001", "--out", str(target))
    assert code == 0 and out == "" and "1 call records" in err
    assert list(csv.DictReader(target.open(newline=""))) == rows

    show = ok(cli(capsys, "card", "show", "1001"))
    assert "balance      491.32 RUB" in show
    assert "+79161234567" in show and "8.68 RUB" in show


def _md5_cred(name: str, password: str) -> str:
    """RFC 2617 HA1 with the realm of asterisk/conf/pjsip.conf, computed here on its own."""
    return hashlib.md5(f"{name}:kinline:{password}".encode(), usedforsecurity=False).hexdigest()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_terminal_add_stores_only_the_digest_and_prints_the_password_once(
    cli: CliRunner, capsys: pytest.CaptureFixture[str]
) -> None:
    provision(cli, capsys)
    out = ok(cli(capsys, "terminal", "add", "term1", "--facility", "f1"))
    found = re.search(r"SIP password \(shown once, not stored\): ([A-Za-z0-9]+)", out)
    assert found is not None and len(found.group(1)) >= 20
    password = found.group(1)
    assert "not running" in out
    path = cli.state / "terminals.json"
    saved = json.loads(path.read_text())
    assert saved == [{"name": "term1", "md5_cred": _md5_cred("term1", password), "language": "ru", "facility": "f1"}]
    assert _mode(path) == 0o600
    conf = (cli.state / "generated" / "pjsip_terminals.conf").read_text()
    assert "[term1](terminal-auth)" in conf and "KINLINE_FACILITY=f1" in conf
    assert f"md5_cred = {_md5_cred('term1', password)}" in conf
    # The password is nowhere in the state folder: neither the terminals file nor the generated config.
    for file in cli.state.rglob("*"):
        if file.is_file():
            assert password.encode() not in file.read_bytes(), file
    assert password not in ok(cli(capsys, "facility", "show", "f1"))

    code, _, err = cli(capsys, "terminal", "add", "term1", "--facility", "f1")
    assert code == 2 and "exists" in err
    code, _, err = cli(capsys, "terminal", "add", "term2", "--facility", "nope")
    assert code == 2 and "no facility nope" in err
    code, _, err = cli(capsys, "terminal", "add", "term2", "--facility", "f1", "--password", "short")
    assert code == 2 and "password" in err
    # A password given by staff is stored as its digest and not echoed.
    out = ok(cli(capsys, "terminal", "add", "term2", "--facility", "f1", "--password", "GivenByStaff2025"))
    assert "GivenByStaff2025" not in out and "shown once" not in out
    assert json.loads(path.read_text())[1]["md5_cred"] == _md5_cred("term2", "GivenByStaff2025")
    assert b"GivenByStaff2025" not in path.read_bytes()


def test_terminal_password_replaces_the_digest(cli: CliRunner, capsys: pytest.CaptureFixture[str]) -> None:
    provision(cli, capsys)
    ok(cli(capsys, "terminal", "add", "term1", "--facility", "f1", "--language", "en"))
    ok(cli(capsys, "terminal", "add", "term2", "--facility", "f1", "--password", "KeepThisOne2025"))
    path = cli.state / "terminals.json"
    before = json.loads(path.read_text())
    out = ok(cli(capsys, "terminal", "password", "term1"))
    found = re.search(r"SIP password \(shown once, not stored\): ([A-Za-z0-9]+)", out)
    assert found is not None and "old one no longer works" in out
    after = json.loads(path.read_text())
    assert after[0] == {**before[0], "md5_cred": _md5_cred("term1", found.group(1))}
    assert after[0]["md5_cred"] != before[0]["md5_cred"] and after[0]["language"] == "en"
    assert after[1] == before[1]  # the other terminal is untouched
    conf = (cli.state / "generated" / "pjsip_terminals.conf").read_text()
    assert f"md5_cred = {_md5_cred('term1', found.group(1))}" in conf and before[0]["md5_cred"] not in conf
    out = ok(cli(capsys, "terminal", "password", "term1", "--password", "ChosenByStaff2025"))
    assert "ChosenByStaff2025" not in out and json.loads(path.read_text())[0]["md5_cred"] == _md5_cred(
        "term1", "ChosenByStaff2025")
    code, _, err = cli(capsys, "terminal", "password", "nobody")
    assert code == 2 and "no terminal nobody" in err
    code, _, err = cli(capsys, "terminal", "password", "term1", "--password", "short")
    assert code == 2 and "password" in err
    assert json.loads(path.read_text())[0]["md5_cred"] == _md5_cred("term1", "ChosenByStaff2025")


def test_an_old_terminals_file_with_passwords_is_converted(
    cli: CliRunner, capsys: pytest.CaptureFixture[str]
) -> None:
    provision(cli, capsys)
    path = cli.state / "terminals.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    old = [{"name": "term-old", "password": "OldPlaintext2024", "language": "fr", "facility": "f1"}]
    path.write_text(json.dumps(old))
    path.chmod(0o644)
    # Any command that reads the terminals rewrites the file with digests only.
    assert "term-old" in ok(cli(capsys, "facility", "show", "f1"))
    assert json.loads(path.read_text()) == [
        {"name": "term-old", "md5_cred": _md5_cred("term-old", "OldPlaintext2024"), "language": "fr", "facility": "f1"}
    ]
    assert b"OldPlaintext2024" not in path.read_bytes() and _mode(path) == 0o600
    ok(cli(capsys, "terminal", "add", "term-new", "--facility", "f1"))
    conf = (cli.state / "generated" / "pjsip_terminals.conf").read_text()
    assert f"md5_cred = {_md5_cred('term-old', 'OldPlaintext2024')}" in conf and "[term-new](terminal-auth)" in conf


def test_demo_load_is_idempotent(cli: CliRunner, capsys: pytest.CaptureFixture[str]) -> None:
    first = ok(cli(capsys, "demo", "load"))
    second = ok(cli(capsys, "demo", "load"))
    assert "1001" in first and "2468" in first and "500.00 RUB" in first
    assert first == second  # same terminal password, same balance
    # terminals.json holds the demo terminal's digest; its password is in the demo's own 0600 file.
    password = re.search(r"sip_password +([A-Za-z0-9]+)", first)
    assert password is not None and len(password.group(1)) >= 20
    assert json.loads((cli.state / "terminals.json").read_text()) == [
        {"name": "demo-term", "md5_cred": _md5_cred("demo-term", password.group(1)), "language": "ru",
         "facility": "demo"}
    ]
    kept = cli.state / "demo_sip_password"
    assert kept.read_text().strip() == password.group(1) and _mode(kept) == 0o600
    # Without that file (or with one that no longer matches) the demo terminal gets a new password.
    kept.unlink()
    third = ok(cli(capsys, "demo", "load"))
    renewed = re.search(r"sip_password +([A-Za-z0-9]+)", third)
    assert renewed is not None and renewed.group(1) != password.group(1)
    assert json.loads((cli.state / "terminals.json").read_text())[0]["md5_cred"] == _md5_cred(
        "demo-term", renewed.group(1))
    assert kept.read_text().strip() == renewed.group(1)

    async def check(store: RedisStore) -> None:
        card = await store.card("1001")
        assert card is not None and card.balance == 50000 and cli.pins().verify("2468", card.pin_hash)
        assert await store.tariff("demo") == demo_tariff()
        lawyer = await store.allowed_number("1001", "+79031234567")
        assert lawyer is not None and lawyer.privileged
        assert len(await store.list_numbers("1001")) == 3
        assert [e.kind for e in await store.ledger("1001")] == ["topup"]

    cli.run(check)


def test_demo_load_leaves_a_real_card_1001_alone(cli: CliRunner, capsys: pytest.CaptureFixture[str]) -> None:
    provision(cli, capsys)
    code, _, err = cli(capsys, "demo", "load")
    assert code == 2 and "not the demo card" in err

    async def check(store: RedisStore) -> None:
        card = await store.card("1001")
        assert card is not None and card.balance == 50000 and card.inmate_id == "i1"
        assert await store.facility("demo") is None

    cli.run(check)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("tariff", "set", "--facility", "f1", "--fee", "1.50", "--rate", "mobile:7:3.599"), "at most 2 decimals"),
        (("tariff", "set", "--facility", "f1", "--fee", "-1", "--rate", "mobile:7:3.59"), "bad amount"),
        (("tariff", "set", "--facility", "f1", "--fee", "1", "--rate", "boat:7:3.59"), "bad route kind"),
        (("tariff", "set", "--facility", "f1", "--fee", "1", "--rate", "mobile:7"), "KIND:PREFIX:PRICE"),
        (("tariff", "set", "--facility", "f1", "--fee", "1", "--rate", "mobile:7:1", "--rate", "mobile:7:2"),
         "duplicate"),
        (("topup", "1001", "3.599", "--payment-id", "p"), "at most 2 decimals"),
        (("topup", "1001", "abc", "--payment-id", "p"), "bad amount"),
        (("topup", "1001", "0", "--payment-id", "p"), "more than 0"),
        (("topup", "9999", "1.00", "--payment-id", "p"), "no card 9999"),
        (("topup", "1001", "1.00"), "--payment-id"),
        (("refund", "1001", "5000.00", "--payment-id", "r"), "balance"),
        (("card", "show", "9999"), "no card 9999"),
        (("card", "unlock", "9999"), "no card 9999"),
        (("card", "export-cdr", "9999"), "no card 9999"),
        (("card", "add", "1002", "--inmate", "i1", "--pin", "12"), "bad PIN"),
        (("card", "add", "1001", "--inmate", "i1", "--pin", "1234"), "exists"),
        (("card", "add", "12ab", "--inmate", "i1", "--pin", "1234"), "bad card number"),
        (("number", "allow", "1001", "89161234567"), "E.164"),
        (("number", "remove", "1001", "+70000000000"), "not on the list"),
        (("facility", "add", "f2", "X", "--tz", "Mars/Olympus"), "time zone"),
        (("facility", "add", "f2", "X", "--schedule", "someday 8-9"), "bad day"),
        (("facility", "add", "f2", "X", "--currency", "USD"), "invalid choice"),
        (("inmate", "add", "i3", "X", "--facility", "f1", "--suspended-until", "31/12/2025"), "bad date"),
        (("inmate", "suspend", "nobody"), "no inmate nobody"),
        (("nonsense",), "invalid choice"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    cli: CliRunner, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    provision(cli, capsys)
    code, _, err = cli(capsys, *args)
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and err.startswith("kinline: ")
    assert "Traceback" not in err


def test_parse_money() -> None:
    assert parse_money("1.50") == 150
    assert parse_money("3.59") == 359
    assert parse_money("7") == 700
    assert parse_money("0.5") == 50
    assert parse_money("3.590") == 359
    for bad in ("3.599", "-1", "1e3", "", "1,50", "NaN", " .5"):
        with pytest.raises(UsageError):
            parse_money(bad)


def test_redis_down_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.component.conftest import _free_port

    text = re.sub(r"(?m)^redis\s*=\s*\d+", f"redis = {_free_port()}", (REPO / "config" / "test.toml").read_text())
    config = tmp_path / "kinline.toml"
    config.write_text(text)
    monkeypatch.setenv("KINLINE_STATE", str(tmp_path / "state"))
    assert main(["--config", str(config), "card", "show", "1001"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("kinline: Redis at") and err.count("\n") == 1


def test_terminal_unthrottle_clears_failed_logins(cli: CliRunner, capsys: pytest.CaptureFixture[str]) -> None:
    now = datetime.now(UTC)

    async def fail(store: RedisStore) -> None:
        for _ in range(5):
            await store.record_login_failure("term-a1", now, 24 * 3600)

    cli.run(fail)
    assert "5 failed login(s)" in ok(cli(capsys, "terminal", "unthrottle", "term-a1"))

    async def check(store: RedisStore) -> None:
        assert await store.login_failures("term-a1", now - timedelta(days=1)) == []

    cli.run(check)
    assert "0 failed login(s)" in ok(cli(capsys, "terminal", "unthrottle", "term-a1"))
