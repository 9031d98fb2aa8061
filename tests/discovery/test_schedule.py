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
