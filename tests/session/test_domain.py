"""Table-driven tests of the session fold: the seed's status rules and every ordering edge."""

from __future__ import annotations

import datetime as dt
import itertools
import random

import pytest

from services.session import domain as d

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
S = "s1"


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


_ids = itertools.count()


def ev(cls: type, job: str = "", minute: float = 0, **kw: object) -> d.Event:
    return cls(
        event_id=f"{cls.__name__}:{job}:{kw.get('chunk_seq', '')}", session_id=S, job_id=job, at=at(minute), **kw
    )


def planned(*jobs: str) -> d.Event:
    return ev(d.JobsPlanned, jobs=tuple(d.PlannedJob(j, "data", f"Obj{j}") for j in jobs))


def finished(job: str, outcome: d.Outcome, minute: float = 5, **counts: int) -> d.Event:
    return ev(d.JobFinished, job, minute, outcome=outcome, counts=d.Counts(**counts))


def run(events: list[d.Event]) -> d.Session:
    state = d.fold_all(None, events)
    assert state is not None
    return state


OK, WARN, ERR = d.Outcome.SUCCESS, d.Outcome.WARNING, d.Outcome.ERROR


@pytest.mark.parametrize(
    ("outcomes", "status"),
    [
        ((), d.Status.SUCCESS),  # a session with no tasks is Success
        ((OK, OK, OK), d.Status.SUCCESS),
        ((OK, WARN, OK), d.Status.SUCCESS),  # warnings only -> Success
        ((WARN, WARN), d.Status.SUCCESS),
        ((OK, ERR, OK), d.Status.WARNING),  # at least one with errors, not all -> Warning
        ((ERR, WARN, OK), d.Status.WARNING),
        ((ERR, ERR, ERR), d.Status.FAILED),  # every task with errors -> Failed
        ((ERR,), d.Status.FAILED),
    ],
)
def test_status_rules(outcomes: tuple[d.Outcome, ...], status: d.Status) -> None:
    jobs = [f"j{i}" for i in range(len(outcomes))]
    events = [ev(d.SessionRequested, policy_id="p"), ev(d.SessionStarted), planned(*jobs)]
    events += [finished(j, o) for j, o in zip(jobs, outcomes, strict=True)]
    assert run(events).status == status


def test_critical_error_fails_the_session_whatever_the_jobs() -> None:
    s = run([ev(d.SessionStarted), planned("a", "b"), finished("a", OK), ev(d.SessionFailed, reason="auth refused")])
    assert s.status == d.Status.FAILED
    assert s.reason == "auth refused"
    # and a late success does not revive it
    s = d.fold(s, finished("b", OK))
    assert s.status == d.Status.FAILED


def test_session_runs_until_every_planned_job_finished() -> None:
    s = run([ev(d.SessionStarted), planned("a", "b"), finished("a", OK)])
    assert s.status == d.Status.RUNNING
    assert not s.is_final


def test_no_status_before_the_plan_is_known() -> None:
    # a job finishing before JobsPlanned arrives does not end the session
    s = run([ev(d.SessionStarted), finished("a", OK)])
    assert s.status == d.Status.RUNNING
    s = d.fold(s, planned("a", "b"))
    assert s.status == d.Status.RUNNING
    s = d.fold(s, finished("b", ERR))
    assert s.status == d.Status.WARNING


def test_chunk_before_job_started_counts_and_starts_the_job() -> None:
    s = run([planned("a"), ev(d.ChunkUploaded, "a", 1, chunk_seq=1, counts=d.Counts(received=10, new_versions=10))])
    assert s.jobs["a"].phase == d.Phase.RUNNING
    s = d.fold(s, ev(d.JobStarted, "a", 0.5, worker_id="w"))
    assert s.jobs["a"].uploaded.received == 10
    assert s.jobs["a"].started_at == at(0.5)


def test_duplicate_chunks_are_counted_once_in_any_order() -> None:
    chunks = [ev(d.ChunkUploaded, "a", i, chunk_seq=i, counts=d.Counts(received=100, changed=i)) for i in range(1, 8)]
    rng = random.Random(7)
    for _ in range(20):
        events = [planned("a"), *chunks, *rng.sample(chunks, 4)]
        rng.shuffle(events)
        s = run(events)
        job = s.jobs["a"]
        assert job.uploaded.received == 700
        assert job.uploaded.changed == sum(range(1, 8))
        assert job.chunks == 7 and job.chunks_upto == 7 and not job.chunks_ahead


