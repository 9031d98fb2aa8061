"""When a policy's backups are due: pure functions of the schedule text and times (UTC), no clock read.

Schedules: "" (manual only), "hourly", "daily@HH:MM", "weekly@DAY@HH:MM" (DAY: MON..SUN), or a 5-field cron
line. After downtime only the latest missed run fires (one catch-up, not a burst).
"""

from __future__ import annotations

import datetime as dt
import itertools

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


def next_fire(schedule: str, after: dt.datetime) -> dt.datetime | None:
    """The first time strictly after `after` at which the schedule fires (None: manual only)."""
    text = schedule.strip()
    after = after.astimezone(dt.UTC)
    if not text:
        return None
    lowered = text.lower()
    if lowered == "hourly":
        return after.replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
    if lowered.startswith("daily@"):
        hour, minute = _hhmm(text[6:])
        candidate = after.replace(hour=hour, minute=minute, second=0, microsecond=0)
        return candidate if candidate > after else candidate + dt.timedelta(days=1)
    if lowered.startswith("weekly@"):
        parts = text.split("@")
        if len(parts) != 3 or parts[1].upper() not in DAYS:
            raise InvalidSchedule(f"{text!r} is not weekly@DAY@HH:MM")
        hour, minute = _hhmm(parts[2])
        day = DAYS.index(parts[1].upper())
        candidate = after.replace(hour=hour, minute=minute, second=0, microsecond=0)
        candidate += dt.timedelta(days=(day - candidate.weekday()) % 7)
        return candidate if candidate > after else candidate + dt.timedelta(days=7)
    try:
        return next(iter(CronSim(text, after.replace(second=0, microsecond=0) + dt.timedelta(seconds=0))))
    except (CronSimError, StopIteration) as exc:
        raise InvalidSchedule(f"{text!r} is not a schedule: {exc}") from None


def latest_due(
    schedule: str, last_fired: dt.datetime, now: dt.datetime, max_steps: int = 100_000
) -> dt.datetime | None:
    """The latest fire time in (last_fired, now], or None when nothing is due."""
    due = None
    cursor = last_fired
    for _ in itertools.repeat(None, max_steps):
        candidate = next_fire(schedule, cursor)
        if candidate is None or candidate > now:
            return due
        due = cursor = candidate
    return due
