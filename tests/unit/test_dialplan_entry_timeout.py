"""The dial plan's digit timeout matches the domain's entry gaps (agi/caller.py, Read())."""

from __future__ import annotations

from ivr.inmate_call import DIGIT_TIMEOUT_MS, NUMBER_TIMEOUT_MS
from tools.config import REPO


def test_the_dial_plans_digit_timeout_is_the_longest_entry_gap() -> None:
    # Keys typed during a Read()'s files before its last are followed by gaps of TIMEOUT(digit).
    ivr = (REPO / "dialplan" / "kinline.conf").read_text().split("[kinline-ivr]", 1)[1].split("\n[", 1)[0]
    assert f"Set(TIMEOUT(digit)={max(DIGIT_TIMEOUT_MS, NUMBER_TIMEOUT_MS) // 1000})" in ivr
