"""Use cases of discovery: keep orgs and policies (`Catalog`), turn each SessionRequested into a plan
(`Planner`: log in, describe, resolve the scope against the previous session, store, publish, enqueue),
start scheduled backups (`Scheduler`) and announce revoked tokens again. Written against the small
interfaces of ports.py, so tests can swap the org, the storage probe, the stores, the bus and the clock."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import grpc
from sfvault.events.v1 import events_pb2 as ev
from sfvault.jobs.v1 import jobs_pb2 as jobs

from services import sfclient as sfc
from services.discovery import domain as d
from services.discovery import ports, translate
from services.discovery.domain_schedule import COULD_NOT_START, InvalidSchedule, latest_due
from services.discovery.domain_split import (
    WHOLE,
    IdRange,
    completed_objects,
    parts_for,
    split_ranges,
    split_top,
    top_parts,
)
from services.discovery.ports import (
    AuditLog,
    Clock,
    Connector,
    DiscoveryStore,
    OrgSession,
    Publisher,
    RevocationFeed,
    ScheduleRunStore,
    SessionStarter,
    StorageProbe,
    TokenRegistry,
)
from services.discovery.store import Conflict, SessionRecord, StoredJob
from services.platform import auth, errors
from services.platform.bus import is_transient
from services.platform.ports import Delivered

log = logging.getLogger(__name__)


class AlreadyExists(errors.RequestError):
    code = grpc.StatusCode.ALREADY_EXISTS


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


def _invalid(exc: d.InvalidPolicy) -> errors.InvalidArgument:
    return errors.InvalidArgument(str(exc))


T = TypeVar("T")


def _existing(found: T | None, kind: str, key: str) -> T:
    """What the store found under `key`, or NOT_FOUND naming the `kind` ("org", "policy")."""
    if found is None:
        raise errors.NotFound(f"{kind} {key!r} does not exist")
    return found


async def _created(insert: Awaitable[T]) -> T:
    """A store insert whose unique-key conflict is the caller's ALREADY_EXISTS."""
    try:
        return await insert
    except Conflict as exc:
        raise AlreadyExists(str(exc)) from None


# ---- orgs and policies ----------------------------------------------------------------------------------


