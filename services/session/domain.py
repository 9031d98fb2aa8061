"""The rules of a session (a backup or a restore): events are folded into state by a pure function.

No I/O and no clock read here: `fold(state, event)` takes times from the events, and the stall check
takes `now` as an argument. Status rules are the seed's (How Backup Works):

- Success: every task completed successfully or with warnings (a session with no tasks is Success);
- Warning: at least one task completed with errors, and not all;
- Failed: a critical error stopped the session, or every task completed with errors;
- Stopped (ours): a user cancelled the session and at least one job was dropped or cut short. A job that
  has not finished within the cancel grace after the cancellation is terminated, so every cancelled
  session ends, even one whose jobrunner hangs or whose job is never taken.

A restore session (kind RESTORE or METADATA_RESTORE) follows the same rules with the jobrunner's outcomes, where
a job that ended WARNING (some records Failed, or the read-back differs) counts as completed with errors: failed
records never show as a plain Success. So: Success if every job succeeded; Warning if any ended WARNING or ERROR
and not all ERROR; Failed if all ERROR or a critical error. A restore job that says SUCCESS while its own counts
show Failed records or its read-back differs is held to its counts. Its per-object counts (created, updated,
undeleted, skipped, failed, ...) are summed from its chunks once each and replaced by its JobFinished totals by
the same rule as the backup's Counts (the larger of the two, field by field), and its read-back (verification)
is kept from its JobFinished.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from services.platform.counts import ZERO as ZERO  # re-exported: the fold speaks of Counts
from services.platform.counts import Counts as Counts
from services.platform.counts import RestoreCounts as RestoreCounts  # kept by object name: object_name empty
from services.session.domain_anomaly import Finding, summary


class Status(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    WARNING = "WARNING"
    FAILED = "FAILED"
    STOPPED = "STOPPED"


FINAL = frozenset({Status.SUCCESS, Status.WARNING, Status.FAILED, Status.STOPPED})


class Kind(StrEnum):
    BACKUP = "BACKUP"
    RESTORE = "RESTORE"  # records and files
    METADATA_RESTORE = "METADATA_RESTORE"
    PRUNE = "PRUNE"  # retention (issue 18): old versions and unreferenced file bodies deleted; admins only


RESTORE_KINDS = frozenset({Kind.RESTORE, Kind.METADATA_RESTORE})


ObjectCounts = Mapping[str, RestoreCounts]  # per object name (an sObject, or "metadata:<Type>")


def add_objects(a: ObjectCounts, b: ObjectCounts) -> dict[str, RestoreCounts]:
    summed = dict(a)
    for name, counts in b.items():
        summed[name] = summed[name] + counts if name in summed else counts
    return summed


def max_objects(a: ObjectCounts, b: ObjectCounts) -> dict[str, RestoreCounts]:
    larger = dict(a)
    for name, counts in b.items():
        larger[name] = larger[name].max(counts) if name in larger else counts
    return larger


MAX_SAMPLES = 20


@dataclass(frozen=True, slots=True)
class Verification:
    """The read-back after a restore: the restored scope compared with the backup's state at the point."""

    done: bool = False  # false: not run (a dry run, or the job did not get that far)
    verified: bool = False  # done and nothing differs
    matching: int = 0
    differing: int = 0
    samples: tuple[str, ...] = ()  # "Object Id field: reason" lines, never values

    def combine(self, other: Verification) -> Verification:
        """Two jobs' read-backs as one: done when either ran, verified when every one that ran matched."""
        if not other.done:
            return self
        if not self.done:
            return other
        return Verification(
            done=True,
            verified=self.verified and other.verified,
            matching=self.matching + other.matching,
            differing=self.differing + other.differing,
            samples=(self.samples + other.samples)[:MAX_SAMPLES],
        )

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "samples": list(self.samples)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Verification:
        return cls(
            done=bool(data.get("done")),
            verified=bool(data.get("verified")),
            matching=int(data.get("matching", 0)),
            differing=int(data.get("differing", 0)),
            samples=tuple(data.get("samples", ()))[:MAX_SAMPLES],
        )


