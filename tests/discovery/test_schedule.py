"""Schedules: when each kind fires, catch-up after downtime, bad schedules."""

import datetime as dt

import pytest

from services.discovery.domain_schedule import InvalidSchedule, latest_due, next_fire

T = dt.datetime(2026, 11, 27, 10, 30, tzinfo=dt.UTC)  # a Friday


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("", None),
        ("hourly", dt.datetime(2026, 11, 27, 11, 0, tzinfo=dt.UTC)),
        ("daily@02:00", dt.datetime(2026, 11, 28, 2, 0, tzinfo=dt.UTC)),
        ("daily@23:15", dt.datetime(2026, 11, 27, 23, 15, tzinfo=dt.UTC)),
        ("weekly@FRI@10:30", dt.datetime(2026, 12, 4, 10, 30, tzinfo=dt.UTC)),
        ("weekly@sun@01:00", dt.datetime(2026, 11, 29, 1, 0, tzinfo=dt.UTC)),
        ("*/20 * * * *", dt.datetime(2026, 11, 27, 10, 40, tzinfo=dt.UTC)),
        ("0 3 * * 1-5", dt.datetime(2026, 11, 30, 3, 0, tzinfo=dt.UTC)),
    ],
)
def test_next_fire(schedule: str, expected: dt.datetime | None) -> None:
    assert next_fire(schedule, T) == expected


def test_only_the_latest_missed_run_fires() -> None:
    last = dt.datetime(2026, 11, 20, 2, 0, tzinfo=dt.UTC)
    assert latest_due("daily@02:00", last, T) == dt.datetime(2026, 11, 27, 2, 0, tzinfo=dt.UTC)
    assert latest_due("daily@02:00", dt.datetime(2026, 11, 27, 2, 0, tzinfo=dt.UTC), T) is None
    assert latest_due("", last, T) is None


@pytest.mark.parametrize("bad", ["daily@25:00", "weekly@XYZ@10:00", "every tuesday", "61 * * * *"])
def test_bad_schedules(bad: str) -> None:
    with pytest.raises(InvalidSchedule):
        next_fire(bad, T)


def utc(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("schedule", "zone", "after", "expected"),
    [
        # Paris: UTC+1 in winter, UTC+2 in summer; the run keeps its wall-clock time
        ("daily@02:00", "Europe/Paris", utc(2026, 11, 27, 10, 30), utc(2026, 11, 28, 1, 0)),
        ("daily@02:00", "Europe/Paris", utc(2026, 7, 1, 10, 30), utc(2026, 7, 2, 0, 0)),
        # 02:30 does not exist on 29 March 2026 in Paris: the run is at the jump (03:00 CEST, 01:00 UTC)
        ("daily@02:30", "Europe/Paris", utc(2026, 3, 28, 12, 0), utc(2026, 3, 29, 1, 0)),
        ("daily@02:30", "Europe/Paris", utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)),
        # 02:30 happens twice on 25 October 2026 in Paris: once, at the first (CEST, 00:30 UTC)
        ("daily@02:30", "Europe/Paris", utc(2026, 10, 24, 12, 0), utc(2026, 10, 25, 0, 30)),
        ("daily@02:30", "Europe/Paris", utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)),
        # the local day decides the weekday: Friday 23:30 in New York is Saturday 04:30 UTC
        ("weekly@FRI@23:30", "America/New_York", utc(2026, 11, 27, 10, 30), utc(2026, 11, 28, 4, 30)),
        ("0 9 * * 1-5", "America/New_York", utc(2026, 11, 27, 10, 30), utc(2026, 11, 27, 14, 0)),
        ("0 9 * * 1-5", "America/New_York", utc(2026, 7, 3, 10, 30), utc(2026, 7, 3, 13, 0)),
        # the top of the hour on Kolkata's clock (UTC+5:30)
        ("hourly", "Asia/Kolkata", utc(2026, 11, 27, 10, 30), utc(2026, 11, 27, 11, 30)),
        ("daily@02:00", "UTC", utc(2026, 11, 27, 10, 30), utc(2026, 11, 28, 2, 0)),
    ],
)
def test_a_schedule_in_a_time_zone(schedule: str, zone: str, after: dt.datetime, expected: dt.datetime) -> None:
    assert next_fire(schedule, after, zone) == expected


def test_the_catch_up_of_a_zoned_schedule() -> None:
    last = utc(2026, 11, 20, 1, 0)
    assert latest_due("daily@02:00", last, T, "Europe/Paris") == utc(2026, 11, 27, 1, 0)


@pytest.mark.parametrize("bad", ["Mars/Olympus", "Europe/", "../etc/passwd", "CET+99"])
def test_a_time_zone_that_is_none(bad: str) -> None:
    with pytest.raises(InvalidSchedule, match="not an IANA time zone"):
        next_fire("daily@02:00", T, bad)
