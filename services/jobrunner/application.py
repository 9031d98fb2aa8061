"""The jobrunner's use cases, written against ports.py: run one job (its kind, its outcome, what becomes of its
queue message) and what to report of it; and what must stop which job, from the events that say so. The NATS
side (the JOBS consumer, heartbeats, the event watch) is consumers.py."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from sfvault.events.v1 import events_pb2 as ev
from sfvault.jobs.v1 import jobs_pb2
from sfvault.restore.v1 import restore_pb2 as rpb

from services.jobrunner.data_job import DataJob
from services.jobrunner.file_job import FileJob
from services.jobrunner.job_run import JobControl, JobRun, JobStopped, Tuning
from services.jobrunner.metadata_job import MetadataJob
from services.jobrunner.metadata_restore import MetadataRestoreJob
from services.jobrunner.ports import JobTables, Org, Storage
from services.jobrunner.prune_job import PruneJob, StoragePruner
from services.jobrunner.restore_job import RestoreJob
from services.platform.counts import ZERO, Counts
from services.platform.events import counts_to_pb

log = logging.getLogger("sfvault.jobrunner")
# the events that end a session, and what they make of its jobs
CLOSING = {"SessionCancelled": "cancelled", "SessionFailed": "terminated", "SessionFinished": "terminated"}


@dataclass
class Result:
    outcome: int  # JobOutcome, or 0 when nothing is to be reported
    message: str
    tally: Counts
    chunks: int
    disposition: str  # "ack" | "term" | "nak"
    # a restore job's totals per object and its read-back (JobFinished.restore / verification)
    restore: list[rpb.ObjectRestoreCounts] = field(default_factory=list)
    verification: rpb.Verification | None = None


@dataclass(frozen=True)
class ErrorKinds:
    """How the adapters' errors decide a job (the composition root names them: service.error_kinds)."""

    # the job is handed back and retried (with back-off, up to max_deliver attempts)
    transient: tuple[type[Exception], ...]
    # the job fails at once with the error's own message
    failing: tuple[type[Exception], ...]
    # the org's API limit: the job ends in error, nothing more is read until the next session
    limit: tuple[type[Exception], ...]
    # what else passes (Salesforce's one retry rule)
    is_transient: Callable[[Exception], bool] = lambda exc: False


@dataclass
class Stops:
    """What the jobrunner must obey, learnt from events: terminated jobs and ended sessions, and the stop
    signals of the jobs running here."""

    terminated: set[tuple[str, str]] = field(default_factory=set)
    closed: dict[str, str] = field(default_factory=dict)
    controls: dict[tuple[str, str], JobControl] = field(default_factory=dict)

    def apply(self, kind: str, session_id: str, job_id: str) -> None:
        if kind == "JobTerminated":
            key = (session_id, job_id)
            self.terminated.add(key)
            control = self.controls.get(key)
            if control is not None:
                control.stop("terminated")
        elif kind in CLOSING:
            why = CLOSING[kind]
            self.closed.setdefault(session_id, why)
            for (sid, _jid), control in list(self.controls.items()):
                if sid == session_id:
                    control.stop(why)

    def known(self, session_id: str, job_id: str) -> str | None:
        """Why a job must not run, from the events seen so far (None: none says so)."""
        if (session_id, job_id) in self.terminated:
            return "terminated"
        return self.closed.get(session_id)

    def stop_all(self, why: str) -> None:
        for control in list(self.controls.values()):
            control.stop(why)