NOT_VERIFIED = Verification()
# A policy's protection settings as the session keeps them: their protobuf JSON form (domain_anomaly and
# domain_alerts read them).
Settings = Mapping[str, Any]
# A restore spec as the session keeps it: sfvault.restore.v1.RestoreSpec in its JSON form (translate.py converts;
# the fold never reads inside it). Empty for a backup.
RestoreSpec = Mapping[str, Any]


class Phase(StrEnum):
    PLANNED = "PLANNED"
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    TERMINATED = "TERMINATED"  # by the stall timeout (completed with errors) or the cancel grace (cut short)
    DROPPED = "DROPPED"  # still queued when the session was cancelled


DONE = frozenset({Phase.FINISHED, Phase.TERMINATED, Phase.DROPPED})


class Outcome(StrEnum):
    NONE = ""
    SUCCESS = "SUCCESS"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CANCELLED = "CANCELLED"


# ---- events ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    event_id: str
    session_id: str
    job_id: str = ""
    at: dt.datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionRequested(Event):
    policy_id: str = ""
    org_id: str = ""
    stall_timeout: dt.timedelta | None = None
    trigger: str = ""
    requested_by: str = ""
    kind: Kind = Kind.BACKUP
    restore: RestoreSpec = field(default_factory=dict)  # as requested
    draft_of: str = ""  # a restore draft: the backup session whose finding it undoes


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionStarted(Event):
    policy_id: str = ""
    org_id: str = ""
    initial: bool = False
    stall_timeout: dt.timedelta | None = None  # discovery's decision: the request's, else the policy's
    kind: Kind = Kind.BACKUP
    restore: RestoreSpec = field(default_factory=dict)  # as discovery resolved it (target org, as_of)
    # the policy's protection settings (sfvault.protect.v1 AlertSettings / AnomalySettings, JSON form)
    alerts: Settings = field(default_factory=dict)
    anomalies: Settings = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PlannedJob:
    job_id: str
    job_type: str
    object_name: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class JobsPlanned(Event):
    jobs: tuple[PlannedJob, ...] = ()
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class JobStarted(Event):
    worker_id: str = ""
    job_type: str = ""
    object_name: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkUploaded(Event):
    chunk_seq: int
    counts: Counts = ZERO
    restore: ObjectCounts = field(default_factory=dict)  # a restore chunk: per object, what it decided


@dataclass(frozen=True, slots=True, kw_only=True)
class JobFinished(Event):
    outcome: Outcome
    message: str = ""
    counts: Counts = ZERO
    chunks: int = 0  # chunks 1..chunks were stored; the job is complete once each is folded
    restore: ObjectCounts = field(default_factory=dict)  # a restore job's totals, per object
    verification: Verification = NOT_VERIFIED  # a restore job's read-back


@dataclass(frozen=True, slots=True, kw_only=True)
class JobTerminated(Event):
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionCancelled(Event):
    requested_by: str = ""
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionFailed(Event):
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionFinished(Event):
    status: Status | None = None


