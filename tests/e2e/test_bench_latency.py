"""The latency benches the README quotes (bench/call_setup.py, bench/accept_latency.py) still
follow the call: each places one real call on the session stack through the bench's own
``one_call`` and gets figures in the right order. They wait on prompts and AGI commands by
name, so a change to how the IVR asks (one GOSUB for the card and the PIN) breaks them
here, not silently on the next person who runs them."""

from __future__ import annotations

import pytest

from bench import accept_latency, call_setup
from store.redis_store import RedisStore
from tests.e2e.conftest import E2E
from tests.e2e.harness import AmiWatch, SipAgent
from tests.e2e.test_inmate_calls import MOBILE, PIN, new_card, relative  # noqa: F401 (fixture)

pytestmark = pytest.mark.e2e


async def test_call_setup_bench_times_a_real_call(e2e: E2E, ami: AmiWatch, store: RedisStore,
                                                  relative: SipAgent) -> None:  # noqa: F811
    card = await new_card(store, "open", 10_000)
    login = e2e.terminals["open"]
    uid, sent, received, decided = await call_setup.one_call(
        e2e.target("100"), login.name, login.password, ami, relative, 20600, "en", card, PIN, MOBILE[1:])
    # From the number's '#': the decision, then the INVITE leaving, each within the bench's bound.
    assert 0 <= decided <= sent < 5, (decided, sent)
    assert 0 < received < 5, received
    dials = [m for m in ami.events if m.event == "DialBegin" and m.get("Uniqueid") == uid]
    assert [m.get("DestChannel").split("-")[0] for m in dials] == ["PJSIP/trunk"], dials
    own = call_setup.own_times(e2e.config.path("logs", "agi.log").read_text(), uid)
    assert own > 0, "no AGI route line for the call"


async def test_accept_latency_bench_times_a_real_accept(e2e: E2E, ami: AmiWatch,
                                                        relative: SipAgent) -> None:  # noqa: F811
    await accept_latency.provision(e2e.config, 1, facility="open")
    login = e2e.terminals["open"]
    taken, bridged = await accept_latency.one_call(e2e.config, login.password, ami, relative,
                                                   terminal=login.name, facility_language="en")
    # The relative's 1 is an RFC 4733 event of 160 ms: Asterisk takes it at its end, then bridges.
    assert 0.1 < taken <= bridged < 5, (taken, bridged)
