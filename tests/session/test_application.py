"""The session application on in-memory fakes of its ports (no PostgreSQL, no NATS: milliseconds): stall
enforcement, announcing once, duplicates, start and cancel, and a start while the database is away.
tests/session/test_service.py runs the same rules through gRPC on real servers."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest
from sfvault.events.v1 import events_pb2 as pb

from services.platform import errors
from services.session import domain as d
from services.session.application import SessionService
from tests.platform.fakes import FakeBus, FakeDelivery
from tests.session.fakes import FakeClock, FakeProjection


class Harness:
    def __init__(self) -> None:
        self.clock = FakeClock()  # the events the fake bus makes carry the time they are published
        self.bus = FakeBus()
        self.projection = FakeProjection()
        self.app = SessionService(self.projection, self.bus, self.clock, dt.timedelta(hours=24))
        self.folded = 0

    async def emit(self, payload: object, session_id: str, job_id: str = "", *id_parts: object) -> None:
        await self.bus.emit(payload, session_id=session_id, job_id=job_id, id_parts=id_parts)  # type: ignore[arg-type]

    async def deliver(self) -> None:
        """What the consumer would do: hand every event published since the last call to the application."""
        while self.folded < len(self.bus.events):
            batch = self.bus.events[self.folded :]
            self.folded = len(self.bus.events)
            await self.app.handle_batch([FakeDelivery(env) for env in batch])

    def published(self, kind: str, session_id: str) -> list[pb.Envelope]:
        return [e for e in self.bus.events if e.session_id == session_id and e.WhichOneof("payload") == kind]


@pytest.fixture
def harness() -> Harness:
    return Harness()


async def run_session(
    h: Harness, session_id: str, outcomes: dict[str, pb.JobOutcome.ValueType], stall: dt.timedelta
) -> None:
    request = pb.SessionRequested(policy_id="p1", org_id="o1", trigger="test")
    request.stall_timeout.FromTimedelta(stall)
    await h.emit(request, session_id)
    await h.emit(pb.SessionStarted(policy_id="p1", org_id="o1", initial=True), session_id)
    planned = [pb.PlannedJob(job_id=j, type=pb.JOB_TYPE_DATA, object_name=j) for j in outcomes]
    await h.emit(pb.JobsPlanned(jobs=planned), session_id)
    for job_id, outcome in outcomes.items():
        await h.emit(pb.JobStarted(worker_id="w1", attempt=1, type=pb.JOB_TYPE_DATA), session_id, job_id)
        counts = pb.Counts(received=100, new_versions=100)
        await h.emit(pb.ChunkUploaded(chunk_seq=1, counts=counts), session_id, job_id, 1)
        if outcome:
            await h.emit(pb.JobFinished(outcome=outcome, counts=counts, chunks=1), session_id, job_id)
    await h.deliver()


async def test_a_stalled_job_is_terminated_and_the_session_announced_once(harness: Harness) -> None:
    await run_session(
        harness, "s1", {"a": pb.JOB_OUTCOME_SUCCESS, "stuck": pb.JOB_OUTCOME_UNSPECIFIED}, dt.timedelta(hours=2)
    )
    assert await harness.app.enforce() == []  # not yet
    harness.clock.advance(dt.timedelta(hours=2, minutes=1))
    [stall] = await harness.app.enforce()
    assert stall.job_id == "stuck" and "stall timeout" in stall.reason
    assert len(harness.published("job_terminated", "s1")) == 1
    await harness.deliver()  # the JobTerminated comes back and is folded: the session ends
    session = await harness.app.get("s1")
    assert session.status is d.Status.WARNING
    assert len(harness.published("session_finished", "s1")) == 1
    await harness.deliver()  # the SessionFinished comes back: seen, not announced again
    await harness.app.enforce()
    assert len(harness.published("session_finished", "s1")) == 1
    assert (await harness.app.get("s1")).finished_event_seen


async def test_an_event_delivered_twice_is_folded_once(harness: Harness) -> None:
    await run_session(harness, "s1", {"a": pb.JOB_OUTCOME_UNSPECIFIED}, dt.timedelta(hours=2))
    again = [FakeDelivery(env) for env in harness.bus.events]
    await harness.app.handle_batch(again)
    session = await harness.app.get("s1")
    assert session.totals.received == 100 and session.jobs["a"].uploaded.received == 100


async def test_start_is_readable_at_once_and_cancel_of_a_final_session_is_refused(harness: Harness) -> None:
    started = await harness.app.start(
        policy_id="p1", org_id="o1", stall_timeout=None, trigger="", requested_by="alice", session_id="s1"
    )
    assert started.status is d.Status.PENDING and started.requested_by == "alice" and started.trigger == "manual"
    assert (await harness.app.get("s1")).session_id == "s1"
    assert [e.WhichOneof("payload") for e in harness.bus.events] == ["session_requested"]
    with pytest.raises(errors.InvalidArgument):
        await harness.app.start(policy_id="p 1", org_id="o1", stall_timeout=None, trigger="", requested_by="")
    await harness.emit(pb.SessionFailed(reason="boom"), "s1")
    await harness.deliver()
    with pytest.raises(errors.FailedPrecondition, match="already ended"):
        await harness.app.cancel("s1", requested_by="alice", reason="")
    with pytest.raises(errors.NotFound):
        await harness.app.get("nobody")


async def test_a_start_while_the_database_is_away_is_published_and_folded_later(harness: Harness) -> None:
    harness.projection.fail_next = psycopg.OperationalError("the server closed the connection")
    started = await harness.app.start(
        policy_id="p1", org_id="o1", stall_timeout=None, trigger="", requested_by="alice", session_id="s1"
    )
    assert started.status is d.Status.PENDING
    assert await harness.projection.get("s1") is None  # not committed
    await harness.deliver()  # the stream's delivery folds it
    stored = await harness.projection.get("s1")
    assert stored is not None and stored.requested_by == "alice"