# ---- state ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Job:
    job_id: str
    job_type: str = ""
    object_name: str = ""
    phase: Phase = Phase.PLANNED
    outcome: Outcome = Outcome.NONE
    message: str = ""
    uploaded: Counts = ZERO  # the sum of its ChunkUploaded events (what storage committed)
    reported: Counts = ZERO  # the totals of its JobFinished (what the jobrunner counted)
    chunks_upto: int = 0  # every chunk 1..chunks_upto has been counted
    chunks_ahead: frozenset[int] = frozenset()  # counted chunks beyond a gap (out-of-order arrival)
    planned: bool = False
    planned_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    last_upload_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    worker_id: str = ""
    expected_chunks: int = 0
    restore_uploaded: ObjectCounts = field(default_factory=dict)  # the sum of its chunks' restore counts
    restore_reported: ObjectCounts = field(default_factory=dict)  # the totals of its JobFinished
    verification: Verification = NOT_VERIFIED

    @property
    def done(self) -> bool:
        """Completed: dropped, terminated, or finished with every chunk it reported folded."""
        if self.phase == Phase.FINISHED:
            return self.chunks_upto >= self.expected_chunks
        return self.phase in DONE

    @property
    def counts(self) -> Counts:
        return self.uploaded.max(self.reported)

    @property
    def chunks(self) -> int:
        return self.chunks_upto + len(self.chunks_ahead)

    @property
    def restore_counts(self) -> dict[str, RestoreCounts]:
        return max_objects(self.restore_uploaded, self.restore_reported)

    @property
    def with_errors(self) -> bool:
        return self.outcome == Outcome.ERROR

    @property
    def restore_with_errors(self) -> bool:
        """A restore job that ended with errors: ERROR, WARNING, or a SUCCESS its own counts contradict (records
        that Failed, a read-back that differs)."""
        if self.outcome in (Outcome.ERROR, Outcome.WARNING):
            return True
        if self.outcome == Outcome.SUCCESS:
            return self.verification.differing > 0 or any(c.failed for c in self.restore_counts.values())
        return False

    def has_chunk(self, seq: int) -> bool:
        return seq <= self.chunks_upto or seq in self.chunks_ahead

    @property
    def missing_chunks(self) -> int:
        """How many of the chunks 1..expected_chunks it reported have not arrived: exact whatever the arrival
        order, duplicates, or chunks beyond the ones reported."""
        if self.chunks_upto >= self.expected_chunks:
            return 0
        arrived_ahead = sum(1 for seq in self.chunks_ahead if seq <= self.expected_chunks)
        return self.expected_chunks - self.chunks_upto - arrived_ahead

    def first_missing_chunks(self, limit: int = 5) -> list[int]:
        """The lowest sequences still missing (at most `limit`), to name them in a message."""
        found: list[int] = []
        seq = self.chunks_upto + 1
        while seq <= self.expected_chunks and len(found) < limit:
            if seq not in self.chunks_ahead:
                found.append(seq)
            seq += 1
        return found


@dataclass(frozen=True, slots=True)
class Session:
    session_id: str
    policy_id: str = ""
    org_id: str = ""
    status: Status = Status.PENDING
    reason: str = ""
    initial: bool = False
    trigger: str = ""
    requested_by: str = ""
    # the request's, else the policy's (from SessionStarted), else None: the service default. Discovery decides
    # request-then-policy, so whichever of the two events comes first, the result is the same.
    stall_timeout: dt.timedelta | None = None
    planned: bool = False
    cancel_requested: bool = False
    cancelled_at: dt.datetime | None = None  # the earliest SessionCancelled: the cancel grace counts from it
    failure_reason: str = ""
    finished_event_seen: bool = False
    requested_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    jobs: Mapping[str, Job] = field(default_factory=dict)
    version: int = 0  # events folded
    warnings: tuple[str, ...] = ()
    kind: Kind = Kind.BACKUP
    restore: RestoreSpec = field(default_factory=dict)  # the resolved spec once SessionStarted says, else the request
    restore_resolved: bool = False  # `restore` is discovery's resolution (SessionStarted), not the request
    alerts: Settings = field(default_factory=dict)  # the policy's, from SessionStarted
    anomalies: Settings = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()  # set once, as the backup ends (with_findings)
    baseline_at: dt.datetime | None = None  # when the previous backup finished: the restore drafts' point
    draft_of: str = ""

    @property
    def is_final(self) -> bool:
        return self.status in FINAL

    @property
    def is_restore(self) -> bool:
        return self.kind in RESTORE_KINDS

    @property
    def restore_counts(self) -> dict[str, RestoreCounts]:
        """Per object, summed over the jobs (each job's chunks, or its totals once it finished)."""
        total: dict[str, RestoreCounts] = {}
        for job in self.jobs.values():
            total = add_objects(total, job.restore_counts)
        return total

    @property
    def verification(self) -> Verification:
        combined = NOT_VERIFIED
        for job_id in sorted(self.jobs):
            combined = combined.combine(self.jobs[job_id].verification)
        return combined

    @property
    def totals(self) -> Counts:
        total = ZERO
        for job in self.jobs.values():
            total = total + job.counts
        return total

    @property
    def jobs_finished(self) -> int:
        return sum(1 for j in self.jobs.values() if j.done)

    @property
    def jobs_with_errors(self) -> int:
        """Jobs that completed with errors (for a restore: a WARNING too, see the module's rules)."""
        if self.is_restore:
            return sum(1 for j in self.jobs.values() if j.restore_with_errors)
        return sum(1 for j in self.jobs.values() if j.with_errors)


