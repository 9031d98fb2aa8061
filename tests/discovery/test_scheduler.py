"""Scheduled sessions, on the in-memory stores (tests/discovery/test_store_contract.py holds them to the
PostgreSQL ones): due runs start once, a run that finds its policy busy is skipped
and recorded, a failed start is recorded."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import AsyncIterator

import pytest

from services.discovery import domain as d
from services.discovery.application import Scheduler, scheduled_session_id
from tests.discovery.fakes import FakeClock, FakeDiscoveryStore, FakeScheduleRuns, FakeSessionStarter


@pytest.fixture
async def store() -> AsyncIterator[FakeDiscoveryStore]:
    s = FakeDiscoveryStore()
    await s.create_org(
        d.Org("acme", "Acme", d.Connection("https://login.example.com", d.AuthFlow.CLIENT_CREDENTIALS, "id", "env:X"))
    )
    yield s


async def test_scheduled_runs(store: FakeDiscoveryStore) -> None:
    policy = await store.create_policy(d.Policy(policy_id="hourly", org_id="acme", schedule="hourly"))
    await store.create_policy(d.Policy(policy_id="manual", org_id="acme"))
    assert policy.created_at is not None
    start = policy.created_at
    clock = FakeClock(start)
    starter = FakeSessionStarter()
    runs = FakeScheduleRuns()
    scheduler = Scheduler(store, runs, starter, clock)

    assert await scheduler.tick() == []  # nothing due yet
    first_due = (start + dt.timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    clock.current = first_due + dt.timedelta(minutes=1)
    [decision] = await scheduler.tick()
    assert decision.session_id == scheduled_session_id("hourly", first_due)
    assert await scheduler.tick() == []  # the same due run never starts twice
    assert starter.started == [decision.session_id]

    starter.running = decision.session_id  # still running an hour later: skipped, and the skip is recorded
    clock.current += dt.timedelta(hours=1)
    [skipped] = await scheduler.tick()
    assert skipped.skipped.startswith(f"session {decision.session_id}") and not skipped.session_id

    starter.running, starter.fail = None, True  # the session service is down: recorded, not lost silently
    clock.current += dt.timedelta(hours=5)  # and after downtime only the latest missed run is tried
    [failed] = await scheduler.tick()
    assert "could not start" in failed.skipped
    assert failed.due_at == clock.current.replace(minute=0, second=0, microsecond=0)

    history = await runs.history("hourly")
    assert [bool(h["session_id"]) for h in history] == [True, False, False]
    assert all(h["skipped_reason"] for h in history[1:])


async def test_a_run_that_could_not_start_is_tried_again_within_the_window(store: FakeDiscoveryStore) -> None:
    from services.discovery.application import START_RETRY_WINDOW

    policy = await store.create_policy(d.Policy(policy_id="nightly", org_id="acme", schedule="hourly"))
    assert policy.created_at is not None
    due = (policy.created_at + dt.timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    clock, starter = FakeClock(due + dt.timedelta(seconds=5)), FakeSessionStarter()
    runs = FakeScheduleRuns()
    scheduler = Scheduler(store, runs, starter, clock)

    starter.fail = True  # the session service restarts just as the run falls due
    [failed] = await scheduler.tick()
    assert "could not start" in failed.skipped
    clock.current += dt.timedelta(minutes=2)
    [still] = await scheduler.tick()  # still away: tried again, recorded again
    assert still.due_at == due and "could not start" in still.skipped
    starter.fail = False
    clock.current += dt.timedelta(minutes=2)
    [started] = await scheduler.tick()
    assert started.due_at == due and started.session_id == scheduled_session_id("nightly", due)
    assert await scheduler.tick() == []  # decided: not started twice
    assert starter.started == [started.session_id]
    assert [(h["session_id"], h["skipped_reason"]) for h in await runs.history("nightly")] == [(started.session_id, "")]

    # the next run: an attempt whose answer was lost did start it, and the retry records that session
    next_due = due + dt.timedelta(hours=1)
    clock.current = next_due + dt.timedelta(seconds=5)
    starter.fail = True
    [failed] = await scheduler.tick()
    starter.fail, starter.running = False, scheduled_session_id("nightly", next_due)
    clock.current += dt.timedelta(minutes=1)
    [recorded] = await scheduler.tick()
    assert recorded.session_id == starter.running and not recorded.skipped

    # a run that could not start for longer than the window stays skipped
    last_due = next_due + dt.timedelta(hours=1)
    starter.running, starter.fail = None, True
    clock.current = last_due + dt.timedelta(seconds=5)
    await scheduler.tick()
    starter.fail = False
    clock.current = last_due + START_RETRY_WINDOW + dt.timedelta(minutes=1)
    assert await scheduler.tick() == []
    assert starter.started == [started.session_id]


async def test_a_schedule_runs_in_its_policys_time_zone(store: FakeDiscoveryStore) -> None:
    policy = d.Policy(policy_id="nightly", org_id="acme", schedule="daily@02:00", time_zone="Europe/Paris")
    created = await store.create_policy(d.check_policy(policy))
    # created at 00:30 in Paris (UTC+1 in November)
    store.policies["nightly"] = dataclasses.replace(
        created, created_at=dt.datetime(2026, 11, 26, 23, 30, tzinfo=dt.UTC)
    )
    clock = FakeClock(dt.datetime(2026, 11, 27, 0, 30, tzinfo=dt.UTC))  # 01:30 in Paris: not yet
    scheduler = Scheduler(store, FakeScheduleRuns(), FakeSessionStarter(), clock)
    assert await scheduler.tick() == []
    clock.current = dt.datetime(2026, 11, 27, 1, 1, tzinfo=dt.UTC)  # 02:01 in Paris, an hour before 02:00 UTC
    [decision] = await scheduler.tick()
    assert decision.due_at == dt.datetime(2026, 11, 27, 1, 0, tzinfo=dt.UTC)
