"""The runner: takes JobSpecs from the shared JOBS consumer, runs several at once in worker threads, reports
JobStarted / JobFinished, heartbeats, and obeys JobTerminated, cancellation and session ends."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import psycopg
from google.protobuf.message import DecodeError
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from sfvault.events.v1 import events_pb2 as ev
from sfvault.jobs.v1 import jobs_pb2

from services.jobrunner.data_job import DataJob
from services.jobrunner.domain import CountMismatch, Tally
from services.jobrunner.file_job import FileJob
from services.jobrunner.job_run import JobControl, JobRun, JobStopped, Tuning, credentials
from services.jobrunner.metadata_job import MetadataJob
from services.jobrunner.salesforce import JobOrgClient, MetadataClient, OrgReader, SalesforceError
from services.jobrunner.storage_client import StorageClient, StorageConflict, StorageError, StorageUnavailable
from services.jobrunner.store import JobStore
from services.platform import events, telemetry
from services.platform.bus import Bus, heartbeat
from services.platform.errors import InvalidArgument
from services.sfclient import (
    ApiLimitExceeded,
    AuthenticationRefused,
    OrgUnreachable,
    SecretError,
    is_transient,
)

log = logging.getLogger("sfvault.jobrunner")
CONSUMER = "jobrunner"
# what may pass: the job is handed back and retried (with back-off, up to max_deliver attempts); on Salesforce's
# side, whatever `is_transient` says (the one retry rule) and still failed after OrgClient's own retries, or
# broke a streamed result page mid-body (the job resumes at that page's locator)
TRANSIENT = (StorageUnavailable, StorageConflict, OrgUnreachable, psycopg.OperationalError)
# what fails the job at once with its own message
FAILING = (CountMismatch, SalesforceError, StorageError, AuthenticationRefused, InvalidArgument, SecretError)
CLOSING = {"SessionCancelled": "cancelled", "SessionFailed": "terminated", "SessionFinished": "terminated"}


@dataclass
class Result:
    outcome: int  # JobOutcome, or 0 when nothing is to be reported
    message: str
    tally: Tally
    chunks: int
    disposition: str  # "ack" | "term" | "nak"


class Watcher:
    """What the jobrunner must obey, learnt from events: terminated jobs and ended sessions. A live ordered
    consumer per replica from its start, plus a look at the stream's history when a job is taken."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.terminated: set[tuple[str, str]] = set()
        self.closed: dict[str, str] = {}
        self.controls: dict[tuple[str, str], JobControl] = {}
        self._subs: list[Any] = []

    async def start(self) -> None:
        for kind in ("JobTerminated", *CLOSING):
            sub = await self.bus.js.subscribe(
                self.bus.config.events_subject(f"*.{kind}"),
                cb=self._on_msg,
                ordered_consumer=True,
                deliver_policy=DeliverPolicy.NEW,
            )
            self._subs.append(sub)

    async def stop(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _on_msg(self, msg: Msg) -> None:
        try:
            env = events.decode(msg.data)
        except events.MalformedEvent:
            return
        self.apply(env)

    def apply(self, env: ev.Envelope) -> None:
        kind = events.event_type(env)
        if kind == "JobTerminated":
            key = (env.session_id, env.job_id)
            self.terminated.add(key)
            control = self.controls.get(key)
            if control is not None:
                control.stop("terminated")
        elif kind in CLOSING:
            why = CLOSING[kind]
            self.closed.setdefault(env.session_id, why)
            for (sid, _jid), control in list(self.controls.items()):
                if sid == env.session_id:
                    control.stop(why)

    async def verdict(self, session_id: str, job_id: str) -> str | None:
        """Why a job just taken must not run ("terminated" / "cancelled"), from memory and the stream."""
        if (session_id, job_id) in self.terminated:
            return "terminated"
        if session_id in self.closed:
            return self.closed[session_id]
        stream = self.bus.config.events_stream
        for kind, why in CLOSING.items():
            try:
                await self.bus.js.get_last_msg(stream, self.bus.config.events_subject(f"{session_id}.{kind}"))
            except NotFoundError:
                continue
            self.closed.setdefault(session_id, why)
            return why
        subject = self.bus.config.events_subject(f"{session_id}.JobTerminated")
        try:
            last = await self.bus.js.get_last_msg(stream, subject)
        except NotFoundError:
            return None
        if events.decode(last.data or b"").job_id == job_id:
            self.terminated.add((session_id, job_id))
            return "terminated"
        # several jobs of the session were terminated: read them all (rare)
        sub = await self.bus.js.pull_subscribe(
            subject,
            stream=stream,
            config=ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL, inactive_threshold=30),
        )
        try:
            while True:
                try:
                    msgs = await sub.fetch(256, timeout=0.5)
                except (TimeoutError, NatsTimeoutError):
                    break
                for msg in msgs:
                    self.terminated.add((session_id, events.decode(msg.data).job_id))
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return "terminated" if (session_id, job_id) in self.terminated else None