@dataclasses.dataclass
class Catalog:
    store: DiscoveryStore
    connect: Connector
    # (salesforce org id, object) -> the Ids live in the latest backup (storage's export)
    backup_ids: Callable[[str, str], Awaitable[set[str]]] | None = None

    async def verify_org(self, org_id: str, objects: list[str]) -> dict[str, Any]:
        """Reconcile the backup with the org by Id, object by object."""
        org = await self.get_org(org_id)
        for name in objects:
            if not re.match(r"^[A-Za-z][A-Za-z0-9_]*$", name):
                raise errors.InvalidArgument(f"object {name!r} is not an API name")
        if not objects:
            names: set[str] = set()
            for policy in await self.store.list_policies(org_id):
                latest = await self.store.previous_session(policy.policy_id, "")
                if latest is not None:
                    jobs = await self.store.session_jobs(latest.session_id)
                    names |= {j.object_name for j in jobs if j.job_id.startswith("data-") and j.object_name}
            objects = sorted(names)
        if not objects:
            raise errors.FailedPrecondition(f"org {org_id!r} has no backup yet: name the objects to verify")
        if self.backup_ids is None:
            raise errors.Unavailable("verification needs storage, which is not configured")
        try:
            session = await asyncio.to_thread(self.connect, org.connection)
        except (sfc.SecretError, sfc.AuthenticationRefused, sfc.OrgUnreachable, sfc.ApiLimitExceeded) as exc:
            raise errors.FailedPrecondition(f"cannot log in to org {org_id!r}: {exc}") from None
        results = []
        for name in objects:
            in_org = await asyncio.to_thread(session.live_ids, name)
            in_backup = await self.backup_ids(session.salesforce_org_id, name)
            missing, phantom = sorted(in_org - in_backup), sorted(in_backup - in_org)
            results.append(
                {
                    "object_name": name,
                    "org_records": len(in_org),
                    "backup_records": len(in_backup),
                    "missing": len(missing),
                    "phantom": len(phantom),
                    "missing_sample": missing[:10],
                    "phantom_sample": phantom[:10],
                }
            )
        return {"salesforce_org_id": session.salesforce_org_id, "objects": results, "api_calls": session.api_calls}

    async def create_org(self, org: d.Org) -> d.Org:
        org = dataclasses.replace(org, org_id=org.org_id or f"org-{uuid.uuid4().hex[:12]}")
        self._check_org(org)
        return await _created(self.store.create_org(org))

    async def get_org(self, org_id: str) -> d.Org:
        return _existing(await self.store.get_org(org_id) if org_id else None, "org", org_id)

    async def list_orgs(self) -> list[d.Org]:
        return await self.store.list_orgs()

    async def update_org(
        self, org_id: str, name: str | None, connection: d.Connection | None, sandbox: bool | None = None
    ) -> d.Org:
        current = await self.get_org(org_id)
        updated = dataclasses.replace(
            current,
            name=current.name if name is None else name,
            connection=connection or current.connection,
            sandbox=current.sandbox if sandbox is None else sandbox,
        )
        self._check_org(updated)
        return _existing(await self.store.update_org(updated), "org", org_id)

    async def delete_org(self, org_id: str) -> None:
        try:
            deleted = await self.store.delete_org(org_id)
        except Conflict as exc:
            raise errors.FailedPrecondition(str(exc)) from None
        if not deleted:
            raise errors.NotFound(f"org {org_id!r} does not exist")

    async def test_org(self, org_id: str) -> dict[str, Any]:
        """Log in and check what a backup needs. Login problems are answers, not RPC errors."""
        org = await self.get_org(org_id)
        try:
            session = await asyncio.to_thread(self.connect, org.connection)
        except (sfc.SecretError, sfc.AuthenticationRefused, sfc.OrgUnreachable, sfc.ApiLimitExceeded) as exc:
            return {"ok": False, "problems": [str(exc)]}
        try:
            problems = await asyncio.to_thread(session.check_access)
        except Exception as exc:  # any failure here is a finding about the org, reported to the caller
            problems = [f"checking access failed: {type(exc).__name__}"]
        await self.store.set_org_identity(org.org_id, session.salesforce_org_id, session.instance_url)
        usage = session.org_usage
        return {
            "ok": not problems,
            "problems": problems,
            "salesforce_org_id": session.salesforce_org_id,
            "instance_url": session.instance_url,
            "api_requests_used": usage[0],
            "api_requests_max": usage[1],
        }

    @staticmethod
    def _check_org(org: d.Org) -> None:
        try:
            d.check_id("org_id", org.org_id)
            d.check_connection(org.connection)
        except d.InvalidPolicy as exc:
            raise _invalid(exc) from None

    async def create_policy(self, policy: d.Policy) -> d.Policy:
        policy = dataclasses.replace(policy, policy_id=policy.policy_id or f"policy-{uuid.uuid4().hex[:12]}")
        self._check_policy(policy)
        await self._require_org(policy.org_id)
        return await _created(self.store.create_policy(policy))

    async def get_policy(self, policy_id: str) -> d.Policy:
        return _existing(await self.store.get_policy(policy_id) if policy_id else None, "policy", policy_id)

    async def session_plan(self, session_id: str) -> tuple[SessionRecord, list[StoredJob], d.Schema]:
        """What discovery decided for a session: its record, its jobs and the schema it saw."""
        record = await self.store.get_session(session_id)
        if record is None:
            raise errors.NotFound(f"discovery has not handled session {session_id!r}")
        return record, await self.store.session_jobs(session_id), await self.store.session_schema(session_id)

    async def list_policies(self, org_id: str = "") -> list[d.Policy]:
        if org_id:
            await self._require_org(org_id)
        return await self.store.list_policies(org_id)

    async def update_policy(self, policy: d.Policy) -> d.Policy:
        current = await self.get_policy(policy.policy_id)
        policy = dataclasses.replace(policy, org_id=policy.org_id or current.org_id)
        self._check_policy(policy)
        if policy.org_id != current.org_id:
            await self._require_org(policy.org_id)
        return _existing(await self.store.update_policy(policy), "policy", policy.policy_id)

    async def delete_policy(self, policy_id: str) -> None:
        if not await self.store.delete_policy(policy_id):
            raise errors.NotFound(f"policy {policy_id!r} does not exist")

    @staticmethod
    def _check_policy(policy: d.Policy) -> None:
        try:
            d.check_policy(policy)
        except d.InvalidPolicy as exc:
            raise _invalid(exc) from None

    async def _require_org(self, org_id: str) -> None:
        _existing(await self.store.get_org(org_id), "org", org_id)


# ---- sessions -------------------------------------------------------------------------------------------


# a job that completed with warnings has read what it was asked to; errors or no word at all mean it may not have
COMPLETED_OUTCOMES = ("JOB_OUTCOME_SUCCESS", "JOB_OUTCOME_WARNING")