def new_session(session_id: str) -> Session:
    return Session(session_id=session_id)


# ---- the fold -------------------------------------------------------------------------------------------


def fold(state: Session | None, event: Event) -> Session:
    """Apply one event. Tolerates duplicates and any arrival order; a final status never changes."""
    session = state or new_session(event.session_id)
    handler = _HANDLERS.get(type(event))
    if handler is None:
        raise TypeError(f"no fold rule for {type(event).__name__}")
    folded = handler(session, event)
    if folded is session:
        folded = dataclasses.replace(session, version=session.version + 1)
    else:
        # a fresh copy that no one else holds yet: setting its counter in place saves a third copy per event
        object.__setattr__(folded, "version", session.version + 1)
    return _settle(folded, event.at)


def fold_all(state: Session | None, events: list[Event]) -> Session | None:
    for event in events:
        state = fold(state, event)
    return state


def _with_job(session: Session, job: Job) -> Session:
    jobs = dict(session.jobs)
    jobs[job.job_id] = job
    return dataclasses.replace(session, jobs=jobs)


def _job(session: Session, job_id: str) -> Job:
    return session.jobs.get(job_id) or Job(job_id=job_id)


def _earliest(a: dt.datetime | None, b: dt.datetime) -> dt.datetime:
    return b if a is None or b < a else a


def _latest(a: dt.datetime | None, b: dt.datetime) -> dt.datetime:
    return b if a is None or b > a else a


def _running_if_pending(session: Session, at: dt.datetime) -> Session:
    if session.status == Status.PENDING:
        return dataclasses.replace(session, status=Status.RUNNING, started_at=_earliest(session.started_at, at))
    return session


def _kind(current: Kind, told: Kind) -> Kind:
    # an event that does not say (a backup's, or an older one) never turns a restore back into a backup
    return current if current != Kind.BACKUP else told


def _on_requested(s: Session, e: SessionRequested) -> Session:
    return dataclasses.replace(
        s,
        policy_id=s.policy_id or e.policy_id,
        org_id=s.org_id or e.org_id,
        stall_timeout=s.stall_timeout or e.stall_timeout,
        trigger=s.trigger or e.trigger,
        requested_by=s.requested_by or e.requested_by,
        requested_at=_earliest(s.requested_at, e.at),
        kind=_kind(s.kind, e.kind),
        restore=s.restore or e.restore,  # the resolved one, when SessionStarted came first, stands
        draft_of=s.draft_of or e.draft_of,
    )


def _on_started(s: Session, e: SessionStarted) -> Session:
    resolve = bool(e.restore) and not s.restore_resolved
    s = dataclasses.replace(
        s,
        policy_id=s.policy_id or e.policy_id,
        org_id=s.org_id or e.org_id,
        initial=s.initial or e.initial,
        stall_timeout=s.stall_timeout or e.stall_timeout,
        started_at=_earliest(s.started_at, e.at),
        kind=_kind(s.kind, e.kind),
        restore=e.restore if resolve else s.restore,
        restore_resolved=s.restore_resolved or resolve,
        alerts=s.alerts or e.alerts,
        anomalies=s.anomalies or e.anomalies,
    )
    return _running_if_pending(s, e.at)


