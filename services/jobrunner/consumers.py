"""The jobrunner's NATS side: the JOBS consumer its replicas share (several jobs at once in worker threads,
heartbeats, JobStarted / JobFinished, ack/nak/term) and the watch of the events that stop jobs."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from sfvault.events.v1 import events_pb2 as ev
from sfvault.jobs.v1 import jobs_pb2

from services.jobrunner import domain_fair as fair
from services.jobrunner.application import CLOSING, JobExecutor, Result, Stops, finished, settled, started
from services.jobrunner.job_run import JobControl
from services.jobrunner.store import JobStore
from services.platform import events, metrics, telemetry
from services.platform.bus import Bus, heartbeat

log = logging.getLogger("sfvault.jobrunner")
CONSUMER = "jobrunner"
WINDOW = 256  # jobs a replica holds fetched but not started: how far it sees past one org's jobs
FETCH = 64  # messages fetched at once
FETCH_WAIT_S = 0.2  # a fetch's wait while jobs are held: a slot freed meanwhile is filled this late at most
ATTEMPTS = "Sfvault-Attempts"  # a deferred job's attempts before its present message
DEFERRALS = "Sfvault-Deferrals"
DEFER_TIMEOUT_S = 2.0
DEFER_PAUSE_S = 300.0
USED_TTL_S = 600.0  # an org whose jobs ran nothing here for this long is served afresh


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


class DeferralPaused(Exception):
    """The last deferral failed a moment ago: none is tried before DEFER_PAUSE_S."""


@dataclass
class Held:
    """A fetched job not started yet: its message (kept alive by in_progress), spec and place in the window."""

    msg: Msg
    spec: jobs_pb2.JobSpec
    place: fair.Waiting


class Runner:
    """Takes JobSpecs from the shared JOBS consumer and runs up to `concurrency` at once, fairly between orgs
    (domain_fair): it holds a window of up to `window` fetched jobs and starts the oldest of the org with the
    fewest running, at most `org_cap` of one org at once; jobs past its share of a full window go to the back
    of the stream. See the README's "Scheduling"."""

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
        window: int = 0,
        org_cap: int = 0,
    ) -> None:
        self.bus = bus
        self.store = store
        self.jobs = executor
        self.worker_id = worker_id
        self.concurrency = max(1, concurrency)
        self.ack_wait_s = ack_wait_s
        self.heartbeat_s = heartbeat_s
        self.window = window if window > 0 else WINDOW  # 0: the default
        self.org_cap = org_cap if org_cap > 0 else self.concurrency  # 0: no cap beyond the concurrency
        self.stops = Stops()
        self.watcher = Watcher(bus, self.stops)
        # room beyond the concurrency: a terminated job's thread may still be stuck in a hung call
        self.executor = ThreadPoolExecutor(max_workers=self.concurrency * 2, thread_name_prefix="job")
        self.tasks: set[asyncio.Task[None]] = set()
        self.waiting: list[Held] = []
        self.running: dict[str, int] = {}  # jobs running on this replica, by org
        self.began: dict[asyncio.Task[None], tuple[str, float]] = {}  # running: org and start (monotonic)
        self.used: dict[str, tuple[float, float]] = {}  # by org: seconds its jobs ran here, when its last ended
        self.seen_all = False  # the last fetch found nothing: the window holds what the stream has
        self.arrivals = 0
        self.deferred: set[tuple[str, str]] = set()  # sent to the back in this pass over the stream
        self.deferred_orgs: set[str] = set()
        self.wrapped = False  # a job deferred in this pass came back: the pass went through the whole stream
        self.jobs_done = 0  # jobs handled to the end (reported, handed back or termed)
        self.jobs_dropped = 0  # jobs taken whose session or job had already ended
        self.jobs_deferred = 0  # jobs sent to the back of the stream (fairness)
        self.shared_at = 0.0
        self.defer_from = 0.0  # no deferral before this time (monotonic): the last one failed

    async def run(self, stop: asyncio.Event) -> None:
        await self.watcher.start()
        sub = await self.bus.pull_subscription(
            self.bus.config.jobs_stream,
            CONSUMER,
            self.bus.config.jobs_subject(),
            ack_wait_s=self.ack_wait_s,
            max_ack_pending=1000,
        )
        beating = asyncio.create_task(self._keep_waiting())
        try:
            while not stop.is_set():
                self._start_fairest()
                if self.wrapped and (
                    not self.tasks or fair.new_pass(len(self.waiting), self._window(), self._starved())
                ):
                    self.wrapped = False
                    self.deferred.clear()
                    self.deferred_orgs.clear()
                if self.wrapped:  # the whole stream seen: nothing to fetch until half the window has started
                    await self._a_job_ends()
                    continue
                if self.waiting and self.tasks:
                    # jobs held: the consumer's state, not a pull that would wait (a waiting pull is what tells
                    # a replica holding jobs that another one is idle)
                    pending, idle_peers = await self._consumer_state(sub)
                    self.seen_all = self.seen_all and not pending
                    # nothing pending and all seen (or no free slot): nothing to fetch; else a fetch looks
                    if not pending and (self.seen_all or len(self.tasks) >= self.concurrency):
                        if idle_peers:
                            await self._share()
                        await self._a_job_ends()
                        continue
                room = self._window() - len(self.waiting)
                if room <= 0 and not self._can_defer() and self.tasks:  # a full window it cannot make room in
                    await self._a_job_ends()
                    continue
                # a full window still fetches: a job of an org it holds little of takes a place (admit)
                msgs = await sub.fetch(FETCH, timeout=FETCH_WAIT_S if self.waiting else 1.0)
                # the stream seen whole: a fetch that waited and found nothing (jobs published a moment apart
                # are not taken for all there is)
                self.seen_all = not msgs
                if msgs:
                    metrics.consumer_lag(CONSUMER, msgs[-1].metadata.num_pending)
                    deferring: list[tuple[Msg, jobs_pb2.JobSpec]] = []
                    for msg in msgs:
                        await self._take(msg, deferring)
                    await self._defer(deferring)
        finally:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating
            await self.drain()

    def _start_fairest(self) -> None:
        free = self.concurrency - len(self.tasks)
        if free <= 0 or not self.waiting:
            return
        seen_all = self.seen_all or self.wrapped or len(self.waiting) >= self._window()
        limit = fair.org_limit(self.org_cap, seen_all)
        chosen = fair.pick([h.place for h in self.waiting], self.running, free, limit, self._used())
        starting = [self.waiting[i] for i in chosen]
        taken = set(chosen)
        self.waiting = [h for i, h in enumerate(self.waiting) if i not in taken]
        for held in starting:
            org = held.spec.org_id
            self.running[org] = self.running.get(org, 0) + 1
            task = asyncio.create_task(self.handle(held.msg, held.spec))
            self.tasks.add(task)
            self.began[task] = (org, time.monotonic())
            task.add_done_callback(self.tasks.discard)
            task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        org, began = self.began.pop(task)
        now = time.monotonic()
        self.running[org] -= 1
        if not self.running[org]:
            del self.running[org]
        self.used[org] = (self.used.get(org, (0.0, now))[0] + now - began, now)
        # an org that ran nothing here for USED_TTL_S starts afresh (its next session)
        for idle in [o for o, (_s, last) in self.used.items() if now - last > USED_TTL_S and o not in self.running]:
            del self.used[idle]

    def _used(self) -> dict[str, float]:
        """The seconds each org's jobs ran here, those running counted so far."""
        now = time.monotonic()
        used = {org: spent for org, (spent, _last) in self.used.items()}
        for org, began in self.began.values():
            used[org] = used.get(org, 0.0) + now - began
        return used

    async def _take(self, msg: Msg, deferring: list[tuple[Msg, jobs_pb2.JobSpec]]) -> None:
        """A fetched message: dead-lettered if it is no JobSpec, kept alive if this replica already runs or holds
        it (a redelivery), else into the window, or into `deferring` (domain_fair.admit)."""
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
        for held in self.waiting:
            if (held.spec.session_id, held.spec.job_id) == key:  # a redelivery of one it holds: the newer message
                held.msg = msg
                return
        if key in self.deferred:
            self.wrapped = True
        self.arrivals += 1
        admission = fair.admit(spec.org_id, [h.place for h in self.waiting], self._window())
        if not self._can_defer():
            admission = fair.Admission(True)
        if not admission.keep:
            deferring.append((msg, spec))
            return
        if admission.evict is not None:
            evicted = self.waiting.pop(admission.evict)
            deferring.append((evicted.msg, evicted.spec))
        self.waiting.append(Held(msg, spec, fair.Waiting(spec.org_id, self.arrivals)))

    async def _defer(self, jobs: list[tuple[Msg, jobs_pb2.JobSpec]]) -> None:
        """The jobs to the back of the stream: each spec published again (the attempts it made in a header, a
        message id of its own; all at once), then each message in hand acked. A crash between the two and the
        redelivery deferred again publishes the same id: JetStream drops it. A job whose publication failed is
        held, or handed back when the replica holds its concurrency already."""
        if not jobs:
            return
        if self._can_defer():
            sent = await asyncio.gather(*(self._republish(msg, spec) for msg, spec in jobs), return_exceptions=True)
        else:
            sent = [DeferralPaused() for _ in jobs]
        for (msg, spec), result in zip(jobs, sent, strict=True):
            if isinstance(result, BaseException):
                await self._not_deferred(msg, spec, result)
                continue
            await msg.ack()
            self.deferred.add((spec.session_id, spec.job_id))
            self.deferred_orgs.add(spec.org_id)
            self.jobs_deferred += 1

    async def _republish(self, msg: Msg, spec: jobs_pb2.JobSpec) -> None:
        headers = dict(msg.headers or {})
        made = fair.attempt(headers.get(ATTEMPTS), int(msg.metadata.num_delivered)) - 1
        deferrals = fair.number(headers.get(DEFERRALS)) + 1
        out = {  # the trace context kept
            **headers,
            "Nats-Msg-Id": f"job:{spec.session_id}:{spec.job_id}:deferred:{deferrals}:{made}",
            ATTEMPTS: str(made),
            DEFERRALS: str(deferrals),
        }
        await self.bus.js.publish(msg.subject, msg.data, headers=out, timeout=DEFER_TIMEOUT_S)

    async def _not_deferred(self, msg: Msg, spec: jobs_pb2.JobSpec, exc: BaseException) -> None:
        """NATS away, or this jobrunner's NATS user may not publish jobs: no deferral for DEFER_PAUSE_S; the job
        held, or handed back (nak) when the replica holds its concurrency already."""
        if not isinstance(exc, DeferralPaused) and self._can_defer():
            log.warning("job %s not deferred (%r): no deferral for %.0f s", spec.job_id, exc, DEFER_PAUSE_S)
            self.defer_from = time.monotonic() + DEFER_PAUSE_S
        if len(self.waiting) >= self.concurrency:
            with contextlib.suppress(Exception):
                await msg.nak()
            return
        self.arrivals += 1
        self.waiting.append(Held(msg, spec, fair.Waiting(spec.org_id, self.arrivals)))

    async def _consumer_state(self, sub: Any) -> tuple[int, int]:
        """The JOBS consumer's messages not delivered yet, and the pull requests waiting on it (other replicas'
        with nothing to run); unknown: one pending, none waiting (the caller fetches as usual)."""
        try:
            info = await self.bus.js.consumer_info(sub.stream, sub.durable)
        except Exception as exc:
            log.debug("consumer info unavailable: %r", exc)
            return 1, 0
        return int(info.num_pending or 0), int(info.num_waiting or 0)

    def _starved(self) -> bool:
        """An org whose jobs this pass deferred has none held or running here."""
        present = {h.spec.org_id for h in self.waiting} | set(self.running)
        return any(org not in present for org in self.deferred_orgs)

    async def _a_job_ends(self) -> None:
        """Until a running job ends (a second at most: a job published meanwhile is fetched then)."""
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=1.0, return_when=asyncio.FIRST_COMPLETED)

    def _can_defer(self) -> bool:
        return time.monotonic() >= self.defer_from

    def _window(self) -> int:
        """The jobs it holds unstarted at most: the window, or its concurrency while it cannot defer (what it
        holds no other replica can take)."""
        return self.window if self._can_defer() else self.concurrency

    async def _share(self) -> None:
        """The stream is empty and another replica waits for a job: the jobs this replica holds beyond those it
        starts next go back to the stream, where that one takes them. At most once a second."""
        now = time.monotonic()
        if len(self.waiting) <= self.concurrency or now - self.shared_at < 1.0 or not self._can_defer():
            return
        self.shared_at = now
        places = [h.place for h in self.waiting]
        keep = set(fair.pick(places, self.running, self.concurrency, self.org_cap, self._used()))
        surplus = [h for i, h in enumerate(self.waiting) if i not in keep]
        self.waiting = [h for i, h in enumerate(self.waiting) if i in keep]
        log.info("%d held jobs back to the stream for an idle replica", len(surplus))
        await self._defer([(held.msg, held.spec) for held in surplus])

    async def _keep_waiting(self) -> None:
        """in_progress for every job held in the window, so JetStream does not deliver it again meanwhile."""
        while True:
            await asyncio.sleep(self.heartbeat_s)  # a periodic timer, not a wait for a condition
            for held in list(self.waiting):
                with contextlib.suppress(Exception):
                    await held.msg.in_progress()

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Stop taking jobs; in-flight ones stop at their next chunk boundary and are handed back (nak)."""
        self.stops.stop_all("shutdown")
        held, self.waiting = self.waiting, []
        with contextlib.suppress(Exception):  # back to the stream for the other replicas, their attempts kept
            await self._defer([(job.msg, job.spec) for job in held])
        left, self.waiting = self.waiting, []  # those it could not defer: handed back
        for job in left:
            with contextlib.suppress(Exception):
                await job.msg.nak()
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=timeout_s)
        await self.watcher.stop()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def handle(self, msg: Msg, spec: jobs_pb2.JobSpec) -> None:
        key = (spec.session_id, spec.job_id)
        if key in self.stops.controls:  # taken twice meanwhile (a redelivery while it was held)
            await msg.in_progress()
            return
        verdict = await self.watcher.verdict(*key)
        if verdict is not None:
            log.info("dropping job %s of session %s: %s", spec.job_id, spec.session_id, verdict)
            await msg.term()
            self.jobs_dropped += 1
            return
        attempt = fair.attempt(dict(msg.headers or {}).get(ATTEMPTS), int(msg.metadata.num_delivered))
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