def test_redelivered_job_finished_keeps_the_first_outcome() -> None:
    s = run([planned("a", "b"), finished("a", ERR, received=5), finished("a", OK, received=9), finished("b", OK)])
    assert s.jobs["a"].outcome == ERR
    assert s.jobs["a"].reported.received == 5
    assert s.status == d.Status.WARNING


def test_any_order_gives_the_same_final_state() -> None:
    events = [
        ev(d.SessionRequested, minute=0, policy_id="p", org_id="o"),
        ev(d.SessionStarted, minute=0.1, initial=True),
        planned("a", "b", "c"),
        *(ev(d.JobStarted, j, 1, worker_id="w") for j in "abc"),
        *(ev(d.ChunkUploaded, j, 2, chunk_seq=1, counts=d.Counts(received=10, new_versions=10)) for j in "abc"),
        finished("a", OK, 3, received=10),
        finished("b", ERR, 3, received=10),
        finished("c", WARN, 3, received=10),
    ]
    reference = run(events)
    assert reference.status == d.Status.WARNING
    rng = random.Random(11)
    for _ in range(50):
        shuffled = events + rng.sample(events, 3)
        rng.shuffle(shuffled)
        s = run(shuffled)
        assert s.status == reference.status
        assert s.totals == reference.totals
        assert {j: (x.phase, x.outcome) for j, x in s.jobs.items()} == {
            j: (x.phase, x.outcome) for j, x in reference.jobs.items()
        }
        assert s.policy_id == "p" and s.initial


def test_terminated_job_counts_as_error_and_ignores_a_late_finish() -> None:
    s = run([planned("a", "b"), finished("a", OK), ev(d.JobTerminated, "b", 10, reason="stalled")])
    assert s.jobs["b"].phase == d.Phase.TERMINATED
    assert s.status == d.Status.WARNING
    s2 = d.fold(s, finished("b", OK, 11))
    assert s2.jobs["b"].outcome == ERR


def test_terminating_the_only_job_fails_the_session() -> None:
    s = run([planned("a"), ev(d.JobStarted, "a"), ev(d.JobTerminated, "a", 10, reason="stalled")])
    assert s.status == d.Status.FAILED


def test_cancel_drops_queued_jobs_waits_for_running_then_stops() -> None:
    s = run([planned("a", "b"), ev(d.JobStarted, "a"), ev(d.SessionCancelled, requested_by="alice")])
    assert s.jobs["b"].phase == d.Phase.DROPPED
    assert s.status == d.Status.RUNNING  # a is finishing its current chunk
    s = d.fold(s, finished("a", d.Outcome.CANCELLED))
    assert s.status == d.Status.STOPPED
    assert "alice" in s.reason


GRACE = dt.timedelta(seconds=10)


@pytest.mark.parametrize(
    "stuck",
    [
        [ev(d.JobStarted, "a")],  # a hung jobrunner: started, never finishes
        [ev(d.JobStarted, "a"), ev(d.JobFinished, "a", outcome=d.Outcome.CANCELLED, chunks=2)],  # chunks missing
    ],
)
def test_a_cancelled_job_that_never_stops_is_terminated_after_the_grace(stuck: list[d.Event]) -> None:
    cancel = ev(d.SessionCancelled, minute=1, requested_by="alice")
    s = run([ev(d.SessionStarted), planned("a", "b"), *stuck, cancel])
    assert s.status == d.Status.RUNNING and s.jobs["b"].phase == d.Phase.DROPPED
    # the stall timeout is a day away, the grace counts from the cancellation
    assert d.stalls(s, at(1) + GRACE - dt.timedelta(seconds=1), HOUR * 24, cancel_grace=GRACE) == []
    [stall] = d.stalls(s, at(1) + GRACE, HOUR * 24, cancel_grace=GRACE)
    assert stall.job_id == "a" and "cancel grace" in stall.reason
    s = d.fold(s, ev(d.JobTerminated, "a", 1.2, reason=stall.reason))
    assert s.status == d.Status.STOPPED
    assert s.jobs["a"].phase == d.Phase.TERMINATED and s.jobs["a"].outcome == d.Outcome.CANCELLED
    assert "alice" in s.reason and "1 job was terminated: not stopped within the cancel grace" in s.reason
    assert d.fold(s, finished("a", OK, 2)).jobs["a"].outcome == d.Outcome.CANCELLED  # a late report changes nothing