async def record_job_outcomes(store: DiscoveryStore, deliveries: Sequence[Delivered]) -> None:
    """The outcomes consumer's handler: remember how each data job ended."""
    outcomes = [
        (e.session_id, e.job_id, ev.JobOutcome.Name(e.job_finished.outcome))
        for e in (delivery.envelope for delivery in deliveries)
        if e.WhichOneof("payload") == "job_finished" and e.job_id.startswith("data-")
    ]
    await store.record_outcomes(outcomes)


class SessionFailure(Exception):
    """A critical problem: the session fails with this reason."""


# keep (issue 18): a restore point pinned in storage against retention -- (00D org id, at, objects, reason,
# session id); storage_client.StorageExports.pin_point
PinPoint = Callable[[str, dt.datetime, Sequence[str], str, str], Awaitable[None]]


def _org_session(
    session_id: str,
    org_id: str,
    kind: d.SessionKind,
    now: dt.datetime,
    stall: dt.timedelta,
    restore_spec: bytes = b"",
) -> SessionRecord:
    """The record of a session planned for an org rather than for a policy (a restore, a prune)."""
    return SessionRecord(
        session_id=session_id,
        policy_id="",
        org_id=org_id,
        planned=True,
        planned_at=now,
        stall_timeout=stall,
        kind=kind,
        restore_spec=restore_spec,
    )


class PlanningTimedOut(Exception):
    """A plan did not finish in time (an org call that hangs): not an outage, so it counts as an attempt."""


