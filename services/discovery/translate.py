"""Protobuf <-> domain for discovery: orgs, policies, and the JobSpecs a plan becomes."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence

from sfvault.discovery.v1 import access_pb2 as access_api
from sfvault.discovery.v1 import discovery_pb2 as api
from sfvault.events.v1 import events_pb2 as ev
from sfvault.jobs.v1 import jobs_pb2 as jobs
from sfvault.protect.v1 import protect_pb2 as ppb
from sfvault.restore.v1 import restore_pb2 as rpb

from services import sfconnection as sfc
from services.discovery import domain as d
from services.discovery.domain import SessionRecord, StoredJob
from services.platform import timestamps
from services.platform.auth import AuditEntry
from services.platform.translate import from_message, to_message

JOB_TYPE = {
    d.JobKind.DATA: ev.JOB_TYPE_DATA,
    d.JobKind.FILE: ev.JOB_TYPE_FILE,
    d.JobKind.METADATA: ev.JOB_TYPE_METADATA,
}


def connection_from_pb(c: api.OrgConnection) -> d.Connection:
    flow = sfc.auth_flow_from_pb(c.auth_flow)
    if flow is None:
        raise d.InvalidPolicy("connection.auth_flow must be set (client credentials, password, refresh token or JWT)")
    fields = sfc.connection_fields(c)
    fields["login_url"] = fields["login_url"].strip()
    return d.Connection(auth_flow=d.AuthFlow(flow), **fields)


def connection_to_pb(c: d.Connection) -> api.OrgConnection:
    return api.OrgConnection(auth_flow=sfc.auth_flow_to_pb(c.auth_flow), **sfc.connection_fields(c))  # type: ignore[arg-type]


def org_to_pb(o: d.Org) -> api.Org:
    return to_message(api.Org, o, connection=connection_to_pb(o.connection))


_FORMATS = {
    ppb.WEBHOOK_FORMAT_UNSPECIFIED: "json",
    ppb.WEBHOOK_FORMAT_JSON: "json",
    ppb.WEBHOOK_FORMAT_SLACK: "slack",
    ppb.WEBHOOK_FORMAT_TEAMS: "teams",
}
_FORMATS_BACK = {"json": ppb.WEBHOOK_FORMAT_JSON, "slack": ppb.WEBHOOK_FORMAT_SLACK, "teams": ppb.WEBHOOK_FORMAT_TEAMS}


def alerts_from_pb(a: ppb.AlertSettings) -> d.AlertSettings:
    hooks = []
    for i, h in enumerate(a.webhooks):
        fmt = _FORMATS.get(h.format)
        if fmt is None:
            raise d.InvalidPolicy(f"alerts.webhooks[{i}].format {h.format} is not a known format")
        hooks.append(d.Webhook(h.url_ref.strip(), fmt))
    return d.AlertSettings(tuple(hooks), tuple(e.strip() for e in a.emails), tuple(a.on))


def alerts_to_pb(a: d.AlertSettings) -> ppb.AlertSettings:
    return ppb.AlertSettings(
        webhooks=[ppb.Webhook(url_ref=h.url_ref, format=_FORMATS_BACK[h.format]) for h in a.webhooks],
        emails=a.emails,
        on=a.on,
    )


def anomalies_from_pb(a: ppb.AnomalySettings) -> d.AnomalySettings:
    # the message and the dataclass have the same fields (anomalies_to_pb relies on it too)
    return from_message(d.AnomalySettings, a)


def anomalies_to_pb(a: d.AnomalySettings) -> ppb.AnomalySettings:
    return ppb.AnomalySettings(**dataclasses.asdict(a))


def policy_from_pb(p: api.Policy) -> d.Policy:
    scope = d.Scope(
        include_objects=tuple(p.scope.include_objects),
        exclude_objects=tuple(p.scope.exclude_objects),
        exclude_fields={k: tuple(v.fields) for k, v in p.scope.exclude_fields.items()},
    )
    return d.Policy(
        policy_id=p.policy_id,
        org_id=p.org_id,
        name=p.name,
        scope=scope,
        auto_add_new_objects=p.auto_add_new_objects,
        auto_add_new_fields=p.auto_add_new_fields,
        files=p.files,
        metadata=p.metadata,
        stall_timeout=p.stall_timeout.ToTimedelta(),
        daily_share_percent=p.api_budget.daily_share_percent,
        per_run_cap=p.api_budget.per_run_cap,
        reconcile_every=p.reconcile_every.ToTimedelta(),
        schedule=p.schedule,
        alerts=alerts_from_pb(p.alerts),
        anomalies=anomalies_from_pb(p.anomalies),
        retention=d.RetentionSettings(p.retention.days, p.retention.versions, p.retention.prune_latest),
        legal_hold=p.legal_hold,
        sensitive_fields=tuple(n.strip() for n in p.sensitive_fields),
        time_zone=p.time_zone.strip(),
    )


def policy_to_pb(p: d.Policy) -> api.Policy:
    out = api.Policy(
        policy_id=p.policy_id,
        org_id=p.org_id,
        name=p.name,
        scope=api.Scope(
            include_objects=p.scope.include_objects,
            exclude_objects=p.scope.exclude_objects,
            exclude_fields={k: api.FieldList(fields=v) for k, v in p.scope.exclude_fields.items()},
        ),
        auto_add_new_objects=p.auto_add_new_objects,
        auto_add_new_fields=p.auto_add_new_fields,
        files=p.files,
        metadata=p.metadata,
        stall_timeout=timestamps.duration_to_pb(p.stall_timeout),
        api_budget=api.ApiBudget(daily_share_percent=p.daily_share_percent, per_run_cap=p.per_run_cap),
        reconcile_every=timestamps.duration_to_pb(p.reconcile_every),
        schedule=p.schedule,
        created_at=timestamps.to_pb(p.created_at),
        updated_at=timestamps.to_pb(p.updated_at),
        legal_hold=p.legal_hold,
        sensitive_fields=p.sensitive_fields,
        time_zone=p.time_zone,
    )
    # set only when not the defaults: a policy without protection settings reads as it was written
    if p.alerts != d.AlertSettings():
        out.alerts.CopyFrom(alerts_to_pb(p.alerts))
    if p.anomalies != d.AnomalySettings():
        out.anomalies.CopyFrom(anomalies_to_pb(p.anomalies))
    if p.retention != d.RetentionSettings():
        out.retention.CopyFrom(ppb.RetentionSettings(**dataclasses.asdict(p.retention)))
    return out


def job_spec(
    job: d.PlannedJob,
    *,
    session_id: str,
    policy: d.Policy,
    org: d.Org,
    salesforce_org_id: str,
    instance_url: str,
    initial: bool,
    stall_timeout: dt.timedelta,
    budget: d.Budget,
    describe_json: bytes = b"",
) -> jobs.JobSpec:
    """Everything a jobrunner needs to run the job: it never calls discovery back."""
    spec = jobs.JobSpec(
        session_id=session_id,
        job_id=job.job_id,
        org_id=org.org_id,
        policy_id=policy.policy_id,
        initial=initial,
        stall_timeout=timestamps.duration_to_pb(stall_timeout),
        connection=connection_to_pb(org.connection),
        salesforce_org_id=salesforce_org_id,
        instance_url=instance_url,
        api_call_cap=budget.api_call_cap,
        api_reserve_percent=budget.api_reserve_percent,
    )
    if isinstance(job, d.PlannedDataJob):
        spec.type = ev.JOB_TYPE_DATA
        spec.object_name = job.object_name
        sensitive = d.sensitive_set(policy, job.object_name)
        spec.fields.extend(f.info.name for f in job.fields)
        fields = [
            to_message(jobs.FieldSpec, f.info, backfill=f.backfill, sensitive=f.name_lower in sensitive)
            for f in job.fields
        ]
        spec.data.CopyFrom(
            to_message(
                jobs.DataJob,
                job,  # the object's flags (key_prefix, full, bulk_supported, ...), by name
                fields=fields,
                reconcile_every=timestamps.duration_to_pb(policy.reconcile_every or d.DEFAULT_RECONCILE_EVERY),
                describe_json=describe_json,
            )
        )
    elif isinstance(job, d.PlannedFileJob):
        spec.type = ev.JOB_TYPE_FILE
        spec.file.CopyFrom(to_message(jobs.FileJob, job))
    else:
        spec.type = ev.JOB_TYPE_METADATA
        spec.metadata.CopyFrom(jobs.MetadataJob())
    return spec


SESSION_KIND = {
    rpb.SESSION_KIND_UNSPECIFIED: d.SessionKind.BACKUP,
    rpb.SESSION_KIND_BACKUP: d.SessionKind.BACKUP,
    rpb.SESSION_KIND_RESTORE: d.SessionKind.RESTORE,
    rpb.SESSION_KIND_METADATA_RESTORE: d.SessionKind.METADATA_RESTORE,
    rpb.SESSION_KIND_PRUNE: d.SessionKind.PRUNE,
}
SESSION_KIND_PB = {
    d.SessionKind.BACKUP: rpb.SESSION_KIND_BACKUP,
    d.SessionKind.RESTORE: rpb.SESSION_KIND_RESTORE,
    d.SessionKind.METADATA_RESTORE: rpb.SESSION_KIND_METADATA_RESTORE,
    d.SessionKind.PRUNE: rpb.SESSION_KIND_PRUNE,
}
RESTORE_JOB_TYPE = {
    d.SessionKind.RESTORE: ev.JOB_TYPE_RESTORE,
    d.SessionKind.METADATA_RESTORE: ev.JOB_TYPE_METADATA_RESTORE,
}


def session_kind(request: ev.SessionRequested) -> d.SessionKind:
    """The kind of session asked for; an unknown value (a newer sender) is not taken for a backup."""
    kind = SESSION_KIND.get(request.kind)
    if kind is None:
        raise d.RestoreRefused(f"unknown session kind {request.kind}")
    return kind


def restore_ask(request: ev.SessionRequested, kind: d.SessionKind) -> d.RestoreAsk:
    spec = request.restore
    return d.RestoreAsk(
        kind=kind,
        org_id=request.org_id,
        source_org_id=spec.source_org_id,
        target_org_id=spec.target_org_id,
        as_of=spec.as_of.ToDatetime(dt.UTC) if spec.HasField("as_of") else None,
        dry_run=spec.dry_run,
        confirmed=spec.confirmed,
        selections=len(spec.selections),
        whole_org=spec.whole_org,
        components=len(spec.metadata_components),
        retry_of=spec.retry_of,
    )


def resolved_restore(request: ev.SessionRequested, plan: d.RestorePlan) -> rpb.RestoreSpec:
    """The request's RestoreSpec with what discovery decided: both orgs and the point in time."""
    spec = rpb.RestoreSpec()
    spec.CopyFrom(request.restore)
    spec.source_org_id = plan.source.org_id
    spec.target_org_id = plan.target.org_id
    spec.as_of.FromDatetime(plan.as_of)
    spec.requested_by = spec.requested_by or request.requested_by
    return spec