@dataclass
class JobExecutor:
    """Runs one job synchronously (in a worker thread) and says how it ended."""

    storage: Storage
    tables: JobTables
    org: Callable[[jobs_pb2.JobSpec], Org]
    errors: ErrorKinds
    tuning: Tuning = field(default_factory=Tuning)
    max_deliver: int = 6
    # the per-deployment key restore masking derives its pseudonyms from (restore_job.mask_secret)
    mask_secret: bytes = b""

    def execute(self, spec: jobs_pb2.JobSpec, control: JobControl, attempt: int) -> Result:
        run: JobRun | None = None
        restore: RestoreJob | MetadataRestoreJob | None = None
        try:
            org = self.org(spec)
            run = JobRun(spec, self.storage, self.tables, control, self.tuning, org)
            reserve = int(spec.api_reserve_percent)
            job: DataJob | FileJob | MetadataJob | PruneJob
            if spec.type in (ev.JOB_TYPE_RESTORE, ev.JOB_TYPE_METADATA_RESTORE):
                if spec.type == ev.JOB_TYPE_RESTORE:
                    restore = RestoreJob(run, org.writes(reserve), secret=self.mask_secret)
                else:
                    restore = MetadataRestoreJob(run, org.metadata(reserve), self.storage)
                message = restore.execute()
                # ERROR when every record failed; WARNING when some failed or differ after the restore, or
                # something was left out; SUCCESS when everything was restored and the read-back matches
                if restore.all_failed():
                    outcome = ev.JOB_OUTCOME_ERROR
                else:
                    outcome = ev.JOB_OUTCOME_WARNING if restore.warnings else ev.JOB_OUTCOME_SUCCESS
                return self._restored(self._result(run, outcome, message, "ack"), restore)
            if spec.type == ev.JOB_TYPE_DATA:
                job = DataJob(run, org.reads(reserve), self.tables)
            elif spec.type == ev.JOB_TYPE_FILE:
                job = FileJob(run, org.reads(reserve), self.tables)
            elif spec.type == ev.JOB_TYPE_METADATA:
                job = MetadataJob(run, org.metadata(reserve), self.tables)
            elif spec.type == ev.JOB_TYPE_PRUNE:
                job = PruneJob(run, StoragePruner(self.storage))
            else:
                return self._result(run, ev.JOB_OUTCOME_ERROR, f"unknown job type {spec.type}", "ack")
            message = job.execute()
            # completed, but not as planned (a fallback taken, something left for the next session): WARNING, which
            # the session counts as completed (the seed's rules)
            outcome = ev.JOB_OUTCOME_WARNING if job.warnings else ev.JOB_OUTCOME_SUCCESS
            return self._result(run, outcome, message, "ack")
        except Exception as exc:
            return self._restored(self._classify(exc, run, control, spec, attempt), restore)

    @staticmethod
    def _restored(result: Result, restore: RestoreJob | MetadataRestoreJob | None) -> Result:
        """A restore job's totals (also when it stopped early: what it did is reported with its end)."""
        if restore is not None:
            result.restore = restore.restore_counts()
            result.verification = restore.verification
        return result

    def _classify(
        self, exc: Exception, run: JobRun | None, control: JobControl, spec: jobs_pb2.JobSpec, attempt: int
    ) -> Result:
        if control.why is not None and not isinstance(exc, JobStopped):
            exc = JobStopped(control.why)  # whatever broke after a stop signal, the stop decides the report
        if isinstance(exc, JobStopped):
            if exc.why == "cancelled":
                return self._result(run, ev.JOB_OUTCOME_CANCELLED, "cancelled", "ack")
            if exc.why == "shutdown":
                return self._result(run, 0, "handed back at shutdown", "nak")
            return self._result(run, 0, exc.why, "term")
        if isinstance(exc, self.errors.limit):
            # stored data is consistent and the mark did not move: the next session resumes from it
            return self._result(run, ev.JOB_OUTCOME_ERROR, f"stopped: {exc}", "ack")
        if isinstance(exc, self.errors.transient) or self.errors.is_transient(exc):
            log.warning("job %s attempt %d: transient failure (%s); retrying later", spec.job_id, attempt, exc)
            if attempt >= self.max_deliver:
                return self._result(run, ev.JOB_OUTCOME_ERROR, f"gave up after {attempt} attempts: {exc}", "ack")
            return self._result(run, 0, str(exc), "nak")
        if isinstance(exc, self.errors.failing):
            # InvalidArgument: a record the canonical form refuses (the message names the field, not the value)
            log.error("job %s failed: %s", spec.job_id, exc)
            return self._result(run, ev.JOB_OUTCOME_ERROR, str(exc), "ack")
        log.error("job %s failed unexpectedly", spec.job_id, exc_info=exc)
        return self._result(run, ev.JOB_OUTCOME_ERROR, f"unexpected {type(exc).__name__}: {exc}"[:500], "ack")

    @staticmethod
    def _result(run: JobRun | None, outcome: int, message: str, disposition: str) -> Result:
        if run is None:
            return Result(outcome, message, ZERO, 0, disposition)
        return Result(outcome, message, run.finish_counts(), run.seq, disposition)


def settled(result: Result, attempt: int, max_deliver: int) -> Result:
    """A job handed back at its last delivery is not handed back again: it ends in error, reported."""
    if result.disposition == "nak" and attempt >= max_deliver and result.outcome == 0:
        return Result(ev.JOB_OUTCOME_ERROR, result.message, result.tally, result.chunks, "ack")
    return result


def started(spec: jobs_pb2.JobSpec, worker_id: str, attempt: int) -> ev.JobStarted:
    return ev.JobStarted(worker_id=worker_id, attempt=attempt, type=spec.type, object_name=spec.object_name)


def finished(result: Result) -> ev.JobFinished:
    event = ev.JobFinished(
        outcome=result.outcome,  # type: ignore[arg-type]
        message=result.message[:2000],
        counts=counts_to_pb(result.tally),
        chunks=result.chunks,
        restore=result.restore,
    )
    if result.verification is not None:
        event.verification.CopyFrom(result.verification)
    return event