@dataclasses.dataclass
class Planner:
    store: DiscoveryStore
    connect: Connector
    check_storage: StorageProbe
    publisher: Publisher
    clock: Clock = dataclasses.field(default_factory=SystemClock)
    max_deliver: int = 6
    full_describe_every: dt.timedelta = dt.timedelta(hours=24)
    describe_parallel: int = 4
    # one attempt's deadline: requests are planned one at a time, so a hung plan must not hold every other back
    plan_timeout: dt.timedelta = dt.timedelta(minutes=15)
    # a restore draft's point pinned against retention when it is planned (None: not pinned, e.g. in unit tests)
    pin_point: PinPoint | None = None
    # waits until every JobFinished already on the bus is recorded (consumers.outcomes_caught_up), so the
    # previous session's outcomes are known before they are read (None: recorded synchronously, e.g. in unit tests)
    outcomes_recorded: Callable[[], Awaitable[None]] | None = None
    # an object of more records than this (the org's approximate count) is split into Id ranges, each its own
    # data job (domain_split); 0: never split
    split_records: int = 1_000_000

    async def handle_batch(self, deliveries: Sequence[Delivered]) -> None:
        """The consumer's handler: plan each requested session, commit, publish; then the batch is acked."""
        for delivery in deliveries:
            env = delivery.envelope
            if env.WhichOneof("payload") != "session_requested":
                continue
            try:
                try:
                    await asyncio.wait_for(
                        self.plan(env.session_id, env.session_requested), self.plan_timeout.total_seconds()
                    )
                except TimeoutError:
                    raise PlanningTimedOut(
                        f"planning did not finish within {self.plan_timeout.total_seconds():g} s"
                    ) from None
            except Exception as exc:
                # an outage (database or NATS away) is waited out by the consumer, never held against the session
                if delivery.num_delivered < self.max_deliver or is_transient(exc):
                    raise
                # the last attempt: fail the session with a reason instead of leaving it pending for a day
                log.exception("planning session %s failed %d times", env.session_id, delivery.num_delivered)
                why = str(exc) if isinstance(exc, PlanningTimedOut) else type(exc).__name__
                await self._fail(env.session_id, env.session_requested, f"discovery failed: {why}")

    async def plan(self, session_id: str, request: ev.SessionRequested) -> SessionRecord:
        """Idempotent: a session already decided is re-published as it was decided, never planned again."""
        record = await self.store.get_session(session_id)
        if record is None:
            try:
                record = await self._decide(session_id, request)
            except SessionFailure as exc:
                log.warning("session %s fails: %s", session_id, exc)
                record = await self.store.save_session(d.SessionDecision(self._failed(session_id, request, str(exc))))
        if not record.published:
            await self._publish(record)
            await self.store.mark_published(session_id)
        return record

    async def _fail(self, session_id: str, request: ev.SessionRequested, reason: str) -> None:
        record = await self.store.save_session(d.SessionDecision(self._failed(session_id, request, reason)))
        await self._publish(record)
        await self.store.mark_published(session_id)

    def _failed(self, session_id: str, request: ev.SessionRequested, reason: str) -> SessionRecord:
        kind = translate.SESSION_KIND.get(request.kind, d.SessionKind.BACKUP)
        return SessionRecord(
            session_id=session_id,
            # a restore has no policy: it never counts as a policy's previous session
            policy_id=request.policy_id if kind is d.SessionKind.BACKUP else "",
            org_id=request.org_id or request.restore.source_org_id,
            planned=False,
            failure_reason=reason,
            planned_at=self.clock.now(),
            kind=kind,
        )

    async def _publish(self, record: SessionRecord) -> None:
        sid = record.session_id
        if not record.planned:
            await self.publisher.emit(ev.SessionFailed(reason=record.failure_reason), session_id=sid)
            return
        stored = await self.store.session_jobs(sid)
        specs = [jobs.JobSpec.FromString(j.spec) for j in stored]
        started = ev.SessionStarted(policy_id=record.policy_id, org_id=record.org_id, initial=record.initial)
        if record.stall_timeout > dt.timedelta(0):
            started.stall_timeout.FromTimedelta(record.stall_timeout)
        if record.kind is not d.SessionKind.BACKUP:
            started.kind = translate.SESSION_KIND_PB[record.kind]
            if record.restore_spec:
                started.restore.ParseFromString(record.restore_spec)
            # whoever the source org's policies alert hears of the restore too (a verification mismatch, a failure)
            policies = await self.store.list_policies(record.org_id)
            started.alerts.CopyFrom(translate.alerts_to_pb(d.restore_alerts([p.alerts for p in policies])))
        else:  # the policy's alerting and anomaly settings: the session service judges and alerts with them
            policy = await self.store.get_policy(record.policy_id)
            if policy is not None:
                started.alerts.CopyFrom(translate.alerts_to_pb(policy.alerts))
                started.anomalies.CopyFrom(translate.anomalies_to_pb(policy.anomalies))
        await self.publisher.emit(started, session_id=sid)
        planned = ev.JobsPlanned(jobs=[translate.planned_job(s) for s in specs])
        planned.warnings.extend(record.warnings)
        await self.publisher.emit(planned, session_id=sid)
        for spec in specs:
            await self.publisher.enqueue_job(spec)

    async def _decide(self, session_id: str, request: ev.SessionRequested) -> SessionRecord:
        try:
            kind = translate.session_kind(request)
        except d.RestoreRefused as exc:
            raise SessionFailure(str(exc)) from None
        if kind is d.SessionKind.PRUNE:
            return await self._decide_prune(session_id, request)
        if kind is not d.SessionKind.BACKUP:
            return await self._decide_restore(session_id, request, kind)
        policy = await self.store.get_policy(request.policy_id) if request.policy_id else None
        if policy is None:
            raise SessionFailure(f"policy {request.policy_id!r} does not exist")
        if request.org_id and request.org_id != policy.org_id:
            raise SessionFailure(
                f"policy {policy.policy_id!r} belongs to org {policy.org_id!r}, not {request.org_id!r}"
            )
        org = await self.store.get_org(policy.org_id)
        if org is None:
            raise SessionFailure(f"org {policy.org_id!r} of policy {policy.policy_id!r} does not exist")
        await self._require_storage()
        session = await self._log_in(org)
        try:
            return await self._describe_and_plan(session_id, request, policy, org, session)
        except (sfc.AuthenticationRefused, sfc.OrgUnreachable, sfc.ApiLimitExceeded, ports.DescribeFailed) as exc:
            raise SessionFailure(f"org {org.org_id!r}: {exc}") from None

    async def _decide_restore(
        self, session_id: str, request: ev.SessionRequested, kind: d.SessionKind
    ) -> SessionRecord:
        """A restore's plan: its orgs resolved, the production guard, the point in time fixed, one job. Nothing is
        described (the jobrunner describes the target itself) and no policy is involved."""
        now = self.clock.now()
        ask = translate.restore_ask(request, kind)
        orgs = {}
        for org_id in {ask.source_org_id or ask.org_id, ask.target_org_id} - {""}:
            org = await self.store.get_org(org_id)
            if org is not None:
                orgs[org_id] = org
        try:
            plan = d.plan_restore(ask, orgs, now)
        except d.RestoreRefused as exc:
            raise SessionFailure(str(exc)) from None
        if ask.retry_of:
            retried = await self.store.get_session(ask.retry_of)
            if retried is None or retried.kind is d.SessionKind.BACKUP:
                raise SessionFailure(f"session {ask.retry_of!r} is not a restore session: there is nothing to retry")
        await self._require_storage()
        source = await self._identified(plan.source)
        target = source if plan.target.org_id == source.org_id else await self._identified(plan.target)
        plan = dataclasses.replace(plan, source=source, target=target)
        spec = translate.resolved_restore(request, plan)
        stall = request.stall_timeout.ToTimedelta()
        job = translate.restore_job_spec(plan, spec, session_id=session_id, stall_timeout=stall)
        record = _org_session(session_id, source.org_id, kind, now, stall, spec.SerializeToString(deterministic=True))
        log.info(
            "session %s: %s of org %s into org %s as of %s%s",
            session_id,
            kind.value.lower().replace("_", " "),
            source.org_id,
            target.org_id,
            plan.as_of.isoformat(),
            " (dry run)" if spec.dry_run else "",
        )
        if request.draft_of:
            record = dataclasses.replace(record, warnings=tuple(await self._pin_draft(session_id, request, plan)))
        return await self._save_one_job(record, job)

    async def _pin_draft(self, session_id: str, request: ev.SessionRequested, plan: d.RestorePlan) -> list[str]:
        """A restore draft's point pinned in storage (the versions it previews are never pruned); a pin that fails
        is a warning of the draft, never its failure."""
        if self.pin_point is None or not plan.source.salesforce_org_id:
            return []
        objects = sorted({s.object_name for s in request.restore.selections if s.object_name})
        reason = f"restore draft of session {request.draft_of}"
        try:
            await self.pin_point(plan.source.salesforce_org_id, plan.as_of, objects, reason, session_id)
        except Exception as exc:
            log.warning("session %s: the draft's restore point was not pinned (%s)", session_id, exc)
            return [f"the restore point {plan.as_of.isoformat()} could not be pinned against retention ({exc})"]
        return []

    async def _decide_prune(self, session_id: str, request: ev.SessionRequested) -> SessionRecord:
        """A prune's plan: the org's retention (the most keeping of its policies'), one prune job; nothing to
        prune (no retention, or never backed up): no job, the session ends Success with the reason as a
        warning. Nothing is described and Salesforce is never called."""
        now = self.clock.now()
        org = await self.store.get_org(request.org_id) if request.org_id else None
        if org is None:
            raise SessionFailure(f"org {request.org_id!r} does not exist")
        policies = await self.store.list_policies(org.org_id)
        retention = d.prune_retention(policies)
        stall = request.stall_timeout.ToTimedelta()
        record = _org_session(session_id, org.org_id, d.SessionKind.PRUNE, now, stall)
        if retention is not None and not org.salesforce_org_id:
            retention, why = None, f"nothing to prune: org {org.org_id} was never backed up"
        elif retention is None:
            why = d.nothing_to_prune(org.org_id, policies)
        if retention is None:
            log.info("session %s: %s", session_id, why)
            return await self.store.save_session(d.SessionDecision(dataclasses.replace(record, warnings=(why,))))
        await self._require_storage()
        job = translate.prune_job_spec(
            org, retention, session_id=session_id, dry_run=request.dry_run, stall_timeout=stall
        )
        log.info(
            "session %s: prune of org %s (days %d, versions %d%s)%s",
            session_id,
            org.org_id,
            retention.days,
            retention.versions,
            ", deleted records too" if retention.prune_latest else "",
            " (dry run)" if request.dry_run else "",
        )
        return await self._save_one_job(record, job)

    async def _identified(self, org: d.Org) -> d.Org:
        """The org with its 00D id and instance URL, learned by logging in when no login has told them yet."""
        if org.salesforce_org_id and org.instance_url:
            return org
        session = await self._log_in(org)
        return dataclasses.replace(org, salesforce_org_id=session.salesforce_org_id, instance_url=session.instance_url)

    async def _require_storage(self) -> None:
        """Storage answers, or the session fails: jobs that could not write their records are planned for nothing."""
        try:
            await self.check_storage()
        except ports.StorageUnreachable as exc:
            raise SessionFailure(str(exc)) from None

    async def _save_one_job(self, record: SessionRecord, job: jobs.JobSpec) -> SessionRecord:
        """An org-level session's outcome with its one job (a restore, a prune)."""
        stored = StoredJob(job.job_id, ev.JobType.Name(job.type), "", job.SerializeToString())
        return await self.store.save_session(d.SessionDecision(record, jobs=(stored,)))

    async def _log_in(self, org: d.Org) -> OrgSession:
        """A session with the org, whose 00D id and instance URL are remembered; a failed login fails the session."""
        try:
            session = await asyncio.to_thread(self.connect, org.connection)
        except sfc.SecretError as exc:
            raise SessionFailure(f"cannot log in to org {org.org_id!r}: {exc}") from None
        except (sfc.AuthenticationRefused, sfc.OrgUnreachable, sfc.ApiLimitExceeded) as exc:
            raise SessionFailure(f"org {org.org_id!r}: {exc}") from None
        await self.store.set_org_identity(org.org_id, session.salesforce_org_id, session.instance_url)
        return session

    async def _describe_and_plan(
        self, session_id: str, request: ev.SessionRequested, policy: d.Policy, org: d.Org, session: OrgSession
    ) -> SessionRecord:
        now = self.clock.now()
        previous = await self.store.previous_session(policy.policy_id, session_id)
        prev_schema = await self.store.session_schema(previous.session_id) if previous else None
        # If-Modified-Since saves the per-object describes when nothing changed; a periodic full describe guards
        # against changes an org does not announce that way
        full_describe = (
            previous is None
            or not previous.global_hash
            or not previous.describe_date
            or previous.full_describe_at is None
            or now - previous.full_describe_at >= self.full_describe_every
        )
        since = "" if full_describe or previous is None else previous.describe_date
        fetched = await asyncio.to_thread(session.describe_global, since)
        new_describes: dict[str, bytes] = {}
        if fetched.body is None:
            assert previous is not None
            stored = await self.store.describes([previous.global_hash])
            if previous.global_hash not in stored:
                fetched = await asyncio.to_thread(session.describe_global, "")
        if fetched.body is not None:
            global_hash, global_bytes = d.canonical(fetched.body)
            new_describes[global_hash] = global_bytes
            global_body = fetched.body
            global_changed = True
        else:
            assert previous is not None
            global_hash = previous.global_hash
            global_body = _json(stored[global_hash])
            global_changed = False
        global_objects = [d.GlobalObject.from_describe(o) for o in global_body.get("sobjects", [])]
        wanted = d.wanted_objects(policy, global_objects, prev_schema)

        prior_hash = {
            name: o.describe_hash
            for name in wanted
            if prev_schema is not None and (o := prev_schema.get(name)) is not None and o.describe_hash
        }
        prior_bodies = await self.store.describes(prior_hash.values())
        describes: dict[str, d.ObjectDescribe] = {}
        bodies: dict[str, bytes] = {}
        to_fetch: list[tuple[str, str]] = []
        for name in sorted(wanted):
            old = prior_hash.get(name, "")
            if old in prior_bodies and not global_changed:
                bodies[name] = prior_bodies[old]
                describes[name] = d.ObjectDescribe.from_describe(_json(prior_bodies[old]), old)
            else:
                to_fetch.append((name, since if old in prior_bodies else ""))
        unreadable: dict[str, str] = {}
        if to_fetch:
            results = await asyncio.to_thread(session.describe_many, to_fetch, self.describe_parallel)
            for name, result in results.items():
                if isinstance(result, ports.DescribeFailed):
                    unreadable[name] = str(result)
                    continue
                if result.body is None:
                    old = prior_hash[name]
                    bodies[name] = prior_bodies[old]
                    describes[name] = d.ObjectDescribe.from_describe(_json(prior_bodies[old]), old)
                    continue
                digest, data = d.canonical(result.body)
                new_describes[digest] = data
                bodies[name] = data
                describes[name] = d.ObjectDescribe.from_describe(result.body, digest)

        completed: set[str] | None = None
        if previous is not None and prev_schema is not None:
            if self.outcomes_recorded is not None:
                await self.outcomes_recorded()
            done_jobs = await self.store.completed_jobs(previous.session_id, COMPLETED_OUTCOMES)
            prev_jobs = await self.store.session_jobs(previous.session_id)
            completed = completed_objects(
                ((j.job_id, j.object_name) for j in prev_jobs if j.job_id.startswith("data-")), done_jobs
            )
        resolution = d.resolve(policy, global_objects, describes, prev_schema, unreadable, completed)
        counts = await asyncio.to_thread(session.record_counts, [o.name for o in resolution.schema.in_scope()])
        splits = await self._splits(policy.policy_id, session, [o.name for o in resolution.schema.in_scope()], counts)
        planned = d.plan_jobs(policy, resolution.schema, counts, splits)
        initial = previous is None
        budget = d.split_budget(policy, len(planned), session.api_calls)
        stall = d.stall_timeout(policy, request.stall_timeout.ToTimedelta())
        stored_jobs = []
        for job in planned:
            spec = translate.job_spec(
                job,
                session_id=session_id,
                policy=policy,
                org=org,
                salesforce_org_id=session.salesforce_org_id,
                instance_url=session.instance_url,
                initial=initial,
                stall_timeout=stall,
                budget=budget,
                describe_json=bodies.get(job.object_name, b"") if isinstance(job, d.PlannedDataJob) else b"",
            )
            stored_jobs.append(
                StoredJob(job.job_id, ev.JobType.Name(spec.type), spec.object_name, spec.SerializeToString())
            )
        record = SessionRecord(
            session_id=session_id,
            policy_id=policy.policy_id,
            org_id=org.org_id,
            planned=True,
            initial=initial,
            warnings=resolution.warnings,
            global_hash=global_hash,
            describe_date=fetched.date or (previous.describe_date if previous else ""),
            full_describe_at=now if full_describe else (previous.full_describe_at if previous else now),
            api_calls=session.api_calls,
            planned_at=now,
            stall_timeout=stall,
        )
        for warning in resolution.warnings:
            log.warning("session %s: %s", session_id, warning)
        return await self.store.save_session(
            d.SessionDecision(record, resolution.schema, tuple(stored_jobs), new_describes)
        )

    async def _splits(
        self, policy_id: str, session: OrgSession, names: Sequence[str], counts: Mapping[str, int]
    ) -> dict[str, tuple[IdRange, ...]]:
        """The Id ranges of the policy's split objects among `names`: those kept, the open top range of one that
        outgrew it cut further, and a first split for an object now past `split_records` (its lowest and highest
        Id read then, two queries). Each is kept before any job is planned with it."""
        kept = await self.store.object_splits(policy_id)
        splits: dict[str, tuple[IdRange, ...]] = {}
        for name in names:
            count = counts.get(name, 0)
            ranges = kept.get(name, WHOLE)
            if len(ranges) > 1:
                parts = top_parts(ranges, count, self.split_records)
                if parts > 1:
                    highest = await asyncio.to_thread(session.edge_id, name, highest=True)
                    grown = split_top(ranges, highest, parts)
                    if grown != ranges:
                        ranges = await self.store.keep_split(policy_id, name, grown, replacing=ranges)
                        log.info("%s outgrew its top Id range: %d ranges now", name, len(ranges))
            elif parts_for(count, self.split_records) > 1:
                lowest = await asyncio.to_thread(session.edge_id, name, highest=False)
                highest = await asyncio.to_thread(session.edge_id, name, highest=True) if lowest else ""
                first = split_ranges(count, lowest, highest, self.split_records)
                if len(first) > 1:
                    ranges = await self.store.keep_split(policy_id, name, first)
                    log.info("%s (about %d records) split into %d Id ranges", name, count, len(ranges))
            if len(ranges) > 1:
                splits[name] = ranges
        return splits


