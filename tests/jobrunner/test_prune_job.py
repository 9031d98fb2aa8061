"""The prune job (issue 18, keep) on an in-memory storage: PruneStep with chunk_seq 1, 2, ... until done, each
step's counts the job's progress and its totals the message (bytes freed, the horizon); resumed after the last
stored step; a dry run is one step; a legal hold is a warning; a stop between steps stops it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pytest
from sfvault.events.v1 import events_pb2 as ev
from sfvault.jobs.v1 import jobs_pb2
from sfvault.protect.v1 import protect_pb2 as ppb
from sfvault.storage.v1 import storage_pb2 as spb

from services.jobrunner.job_run import JobControl, JobRun, JobStopped, Tuning
from services.jobrunner.prune_job import PruneJob, StoragePruner, step_counts
from services.platform.counts import ZERO, Counts
from services.platform.events import counts_to_pb
from tests.jobrunner.fakes import FakeTables

ORG = "00D000000000001AAA"
HORIZON = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)


@dataclass
class FakePruneStorage:
    """Storage's prune as the job sees it: `pending` record versions (and 3 file bodies of 100 bytes each, which
    go last) pruned `max_versions` a step; a step stored once per chunk_seq (a redelivery is replayed)."""

    pending: int = 0
    bodies: int = 3
    held: bool = False
    steps: dict[int, spb.PruneStepResponse] = field(default_factory=dict)
    requests: list[spb.PruneStepRequest] = field(default_factory=list)
    fail_at: int = 0

    def begin_job(
        self, org_id: str, session_id: str, job_id: str, job_type: int, object_name: str
    ) -> spb.BeginJobResponse:
        assert job_type == ev.JOB_TYPE_PRUNE and not object_name
        totals = sum((step_counts(r) for r in self.steps.values()), ZERO)
        return spb.BeginJobResponse(last_chunk_seq=max(self.steps, default=0), counts=counts_to_pb(totals))

    def prune_step(self, request: spb.PruneStepRequest) -> spb.PruneStepResponse:
        self.requests.append(request)
        if request.chunk_seq in self.steps:
            replay = spb.PruneStepResponse()
            replay.CopyFrom(self.steps[request.chunk_seq])
            replay.replayed = True
            return replay
        if request.chunk_seq == self.fail_at:
            self.fail_at = 0
            raise ConnectionError("the jobrunner died here")
        assert request.chunk_seq == max(self.steps, default=0) + 1, "steps are sent in order"
        limit = request.max_versions
        if request.dry_run:
            versions, bodies = self.pending, self.bodies
        else:
            versions = min(limit, self.pending)
            bodies = min(self.bodies, limit - versions)
            self.pending -= versions
            self.bodies -= bodies
        response = spb.PruneStepResponse(
            record_versions=versions,
            file_bodies=bodies,
            bytes_freed=100 * bodies,
            done=request.dry_run or versions + bodies < limit,
            held=self.held,
        )
        response.horizon.FromDatetime(HORIZON)
        self.steps[request.chunk_seq] = response
        return response


class _Clock:
    api_calls = 0

    def org_now(self) -> dt.datetime:
        return HORIZON


def _spec(dry_run: bool = False) -> jobs_pb2.JobSpec:
    return jobs_pb2.JobSpec(
        session_id="p1",
        job_id="prune",
        type=ev.JOB_TYPE_PRUNE,
        org_id="prod",
        salesforce_org_id=ORG,
        prune=jobs_pb2.PruneJob(retention=ppb.RetentionSettings(days=7), dry_run=dry_run),
    )


def _job(storage: FakePruneStorage, dry_run: bool = False, control: JobControl | None = None) -> PruneJob:
    run = JobRun(_spec(dry_run), storage, FakeTables(), control or JobControl(), Tuning(), _Clock())  # type: ignore[arg-type]
    return PruneJob(run, StoragePruner(storage), step_versions=10)


def test_steps_run_in_order_until_done_and_their_counts_are_the_progress() -> None:
    storage = FakePruneStorage(pending=25)
    job = _job(storage)
    message = job.execute()
    assert [r.chunk_seq for r in storage.requests] == [1, 2, 3]  # 10, 10, then 5 + 3 bodies: done
    first = storage.requests[0]
    assert (first.org_id, first.session_id, first.job_id, first.max_versions) == (ORG, "p1", "prune", 10)
    assert first.retention.days == 7 and not first.dry_run
    assert job.run.seq == 3 and job.totals() == Counts(received=25, deleted=25, files=3, bytes=300)
    assert message == (
        "pruned 25 record versions, 0 metadata versions, 0 file versions and 3 file bodies (300 bytes freed in the "
        f"file repository); restore points before {HORIZON.isoformat()} are gone"
    )
    assert not job.warnings


def test_a_resumed_job_goes_on_after_the_last_stored_step_with_its_totals() -> None:
    storage = FakePruneStorage(pending=25, fail_at=2)
    with pytest.raises(ConnectionError):
        _job(storage).execute()
    job = _job(storage)  # the redelivered job
    job.execute()
    assert [r.chunk_seq for r in storage.requests] == [1, 2, 2, 3]  # step 1 never sent again
    assert job.totals() == Counts(received=25, deleted=25, files=3, bytes=300)


def test_a_dry_run_is_one_step_and_a_held_org_a_warning() -> None:
    storage = FakePruneStorage(pending=25, held=True)
    job = _job(storage, dry_run=True)
    message = job.execute()
    assert len(storage.requests) == 1 and storage.requests[0].dry_run and storage.pending == 25
    assert message.startswith("would prune 25 record versions") and "300 bytes to free" in message
    assert "legal hold" in message and job.warnings == ["a legal hold kept (part of) the org"]
    again = _job(storage, dry_run=True)  # resumed after its step: reported, not counted twice
    assert again.execute().startswith("would prune 25 record versions") and len(storage.requests) == 1


def test_a_stop_between_steps_stops_the_job() -> None:
    control = JobControl()
    control.stop("cancelled")
    storage = FakePruneStorage(pending=5)
    with pytest.raises(JobStopped):
        _job(storage, control=control).execute()
    assert storage.requests == []