def _on_planned(s: Session, e: JobsPlanned) -> Session:
    jobs = dict(s.jobs)
    for planned in e.jobs:
        job = jobs.get(planned.job_id) or Job(job_id=planned.job_id)
        # a cancelled session drops what it plans late, unless the job already runs
        phase = Phase.DROPPED if s.cancel_requested and job.phase == Phase.PLANNED else job.phase
        jobs[planned.job_id] = dataclasses.replace(
            job,
            job_type=job.job_type or planned.job_type,
            object_name=job.object_name or planned.object_name,
            planned=True,
            planned_at=_earliest(job.planned_at, e.at),
            phase=phase,
            outcome=Outcome.CANCELLED if phase == Phase.DROPPED and job.outcome == Outcome.NONE else job.outcome,
        )
    warnings = s.warnings + tuple(w for w in e.warnings if w not in s.warnings)
    return _running_if_pending(dataclasses.replace(s, jobs=jobs, planned=True, warnings=warnings), e.at)


def _on_job_started(s: Session, e: JobStarted) -> Session:
    job = _job(s, e.job_id)
    job = dataclasses.replace(
        job,
        job_type=job.job_type or e.job_type,
        object_name=job.object_name or e.object_name,
        phase=Phase.RUNNING if job.phase == Phase.PLANNED else job.phase,
        started_at=_earliest(job.started_at, e.at),
        worker_id=e.worker_id or job.worker_id,
    )
    return _running_if_pending(_with_job(s, job), e.at)


def _on_chunk(s: Session, e: ChunkUploaded) -> Session:
    job = _job(s, e.job_id)
    if job.has_chunk(e.chunk_seq):
        return s  # a duplicate: counted once
    upto, ahead = job.chunks_upto, set(job.chunks_ahead)
    ahead.add(e.chunk_seq)
    while upto + 1 in ahead:
        upto += 1
        ahead.remove(upto)
    job = dataclasses.replace(
        job,
        uploaded=job.uploaded + e.counts,
        restore_uploaded=add_objects(job.restore_uploaded, e.restore) if e.restore else job.restore_uploaded,
        chunks_upto=upto,
        chunks_ahead=frozenset(ahead),
        last_upload_at=_latest(job.last_upload_at, e.at),
        phase=Phase.RUNNING if job.phase == Phase.PLANNED else job.phase,
        started_at=_earliest(job.started_at, e.at),
    )
    return _running_if_pending(_with_job(s, job), e.at)


def _on_job_finished(s: Session, e: JobFinished) -> Session:
    job = _job(s, e.job_id)
    if job.phase in (Phase.FINISHED, Phase.TERMINATED):
        # a redelivery, or a late report from a job already terminated: the first word stands
        return s
    job = dataclasses.replace(
        job,
        phase=Phase.FINISHED,
        outcome=e.outcome,
        message=e.message,
        reported=e.counts,
        restore_reported=e.restore,
        verification=e.verification,
        expected_chunks=e.chunks,
        started_at=_earliest(job.started_at, e.at),
        finished_at=e.at,
    )
    return _running_if_pending(_with_job(s, job), e.at)


def _on_job_terminated(s: Session, e: JobTerminated) -> Session:
    job = _job(s, e.job_id)
    if job.done:
        return s
    # in a cancelled session a termination cuts the job short (the cancel grace ran out): not an error of its own
    outcome = Outcome.CANCELLED if s.cancel_requested else Outcome.ERROR
    job = dataclasses.replace(job, phase=Phase.TERMINATED, outcome=outcome, message=e.reason, finished_at=e.at)
    return _with_job(s, job)


def _on_cancelled(s: Session, e: SessionCancelled) -> Session:
    jobs = {
        job_id: (
            dataclasses.replace(job, phase=Phase.DROPPED, outcome=Outcome.CANCELLED, finished_at=e.at)
            if job.phase == Phase.PLANNED
            else job
        )
        for job_id, job in s.jobs.items()
    }
    reason = s.reason or e.reason or (f"cancelled by {e.requested_by}" if e.requested_by else "cancelled")
    return dataclasses.replace(
        s,
        cancel_requested=True,
        cancelled_at=_earliest(s.cancelled_at, e.at),
        jobs=jobs,
        reason=reason if not s.is_final else s.reason,
    )


def _on_failed(s: Session, e: SessionFailed) -> Session:
    return dataclasses.replace(s, failure_reason=s.failure_reason or e.reason or "critical error")


def _on_finished(s: Session, e: SessionFinished) -> Session:
    return dataclasses.replace(s, finished_event_seen=True)