def _json(data: bytes) -> dict[str, Any]:
    body = json.loads(data)
    assert isinstance(body, dict)
    return body


# ---- tokens ---------------------------------------------------------------------------------------------


MAX_TOKEN_TEXT = 4096


@dataclasses.dataclass
class Access:
    """Tokens minted with the signing key are registered here (their claims, never the token), listed and
    revoked; a revocation is put into the KV bucket every service follows. And the audit of changes."""

    key: bytes  # empty: authentication is disabled, there are no tokens
    tokens: TokenRegistry
    feed: RevocationFeed
    audit: AuditLog
    clock: Clock = dataclasses.field(default_factory=SystemClock)

    async def register(self, token: str, by: str) -> d.TokenRecord:
        if not self.key:
            raise errors.FailedPrecondition("authentication is disabled on this installation: there are no tokens")
        if not token or len(token) > MAX_TOKEN_TEXT:
            raise errors.InvalidArgument(f"token is required (at most {MAX_TOKEN_TEXT} characters)")
        try:
            claims = auth.claims_of(self.key, token)
        except auth.AuthError as exc:
            raise errors.InvalidArgument(f"not a token of this installation: {exc}") from None
        if claims.expires_at <= self.clock.now().timestamp():
            raise errors.InvalidArgument("the token has expired")
        if claims.expires_at - claims.issued_at > auth.MAX_TOKEN_TTL_S + 1:
            raise errors.InvalidArgument(f"the token lives longer than {auth.MAX_TOKEN_TTL_S / 86400:.0f} days")
        return await self.tokens.register(claims, by)

    async def list_tokens(self, include_expired: bool) -> list[d.TokenRecord]:
        return await self.tokens.list_tokens(include_expired, self.clock.now())

    async def revoke(self, token_id: str, by: str) -> d.TokenRecord:
        record = await self.tokens.revoke(token_id, by, self.clock.now())
        if record is None:
            raise errors.NotFound(f"no registered token {token_id!r} (`sfvault token list --all` shows them)")
        assert record.revoked_at is not None
        try:
            await self.feed.revoke(token_id, record.revoked_at.timestamp(), record.revoked_by)
        except Exception as exc:  # recorded, not yet announced: a retry (or discovery's next start) announces it
            raise errors.Unavailable(
                f"token {token_id} is marked revoked but not yet announced ({type(exc).__name__}); retry"
            ) from None
        return record

    async def audit_entries(self, since: float | None, actor: str, size: int, after: int) -> tuple[list[Any], int]:
        try:
            return await self.audit.read(since, actor, size, after)
        except Exception as exc:
            raise errors.Unavailable(f"the audit stream cannot be read now ({type(exc).__name__})") from None