def restore_job_spec(
    plan: d.RestorePlan, spec: rpb.RestoreSpec, *, session_id: str, stall_timeout: dt.timedelta
) -> jobs.JobSpec:
    """A restore's one job: the source org as any job's org (storage keys the backup by its 00D), the target in
    `restore`. Secrets only as references, as for every job."""
    budget = d.restore_budget()
    return jobs.JobSpec(
        session_id=session_id,
        job_id=plan.job_id,
        type=RESTORE_JOB_TYPE[plan.kind],
        org_id=plan.source.org_id,
        stall_timeout=timestamps.duration_to_pb(stall_timeout),
        connection=connection_to_pb(plan.source.connection),
        salesforce_org_id=plan.source.salesforce_org_id,
        instance_url=plan.source.instance_url,
        api_call_cap=budget.api_call_cap,
        api_reserve_percent=budget.api_reserve_percent,
        restore=jobs.RestoreJob(
            spec=spec,
            target_connection=connection_to_pb(plan.target.connection),
            target_salesforce_org_id=plan.target.salesforce_org_id,
            target_instance_url=plan.target.instance_url,
            target_is_production=not plan.target.sandbox,
        ),
    )


def planned_job(spec: jobs.JobSpec) -> ev.PlannedJob:
    return ev.PlannedJob(job_id=spec.job_id, type=spec.type, object_name=spec.object_name)


