"""Weekly call schedule of a facility, in the facility's local time.

Text form: ``"mon-fri 08:00-20:00; sat 10:00-14:00"``. Parts are separated
by ``;``; a part is days then times. Days: a name, a range (``mon-fri``,
wrapping ``fri-mon`` allowed) or a comma list (``mon,wed``). Times: one or
more ``HH:MM-HH:MM`` separated by commas. A window is start-inclusive,
end-exclusive, inside one local day (start < end; no ``24:00``, no window
past midnight). Windows touching on the same day count as one.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ivr.errors import ScheduleError

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Window:
    weekday: int  # 0 = Monday .. 6 = Sunday
    start: time
    end: time

    def __post_init__(self) -> None:
        if type(self.weekday) is not int or not 0 <= self.weekday <= 6:
            raise ScheduleError(f"bad weekday: {self.weekday!r}")
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ScheduleError("window times must be naive local times")
        if not self.start < self.end:
            raise ScheduleError(f"window start must be before end: {self}")


@dataclass(frozen=True)
class WeeklySchedule:
    windows: tuple[Window, ...]


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError) as err:
        raise ScheduleError(f"unknown time zone: {tz!r}") from err


def _local(now_utc: datetime, tz: str) -> datetime:
    if now_utc.tzinfo is None or now_utc.utcoffset() is None:
        raise ScheduleError("now_utc must be timezone-aware")
    return now_utc.astimezone(_zone(tz))


def _open_window_end(schedule: WeeklySchedule, local: datetime) -> time | None:
    """End of the (chained) window open at ``local``, or None if closed."""
    day = [w for w in schedule.windows if w.weekday == local.weekday()]
    now = local.time().replace(tzinfo=None)
    end: time | None = None
    for w in day:
        if w.start <= now < w.end and (end is None or w.end > end):
            end = w.end
    grew = end is not None
    while grew and end is not None:
        grew = False
        for w in day:
            if w.start <= end < w.end:
                end, grew = w.end, True
    return end


def is_open(schedule: WeeklySchedule, now_utc: datetime, tz: str) -> bool:
    """True if ``now_utc`` falls inside a window, in the zone ``tz``."""
    return _open_window_end(schedule, _local(now_utc, tz)) is not None


def seconds_until_close(schedule: WeeklySchedule, now_utc: datetime, tz: str) -> int:
    """Whole seconds until the open window closes (real elapsed time, DST
    included); 0 if closed. An end in a DST gap/overlap uses fold=0."""
    local = _local(now_utc, tz)
    end = _open_window_end(schedule, local)
    if end is None:
        return 0
    end_local = datetime.combine(local.date(), end, tzinfo=local.tzinfo)
    delta = end_local.astimezone(UTC) - now_utc.astimezone(UTC)
    return max(0, delta // timedelta(seconds=1))


def _parse_time(text: str) -> time:
    hh, sep, mm = text.partition(":")
    if not (sep and len(hh) == 2 and len(mm) == 2 and (hh + mm).isascii() and (hh + mm).isdigit()):
        raise ScheduleError(f"bad time {text!r}, want HH:MM")
    if int(hh) > 23 or int(mm) > 59:
        raise ScheduleError(f"time out of range: {text!r}")
    return time(int(hh), int(mm))


def _parse_day(text: str) -> int:
    if text not in DAY_NAMES:
        raise ScheduleError(f"bad day {text!r}, want one of {', '.join(DAY_NAMES)}")
    return DAY_NAMES.index(text)


def _parse_days(text: str) -> list[int]:
    days: list[int] = []
    for item in text.split(","):
        first, dash, last = item.strip().partition("-")
        start = _parse_day(first.strip())
        stop = _parse_day(last.strip()) if dash else start
        days += [(start + i) % 7 for i in range((stop - start) % 7 + 1)]
    return days


def parse_schedule(text: str) -> WeeklySchedule:
    """Parse the compact text form; raise ScheduleError on bad input."""
    windows: list[Window] = []
    for part in text.lower().split(";"):
        part = part.strip()
        if not part:
            continue
        first_digit = next((i for i, c in enumerate(part) if c.isdigit()), len(part))
        days_text, times_text = part[:first_digit], part[first_digit:]
        if not times_text.strip():
            raise ScheduleError(f"no times in {part!r}")
        days = _parse_days(days_text)
        for span in times_text.replace(" ", "").split(","):
            start_text, dash, end_text = span.partition("-")
            if not dash:
                raise ScheduleError(f"bad time range {span!r}, want HH:MM-HH:MM")
            start, end = _parse_time(start_text), _parse_time(end_text)
            windows += [Window(day, start, end) for day in days]
    if not windows:
        raise ScheduleError("empty schedule")
    return WeeklySchedule(tuple(windows))


def format_schedule(schedule: WeeklySchedule) -> str:
    """One ``day HH:MM-HH:MM`` part per window, in weekday order."""
    ordered = sorted(schedule.windows, key=lambda w: (w.weekday, w.start, w.end))
    return "; ".join(f"{DAY_NAMES[w.weekday]} {w.start:%H:%M}-{w.end:%H:%M}" for w in ordered)
