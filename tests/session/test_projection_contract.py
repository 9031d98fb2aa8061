"""The projection store port's rules (services/session/ports.py), held against the in-memory fake
(tests/session/fakes.py) and the PostgreSQL projection alike."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import AsyncIterator

import pytest

from services.platform import db
from services.session import domain as d
from services.session.ports import ProjectionStore
from services.session.store import Projection
from tests.session.fakes import FakeProjection

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.fixture(params=["fake", "postgres"])
async def projection(request: pytest.FixtureRequest) -> AsyncIterator[ProjectionStore]:
    if request.param == "fake":
        yield FakeProjection()
        return
    pool = await db.open_pool(request.getfixturevalue("database_url"))
    try:
        real = Projection(pool, "session", "contract")
        await real.setup()
        yield real
    finally:
        await pool.close()


def session(sid: str, minute: int, *events: d.Event, policy: str = "p1") -> d.Session:
    base = {"session_id": sid, "at": T0 + dt.timedelta(minutes=minute)}
    requested = d.SessionRequested(event_id=f"req-{sid}", policy_id=policy, org_id="o1", **base)  # type: ignore[arg-type]
    state = d.fold_all(None, [requested, *events])
    assert state is not None
    return state


def running_with_jobs(sid: str, minute: int) -> d.Session:
    at = T0 + dt.timedelta(minutes=minute)
    jobs = (d.PlannedJob("a", "data", "Account"), d.PlannedJob("b", "file", "Document"))
    return session(
        sid,
        minute,
        d.SessionStarted(event_id=f"st-{sid}", session_id=sid, at=at, policy_id="p1", org_id="o1", initial=True),
        d.JobsPlanned(event_id=f"pl-{sid}", session_id=sid, at=at, jobs=jobs, warnings=("w",)),
        d.JobStarted(event_id=f"js-{sid}", session_id=sid, job_id="a", at=at, worker_id="w1"),
        d.ChunkUploaded(
            event_id=f"cu-{sid}", session_id=sid, job_id="a", at=at, chunk_seq=1, counts=d.Counts(received=3)
        ),
    )


async def save(projection: ProjectionStore, *sessions: d.Session) -> None:
    async with projection.transaction() as tx:
        await tx.save(sessions, [(s.session_id, j) for s in sessions for j in s.jobs.values()])


async def test_an_event_is_claimed_once(projection: ProjectionStore) -> None:
    async with projection.transaction() as tx:
        assert await tx.claim(["e1", "e2"]) == {"e1", "e2"}
    async with projection.transaction() as tx:
        assert await tx.claim(["e2", "e3"]) == {"e3"}


async def test_a_transaction_that_fails_leaves_no_trace(projection: ProjectionStore) -> None:
    with pytest.raises(RuntimeError):
        async with projection.transaction() as tx:
            await tx.claim(["e1"])
            await tx.save([session("s1", 0)], [])
            raise RuntimeError("the fold failed")
    assert await projection.get("s1") is None
    async with projection.transaction() as tx:
        assert await tx.claim(["e1"]) == {"e1"}


async def test_a_saved_session_reads_back_equal_with_its_jobs(projection: ProjectionStore) -> None:
    s = running_with_jobs("s1", 0)
    await save(projection, s)
    assert await projection.get("s1") == s
    async with projection.transaction() as tx:
        assert await tx.load(["s1", "unknown"]) == {"s1": s}
    # a later save of the session with only the job that changed keeps the other job as it was
    at = T0 + dt.timedelta(minutes=1)
    done = d.fold(s, d.JobStarted(event_id="js-b", session_id="s1", job_id="b", at=at, worker_id="w2"))
    async with projection.transaction() as tx:
        await tx.save([done], [("s1", done.jobs["b"])])
    assert await projection.get("s1") == done


async def test_open_and_unannounced_final_sessions(projection: ProjectionStore) -> None:
    at = T0 + dt.timedelta(minutes=2)
    failed = session("s2", 1, d.SessionFailed(event_id="f-s2", session_id="s2", at=at, reason="boom"))
    announced = d.fold(failed, d.SessionFinished(event_id="fin-s2", session_id="s2", at=at, status=d.Status.FAILED))
    await save(projection, running_with_jobs("s1", 0), failed, session("s3", 2))
    assert set(await projection.open_sessions()) == {"s1", "s3"}
    assert set(await projection.unannounced_final_sessions()) == {"s2"}
    await save(projection, announced)
    assert await projection.unannounced_final_sessions() == {}


async def test_list_is_newest_first_filtered_and_paged(projection: ProjectionStore) -> None:
    await save(projection, *(session(f"s{i}", i, policy="p1" if i % 2 else "p2") for i in range(1, 6)))
    page = await projection.list(d.SessionQuery(page_size=2))
    assert [s.session_id for s in page.sessions] == ["s5", "s4"]
    assert page.next_token is not None
    rest = await projection.list(d.SessionQuery(page_size=10, page_after=page.next_token))
    assert [s.session_id for s in rest.sessions] == ["s3", "s2", "s1"]
    assert rest.next_token is None
    p1 = await projection.list(d.SessionQuery(policy_id="p1"))
    assert [s.session_id for s in p1.sessions] == ["s5", "s3", "s1"]
    window = await projection.list(
        d.SessionQuery(after=T0 + dt.timedelta(minutes=2), before=T0 + dt.timedelta(minutes=4))
    )
    assert [s.session_id for s in window.sessions] == ["s3", "s2"]
    assert (await projection.list(d.SessionQuery(status=d.Status.RUNNING))).sessions == []
    assert len((await projection.list(d.SessionQuery(status=d.Status.PENDING))).sessions) == 5


def restore_session(sid: str, minute: int) -> d.Session:
    at = T0 + dt.timedelta(minutes=minute)
    spec = {"source_org_id": "o1", "selections": [{"object_name": "Account", "all": True}], "dry_run": True}
    counts = d.RestoreCounts(created=2, skipped=3, failed=1, write_calls=2)
    check = d.Verification(done=True, verified=False, matching=4, differing=1, samples=("Account 001 Name: differs",))
    return d.fold_all(
        None,
        [
            d.SessionRequested(
                event_id=f"req-{sid}", session_id=sid, at=at, org_id="o1", kind=d.Kind.RESTORE, restore=spec
            ),
            d.SessionStarted(
                event_id=f"st-{sid}",
                session_id=sid,
                at=at,
                kind=d.Kind.RESTORE,
                restore={**spec, "target_org_id": "o1"},
            ),
            d.JobsPlanned(event_id=f"pl-{sid}", session_id=sid, at=at, jobs=(d.PlannedJob("r", "restore"),)),
            d.ChunkUploaded(
                event_id=f"cu-{sid}", session_id=sid, job_id="r", at=at, chunk_seq=1, restore={"Account": counts}
            ),
            d.JobFinished(
                event_id=f"jf-{sid}",
                session_id=sid,
                job_id="r",
                at=at,
                outcome=d.Outcome.WARNING,
                chunks=1,
                restore={"Account": counts, "Contact": d.RestoreCounts(updated=1)},
                verification=check,
            ),
        ],
    )  # type: ignore[return-value]


async def test_a_restore_session_reads_back_equal_and_lists_by_kind(projection: ProjectionStore) -> None:
    restore = restore_session("r1", 3)
    assert restore.status == d.Status.WARNING
    await save(projection, session("s1", 1), restore)
    back = await projection.get("r1")
    assert back == restore
    assert back is not None and back.restore_counts["Contact"] == d.RestoreCounts(updated=1)
    assert back.verification.differing == 1 and back.restore["target_org_id"] == "o1"
    assert [s.session_id for s in (await projection.list(d.SessionQuery(kind=d.Kind.RESTORE))).sessions] == ["r1"]
    assert [s.session_id for s in (await projection.list(d.SessionQuery(kind=d.Kind.BACKUP))).sessions] == ["s1"]
    assert len((await projection.list(d.SessionQuery())).sessions) == 2


def ended_backup(
    sid: str, minute: int, policy: str, counts: d.Counts, *, initial: bool = False, status: d.Status | None = None
) -> d.Session:
    at = T0 + dt.timedelta(minutes=minute)
    state = session(
        sid,
        minute,
        d.SessionStarted(event_id=f"st-{sid}", session_id=sid, at=at, policy_id=policy, org_id="o1", initial=initial),
        d.JobsPlanned(event_id=f"pl-{sid}", session_id=sid, at=at, jobs=(d.PlannedJob("j", "data", "Contact"),)),
        d.JobFinished(
            event_id=f"jf-{sid}", session_id=sid, job_id="j", at=at, outcome=d.Outcome.SUCCESS, counts=counts
        ),
        policy=policy,
    )
    assert state.status is d.Status.SUCCESS and state.finished_at == at
    return dataclasses.replace(state, status=status or state.status)


async def test_the_history_of_a_policy_s_backups(projection: ProjectionStore) -> None:
    """What damage detection reads: the last N backups of the policy that ended Success or Warning before this
    one (newest first, initial ones included, with their per-object counts), and per object the new versions less
    the deleted ones over every earlier backup that ended (Failed and Stopped ones too)."""
    p = f"p-{uuid.uuid4().hex[:8]}"
    earlier = [
        ended_backup("h0" + p, 0, p, d.Counts(new_versions=100, deleted=2), initial=True),
        ended_backup("h1" + p, 10, p, d.Counts(deleted=5, changed=3), status=d.Status.WARNING),
        ended_backup("h2" + p, 20, p, d.Counts(new_versions=7), status=d.Status.FAILED),
        ended_backup("h3" + p, 30, p, d.Counts(changed=4)),
        ended_backup("other" + p, 35, "another-" + p, d.Counts(new_versions=1000)),
    ]
    current = ended_backup("h9" + p, 40, p, d.Counts(deleted=50))
    later = ended_backup("h10" + p, 50, p, d.Counts(deleted=1))
    await save(projection, *earlier, current, later)
    async with projection.transaction() as tx:
        history = await tx.history(current, 2)
        everything = await tx.history(current, 30)
    assert [s.session_id for s in history.sessions] == ["h3" + p, "h1" + p]
    assert history.previous_finished_at == T0 + dt.timedelta(minutes=30)
    assert history.sessions[1].objects == {"Contact": d.Counts(deleted=5, changed=3)}
    assert history.records == {"Contact": 100 - 2 - 5 + 7}
    assert [s.session_id for s in everything.sessions] == ["h3" + p, "h1" + p, "h0" + p]
    assert everything.sessions[2].initial
