"""Overload control on the real stack (issue 9): with the overload level set low, a second
caller hears "all lines are busy" and nothing is reserved; the first call is unaffected.

The stack's AGI server is restarted for this module with [agi] max_in_ivr = 1 (and back
with the test config's levels afterwards). Two pjsua2 terminals, Asterisk, Redis and a
pjsua2 relative behind the trunk are the real ones."""

from __future__ import annotations

import asyncio
import wave
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import pytest
import redis.asyncio as aioredis

from store.redis_store import HOLDS, LEDGER, LOCKS, RedisStore
from tests.e2e.conftest import E2E
from tests.e2e.harness import AmiWatch, SipAgent
from tests.e2e.test_inmate_calls import INMATE_SERVICE, MOBILE, PIN, Terminal, new_card, relative  # noqa: F401
from tests.e2e.test_metrics import first_scrape, get, scrape
from tools import stack

pytestmark = pytest.mark.e2e

STEP = 5.0


@pytest.fixture(scope="module")
def one_in_the_ivr(e2e: E2E) -> Iterator[None]:
    stack.stop_service(e2e.config, "agi")
    try:
        stack.start_service(replace(e2e.config, agi_max_in_ivr=1), "agi")
        yield
    finally:
        stack.stop_service(e2e.config, "agi")
        stack.start_service(e2e.config, "agi")


@pytest.fixture
async def terminals(e2e: E2E, ami: AmiWatch) -> AsyncIterator[object]:
    agents: list[SipAgent] = []

    async def start(facility: str, rtp_port: int) -> Terminal:
        t = e2e.terminals[facility]
        agent = await SipAgent.start("call", "--target", e2e.target(INMATE_SERVICE), "--user", t.name,
                                     "--password", t.password, "--rtp-port", str(rtp_port))
        agents.append(agent)
        channel = await ami.wait_new("Newchannel", lambda m: m.get("Channel").startswith(f"PJSIP/{t.name}-"))
        return Terminal(agent, ami, channel.get("Uniqueid"))

    yield start
    for agent in agents:
        await agent.close()


def _commands(ami: AmiWatch, uid: str) -> list[str]:
    return [m.get("Command") for m in ami.events if m.event == "AGIExecStart" and m.get("Uniqueid") == uid]


async def test_a_second_caller_hears_lines_busy_nothing_is_reserved_and_the_first_call_is_billed(
    e2e: E2E, ami: AmiWatch, store: RedisStore, redis: aioredis.Redis, relative: SipAgent,  # noqa: F811
    terminals: object, one_in_the_ivr: None,
) -> None:
    port = e2e.config.agi_metrics_port
    before = await first_scrape(port)  # the AGI server was just restarted: all at zero
    assert get(before, "kinline_call_refusals_total", reason="overload") == 0
    card1 = await new_card(store, "open", 10_000)
    card2 = await new_card(store, "short", 10_000)

    first: Terminal = await terminals("open", 20600)  # type: ignore[operator]
    await first.login(card1)
    await first.prompt("enter-number")  # the first call is in the IVR now
    assert get(await scrape(port), "kinline_calls_in_ivr") == 1
    locks, holds = await redis.hgetall(LOCKS), await redis.zrange(HOLDS, 0, -1)
    [(last_ledger_id, _)] = await redis.xrevrange(LEDGER, count=1)

    # The second caller keys card and PIN at once: the switch must not even read them.
    second: Terminal = await terminals("short", 20620)  # type: ignore[operator]
    await second.agent.wait_for("state", lambda e: e["state"] == "CONFIRMED", timeout=STEP)
    await second.agent.send(f"dtmf {card2}#{PIN}# info")
    began = await second.prompt("lines-busy", timeout=STEP)
    assert await second.hangup_cause(timeout=10) == "16"  # hung up by the switch, normally
    await ami.drain(0.3)
    # inmate_call: one command (the dial plan answered, and says "all lines are busy" after the
    # session); then the hangup route reads (in one command) that there is no plan and no card.
    hangup_reads = "\x1f".join(f"${{{name}}}" for name in (
        "KINLINE_PLAN", "KINLINE_SETTLED", "KINLINE_CARD", "DIALSTATUS", "SHARED(KINLINE_BRIDGED_AT)",
        "KINLINE_DIAL_END", "HANGUPCAUSE", "KINLINE_FAR_CAUSE"))
    assert _commands(ami, second.uid) == ['EXEC "MSet" "KINLINE_FINAL_PROMPT=kinline/en/lines-busy,'
                                          'KINLINE_ACTION=done"', f'GET FULL VARIABLE "{hangup_reads}"']
    # ... and heard it whole: the only prompt, and the hangup no sooner than its length after it began.
    assert ami.played(second.uid) == ["kinline/en/lines-busy"]
    hangup = await ami.wait_for("Hangup", lambda m: m.get("Uniqueid") == second.uid)
    with wave.open(str(e2e.config.path("prompts", "en", "lines-busy.wav"))) as wav:
        length = wav.getnframes() / wav.getframerate()
    assert length > 1.5
    assert float(hangup.get("Timestamp")) - float(began.get("Timestamp")) >= length - 0.2
    assert not any(m.event == "DialBegin" and m.get("Uniqueid") == second.uid for m in ami.events)
    # Nothing reserved or locked, no ledger entry, the card untouched.
    assert await redis.hgetall(LOCKS) == locks and card2 not in locks and card1 in locks
    assert await redis.zrange(HOLDS, 0, -1) == holds
    new_entries = await redis.xrange(LEDGER, min=f"({last_ledger_id}")
    assert not [e for _, e in new_entries if e.get("card") in (card1, card2)], new_entries
    assert [e.kind for e in await store.ledger(card2)] == ["topup"]
    assert (await store.card(card2)).balance == 10_000  # type: ignore[union-attr]
    assert await store.call_records(card2) == []
    refused = await scrape(port)
    assert get(refused, "kinline_call_refusals_total", reason="overload") == 1
    assert get(refused, "kinline_calls_total", outcome="refused") == 1

    # The first call goes on as usual: dialed, bridged, billed once.
    await first.agent.send(f"dtmf {MOBILE[1:]}# info")
    incoming = await relative.wait_for("incoming", timeout=30)
    assert MOBILE in incoming["local"]
    await first.bridged()
    await asyncio.sleep(4)  # talk past the tariff's free threshold (3 s)
    await relative.send("hangup")
    assert await first.hangup_cause() == "16"
    await ami.drain(0.5)
    [cdr] = await store.call_records(card1)
    assert (cdr.dial_status, cdr.number, cdr.billed_s, cdr.amount) == ("ANSWER", MOBILE, 60, 150 + 359)
    assert 3 <= cdr.answered_s <= 6
    assert (await store.card(card1)).balance == 10_000 - 509  # type: ignore[union-attr]
    assert sorted(e.kind for e in await store.ledger(card1)) == ["charge", "release", "reserve", "topup"]
    assert await store.acquire_card(card1, "probe", 5)
    await store.release_card(card1, "probe")
    after = await scrape(port)
    assert get(after, "kinline_calls_total", outcome="dialed") == 1
    assert get(after, "kinline_call_refusals_total", reason="overload") == 1