def test_cancel_grace_does_not_cut_an_uncancelled_session() -> None:
    s = run([ev(d.SessionStarted), planned("a"), ev(d.JobStarted, "a")])
    assert d.stalls(s, at(30), HOUR, cancel_grace=GRACE) == []


def test_cancel_before_plan_stops_at_once() -> None:
    s = run([ev(d.SessionRequested), ev(d.SessionCancelled)])
    assert s.status == d.Status.STOPPED


def test_jobs_planned_after_a_cancel_are_dropped() -> None:
    s = run([ev(d.SessionStarted), ev(d.SessionCancelled), planned("a")])
    assert s.status == d.Status.STOPPED
    assert s.jobs["a"].phase == d.Phase.DROPPED


def test_cancel_that_came_too_late_keeps_the_natural_status() -> None:
    s = run([planned("a"), ev(d.JobStarted, "a"), ev(d.SessionCancelled), finished("a", OK)])
    assert s.status == d.Status.SUCCESS


def test_totals_take_the_larger_of_uploaded_and_reported() -> None:
    s = run(
        [
            planned("a"),
            ev(d.ChunkUploaded, "a", 1, chunk_seq=1, counts=d.Counts(received=10, new_versions=4, unchanged=6)),
            finished("a", OK, received=10, api_calls=3),
        ]
    )
    assert s.totals == d.Counts(received=10, new_versions=4, unchanged=6, api_calls=3)
    assert s.totals.restore_points == 4


def test_final_status_is_set_once_and_finished_event_is_only_marked() -> None:
    s = run([planned("a"), finished("a", OK, 5)])
    assert s.status == d.Status.SUCCESS and s.finished_at == at(5)
    s2 = d.fold(s, ev(d.SessionFinished, minute=6, status=d.Status.SUCCESS))
    assert s2.finished_event_seen and s2.finished_at == at(5)


# ---- stall timeout (the clock is an argument) ----

HOUR = dt.timedelta(hours=1)


@pytest.mark.parametrize(
    ("events", "minutes_later", "stalled"),
    [
        # planned but never started
        ([planned("a")], 59, []),
        ([planned("a")], 60, ["a"]),
        # started but never uploaded
        ([planned("a"), ev(d.JobStarted, "a", 30)], 80, []),
        ([planned("a"), ev(d.JobStarted, "a", 30)], 90, ["a"]),
        # uploaded, then silent: counted from the last upload
        ([planned("a"), ev(d.JobStarted, "a", 1), ev(d.ChunkUploaded, "a", 50, chunk_seq=1)], 100, []),
        ([planned("a"), ev(d.JobStarted, "a", 1), ev(d.ChunkUploaded, "a", 50, chunk_seq=1)], 110, ["a"]),
        # finished jobs never stall
        ([planned("a", "b"), finished("a", OK, 1)], 120, ["b"]),
    ],
)
def test_stalls(events: list[d.Event], minutes_later: float, stalled: list[str]) -> None:
    s = run(events)
    assert [x.job_id for x in d.stalls(s, at(minutes_later), HOUR)] == stalled


def test_per_session_stall_timeout_overrides_the_default() -> None:
    s = run([ev(d.SessionRequested, stall_timeout=dt.timedelta(minutes=5)), planned("a")])
    assert [x.job_id for x in d.stalls(s, at(5), HOUR)] == ["a"]


def test_a_session_never_planned_stalls_as_a_whole() -> None:
    s = run([ev(d.SessionRequested)])
    assert d.stalls(s, at(59), HOUR) == []
    [stall] = d.stalls(s, at(60), HOUR)
    assert stall.job_id == "" and "no jobs were planned" in stall.reason