_HANDLERS: dict[type, Callable[[Session, Any], Session]] = {
    SessionRequested: _on_requested,
    SessionStarted: _on_started,
    JobsPlanned: _on_planned,
    JobStarted: _on_job_started,
    ChunkUploaded: _on_chunk,
    JobFinished: _on_job_finished,
    JobTerminated: _on_job_terminated,
    SessionCancelled: _on_cancelled,
    SessionFailed: _on_failed,
    SessionFinished: _on_finished,
}


def final_status(session: Session) -> tuple[Status, str] | None:
    """The status the session ends with now, or None while it still runs."""
    if session.failure_reason:
        return Status.FAILED, session.failure_reason
    jobs = list(session.jobs.values())
    if session.cancel_requested:
        if any(not j.done for j in jobs):
            return None
        if any(j.outcome == Outcome.CANCELLED for j in jobs) or not session.planned:
            reason = session.reason or "cancelled"
            cut = sum(1 for j in jobs if j.phase == Phase.TERMINATED and j.outcome == Outcome.CANCELLED)
            if cut:
                jobs_were = f"{cut} jobs were" if cut > 1 else "1 job was"
                reason += f" ({jobs_were} terminated: not stopped within the cancel grace)"
            return Status.STOPPED, reason
        # everything completed before the cancellation took effect: the session ends on its merits
    if not session.planned or any(not j.done for j in jobs):
        return None
    with_errors = session.jobs_with_errors  # for a restore: WARNING jobs too
    if not jobs or with_errors == 0:
        return Status.SUCCESS, ""
    if sum(1 for j in jobs if j.with_errors) == len(jobs):  # every job ERROR (or terminated)
        return Status.FAILED, f"all {len(jobs)} jobs completed with errors"
    if session.is_restore:
        return Status.WARNING, f"{with_errors} of {len(jobs)} jobs completed with errors: {_restore_errors(session)}"
    return Status.WARNING, f"{with_errors} of {len(jobs)} jobs completed with errors"


def _restore_errors(session: Session) -> str:
    """What went wrong in a restore, in counts: records that failed, records that differ after it."""
    failed = sum(c.failed for c in session.restore_counts.values())
    differing = session.verification.differing
    parts = []
    if failed:
        parts.append(f"{failed:,} records failed")
    if differing:
        parts.append(f"{differing:,} records differ from the backup after the restore")
    return ", ".join(parts) or "see the jobs' messages"


def _settle(session: Session, at: dt.datetime) -> Session:
    if session.is_final:
        return session
    result = final_status(session)
    if result is None:
        return session
    status, reason = result
    # the latest time any job did something, so the arrival order of events does not move it
    marks = [at]
    for job in session.jobs.values():
        marks.extend(t for t in (job.finished_at, job.last_upload_at, job.started_at) if t is not None)
    finished_at = max(marks) if session.failure_reason or session.cancel_requested else max(marks[1:] or marks)
    return dataclasses.replace(session, status=status, reason=reason, finished_at=finished_at)


def judged(session: Session) -> bool:
    """Whether the session's end is judged for anomalies: a backup that is not the policy's first, once final
    (Stopped ones are not: a person cut them short)."""
    return (
        session.kind == Kind.BACKUP
        and not session.initial
        and bool(session.policy_id)
        and session.status in (Status.SUCCESS, Status.WARNING, Status.FAILED)
    )


def object_counts(session: Session) -> dict[str, Counts]:
    """Per object, what its data jobs counted."""
    found: dict[str, Counts] = {}
    for job in session.jobs.values():
        if job.job_type != "data" or not job.object_name:
            continue
        found[job.object_name] = found[job.object_name] + job.counts if job.object_name in found else job.counts
    return found


def data_job_messages(session: Session) -> dict[str, str]:
    """Per object, what its data jobs said (their messages joined)."""
    said: dict[str, str] = {}
    for job in session.jobs.values():
        if job.job_type == "data" and job.object_name and job.message:
            said[job.object_name] = "; ".join(filter(None, (said.get(job.object_name, ""), job.message)))
    return said


