"""Protobuf <-> domain: the envelope of sfvault.events.v1 into the fold's events, and state into the API."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from google.protobuf import duration_pb2
from google.protobuf.json_format import MessageToDict, ParseDict, ParseError, SerializeToJsonError
from google.protobuf.message import Message
from sfvault.events.v1 import events_pb2 as pb
from sfvault.protect.v1 import protect_pb2 as ppb
from sfvault.restore.v1 import restore_pb2 as rpb
from sfvault.session.v1 import session_pb2 as api

from services.platform import events, timestamps
from services.platform.translate import to_message
from services.session import domain as d
from services.session import domain_alerts
from services.session.domain_anomaly import Finding

_JOB_TYPES = {
    pb.JOB_TYPE_METADATA: "metadata",
    pb.JOB_TYPE_FILE: "file",
    pb.JOB_TYPE_DATA: "data",
    pb.JOB_TYPE_RESTORE: "restore",
    pb.JOB_TYPE_METADATA_RESTORE: "metadata_restore",
    pb.JOB_TYPE_PRUNE: "prune",
}
_JOB_TYPES_BACK = {v: k for k, v in _JOB_TYPES.items()}
# the domain's enums and the protobuf ones share their member names (a missing one fails at import)
_OUTCOMES_BACK: dict[d.Outcome, pb.JobOutcome.ValueType] = {
    o: pb.JobOutcome.Value(f"JOB_OUTCOME_{o.name}") for o in d.Outcome if o is not d.Outcome.NONE
}
_OUTCOMES = {v: k for k, v in _OUTCOMES_BACK.items()}
STATUS_TO_PB = {s: pb.SessionStatus.Value(f"SESSION_STATUS_{s.name}") for s in d.Status}
STATUS_FROM_PB = {v: k for k, v in STATUS_TO_PB.items()}
_PHASES = {p: api.JobState.Value(f"JOB_STATE_{p.name}") for p in d.Phase}
KIND_TO_PB = {k: rpb.SessionKind.Value(f"SESSION_KIND_{k.name}") for k in d.Kind}
KIND_FROM_PB: dict[int, d.Kind] = {int(v): k for k, v in KIND_TO_PB.items()} | {
    int(rpb.SESSION_KIND_UNSPECIFIED): d.Kind.BACKUP
}


def kind_from_pb(value: int) -> d.Kind:
    kind = KIND_FROM_PB.get(int(value))
    if kind is None:
        raise events.MalformedEvent(f"unknown session kind {value}")
    return kind


def spec_to_json(spec: rpb.RestoreSpec) -> dict[str, Any]:
    """A restore spec as the session keeps it (its JSON form); empty when unset."""
    try:
        return MessageToDict(spec, preserving_proto_field_name=True)
    except (ValueError, SerializeToJsonError) as exc:  # e.g. a Timestamp out of range: never foldable
        raise events.MalformedEvent(f"restore spec: {exc}") from exc


def settings_to_json(message: Message) -> dict[str, Any]:
    """A policy's protection settings (AlertSettings / AnomalySettings) as the session keeps them."""
    return MessageToDict(message, preserving_proto_field_name=True)


def finding_to_pb(f: Finding) -> ppb.Finding:
    return ppb.Finding(**f.to_json())


def alert_to_pb(a: domain_alerts.Alert) -> ppb.Alert:
    return to_message(
        ppb.Alert,
        a,
        findings=[finding_to_pb(f) for f in a.findings],
        # a delivery's target shown redacted, never the address it is sent to
        deliveries=[to_message(ppb.Delivery, x, target=x.shown) for x in a.deliveries],
    )


def spec_from_json(data: Mapping[str, Any]) -> rpb.RestoreSpec:
    spec = rpb.RestoreSpec()
    if data:
        try:
            ParseDict(dict(data), spec, ignore_unknown_fields=True)
        except ParseError as exc:  # a spec stored by a newer shape: what can be read is shown
            raise events.MalformedEvent(f"restore spec: {exc}") from exc
    return spec


def restore_counts_from_pb(items: Iterable[rpb.ObjectRestoreCounts]) -> dict[str, d.RestoreCounts]:
    """Per object (the same object twice in one message is summed)."""
    found: dict[str, d.RestoreCounts] = {}
    for item in items:
        found = d.add_objects(found, {item.object_name: events.restore_counts_from_pb(item, named=False)})
    return found


def restore_counts_to_pb(objects: Mapping[str, d.RestoreCounts]) -> list[rpb.ObjectRestoreCounts]:
    return [events.restore_counts_to_pb(objects[name], name) for name in sorted(objects)]


def verification_from_pb(v: rpb.Verification) -> d.Verification:
    return d.Verification(
        done=v.done, verified=v.verified, matching=v.matching, differing=v.differing, samples=tuple(v.samples)
    )


def verification_to_pb(v: d.Verification) -> rpb.Verification:
    return rpb.Verification(**v.to_json())


def _duration(value: duration_pb2.Duration) -> dt.timedelta | None:
    delta = value.ToTimedelta()
    return delta if delta > dt.timedelta(0) else None


