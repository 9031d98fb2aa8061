"""The jobrunner's NATS side: the JOBS consumer its replicas share (several jobs at once in worker threads,
heartbeats, JobStarted / JobFinished, ack/nak/term) and the watch of the events that stop jobs."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from google.protobuf.message import DecodeError
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from sfvault.events.v1 import events_pb2 as ev
from sfvault.jobs.v1 import jobs_pb2

from services.jobrunner.application import CLOSING, JobExecutor, Result, Stops, finished, settled, started
from services.jobrunner.job_run import JobControl
from services.jobrunner.store import JobStore
from services.platform import events, metrics, telemetry
from services.platform.bus import Bus, heartbeat

log = logging.getLogger("sfvault.jobrunner")
CONSUMER = "jobrunner"


class Watcher:
    """The events that stop jobs, into Stops: a live ordered consumer per replica from its start, plus a look
    at the stream's history when a job is taken."""

    def __init__(self, bus: Bus, stops: Stops) -> None:
        self.bus = bus
        self.stops = stops
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
        self.stops.apply(events.event_type(env), env.session_id, env.job_id)

    async def verdict(self, session_id: str, job_id: str) -> str | None:
        """Why a job just taken must not run ("terminated" / "cancelled"), from memory and the stream."""
        known = self.stops.known(session_id, job_id)
        if known is not None:
            return known
        stream = self.bus.config.events_stream
        for kind, why in CLOSING.items():
            try:
                await self.bus.js.get_last_msg(stream, self.bus.config.events_subject(f"{session_id}.{kind}"))
            except NotFoundError:
                continue
            self.stops.closed.setdefault(session_id, why)
            return why
        subject = self.bus.config.events_subject(f"{session_id}.JobTerminated")
        try:
            last = await self.bus.js.get_last_msg(stream, subject)
        except NotFoundError:
            return None
        if events.decode(last.data or b"").job_id == job_id:
            self.stops.terminated.add((session_id, job_id))
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
                    self.stops.terminated.add((session_id, events.decode(msg.data).job_id))
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return "terminated" if (session_id, job_id) in self.stops.terminated else None


class Runner:
    """Takes JobSpecs from the shared JOBS consumer and runs up to `concurrency` at once."""

    def __init__(
        self,
        bus: Bus,
        store: JobStore,
        executor: JobExecutor,
        *,
        worker_id: str,
        concurrency: int = 4,
        ack_wait_s: float = 60.0,
        heartbeat_s: float = 10.0,
    ) -> None:
        self.bus = bus
        self.store = store
        self.jobs = executor
        self.worker_id = worker_id
        self.concurrency = max(1, concurrency)
        self.ack_wait_s = ack_wait_s
        self.heartbeat_s = heartbeat_s
        self.stops = Stops()
        self.watcher = Watcher(bus, self.stops)
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
                if msgs:
                    metrics.consumer_lag(CONSUMER, msgs[-1].metadata.num_pending)
                for msg in msgs:
                    task = asyncio.create_task(self.handle(msg))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
        finally:
            await self.drain()

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Stop taking jobs; in-flight ones stop at their next chunk boundary and are handed back (nak)."""
        self.stops.stop_all("shutdown")
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
        if key in self.stops.controls:  # a redelivery of a job this replica is still running
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
        self.stops.controls[key] = control
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
                started(spec, self.worker_id, attempt),
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
                    self.executor, contextvars.copy_context().run, self.jobs.execute, spec, control, attempt
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
            self.stops.controls.pop(key, None)
            self.jobs_done += 1

    async def _report(self, spec: jobs_pb2.JobSpec, msg: Msg, result: Result, attempt: int) -> None:
        result = settled(result, attempt, self.bus.config.max_deliver)
        if result.outcome:
            await self.bus.emit(finished(result), session_id=spec.session_id, job_id=spec.job_id)
            metrics.job_finished(spec.type, result.outcome)
        if result.disposition == "term":
            await msg.term()
        elif result.disposition == "nak":
            await msg.nak(delay=self.bus.config.backoff_s[min(attempt - 1, len(self.bus.config.backoff_s) - 1)])
        else:
            await msg.ack()