class Runner:
    def __init__(
        self,
        bus: Bus,
        store: JobStore,
        storage: StorageClient,
        *,
        worker_id: str,
        concurrency: int = 4,
        tuning: Tuning | None = None,
        ack_wait_s: float = 60.0,
        heartbeat_s: float = 10.0,
        client_factory: Callable[[jobs_pb2.JobSpec], JobOrgClient] | None = None,
        http_timeout_s: float = 120.0,
    ) -> None:
        self.bus = bus
        self.store = store
        self.storage = storage
        self.worker_id = worker_id
        self.concurrency = max(1, concurrency)
        self.tuning = tuning or Tuning()
        self.ack_wait_s = ack_wait_s
        self.heartbeat_s = heartbeat_s
        self.client_factory = client_factory or (
            lambda spec: JobOrgClient(credentials(spec), api_call_cap=int(spec.api_call_cap), timeout=http_timeout_s)
        )
        self.watcher = Watcher(bus)
        # room beyond the concurrency: a terminated job's thread may still be stuck in a hung call
        self.executor = ThreadPoolExecutor(max_workers=self.concurrency * 2, thread_name_prefix="job")
        self.tasks: set[asyncio.Task[None]] = set()
        self.jobs_done = 0  # jobs handled to the end (reported, handed back or termed)
        self.jobs_dropped = 0  # jobs taken whose session or job had already ended

    async def run(self, stop: asyncio.Event) -> None:
        await self.watcher.start()
        sub = await self.bus.pull_subscription(
            self.bus.config.jobs_stream,
            CONSUMER,
            self.bus.config.jobs_subject(),
            ack_wait_s=self.ack_wait_s,
            max_ack_pending=1000,
        )
        try:
            while not stop.is_set():
                free = self.concurrency - len(self.tasks)
                if free <= 0:
                    await asyncio.wait(set(self.tasks), timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
                    continue
                try:
                    msgs = await sub.fetch(free, timeout=1.0)
                except (TimeoutError, NatsTimeoutError):
                    continue
                for msg in msgs:
                    task = asyncio.create_task(self.handle(msg))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
        finally:
            await self.drain()

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Stop taking jobs; in-flight ones stop at their next chunk boundary and are handed back (nak)."""
        for control in list(self.watcher.controls.values()):
            control.stop("shutdown")
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=timeout_s)
        await self.watcher.stop()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def handle(self, msg: Msg) -> None:
        try:
            spec = jobs_pb2.JobSpec.FromString(msg.data)
            events.check_token("session_id", spec.session_id)
            events.check_token("job_id", spec.job_id)
        except (DecodeError, ValueError) as exc:
            await self.bus.dead_letter(CONSUMER, msg, f"not a valid JobSpec: {exc}")
            await msg.ack()
            return
        key = (spec.session_id, spec.job_id)
        if key in self.watcher.controls:  # a redelivery of a job this replica is still running
            await msg.in_progress()
            return
        verdict = await self.watcher.verdict(*key)
        if verdict is not None:
            log.info("dropping job %s of session %s: %s", spec.job_id, spec.session_id, verdict)
            await msg.term()
            self.jobs_dropped += 1
            return
        attempt = int(msg.metadata.num_delivered)
        control = JobControl()
        self.watcher.controls[key] = control
        consumed = telemetry.Consumed(
            msg.subject, dict(msg.headers or {}), "JobSpec", spec.session_id, spec.job_id, f"job:{key[0]}:{key[1]}"
        )
        job_type = ev.JobType.Name(spec.type).removeprefix("JOB_TYPE_").lower()
        with telemetry.running_job(consumed, object_name=spec.object_name, job_type=job_type):
            await self._run(spec, msg, key, control, attempt)

    async def _run(
        self, spec: jobs_pb2.JobSpec, msg: Msg, key: tuple[str, str], control: JobControl, attempt: int
    ) -> None:
        try:
            await self.bus.emit(
                ev.JobStarted(worker_id=self.worker_id, attempt=attempt, type=spec.type, object_name=spec.object_name),
                session_id=spec.session_id,
                job_id=spec.job_id,
                id_parts=(attempt,),
            )
            loop = asyncio.get_running_loop()
            terminated = asyncio.Event()

            def on_stop(why: str) -> None:
                if why in ("terminated", "dropped"):
                    loop.call_soon_threadsafe(terminated.set)

            control.on_stop = on_stop
            async with heartbeat(msg, self.heartbeat_s):
                # in a copy of this context, so the job's Salesforce and storage calls join its trace
                work: asyncio.Future[Result] = loop.run_in_executor(
                    self.executor, contextvars.copy_context().run, self.execute, spec, control, attempt
                )
                waiter: asyncio.Future[Any] = asyncio.ensure_future(terminated.wait())
                await asyncio.wait([work, waiter], return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
            if not work.done():
                # A call may hang for minutes (a stalled response): the job is over for the session now, so the
                # message is termed at once; the thread stores nothing more and ends on its own.
                await msg.term()
                return
            await self._report(spec, msg, work.result(), attempt)
        except Exception:
            log.exception("job %s could not be reported; handing it back", spec.job_id)
            with contextlib.suppress(Exception):
                await msg.nak(delay=5)
        finally:
            self.watcher.controls.pop(key, None)
            self.jobs_done += 1

    async def _report(self, spec: jobs_pb2.JobSpec, msg: Msg, result: Result, attempt: int) -> None:
        if result.disposition == "nak" and attempt >= self.bus.config.max_deliver and result.outcome == 0:
            result = Result(ev.JOB_OUTCOME_ERROR, result.message, result.tally, result.chunks, "ack")
        if result.outcome:
            counts = ev.Counts(**result.tally.as_dict())
            await self.bus.emit(
                ev.JobFinished(
                    outcome=result.outcome,  # type: ignore[arg-type]
                    message=result.message[:2000],
                    counts=counts,
                    chunks=result.chunks,
                ),
                session_id=spec.session_id,
                job_id=spec.job_id,
            )
        if result.disposition == "term":
            await msg.term()
        elif result.disposition == "nak":
            await msg.nak(delay=self.bus.config.backoff_s[min(attempt - 1, len(self.bus.config.backoff_s) - 1)])
        else:
            await msg.ack()

    # ------------------------------------------------------------ in the worker thread
    def execute(self, spec: jobs_pb2.JobSpec, control: JobControl, attempt: int) -> Result:
        run: JobRun | None = None
        try:
            client = self.client_factory(spec)
            run = JobRun(spec, self.storage, self.store, control, self.tuning, client)
            reserve = int(spec.api_reserve_percent)
            job: DataJob | FileJob | MetadataJob
            if spec.type == ev.JOB_TYPE_DATA:
                job = DataJob(run, OrgReader(client, reserve_percent=reserve), self.store)
            elif spec.type == ev.JOB_TYPE_FILE:
                job = FileJob(run, OrgReader(client, reserve_percent=reserve), self.store)
            elif spec.type == ev.JOB_TYPE_METADATA:
                job = MetadataJob(run, MetadataClient(client, reserve_percent=reserve), self.store)
            else:
                return self._result(run, ev.JOB_OUTCOME_ERROR, f"unknown job type {spec.type}", "ack")
            message = job.execute()
            # completed, but not as planned (a fallback taken, something left for the next session): WARNING, which
            # the session counts as completed (the seed's rules)
            outcome = ev.JOB_OUTCOME_WARNING if job.warnings else ev.JOB_OUTCOME_SUCCESS
            return self._result(run, outcome, message, "ack")
        except Exception as exc:
            return self._classify(exc, run, control, spec, attempt)

    def _classify(
        self, exc: Exception, run: JobRun | None, control: JobControl, spec: jobs_pb2.JobSpec, attempt: int
    ) -> Result:
        if control.why is not None and not isinstance(exc, JobStopped):
            exc = JobStopped(control.why)  # whatever broke after a stop signal, the stop decides the report
        try:
            raise exc
        except JobStopped as stop:
            if stop.why == "cancelled":
                return self._result(run, ev.JOB_OUTCOME_CANCELLED, "cancelled", "ack")
            if stop.why == "shutdown":
                return self._result(run, 0, "handed back at shutdown", "nak")
            return self._result(run, 0, stop.why, "term")
        except ApiLimitExceeded as exc:
            # stored data is consistent and the mark did not move: the next session resumes from it
            return self._result(run, ev.JOB_OUTCOME_ERROR, f"stopped: {exc}", "ack")
        except Exception as exc:
            if isinstance(exc, TRANSIENT) or is_transient(exc):
                log.warning("job %s attempt %d: transient failure (%s); retrying later", spec.job_id, attempt, exc)
                if attempt >= self.bus.config.max_deliver:
                    return self._result(run, ev.JOB_OUTCOME_ERROR, f"gave up after {attempt} attempts: {exc}", "ack")
                return self._result(run, 0, str(exc), "nak")
            if isinstance(
                exc, CountMismatch | SalesforceError | StorageError | AuthenticationRefused | InvalidArgument
            ):
                # InvalidArgument: a record the canonical form refuses (the message names the field, not the value)
                log.error("job %s failed: %s", spec.job_id, exc)
                return self._result(run, ev.JOB_OUTCOME_ERROR, str(exc), "ack")
            log.exception("job %s failed unexpectedly", spec.job_id)
            return self._result(run, ev.JOB_OUTCOME_ERROR, f"unexpected {type(exc).__name__}: {exc}"[:500], "ack")

    @staticmethod
    def _result(run: JobRun | None, outcome: int, message: str, disposition: str) -> Result:
        if run is None:
            return Result(outcome, message, Tally(), 0, disposition)
        return Result(outcome, message, run.finish_counts(), run.seq, disposition)
