"""When a policy's backups are due: pure functions of the schedule text, its time zone and times, no clock read.

Schedules: "" (manual only), "hourly", "daily@HH:MM", "weekly@DAY@HH:MM" (DAY: MON..SUN), or a 5-field cron
line, their times of day in the policy's IANA time zone ('': UTC). Across a daylight-saving change a daily run
keeps its wall-clock time; a time that does not exist that day (the hour skipped in spring) runs at the instant
the clocks jump (02:30 in Paris on the last Sunday of March: 03:00 CEST); one that exists twice (autumn) runs once,
at its first occurrence. After downtime only the latest missed run fires (one catch-up, not a burst).
"""

from __future__ import annotations

import datetime as dt
import itertools
import zoneinfo

from cronsim import CronSim, CronSimError

# the reason recorded for a run the session service did not take (tried again within the retry window)
COULD_NOT_START = "could not start"
DAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")


class InvalidSchedule(ValueError):
    pass


def _hhmm(text: str) -> tuple[int, int]:
    try:
        hour, minute = (int(x) for x in text.split(":"))
    except ValueError:
        raise InvalidSchedule(f"{text!r} is not HH:MM") from None
    if not (0 <= hour < 24 and 0 <= minute < 60):
        raise InvalidSchedule(f"{text!r} is not a time of day")
    return hour, minute


def zone(name: str) -> dt.tzinfo:
    """The IANA time zone named ('' or 'UTC': UTC); InvalidSchedule when there is none by that name."""
    if not name.strip() or name.strip().upper() == "UTC":
        return dt.UTC
    try:
        return zoneinfo.ZoneInfo(name.strip())
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidSchedule(f"time zone {name[:80]!r} is not an IANA time zone (e.g. 'Europe/Paris')") from None


def _at(day: dt.date, hour: int, minute: int, tz: dt.tzinfo) -> dt.datetime:
    """A wall-clock time of a day in a zone, as an instant (UTC): a time that day skipped is the instant the
    clocks jumped; one it repeated, its first occurrence."""
    wall = dt.datetime(day.year, day.month, day.day, hour, minute)
    instant = wall.replace(tzinfo=tz).astimezone(dt.UTC)  # fold=0: the first occurrence of a repeated time
    if instant.astimezone(tz).replace(tzinfo=None) == wall:
        return instant
    # skipped: the two offsets around the gap bracket the jump; the first instant whose wall clock is past `wall`
    start, end = sorted((instant, wall.replace(tzinfo=tz, fold=1).astimezone(dt.UTC)))
    while end - start > dt.timedelta(minutes=1):
        middle = start + (end - start) / 2
        if middle.astimezone(tz).replace(tzinfo=None) >= wall:
            end = middle
        else:
            start = middle
    return end.replace(second=0, microsecond=0)


def next_fire(schedule: str, after: dt.datetime, time_zone: str = "") -> dt.datetime | None:
    """The first time strictly after `after` at which the schedule fires (None: manual only), as UTC; the
    schedule's times of day are in `time_zone` (IANA; '': UTC)."""
    text = schedule.strip()
    tz = zone(time_zone)
    after = after.astimezone(dt.UTC)
    if not text:
        return None
    lowered = text.lower()
    today = after.astimezone(tz).date()
    if lowered == "hourly":  # the top of each hour on the zone's clock (offsets are whole quarter hours)
        step = dt.timedelta(minutes=15)
        candidate = after.replace(minute=after.minute - after.minute % 15, second=0, microsecond=0) + step
        while candidate.astimezone(tz).minute != 0:
            candidate += step
        return candidate
    if lowered.startswith("daily@"):
        hour, minute = _hhmm(text[6:])
        candidate = _at(today, hour, minute, tz)
        return candidate if candidate > after else _at(today + dt.timedelta(days=1), hour, minute, tz)
    if lowered.startswith("weekly@"):
        parts = text.split("@")
        if len(parts) != 3 or parts[1].upper() not in DAYS:
            raise InvalidSchedule(f"{text!r} is not weekly@DAY@HH:MM")
        hour, minute = _hhmm(parts[2])
        day = today + dt.timedelta(days=(DAYS.index(parts[1].upper()) - today.weekday()) % 7)
        candidate = _at(day, hour, minute, tz)
        return candidate if candidate > after else _at(day + dt.timedelta(days=7), hour, minute, tz)
    try:
        start = after.astimezone(tz).replace(second=0, microsecond=0)
        return next(iter(CronSim(text, start))).astimezone(dt.UTC)
    except (CronSimError, StopIteration) as exc:
        raise InvalidSchedule(f"{text!r} is not a schedule: {exc}") from None


def latest_due(
    schedule: str, last_fired: dt.datetime, now: dt.datetime, time_zone: str = "", max_steps: int = 100_000
) -> dt.datetime | None:
    """The latest fire time in (last_fired, now], or None when nothing is due."""
    due = None
    cursor = last_fired
    for _ in itertools.repeat(None, max_steps):
        candidate = next_fire(schedule, cursor, time_zone)
        if candidate is None or candidate > now:
            return due
        due = cursor = candidate
    return due
