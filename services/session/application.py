"""Use cases of the session service: fold event batches into the projection, enforce stall timeouts,
announce finished sessions exactly once, and answer the API. Written against small interfaces so tests
swap the clock, the publisher and the projection store (services/session/ports.py)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Sequence

from google.protobuf.message import Message
from sfvault.events.v1 import events_pb2 as pb
from sfvault.restore.v1 import restore_pb2 as rpb

from services.platform import errors, events, lifecycle, metrics, telemetry
from services.platform.ports import Delivered
from services.session import domain as d
from services.session import domain_alerts, restore_request, translate
from services.session import domain_anomaly as anomaly
from services.session.alerting import AlertDispatcher
from services.session.domain import Page
from services.session.ports import Clock, ProjectionStore, ProjectionTransaction, Publisher

log = logging.getLogger(__name__)
PRODUCER = "session"
DRAFTED_BY = "sfvault-anomaly"  # who asks for a restore draft: the session service itself


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


NotFound = errors.NotFound
Conflict = errors.FailedPrecondition
Invalid = errors.InvalidArgument


@dataclasses.dataclass
class SessionService:
    projection: ProjectionStore
    publisher: Publisher
    clock: Clock
    default_stall_timeout: dt.timedelta
    cancel_grace: dt.timedelta = d.DEFAULT_CANCEL_GRACE
    cache_limit: int = 10_000
    watch_grace_s: float = 10.0
    on_change: Callable[[d.Session], None] | None = None
    alerting: AlertDispatcher | None = None  # None: no alerts (a rebuild)
    start_drafts: bool = True  # False: a rebuild, which only folds (the drafts' requests are in the stream)
    _cache: dict[str, d.Session] = dataclasses.field(default_factory=dict)
    _watchers: dict[str, set[asyncio.Queue[d.Session]]] = dataclasses.field(default_factory=dict)
    _announced: set[str] = dataclasses.field(default_factory=set)
    _lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    _wake: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    # ---- folding ----------------------------------------------------------------------------------------

    async def handle_batch(self, deliveries: Sequence[Delivered]) -> None:
        """The consumer's handler: fold the batch and commit it with its tracking rows, in one transaction."""
        folded: list[d.Event] = []
        for delivery in deliveries:
            try:
                folded.append(translate.to_domain(delivery.envelope))
            except events.MalformedEvent as exc:
                # cannot be folded now or ever: it is poison, not a transient failure
                raise events.MalformedEvent(f"event {delivery.envelope.event_id!r}: {exc}") from exc
        await self.apply(folded)

    async def apply(self, batch: Sequence[d.Event]) -> list[d.Session]:
        async with self._lock:
            changed = await self._apply_locked(batch)
        await self._prepare_drafts(changed)  # before anyone sees the end: its drafts are readable then
        for session in changed:
            self._notify(session)
        await self._announce(changed)
        return changed

    async def _prepare_drafts(self, sessions: Sequence[d.Session]) -> None:
        """For each mass delete or change a final backup found: its restore draft, a dry-run restore of the object's
        affected records as of the previous backup, started under its deterministic id (once, whatever happens:
        a draft already known is left as it is)."""
        if not self.start_drafts:
            return
        for s in sessions:
            if not s.is_final or s.finished_event_seen or s.baseline_at is None:
                continue
            for finding in domain_alerts.draft_findings(s.findings):
                if finding.draft_session_id in self._cache:
                    continue
                try:
                    await self.start(
                        policy_id="",
                        org_id=s.org_id,
                        stall_timeout=None,
                        trigger="anomaly",
                        requested_by=DRAFTED_BY,
                        session_id=finding.draft_session_id,
                        kind=d.Kind.RESTORE,
                        restore=draft_spec(s.org_id, finding, s.baseline_at),
                        draft_of=s.session_id,
                    )
                except Exception:
                    log.exception(
                        "session %s: the restore draft %s could not start", s.session_id, finding.draft_session_id
                    )

    async def _apply_locked(self, batch: Sequence[d.Event]) -> list[d.Session]:
        if not batch:
            return []
        async with self.projection.transaction() as tx:
            fresh = await tx.claim([e.event_id for e in batch])
            todo: list[d.Event] = []
            for e in batch:
                if e.event_id in fresh:
                    fresh.discard(e.event_id)  # a duplicate inside the batch is folded once
                    todo.append(e)
            if not todo:
                return []
            missing = sorted({e.session_id for e in todo} - self._cache.keys())
            states: dict[str, d.Session | None] = {sid: self._cache.get(sid) for sid in {e.session_id for e in todo}}
            states.update(await tx.load(missing))
            before = dict(states)
            for e in todo:
                states[e.session_id] = d.fold(states.get(e.session_id), e)
            ended = [
                sid
                for sid, state in states.items()
                if state is not None and state.is_final and not _was_final(before.get(sid)) and d.judged(state)
            ]
            if ended:
                # the history a judgement reads must hold every session of this batch that ended before it: saved
                # first (the save below writes them again, judged)
                await tx.save(*_changes(states, before))
                for sid in ended:
                    state = states[sid]
                    assert state is not None
                    states[sid] = await self._judge(tx, state)
            raised = 0
            if self.alerting is not None:  # stored with the end itself: once, whatever happens after the commit
                now = self.clock.now()
                for sid, state in states.items():
                    if state is not None and state.is_final and not _was_final(before.get(sid)):
                        alert = domain_alerts.alert_for(state, now)
                        if alert is not None and await tx.add_alert(alert):
                            raised += 1
            changed, jobs = _changes(states, before)
            await tx.save(changed, jobs)
        # committed: only now does the cache see the new states, and the deliveries of the new alerts start
        if raised and self.alerting is not None:
            self.alerting.wake()
        for s in changed:
            self._cache[s.session_id] = s
        self._trim_cache()
        return changed

    @staticmethod
    async def _judge(tx: ProjectionTransaction, session: d.Session) -> d.Session:
        """A backup that just ended, judged against the policy's earlier backups (domain_anomaly): its findings,
        each mass delete or change with the id of the restore draft prepared for it."""
        settings = anomaly.AnomalySettings.from_json(session.anomalies).with_defaults()
        counted = anomaly.count_findings(d.data_job_messages(session))  # judged whatever the anomaly settings
        if settings.disabled:
            return d.with_findings(session, tuple(counted))
        history = await tx.history(session, settings.baseline_sessions)
        findings = [*anomaly.judge(session.session_id, d.object_counts(session), history, settings), *counted]
        if findings:
            log.warning("session %s: %s", session.session_id, anomaly.summary(findings))
        return d.with_findings(session, tuple(findings), history.previous_finished_at)

    def _trim_cache(self) -> None:
        if len(self._cache) <= self.cache_limit:
            return
        for sid in [sid for sid, s in self._cache.items() if s.is_final][: len(self._cache) - self.cache_limit]:
            del self._cache[sid]
        while len(self._cache) > self.cache_limit:
            self._cache.pop(next(iter(self._cache)))

    # ---- announcing and enforcing -----------------------------------------------------------------------

    async def _announce(self, sessions: Sequence[d.Session]) -> None:
        """Publish SessionFinished for sessions that just became final. Its event id is the session's, so
        JetStream keeps one whatever happens; the fold marks it seen when it comes back."""
        for s in sessions:
            if s.is_final and not s.finished_event_seen and s.session_id not in self._announced:
                await self._publish(translate.finished_payload(s), s.session_id)
                self._announced.add(s.session_id)
                metrics.session_ended(s.status.value, s.started_at, s.finished_at)

    async def _publish(self, payload: Message, session_id: str, job_id: str = "") -> bool:
        env = events.envelope(
            payload, session_id=session_id, job_id=job_id, producer=PRODUCER, occurred_at=self.clock.now()
        )
        return await self.publisher.publish(env)

    async def enforce(self) -> list[d.Stall]:
        """One round of the stall timeout and the cancel grace: terminate the jobs that uploaded nothing for
        too long or did not stop when their session was cancelled, fail the sessions that were never planned,
        and re-announce final sessions whose announcement is not seen."""
        now = self.clock.now()
        open_sessions = await self.projection.open_sessions()
        found: list[d.Stall] = []
        for s in open_sessions.values():
            for stall in d.stalls(s, now, self.default_stall_timeout, self.cancel_grace):
                found.append(stall)
                if stall.job_id:
                    log.warning("terminating job %s of session %s: %s", stall.job_id, s.session_id, stall.reason)
                    await self._publish(pb.JobTerminated(reason=stall.reason), s.session_id, stall.job_id)
                    telemetry.stall_terminated()
                else:
                    log.warning("failing session %s: %s", s.session_id, stall.reason)
                    await self._publish(pb.SessionFailed(reason=stall.reason), s.session_id)
        self._announced.clear()
        unannounced = list((await self.projection.unannounced_final_sessions()).values())
        await self._prepare_drafts(unannounced)
        await self._announce(unannounced)
        return found

    async def next_round(self, interval_s: float, stop: asyncio.Event) -> None:
        """Wait for the next enforcement round: the check interval, or sooner when a cancel grace runs out."""
        await lifecycle.next_round(self._wake, stop, interval_s)

    # ---- watching ---------------------------------------------------------------------------------------

    def _notify(self, session: d.Session) -> None:
        if self.on_change is not None:
            self.on_change(session)
        for queue in self._watchers.get(session.session_id, ()):
            queue.put_nowait(session)

    async def watch(self, session_id: str) -> AsyncIterator[d.Session]:
        """The session now, then each change as it is folded, ending with the final status."""
        queue: asyncio.Queue[d.Session] = asyncio.Queue()
        self._watchers.setdefault(session_id, set()).add(queue)
        try:
            try:
                current = await self.get(session_id)
            except NotFound:
                # just started: its SessionRequested may not be folded yet
                try:
                    current = await asyncio.wait_for(queue.get(), self.watch_grace_s)
                except TimeoutError:
                    raise NotFound(f"session {session_id!r} not found") from None
            yield current
            last_version = current.version
            while not current.is_final:
                current = await queue.get()
                if current.version > last_version:
                    last_version = current.version
                    yield current
        finally:
            watchers = self._watchers.get(session_id, set())
            watchers.discard(queue)
            if not watchers:
                self._watchers.pop(session_id, None)

    # ---- API use cases ----------------------------------------------------------------------------------

    async def get(self, session_id: str) -> d.Session:
        _check_id("session_id", session_id)
        cached = self._cache.get(session_id)
        if cached is not None:
            return cached
        found = await self.projection.get(session_id)
        if found is None:
            raise NotFound(f"session {session_id!r} not found")
        return found

    async def list(self, query: d.SessionQuery) -> Page:
        return await self.projection.list(query)

    async def list_alerts(
        self, *, policy_id: str = "", session_id: str = "", kind: str = "", page_size: int = 50, page_after: str = ""
    ) -> tuple[Sequence[domain_alerts.Alert], str]:
        if self.alerting is None:
            return [], ""
        return await self.alerting.store.page(
            policy_id=policy_id, session_id=session_id, kind=kind, page_size=page_size, page_after=page_after
        )

    async def start(
        self,
        *,
        policy_id: str,
        org_id: str,
        stall_timeout: dt.timedelta | None,
        trigger: str,
        requested_by: str,
        session_id: str = "",
        kind: d.Kind = d.Kind.BACKUP,
        restore: rpb.RestoreSpec | None = None,
        draft_of: str = "",
        dry_run: bool = False,
    ) -> d.Session:
        """A backup of a policy, or a restore (kind RESTORE / METADATA_RESTORE, `restore` its spec: checked here,
        its source org from `org_id` or its own, `requested_by` the caller). Who may start which kind is the
        API's check (restore_request.role_for)."""
        spec: rpb.RestoreSpec | None = None
        if kind in d.RESTORE_KINDS:
            if policy_id:
                _check_id("policy_id", policy_id)
            spec = restore_request.check(kind, org_id, restore)
            spec.requested_by = requested_by
            org_id = spec.source_org_id
        elif restore is not None:
            raise Invalid("restore is only for a restore session (kind RESTORE or METADATA_RESTORE)")
        elif kind == d.Kind.PRUNE:
            # the org's retention: discovery resolves it from the org's policies (none names one here)
            if not org_id:
                raise Invalid("org_id is required for a PRUNE session: the org whose backup is pruned")
            _check_id("org_id", org_id)
            if policy_id:
                raise Invalid(
                    "a PRUNE session prunes an org (the most keeping of its policies' retention), no policy_id"
                )
        else:
            _check_id("policy_id", policy_id)
            _check_id("org_id", org_id)
        if dry_run and kind != d.Kind.PRUNE:
            raise Invalid("dry_run is for a PRUNE session (a restore previews with restore.dry_run)")
        if session_id:
            _check_id("session_id", session_id)
            with contextlib.suppress(NotFound):
                return await self.get(session_id)
        if stall_timeout is not None and stall_timeout < dt.timedelta(seconds=1):
            raise Invalid("stall_timeout must be at least one second (or zero for the default)")
        session_id = session_id or uuid.uuid4().hex
        payload = pb.SessionRequested(
            policy_id=policy_id,
            org_id=org_id,
            trigger=trigger or "manual",
            requested_by=requested_by,
            kind=translate.KIND_TO_PB[kind],
            restore=spec,
            draft_of=draft_of,
            dry_run=dry_run,
        )
        if stall_timeout is not None:
            payload.stall_timeout.FromTimedelta(stall_timeout)
        env = events.envelope(payload, session_id=session_id, producer=PRODUCER, occurred_at=self.clock.now())
        # committed before the answer: a GetSession right after this call finds the session
        return await self._publish_and_fold(env)

    async def cancel(self, session_id: str, *, requested_by: str, reason: str) -> d.Session:
        session = await self.get(session_id)
        if session.is_final:
            raise Conflict(f"session {session_id!r} already ended with status {session.status.value}")
        payload = pb.SessionCancelled(requested_by=requested_by, reason=reason)
        env = events.envelope(payload, session_id=session_id, producer=PRODUCER, occurred_at=self.clock.now())
        folded = await self._publish_and_fold(env)
        # the jobrunners stop on the SessionCancelled; a job still not done when the grace runs out is terminated
        asyncio.get_running_loop().call_later(self.cancel_grace.total_seconds() + 0.5, self._wake.set)
        return folded

    async def _publish_and_fold(self, env: pb.Envelope) -> d.Session:
        """Publish an event of the API, then fold and commit it at once, so the caller's next read sees it.
        The same event coming back from the stream is then a duplicate (its id is tracked) and skipped."""
        await self.publisher.publish(env)
        event = translate.to_domain(env)
        try:
            changed = await self.apply([event])
        except Exception as exc:  # the database is away: the event is published, the stream's delivery folds it
            log.warning("%s of session %s is published, not yet folded: %r", type(event).__name__, env.session_id, exc)
            return d.fold(self._cache.get(event.session_id), event)
        for session in changed:
            if session.session_id == event.session_id:
                return session
        return await self.get(event.session_id)  # the stream's delivery folded it first