def with_findings(session: Session, findings: tuple[Finding, ...], baseline_at: dt.datetime | None = None) -> Session:
    """The session with what its end found: with an anomaly a Success becomes Warning (Warning and Failed stay);
    the reason names them all (a count mismatch only informs); `baseline_at` (the previous backup's end) is the
    point its restore drafts go back to."""
    if not findings:
        return session
    named = summary(findings)
    # a count that still disagrees has a benign cause the next session settles (records changed or deleted while
    # the backup ran): the session says which object and why, and keeps its status; an anomaly makes it Warning
    alarming = any(f.kind != "count_mismatch" for f in findings)
    status = Status.WARNING if session.status == Status.SUCCESS and alarming else session.status
    reason = f"{session.reason}; {named}" if session.reason else named
    return dataclasses.replace(session, findings=findings, status=status, reason=reason, baseline_at=baseline_at)


# ---- stall timeout --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stall:
    job_id: str  # empty: the session itself never got planned
    reason: str


def _fmt(delta: dt.timedelta) -> str:
    seconds = int(delta.total_seconds())
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s"


DEFAULT_CANCEL_GRACE = dt.timedelta(seconds=10)


def stalls(
    session: Session,
    now: dt.datetime,
    default_timeout: dt.timedelta,
    cancel_grace: dt.timedelta = DEFAULT_CANCEL_GRACE,
) -> list[Stall]:
    """Jobs to terminate now. In a cancelled session: every job not completed within the cancel grace after
    the cancellation (a hung jobrunner, a job never taken, chunks that never arrive). Otherwise: jobs that
    uploaded nothing for the stall timeout, counted from their last upload, their start or their planning,
    whichever is latest; a session that was never planned stalls as a whole."""
    if session.is_final:
        return []
    if session.cancel_requested and session.cancelled_at is not None and now - session.cancelled_at >= cancel_grace:
        reason = f"the session was cancelled and the job did not stop within the cancel grace of {_fmt(cancel_grace)}"
        cut = [Stall(job.job_id, reason) for job in session.jobs.values() if not job.done]
        if cut:
            return cut
    timeout = session.stall_timeout or default_timeout
    found: list[Stall] = []
    if not session.planned and not session.jobs:
        since = session.started_at or session.requested_at
        if since is not None and now - since >= timeout:
            found.append(Stall("", f"no jobs were planned within the stall timeout of {_fmt(timeout)}"))
        return found
    for job in session.jobs.values():
        if job.done:
            continue
        marks = [t for t in (job.last_upload_at, job.started_at, job.planned_at, session.started_at) if t is not None]
        if not marks:
            continue
        since = max(marks)
        if now - since >= timeout:
            silent = f"for {_fmt(now - since)} (stall timeout {_fmt(timeout)})"
            if job.phase == Phase.PLANNED:
                reason = f"job never started {silent}"
            elif job.phase == Phase.FINISHED:
                missing, first = job.missing_chunks, job.first_missing_chunks()
                named = ", ".join(map(str, first)) + (", …" if missing > len(first) else "")
                chunks = f"chunk {named}" if missing == 1 else f"chunks {named}"
                reason = (
                    f"job finished but {missing} of its {job.expected_chunks} chunks never arrived ({chunks}): "
                    f"nothing came {silent}"
                )
            else:
                what = "started but uploaded nothing" if job.last_upload_at is None else "uploaded nothing"
                reason = f"job {what} {silent}"
            found.append(Stall(job.job_id, reason))
    return found


@dataclass(frozen=True, slots=True)
class SessionQuery:
    """Which sessions a listing shows (every filter set must match) and from where: newest first by the time
    listed (requested, else started), then session id, both descending; `page_after` is a Page's next_token."""

    policy_id: str = ""
    status: Status | None = None
    kind: Kind | None = None
    after: dt.datetime | None = None  # listed at or after
    before: dt.datetime | None = None  # listed before
    page_size: int = 50
    page_after: tuple[dt.datetime, str] | None = None


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a session listing, newest first; `next_token` (listed at, session id) continues it."""

    sessions: list[Session]
    next_token: tuple[dt.datetime, str] | None
