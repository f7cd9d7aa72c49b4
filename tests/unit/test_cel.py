"""Asterisk's event log lines (as Asterisk 22's cel_custom writes them) become facts."""

from __future__ import annotations

import pytest

from ivr.settlement import Bridged, ChannelEnded, Ended
from reconciler.cel import channel_started_ms, parse_line

# Lines copied from a real run of the test stack.
BRIDGED = ('"kinline_bridged","1795397491.417441","1795397485.1","kinline_bridged",'
           '"{""extra"":""kl1 1795397478.0-1 1795397491417""}"')
ENDED = ('"kinline_end","1795397495.444902","1795397478.0","kinline_end",'
         '"{""extra"":""kl1 1795397478.0-1 1795397495444 ANSWER 16""}"')
CHAN_END = '"CHAN_END","1795397495.446330","1795397485.1","",""'


def test_bridge_end_and_channel_end() -> None:
    assert parse_line(BRIDGED) == Bridged("1795397478.0-1", 1795397491417)
    assert parse_line(ENDED) == Ended("1795397478.0-1", 1795397495444, "ANSWER", "16")
    assert parse_line(CHAN_END) == ChannelEnded("1795397485.1", 1795397495446)


# Since dropped calls are credited (kl2): the far leg's cause is the sixth word.
ENDED_KL2 = ('"kinline_end","1795397495.444902","1795397478.0","kinline_end",'
             '"{""extra"":""kl2 1795397478.0-1 1795397495444 ANSWER 16 16""}"')
DROPPED_KL2 = ('"kinline_end","1795397495.444902","1795397478.0","kinline_end",'
               '"{""extra"":""kl2 1795397478.0-1 1795397495444 ANSWER 16 44""}"')


def test_kl2_end_takes_the_far_legs_cause_when_it_is_a_failure() -> None:
    assert parse_line(ENDED_KL2) == Ended("1795397478.0-1", 1795397495444, "ANSWER", "16")
    assert parse_line(DROPPED_KL2) == Ended("1795397478.0-1", 1795397495444, "ANSWER", "44")


def test_kl2_end_without_a_far_cause_keeps_the_callers() -> None:
    # the caller hung up during Dial: the hangup handler stamps no far cause
    line = '"kinline_end","1.5","9.0","kinline_end","{""extra"":""kl2 9.0-2 1500 ANSWER 16 ""}"'
    assert parse_line(line) == Ended("9.0-2", 1500, "ANSWER", "16")


def test_kl1_end_ignores_a_sixth_word() -> None:
    line = '"kinline_end","1.5","9.0","kinline_end","{""extra"":""kl1 9.0-2 1500 ANSWER 16 44""}"'
    assert parse_line(line) == Ended("9.0-2", 1500, "ANSWER", "16")


def test_an_end_with_no_dial_status_yet() -> None:
    line = '"kinline_end","1.5","9.0","kinline_end","{""extra"":""kl1 9.0-2 1500  ""}"'
    assert parse_line(line) == Ended("9.0-2", 1500, "", "")


@pytest.mark.parametrize("line", ["", "garbage", '"HANGUP","1.0","9.0","",""',
                                  '"USER_DEFINED","1.0","9.0","other","{""extra"":""x""}"'])
def test_other_lines_are_not_ours(line: str) -> None:
    assert parse_line(line) is None


@pytest.mark.parametrize("extra", ["kl3 9.0-1 15", "kl2 9.0-1 soon", "kl1 9.0-1 soon", "kl1",
                                   '{""extra"":""kl1  15""}'])
def test_a_malformed_line_of_ours_is_an_error(extra: str) -> None:
    with pytest.raises(ValueError, match="malformed kinline event"):
        parse_line(f'"kinline_end","1.0","9.0","kinline_end","{extra}"')


def test_channel_start_from_uniqueid() -> None:
    assert channel_started_ms("1795397485.1") == 1795397485000
    assert channel_started_ms("node-2-1795397485.12") == 1795397485000
    assert channel_started_ms("weird") is None