async def republish_revocations(store: TokenRegistry, feed: RevocationFeed) -> int:
    """Every revoked, unexpired token id into the KV bucket again; returns how many."""
    records = await store.revoked_unexpired(dt.datetime.now(dt.UTC))
    for r in records:
        assert r.revoked_at is not None
        await feed.revoke(r.token_id, r.revoked_at.timestamp(), r.revoked_by)
    return len(records)


# ---- scheduled backups: start each policy's due session on time, at most one running session per policy -----
#
# A trigger that finds a session of its policy still running is skipped, and the skip is recorded with its
# reason (table schedule_runs, and the audit log). A run that could not start (the session service away) is
# tried again at each tick for START_RETRY_WINDOW after it fell due, with the same session id, so a short
# outage at 02:00 does not cost the night's backup. Replicas agree through the table's primary key: the first
# to claim a due run decides it.

schedule_log = logging.getLogger("sfvault.discovery.scheduler")
START_RETRY_WINDOW = dt.timedelta(minutes=30)
audit = logging.getLogger("sfvault.audit")


@dataclasses.dataclass(frozen=True)
class Decision:
    policy_id: str
    due_at: dt.datetime
    session_id: str = ""
    skipped: str = ""


def scheduled_session_id(policy_id: str, due_at: dt.datetime) -> str:
    """Deterministic, so a retried start is the same session."""
    return f"sched-{policy_id}-{due_at.astimezone(dt.UTC):%Y%m%dT%H%M}"[:120]


