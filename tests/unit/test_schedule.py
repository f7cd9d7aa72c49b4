"""Weekly schedules in the facility's time zone (Moscow: no DST; Paris: DST)."""

from datetime import UTC, datetime, time, timedelta, timezone

import pytest

from ivr.errors import ScheduleError
from ivr.schedule import (
    WeeklySchedule,
    Window,
    format_schedule,
    is_open,
    parse_schedule,
    seconds_until_close,
)

WEEK = parse_schedule("mon-fri 08:00-20:00; sat 10:00-14:00")
MSK = "Europe/Moscow"
PARIS = "Europe/Paris"


def utc(year: int, month: int, day: int, hour: int, minute: int, s: int = 0, us: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, s, us, tzinfo=UTC)


def test_parse_compact_text() -> None:
    weekdays = [Window(d, time(8), time(20)) for d in range(5)]
    expected = WeeklySchedule((*weekdays, Window(5, time(10), time(14))))
    assert expected == WEEK


@pytest.mark.parametrize(
    ("now", "open_", "left"),
    [
        (utc(2025, 6, 2, 4, 59, 59), False, 0),  # Monday 07:59:59 MSK
        (utc(2025, 6, 2, 5, 0), True, 12 * 3600),  # Monday 08:00 MSK
        (utc(2025, 6, 2, 16, 59, 30), True, 30),
        (utc(2025, 6, 2, 16, 59, 59, 900000), True, 0),  # whole seconds, floored
        (utc(2025, 6, 2, 17, 0), False, 0),  # 20:00 MSK: end is exclusive
        (utc(2025, 6, 7, 7, 0), True, 4 * 3600),  # Saturday 10:00 MSK
        (utc(2025, 6, 8, 9, 0), False, 0),  # Sunday
    ],
)
def test_moscow(now: datetime, open_: bool, left: int) -> None:
    assert is_open(WEEK, now, MSK) is open_
    assert seconds_until_close(WEEK, now, MSK) == left


def test_weekday_is_taken_in_local_time() -> None:
    schedule = parse_schedule("mon 00:00-01:00")
    sunday_evening_utc = utc(2025, 6, 1, 21, 30)  # Monday 00:30 in Moscow
    assert is_open(schedule, sunday_evening_utc, MSK)
    assert seconds_until_close(schedule, sunday_evening_utc, MSK) == 1800
    assert not is_open(schedule, sunday_evening_utc, "UTC")


def test_other_offset_input_is_accepted() -> None:
    plus5 = datetime(2025, 6, 2, 10, 0, tzinfo=timezone(timedelta(hours=5)))  # 05:00Z
    assert seconds_until_close(WEEK, plus5, MSK) == 12 * 3600


def test_paris_summer_and_winter_offsets() -> None:
    schedule = parse_schedule("mon 08:00-09:00")
    assert is_open(schedule, utc(2025, 7, 7, 6, 30), PARIS)  # 08:30 CEST
    assert not is_open(schedule, utc(2025, 1, 6, 6, 30), PARIS)  # 07:30 CET
    assert is_open(schedule, utc(2025, 1, 6, 7, 30), PARIS)  # 08:30 CET


def test_paris_spring_forward_shortens_the_window() -> None:
    schedule = parse_schedule("sun 00:00-06:00")
    now = utc(2025, 3, 29, 23, 30)  # Sunday 00:30 CET; clocks jump 02:00 -> 03:00
    assert is_open(schedule, now, PARIS)
    assert seconds_until_close(schedule, now, PARIS) == 4 * 3600 + 1800  # not 5.5 h
    after = utc(2025, 3, 30, 1, 30)  # 03:30 CEST
    assert seconds_until_close(schedule, after, PARIS) == 2 * 3600 + 1800


def test_paris_fall_back_lengthens_the_window() -> None:
    schedule = parse_schedule("sun 00:00-06:00")
    now = utc(2025, 10, 25, 22, 30)  # Sunday 00:30 CEST; 03:00 -> 02:00
    assert seconds_until_close(schedule, now, PARIS) == 6 * 3600 + 1800  # not 5.5 h
    assert is_open(schedule, utc(2025, 10, 26, 4, 59), PARIS)  # 05:59 CET
    assert not is_open(schedule, utc(2025, 10, 26, 5, 0), PARIS)  # 06:00 CET


def test_touching_windows_close_at_the_last_end() -> None:
    schedule = parse_schedule("mon 08:00-12:00,12:00-14:00; mon 13:00-20:00")
    eleven, half_past_one = utc(2025, 6, 2, 8, 0), utc(2025, 6, 2, 10, 30)  # MSK
    assert seconds_until_close(schedule, eleven, MSK) == 9 * 3600
    assert seconds_until_close(schedule, half_past_one, MSK) == 6 * 3600 + 1800


def test_parse_variants() -> None:
    assert parse_schedule("Fri-Mon 09:00-10:00;") == parse_schedule(
        "fri 09:00-10:00; sat 09:00-10:00; sun 09:00-10:00; mon 09:00-10:00"
    )
    assert parse_schedule("mon, wed 09:00-10:00, 11:00-12:30") == WeeklySchedule(
        (
            Window(0, time(9), time(10)),
            Window(2, time(9), time(10)),
            Window(0, time(11), time(12, 30)),
            Window(2, time(11), time(12, 30)),
        )
    )
    assert parse_schedule("sun-sun 00:00-23:59") == WeeklySchedule((Window(6, time(0), time(23, 59)),))


def test_format_round_trip() -> None:
    text = format_schedule(WEEK)
    assert text == (
        "mon 08:00-20:00; tue 08:00-20:00; wed 08:00-20:00; thu 08:00-20:00; fri 08:00-20:00; sat 10:00-14:00"
    )
    assert parse_schedule(text) == WEEK


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ; ",
        "mon",
        "08:00-10:00",
        "funday 08:00-10:00",
        "mon 8:00-10:00",
        "mon 08:00",
        "mon 08:00-",
        "mon 10:00-08:00",
        "mon 08:00-08:00",
        "mon 08:00-24:00",
        "mon 08:60-09:00",
        "mon 0٨:00-09:00",
        "mon-fri-sat 08:00-09:00",
    ],
)
def test_bad_text_is_refused(text: str) -> None:
    with pytest.raises(ScheduleError):
        parse_schedule(text)


def test_bad_window_time_zone_and_instant() -> None:
    with pytest.raises(ScheduleError):
        Window(7, time(8), time(9))
    with pytest.raises(ScheduleError):
        is_open(WEEK, datetime(2025, 6, 2, 5, 0), MSK)  # naive
    with pytest.raises(ScheduleError):
        is_open(WEEK, utc(2025, 6, 2, 5, 0), "Mars/Olympus")