def to_domain(env: pb.Envelope) -> d.Event:
    """The fold's event for an envelope (raises events.MalformedEvent for one it cannot understand)."""
    base: dict[str, Any] = {
        "event_id": env.event_id,
        "session_id": env.session_id,
        "job_id": env.job_id,
        "at": events.occurred_at(env),
    }
    kind = env.WhichOneof("payload")
    if kind == "session_requested":
        p = env.session_requested
        return d.SessionRequested(
            **base,
            policy_id=p.policy_id,
            org_id=p.org_id,
            stall_timeout=_duration(p.stall_timeout),
            trigger=p.trigger,
            requested_by=p.requested_by,
            kind=kind_from_pb(p.kind),
            restore=spec_to_json(p.restore),
            draft_of=p.draft_of,
        )
    if kind == "session_started":
        q = env.session_started
        return d.SessionStarted(
            **base,
            policy_id=q.policy_id,
            org_id=q.org_id,
            initial=q.initial,
            stall_timeout=_duration(q.stall_timeout),
            kind=kind_from_pb(q.kind),
            restore=spec_to_json(q.restore),
            alerts=settings_to_json(q.alerts),
            anomalies=settings_to_json(q.anomalies),
        )
    if kind == "jobs_planned":
        jobs = tuple(d.PlannedJob(j.job_id, _JOB_TYPES.get(j.type, ""), j.object_name) for j in env.jobs_planned.jobs)
        if any(not j.job_id for j in jobs):
            raise events.MalformedEvent("JobsPlanned with a job without job_id")
        return d.JobsPlanned(**base, jobs=jobs, warnings=tuple(env.jobs_planned.warnings))
    if not env.job_id and kind in ("job_started", "chunk_uploaded", "job_finished", "job_terminated"):
        raise events.MalformedEvent(f"{kind} without job_id")
    if kind == "job_started":
        js = env.job_started
        return d.JobStarted(
            **base, worker_id=js.worker_id, job_type=_JOB_TYPES.get(js.type, ""), object_name=js.object_name
        )
    if kind == "chunk_uploaded":
        if env.chunk_uploaded.chunk_seq < 1:
            raise events.MalformedEvent("ChunkUploaded with chunk_seq < 1")
        cu = env.chunk_uploaded
        return d.ChunkUploaded(
            **base,
            chunk_seq=cu.chunk_seq,
            counts=events.counts_from_pb(cu.counts),
            restore=restore_counts_from_pb(cu.restore),
        )
    if kind == "job_finished":
        jf = env.job_finished
        outcome = _OUTCOMES.get(jf.outcome)
        if outcome is None:
            raise events.MalformedEvent("JobFinished without an outcome")
        if jf.chunks < 0:
            raise events.MalformedEvent("JobFinished with a negative chunk count")
        return d.JobFinished(
            **base,
            outcome=outcome,
            message=jf.message,
            counts=events.counts_from_pb(jf.counts),
            chunks=jf.chunks,
            restore=restore_counts_from_pb(jf.restore),
            verification=verification_from_pb(jf.verification),
        )
    if kind == "job_terminated":
        return d.JobTerminated(**base, reason=env.job_terminated.reason)
    if kind == "session_cancelled":
        sc = env.session_cancelled
        return d.SessionCancelled(**base, requested_by=sc.requested_by, reason=sc.reason)
    if kind == "session_failed":
        return d.SessionFailed(**base, reason=env.session_failed.reason)
    if kind == "session_finished":
        return d.SessionFinished(**base, status=STATUS_FROM_PB.get(env.session_finished.status))
    raise events.MalformedEvent(f"unknown payload {kind!r}")


def session_to_pb(s: d.Session) -> api.Session:
    msg = api.Session(
        session_id=s.session_id,
        policy_id=s.policy_id,
        org_id=s.org_id,
        status=STATUS_TO_PB[s.status],
        reason=s.reason,
        initial=s.initial,
        cancel_requested=s.cancel_requested,
        totals=events.counts_to_pb(s.totals),
        jobs_total=len(s.jobs),
        jobs_finished=s.jobs_finished,
        jobs_with_errors=s.jobs_with_errors,
        planned=s.planned,
        trigger=s.trigger,
        warnings=list(s.warnings),
        requested_at=timestamps.to_pb(s.requested_at),
        started_at=timestamps.to_pb(s.started_at),
        finished_at=timestamps.to_pb(s.finished_at),
        kind=KIND_TO_PB[s.kind],
        findings=[finding_to_pb(f) for f in s.findings],
        draft_of=s.draft_of,
    )
    if s.stall_timeout is not None:
        msg.stall_timeout.FromTimedelta(s.stall_timeout)
    if s.is_restore:
        msg.restore.CopyFrom(spec_from_json(s.restore))
        msg.restore_counts.extend(restore_counts_to_pb(s.restore_counts))
        msg.verification.CopyFrom(verification_to_pb(s.verification))
    return msg


def job_to_pb(session_id: str, j: d.Job) -> api.Job:
    return api.Job(
        session_id=session_id,
        job_id=j.job_id,
        type=_JOB_TYPES_BACK.get(j.job_type, pb.JOB_TYPE_UNSPECIFIED),
        object_name=j.object_name,
        state=_PHASES[j.phase],
        outcome=_OUTCOMES_BACK.get(j.outcome, pb.JOB_OUTCOME_UNSPECIFIED),
        message=j.message,
        counts=events.counts_to_pb(j.counts),
        chunks=j.chunks,
        worker_id=j.worker_id,
        planned_at=timestamps.to_pb(j.planned_at),
        started_at=timestamps.to_pb(j.started_at),
        last_upload_at=timestamps.to_pb(j.last_upload_at),
        finished_at=timestamps.to_pb(j.finished_at),
    )


def finished_payload(s: d.Session) -> pb.SessionFinished:
    return pb.SessionFinished(
        status=STATUS_TO_PB[s.status],
        totals=events.counts_to_pb(s.totals),
        reason=s.reason,
        jobs_total=len(s.jobs),
        jobs_with_errors=s.jobs_with_errors,
        restore=restore_counts_to_pb(s.restore_counts) if s.is_restore else [],
        verification=verification_to_pb(s.verification) if s.is_restore else None,
        findings=[finding_to_pb(f) for f in s.findings],
    )