@dataclasses.dataclass
class Scheduler:
    store: DiscoveryStore
    runs: ScheduleRunStore
    starter: SessionStarter
    clock: Clock

    async def tick(self) -> list[Decision]:
        now = self.clock.now()
        decisions: list[Decision] = []
        for policy in await self.store.list_policies():
            if not policy.schedule:
                continue
            last = await self.runs.last_due(policy.policy_id) or policy.created_at or now
            try:
                due = latest_due(policy.schedule, last, now, policy.time_zone)
            except InvalidSchedule as exc:
                schedule_log.error("policy %s has a bad schedule: %s", policy.policy_id, exc)
                continue
            if due is not None and await self.runs.claim(policy.policy_id, due):
                decisions.append(await self._decide(policy, due))
                continue
            failed = await self.runs.failed_start(policy.policy_id, now - START_RETRY_WINDOW)
            if failed is not None:
                decisions.append(await self._decide(policy, failed))
        return decisions

    async def _decide(self, policy: d.Policy, due: dt.datetime) -> Decision:
        session_id = scheduled_session_id(policy.policy_id, due)
        try:
            running = await self.starter.running_session(policy.policy_id)
            if running == session_id:  # an earlier attempt did start it; its answer was lost
                await self.runs.decide(policy.policy_id, due, session_id=session_id)
                return Decision(policy.policy_id, due, session_id=session_id)
            if running:
                reason = f"session {running} of this policy was still running"
                await self.runs.decide(policy.policy_id, due, skipped=reason)
                audit.info("schedule of policy %s due %s: skipped (%s)", policy.policy_id, due.isoformat(), reason)
                return Decision(policy.policy_id, due, skipped=reason)
            session_id = await self.starter.start(policy, session_id)
        except Exception as exc:  # the session service is unreachable: recorded, tried again within the window
            reason = f"{COULD_NOT_START}: {type(exc).__name__}"
            await self.runs.decide(policy.policy_id, due, skipped=reason)
            schedule_log.error("schedule of policy %s due %s: %s", policy.policy_id, due.isoformat(), reason)
            return Decision(policy.policy_id, due, skipped=reason)
        await self.runs.decide(policy.policy_id, due, session_id=session_id)
        audit.info("schedule of policy %s due %s: started session %s", policy.policy_id, due.isoformat(), session_id)
        return Decision(policy.policy_id, due, session_id=session_id)
