"""When a terminal must wait after failed logins (5 in 10 min, 20 in 24 h)."""

from datetime import UTC, datetime, timedelta

from ivr.throttle import KEEP_S, LOGIN_LIMITS, wait_s

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def ago(**delta: float) -> datetime:
    return NOW - timedelta(**delta)


def test_limits_as_documented() -> None:
    assert LOGIN_LIMITS == ((5, 600), (20, 86_400))
    assert KEEP_S == 86_400


def test_four_failures_do_not_wait() -> None:
    assert wait_s([], NOW) == 0
    assert wait_s([ago(seconds=s) for s in (1, 2, 3, 4)], NOW) == 0


def test_fifth_failure_waits_until_the_oldest_is_ten_minutes_old() -> None:
    failures = [ago(seconds=s) for s in (0, 60, 120, 180, 240)]
    assert wait_s(failures, NOW) == 600 - 240
    assert wait_s(failures, NOW + timedelta(seconds=359)) == 1
    assert wait_s(failures, NOW + timedelta(seconds=360)) == 0


def test_more_than_five_wait_until_only_four_are_left_in_the_window() -> None:
    failures = [ago(seconds=s) for s in (0, 10, 20, 30, 40, 50, 590)]
    # 7 in the window: below 5 again once the three oldest (590, 50, 40 s ago) have left it.
    assert wait_s(failures, NOW) == 600 - 40


def test_failures_older_than_ten_minutes_count_only_for_the_day() -> None:
    spread = [ago(minutes=30 * i + 11) for i in range(19)]  # none in the last 10 minutes
    assert wait_s(spread, NOW) == 0
    twenty = [*spread, ago(seconds=5)]
    oldest_needed = sorted(twenty)[0]
    assert wait_s(twenty, NOW) == int((oldest_needed + timedelta(days=1) - NOW).total_seconds())
    assert wait_s(twenty, NOW) > 600


def test_partial_seconds_round_up() -> None:
    failures = [ago(seconds=599.5)] + [ago(seconds=1)] * 4
    assert wait_s(failures, NOW) == 1