def test_final_sessions_never_stall() -> None:
    s = run([planned("a"), finished("a", OK)])
    assert d.stalls(s, at(10_000), HOUR) == []


def test_a_finished_job_waits_for_every_chunk_it_reported() -> None:
    s = run(
        [
            planned("a"),
            ev(d.ChunkUploaded, "a", 1, chunk_seq=1, counts=d.Counts(received=5)),
            ev(d.JobFinished, "a", 2, outcome=OK, chunks=3),
            ev(d.ChunkUploaded, "a", 1, chunk_seq=3, counts=d.Counts(received=5)),
        ]
    )
    assert s.status == d.Status.RUNNING and s.jobs_finished == 0
    s = d.fold(s, ev(d.ChunkUploaded, "a", 3, chunk_seq=2, counts=d.Counts(received=5)))
    assert s.status == d.Status.SUCCESS and s.totals.received == 15


def test_a_finished_job_whose_chunks_never_arrive_stalls() -> None:
    s = run([planned("a"), ev(d.JobStarted, "a", 0), ev(d.JobFinished, "a", 1, outcome=OK, chunks=2)])
    [stall] = d.stalls(s, at(61), HOUR)
    assert "chunks never arrived" in stall.reason
    s = d.fold(s, ev(d.JobTerminated, "a", 61, reason=stall.reason))
    assert s.status == d.Status.FAILED


def test_planning_warnings_are_kept_once() -> None:
    first = ev(d.JobsPlanned, jobs=(d.PlannedJob("a", "data"),), warnings=("Foo__c skipped: cannot be queried",))
    s = run([first, first, ev(d.JobsPlanned, jobs=(), warnings=("Account.Secret__c hidden",))])
    assert s.warnings == ("Foo__c skipped: cannot be queried", "Account.Secret__c hidden")


def test_stall_timeout_is_the_requests_else_the_policys_from_discovery_else_the_default() -> None:
    policy = ev(d.SessionStarted, stall_timeout=dt.timedelta(minutes=30))  # discovery: the policy's
    for events in ([ev(d.SessionRequested), policy, planned("a")], [policy, ev(d.SessionRequested), planned("a")]):
        s = run(events)
        assert s.stall_timeout == dt.timedelta(minutes=30)
        assert [x.job_id for x in d.stalls(s, at(30), HOUR * 24)] == ["a"]
    # a request's own timeout: discovery decided it first, so SessionStarted says the same
    asked = dt.timedelta(minutes=5)
    s = run([ev(d.SessionRequested, stall_timeout=asked), ev(d.SessionStarted, stall_timeout=asked), planned("a")])
    assert s.stall_timeout == asked
    s = run([ev(d.SessionRequested), ev(d.SessionStarted), planned("a")])
    assert s.stall_timeout is None and d.stalls(s, at(59), HOUR) == []


@pytest.mark.parametrize(
    ("expected", "arrived", "missing", "named"),
    [
        (2, [], 2, "chunks 1, 2"),
        (240, [*range(1, 6), *range(7, 241)], 1, "chunk 6"),  # resumed after a lost event: one gap, not 235
        (10, [10, 9, 2, 2, 1, 9, 4], 5, "chunks 3, 5, 6, 7, 8"),  # out of order, duplicated
        (20, [1, 3, 20, 25, 30], 17, "chunks 2, 4, 5, 6, 7, …"),  # sparse, and beyond what it reported
    ],
)
def test_a_stalled_finished_job_names_exactly_the_chunks_that_never_arrived(
    expected: int, arrived: list[int], missing: int, named: str
) -> None:
    events = [planned("a"), ev(d.JobStarted, "a", 0)]
    events += [ev(d.ChunkUploaded, "a", 0, chunk_seq=seq, counts=d.Counts(received=1)) for seq in arrived]
    s = run([*events, ev(d.JobFinished, "a", 1, outcome=OK, chunks=expected)])
    assert s.jobs["a"].missing_chunks == missing
    [stall] = d.stalls(s, at(61), HOUR)
    assert f"finished but {missing} of its {expected} chunks never arrived ({named})" in stall.reason
