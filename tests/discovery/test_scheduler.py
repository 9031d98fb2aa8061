"""Scheduled sessions with the real store: due runs start once, a run that finds its policy busy is skipped
and recorded, a failed start is recorded."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest

from services.discovery import domain as d
from services.discovery.scheduler import Scheduler, scheduled_session_id
from services.discovery.store import DiscoveryStore, ScheduleRuns
from services.platform.db import open_pool


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.current = now

    def now(self) -> dt.datetime:
        return self.current


class Starter:
    def __init__(self) -> None:
        self.running: str | None = None
        self.fail = False
        self.started: list[str] = []

    async def running_session(self, policy_id: str) -> str | None:
        if self.fail:
            raise ConnectionError("session service unreachable")
        return self.running

    async def start(self, policy: d.Policy, session_id: str) -> str:
        self.started.append(session_id)
        return session_id


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[DiscoveryStore]:
    pool = await open_pool(database_url)
    s = DiscoveryStore(pool)
    await s.setup()
    await s.create_org(
        d.Org("acme", "Acme", d.Connection("https://login.example.com", d.AuthFlow.CLIENT_CREDENTIALS, "id", "env:X"))
    )
    yield s
    await pool.close()


async def test_scheduled_runs(store: DiscoveryStore) -> None:
    policy = await store.create_policy(d.Policy(policy_id="hourly", org_id="acme", schedule="hourly"))
    await store.create_policy(d.Policy(policy_id="manual", org_id="acme"))
    assert policy.created_at is not None
    start = policy.created_at
    clock = Clock(start)
    starter = Starter()
    runs = ScheduleRuns(store)
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


async def test_a_run_that_could_not_start_is_tried_again_within_the_window(store: DiscoveryStore) -> None:
    from services.discovery.scheduler import START_RETRY_WINDOW

    policy = await store.create_policy(d.Policy(policy_id="nightly", org_id="acme", schedule="hourly"))
    assert policy.created_at is not None
    due = (policy.created_at + dt.timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    clock, starter = Clock(due + dt.timedelta(seconds=5)), Starter()
    runs = ScheduleRuns(store)
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
