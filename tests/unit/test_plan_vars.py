"""The call plan survives its trip through a channel variable, in the same MSet as Dial's settings."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agi.channel import MSET_VALUE
from agi.plan_vars import MAX_TEXT, plan_from_text, plan_in, plan_to_text
from agi.protocol import format_command, parse_result
from ivr.call_plan import CallPlan

PLAN = CallPlan(
    call_id="1795381910.123-3", uniqueid="1795381910.123", card="9549192177", inmate_id="inmate-(x) 1",
    facility_id="open", e164="+79161234567", route_kind="mobile", payer="caller", rate=359, fee=150,
    free_threshold_s=3, increment_s=60, max_s=900, warn_s=60, record=False, reserved=5535,
    started_at=datetime(2026, 11, 22, 21, 12, 18, 240_000, tzinfo=UTC),
)


def test_round_trip() -> None:
    assert plan_from_text(plan_to_text(PLAN)) == PLAN
    assert plan_in({"KINLINE_PLAN": plan_to_text(PLAN)}) == PLAN
    assert plan_in({"KINLINE_PLAN": ""}) is None


def test_a_plain_value_that_fits_a_channel_variable_and_survives_agi_quoting() -> None:
    text = plan_to_text(PLAN)
    assert len(text) < MAX_TEXT
    assert MSET_VALUE.fullmatch(text)  # goes in one MSet with Dial's settings
    assert b"\n" not in format_command("SET VARIABLE", "KINLINE_PLAN", text)[:-1]
    # What GET VARIABLE answers: the value in parentheses, as is.
    assert plan_from_text(parse_result(f"200 result=1 ({text})").data) == PLAN


@pytest.mark.parametrize("text", ["{\"call_id\": 1}", "!!!!", "e30"])  # JSON, not base64, base64 of "{}"
def test_what_is_not_a_plan_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        plan_from_text(text)