def session_plan_to_pb(record: SessionRecord, stored: Sequence[StoredJob], schema: d.Schema) -> api.SessionPlan:
    specs = [jobs.JobSpec.FromString(j.spec) for j in stored]
    by_object: dict[str, list[jobs.JobSpec]] = {}
    for s in specs:
        if s.type == ev.JOB_TYPE_DATA:
            by_object.setdefault(s.object_name, []).append(s)
    objects = []
    for o in schema.objects:
        ranges = by_object.get(o.name, [])
        spec = ranges[0] if ranges else None  # a split object: its first range's job names it
        objects.append(
            api.PlannedObject(
                object_name=o.name,
                status=o.status.value,
                job_id=spec.job_id if spec else "",
                full=o.full,
                fields=[f.info.name for f in o.query_fields()],
                backfill_fields=[f.info.name for f in o.query_fields() if f.backfill and not o.full],
                expected_records=sum(r.data.expected_records for r in ranges),
                left_out_fields=[f.info.name for f in o.fields if f.status is d.FieldStatus.GONE],
            )
        )
    return to_message(api.SessionPlan, record, jobs=[planned_job(s) for s in specs], objects=objects)


def audit_entry_to_pb(e: AuditEntry) -> access_api.AuditEntry:
    """An audit entry; the dataclass has the message's fields (its time in epoch seconds)."""
    return to_message(access_api.AuditEntry, e)


def token_to_pb(record: d.TokenRecord) -> access_api.TokenInfo:
    return to_message(access_api.TokenInfo, record)


def prune_job_spec(
    org: d.Org, retention: d.RetentionSettings, *, session_id: str, dry_run: bool, stall_timeout: dt.timedelta
) -> jobs.JobSpec:
    """A prune's one job: storage's PruneStep over the org's backup (by its 00D) until done. A prune never calls
    Salesforce; the connection (secret references only, as in every JobSpec) is there for the jobrunner's org
    client every job is given (never logged in to)."""
    return jobs.JobSpec(
        session_id=session_id,
        job_id=d.PRUNE_JOB_ID,
        type=ev.JOB_TYPE_PRUNE,
        org_id=org.org_id,
        stall_timeout=timestamps.duration_to_pb(stall_timeout),
        connection=connection_to_pb(org.connection),
        salesforce_org_id=org.salesforce_org_id,
        instance_url=org.instance_url,
        prune=jobs.PruneJob(
            retention=ppb.RetentionSettings(
                days=retention.days, versions=retention.versions, prune_latest=retention.prune_latest
            ),
            dry_run=dry_run,
        ),
    )