def _was_final(session: d.Session | None) -> bool:
    return session is not None and session.is_final


def _changes(
    states: dict[str, d.Session | None], before: dict[str, d.Session | None]
) -> tuple[list[d.Session], list[tuple[str, d.Job]]]:
    """The sessions a batch changed, and the jobs that changed in them (each with its session id)."""
    changed = [s for sid, s in states.items() if s is not None and s is not before.get(sid)]
    jobs: list[tuple[str, d.Job]] = []
    for s in changed:
        old = before.get(s.session_id)
        old_jobs = old.jobs if old is not None else {}
        jobs.extend((s.session_id, j) for jid, j in s.jobs.items() if old_jobs.get(jid) is not j)
    return changed, jobs


def _check_id(name: str, value: str) -> None:
    try:
        events.check_token(name, value)
    except ValueError as exc:
        raise Invalid(str(exc)) from exc


def draft_spec(org_id: str, finding: anomaly.Finding, since: dt.datetime) -> rpb.RestoreSpec:
    """A restore draft's spec: a preview (dry run) of the finding's object in the same org, the records deleted
    (mass delete) or changed (mass change) since the previous backup, as they were then; no parents, no
    children."""
    spec = rpb.RestoreSpec(source_org_id=org_id, target_org_id=org_id, dry_run=True, parents=0, children=0)
    spec.as_of.FromDatetime(since)
    selection = spec.selections.add(object_name=finding.object_name)
    if finding.kind == anomaly.MASS_DELETE:
        selection.deleted_since.FromDatetime(since)
    else:
        selection.changed_since.FromDatetime(since)
    return spec
