"""Dropped calls: which causes are failures, and the billing of a drop at increments of 1, 6 and 60 s."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.call_plan import CallPlan, call_record
from ivr.drops import drop_reason, end_cause, is_failure

PLAN = CallPlan(
    call_id="1795000000.7-1", uniqueid="1795000000.7", card="1001", inmate_id="i-1", facility_id="open",
    e164="+79161234567", route_kind="mobile", payer="caller", rate=359, fee=150, free_threshold_s=3,
    increment_s=60, max_s=900, warn_s=60, record=True, reserved=150 + 15 * 359,
    started_at=datetime(2026, 11, 23, 2, 0, tzinfo=UTC),
)
NETWORK = "dropped: network cause 44, last increment credited"


@pytest.mark.parametrize("cause", ["16", "17", "18", "19", "21", "31", "", "0", " 16 "])
def test_a_choice_of_the_caller_or_callee_is_not_a_failure(cause: str) -> None:
    assert not is_failure(cause)
    assert drop_reason("ANSWER", cause) == ""


@pytest.mark.parametrize("cause", ["27", "34", "38", "41", "42", "44", "47", "102", "127", "lost"])
def test_network_and_platform_faults_are_failures(cause: str) -> None:
    assert is_failure(cause)
    assert drop_reason("ANSWER", cause).startswith("dropped: ")


def test_the_reason_names_the_fault() -> None:
    assert drop_reason("ANSWER", "44") == NETWORK
    assert drop_reason("ANSWER", "lost") == "dropped: platform fault, last increment credited"


@pytest.mark.parametrize("status", ["BUSY", "NOANSWER", "CHANUNAVAIL", "CONGESTION", "NONE", ""])
def test_only_a_connected_call_can_drop(status: str) -> None:
    assert drop_reason(status, "44") == ""


@pytest.mark.parametrize(("caller", "far", "expected"), [
    ("16", "44", "44"),  # the trunk leg was cut for lack of RTP; the caller sees a normal clearing
    ("16", "16", "16"),  # the relative hung up
    ("16", "", "16"),  # the caller hung up: the dial plan stamps no far cause
    ("16", "0", "16"),  # the far leg recorded no cause
    ("41", "16", "41"),  # the caller's own channel failed
    ("lost", "", "lost"),
])
def test_the_far_legs_cause_wins_when_it_is_a_failure(caller: str, far: str, expected: str) -> None:
    assert end_cause(caller, far) == expected


def _record(increment_s: int, talk_ms: int, cause: str) -> tuple[int, int, str]:
    plan = replace(PLAN, increment_s=increment_s)
    r = call_record(plan, "ANSWER", talk_ms, cause)
    return r.billed_s, r.amount, r.credit_reason


@pytest.mark.parametrize(("increment_s", "talk_ms", "normal", "dropped"), [
    # 60 s increments: a drop inside the first minute costs nothing, not even the fee
    (60, 13_400, (60, 150 + 359), (0, 0)),
    (60, 59_999, (60, 150 + 359), (0, 0)),
    (60, 60_000, (60, 150 + 359), (60, 150 + 359)),  # one whole minute was completed
    (60, 125_500, (180, 150 + 3 * 359), (120, 150 + 2 * 359)),
    # 6 s increments
    (6, 13_400, (18, 150 + 108), (12, 150 + 72)),  # 14 s -> 18 s; dropped: 12 s completed
    (6, 5_900, (6, 150 + 36), (0, 0)),
    (6, 12_000, (12, 150 + 72), (12, 150 + 72)),
    # 1 s increments: the started second is credited (rounded once per call)
    (1, 13_400, (14, 150 + 84), (13, 150 + 78)),
    (1, 3_999, (4, 150 + 24), (3, 150 + 18)),
    (1, 2_999, (0, 0), (0, 0)),  # under the free threshold either way
])
def test_a_drop_bills_only_whole_completed_increments(increment_s: int, talk_ms: int, normal: tuple[int, int],
                                                      dropped: tuple[int, int]) -> None:
    assert _record(increment_s, talk_ms, "16") == (*normal, "")
    billed_s, amount, reason = _record(increment_s, talk_ms, "44")
    assert (billed_s, amount) == dropped
    assert reason == NETWORK


def test_a_drop_is_never_billed_past_the_calls_limit() -> None:
    assert _record(60, 2_000_000, "44")[:2] == (900, 150 + 15 * 359)


def test_an_unanswered_attempt_with_a_failure_cause_is_not_a_drop() -> None:
    r = call_record(PLAN, "CHANUNAVAIL", 0, "44")
    assert (r.billed_s, r.amount, r.credit_reason) == (0, 0, "")


@given(st.sampled_from([1, 6, 30, 60]), st.integers(min_value=0, max_value=1_000_000))
def test_a_drop_never_costs_more_than_the_same_call_hung_up(increment_s: int, talk_ms: int) -> None:
    normal = _record(increment_s, talk_ms, "16")
    dropped = _record(increment_s, talk_ms, "44")
    assert dropped[1] <= normal[1]
    assert 0 <= normal[0] - dropped[0] <= increment_s or dropped[0] == 0
