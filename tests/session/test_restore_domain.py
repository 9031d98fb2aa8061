"""The fold of restore sessions: kind and spec kept, restore counts per object (chunks once, then the job's
totals), the read-back kept, and the status rules with the jobrunner's outcomes (a WARNING job is an error)."""

from __future__ import annotations

import random

import pytest

from services.session import domain as d
from tests.session.test_domain import ERR, OK, WARN, at, ev, run

SPEC = {"source_org_id": "o1", "selections": [{"object_name": "Account", "ids": ["001000000000001AAA"]}]}
RESOLVED = {**SPEC, "target_org_id": "o1", "as_of": "2026-01-01T00:00:00Z"}


def rc(**kw: int) -> d.RestoreCounts:
    return d.RestoreCounts(**kw)


def restore_planned(*jobs: str) -> d.Event:
    return ev(d.JobsPlanned, jobs=tuple(d.PlannedJob(j, "restore", "") for j in jobs))


def restore_start() -> list[d.Event]:
    return [
        ev(d.SessionRequested, org_id="o1", kind=d.Kind.RESTORE, restore=SPEC, requested_by="rita"),
        ev(d.SessionStarted, minute=0.1, org_id="o1", kind=d.Kind.RESTORE, restore=RESOLVED),
    ]


def chunk(job: str, seq: int, **objects: d.RestoreCounts) -> d.Event:
    return ev(d.ChunkUploaded, job, seq, chunk_seq=seq, restore=objects)


def done(
    job: str,
    outcome: d.Outcome,
    chunks: int = 0,
    verification: d.Verification = d.NOT_VERIFIED,
    **objects: d.RestoreCounts,
) -> d.Event:
    return ev(d.JobFinished, job, 9, outcome=outcome, chunks=chunks, restore=objects, verification=verification)


def test_kind_and_the_resolved_spec_are_kept_in_any_order() -> None:
    events = restore_start()
    for order in (events, events[::-1]):
        s = run(order)
        assert s.kind == d.Kind.RESTORE and s.is_restore
        assert s.restore == RESOLVED and s.restore_resolved
        assert s.requested_by == "rita"
    # a later event that names no kind (a backup's default) does not turn it into a backup
    s = d.fold(run(events), ev(d.SessionStarted, minute=1))
    assert s.kind == d.Kind.RESTORE and s.restore == RESOLVED
    assert run([ev(d.SessionRequested, policy_id="p")]).kind == d.Kind.BACKUP


def test_restore_counts_sum_each_chunk_once_then_the_jobs_totals() -> None:
    chunks = [
        chunk("r", 1, Account=rc(created=2, skipped=1), Contact=rc(updated=3)),
        chunk("r", 2, Account=rc(failed=1, undeleted=4)),
    ]
    rng = random.Random(3)
    for _ in range(10):
        events = [*restore_start(), restore_planned("r"), *chunks, *rng.sample(chunks, 2)]
        rng.shuffle(events)
        s = run(events)
        assert s.restore_counts == {
            "Account": rc(created=2, skipped=1, failed=1, undeleted=4),
            "Contact": rc(updated=3),
        }
        assert s.status == d.Status.RUNNING
    # the job's totals replace the chunk sums (the larger, field by field: as the backup's counts)
    totals = {"Account": rc(created=2, skipped=1, failed=1, undeleted=4, write_calls=3), "Contact": rc(updated=3)}
    s = d.fold(s, done("r", WARN, chunks=2, **totals))
    assert s.restore_counts == totals
    assert s.jobs["r"].restore_counts == totals


def test_two_jobs_restore_counts_add_up_per_object() -> None:
    s = run(
        [
            *restore_start(),
            restore_planned("a", "b"),
            done("a", OK, Account=rc(created=1)),
            done("b", OK, Account=rc(skipped=2), Case=rc(updated=1)),
        ]
    )
    assert s.restore_counts == {"Account": rc(created=1, skipped=2), "Case": rc(updated=1)}
    assert s.status == d.Status.SUCCESS


@pytest.mark.parametrize(
    ("outcomes", "status"),
    [
        ((), d.Status.SUCCESS),
        ((OK,), d.Status.SUCCESS),
        ((OK, OK), d.Status.SUCCESS),
        ((WARN,), d.Status.WARNING),  # some records Failed or differ: never a plain Success
        ((WARN, WARN), d.Status.WARNING),
        ((OK, WARN), d.Status.WARNING),
        ((ERR, WARN), d.Status.WARNING),
        ((ERR, OK), d.Status.WARNING),
        ((ERR,), d.Status.FAILED),  # could not complete, or every record failed
        ((ERR, ERR), d.Status.FAILED),
    ],
)
def test_restore_status_rules(outcomes: tuple[d.Outcome, ...], status: d.Status) -> None:
    jobs = [f"j{i}" for i in range(len(outcomes))]
    events = [*restore_start(), restore_planned(*jobs)]
    events += [done(j, o) for j, o in zip(jobs, outcomes, strict=True)]
    s = run(events)
    assert s.status == status
    assert s.jobs_with_errors == sum(1 for o in outcomes if o != OK)


def test_a_backup_keeps_the_seed_rule_for_warnings() -> None:
    planned_data = ev(d.JobsPlanned, jobs=(d.PlannedJob("a", "data", "Account"),))
    s = run(
        [
            ev(d.SessionRequested, policy_id="p"),
            ev(d.SessionStarted),
            planned_data,
            ev(d.JobFinished, "a", 5, outcome=WARN),
        ]
    )
    assert s.status == d.Status.SUCCESS and s.jobs_with_errors == 0


def test_a_success_its_own_counts_contradict_is_a_warning() -> None:
    failed = run([*restore_start(), restore_planned("r"), done("r", OK, Account=rc(created=3, failed=2))])
    assert failed.status == d.Status.WARNING and "2 records failed" in failed.reason
    differs = d.Verification(done=True, verified=False, matching=5, differing=1, samples=("Account 001 Name: x",))
    s = run([*restore_start(), restore_planned("r"), done("r", OK, verification=differs, Account=rc(updated=6))])
    assert s.status == d.Status.WARNING and "1 records differ" in s.reason


def test_the_read_back_is_kept_and_combined() -> None:
    good = d.Verification(done=True, verified=True, matching=10)
    bad = d.Verification(done=True, verified=False, matching=3, differing=2, samples=("Contact 003 Email: differs",))
    s = run([*restore_start(), restore_planned("a", "b", "c"), done("a", OK, verification=good)])
    assert s.verification == good
    s = d.fold(s, done("b", WARN, verification=bad))
    s = d.fold(s, done("c", OK))  # no read-back (e.g. nothing to read): changes nothing
    assert s.verification == d.Verification(True, False, 13, 2, ("Contact 003 Email: differs",))
    assert s.status == d.Status.WARNING
    assert run([*restore_start(), restore_planned("a"), done("a", OK)]).verification == d.NOT_VERIFIED


def test_a_restore_obeys_the_stall_timeout_and_cancel() -> None:
    s = run([*restore_start(), restore_planned("r"), ev(d.JobStarted, "r", 1)])
    hour = at(61) - at(1)
    [stall] = d.stalls(s, at(62), hour)
    assert stall.job_id == "r"
    terminated = d.fold(s, ev(d.JobTerminated, "r", 62, reason=stall.reason))
    assert terminated.status == d.Status.FAILED
    cancelled = d.fold(s, ev(d.SessionCancelled, minute=2, requested_by="rita"))
    cancelled = d.fold(cancelled, done("r", d.Outcome.CANCELLED))
    assert cancelled.status == d.Status.STOPPED
