"""The JetStream event bus every service shares: streams declared in code, de-duplicated publishing with
retries, and durable pull consumers with ack-after-commit, nak with back-off, heartbeats and a dead-letter
subject. A malformed or poisonous message is dead-lettered, never allowed to crash a service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import nats
from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import APIError
from sfvault.events.v1 import events_pb2
from sfvault.jobs.v1 import jobs_pb2
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from services.common import events, telemetry

log = logging.getLogger(__name__)

TRANSIENT = (NatsTimeoutError, NoRespondersError, ConnectionClosedError, asyncio.TimeoutError)


class TransientError(Exception):
    """An effect could not be committed now (database or network hiccup): nak and retry later."""


@dataclass(frozen=True)
class BusConfig:
    url: str
    namespace: str = ""  # prefix of stream names and subjects (tests, multi-tenant)
    events_replicas: int = 1
    events_max_age_s: float = 90 * 86400.0  # how long events stay replayable (session rebuild)
    jobs_replicas: int = 1
    duplicate_window_s: float = 2 * 3600.0  # longer than any publisher's retries
    max_deliver: int = 6  # then the message goes to the dead-letter subject
    ack_wait_s: float = 60.0
    backoff_s: tuple[float, ...] = (1.0, 5.0, 15.0, 60.0)

    @property
    def events_stream(self) -> str:
        return f"{self.namespace.upper()}EVENTS"

    @property
    def jobs_stream(self) -> str:
        return f"{self.namespace.upper()}JOBS"

    @property
    def deadletter_stream(self) -> str:
        return f"{self.namespace.upper()}DEADLETTER"

    def events_subject(self, tail: str = ">") -> str:
        return f"{self.namespace}{events.EVENTS_SUBJECT_ROOT}.{tail}"

    def jobs_subject(self, tail: str = ">") -> str:
        return f"{self.namespace}sfvault.jobs.{tail}"

    def deadletter_subject(self, consumer: str) -> str:
        return f"{self.namespace}sfvault.dlq.{consumer}"

    def stream_configs(self) -> list[StreamConfig]:
        return [
            StreamConfig(
                name=self.events_stream,
                subjects=[self.events_subject()],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                num_replicas=self.events_replicas,
                max_age=self.events_max_age_s,
                duplicate_window=self.duplicate_window_s,
                discard=DiscardPolicy.OLD,
            ),
            StreamConfig(
                name=self.jobs_stream,
                subjects=[self.jobs_subject()],
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
                num_replicas=self.jobs_replicas,
                duplicate_window=self.duplicate_window_s,
            ),
            StreamConfig(
                name=self.deadletter_stream,
                subjects=[f"{self.namespace}sfvault.dlq.>"],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                num_replicas=self.events_replicas,
                max_age=self.events_max_age_s,
            ),
        ]


@dataclass
class Delivery:
    """One decoded event and the JetStream message that carried it."""

    envelope: events_pb2.Envelope
    msg: Msg
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def num_delivered(self) -> int:
        return int(self.msg.metadata.num_delivered)

    def traced(self) -> telemetry.Consumed:
        env = self.envelope
        return telemetry.Consumed(self.msg.subject, self.headers, _kind(env), env.session_id, env.job_id, env.event_id)


BatchHandler = Callable[[list[Delivery]], Awaitable[None]]


class Bus:
    def __init__(self, config: BusConfig, nc: nats.NATS, producer: str) -> None:
        self.config = config
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self.producer = producer

    @classmethod
    async def connect(cls, config: BusConfig, producer: str, **options: Any) -> Bus:
        nc = await nats.connect(
            config.url, name=producer, max_reconnect_attempts=-1, reconnect_time_wait=0.5, **options
        )
        bus = cls(config, nc, producer)
        await bus.ensure_streams()
        return bus

    async def ensure_streams(self) -> None:
        """Create or update the streams; safe to call from every service at every start."""
        for cfg in self.config.stream_configs():
            try:
                await self.js.add_stream(cfg)
            except APIError as exc:
                if exc.err_code != 10058:  # stream name already in use with a different configuration
                    raise
                await self.js.update_stream(cfg)

    async def close(self) -> None:
        """Flush what was published and acked, then close. (Not drain: nats-py's drain of a pull
        subscription waits for messages that no fetch will take any more.) Callers stop their consumers
        first, so no message is in hand."""
        with contextlib.suppress(Exception):
            await self.nc.flush(timeout=5)
        with contextlib.suppress(Exception):
            await self.nc.close()

    async def _publish(
        self,
        subject: str,
        data: bytes,
        msg_id: str,
        headers: dict[str, str] | None = None,
        *,
        kind: str,
        session_id: str = "",
        job_id: str = "",
    ) -> Any:
        hdrs = {"Nats-Msg-Id": msg_id, **(headers or {})}
        # the PRODUCER span's context travels in the headers: the consumer's span continues the trace
        with telemetry.publishing(subject, hdrs, kind=kind, message_id=msg_id, session_id=session_id, job_id=job_id):
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(TRANSIENT),
                stop=stop_after_attempt(8),
                wait=wait_exponential(multiplier=0.1, max=5),
                reraise=True,
            ):
                with attempt:
                    return await self.js.publish(subject, data, headers=hdrs)

    async def publish(self, env: events_pb2.Envelope) -> bool:
        """Publish an event; returns False when JetStream recognised it as a duplicate."""
        ack = await self._publish(
            events.subject(env, self.config.namespace),
            env.SerializeToString(),
            env.event_id,
            kind=_kind(env),
            session_id=env.session_id,
            job_id=env.job_id,
        )
        return not ack.duplicate

    async def emit(self, payload: Any, *, session_id: str, job_id: str = "", id_parts: tuple[object, ...] = ()) -> bool:
        return await self.publish(
            events.envelope(payload, session_id=session_id, job_id=job_id, producer=self.producer, id_parts=id_parts)
        )

    async def enqueue_job(self, spec: jobs_pb2.JobSpec) -> bool:
        kind = events_pb2.JobType.Name(spec.type).removeprefix("JOB_TYPE_").lower()
        ack = await self._publish(
            self.config.jobs_subject(kind),
            spec.SerializeToString(),
            f"job:{spec.session_id}:{spec.job_id}",
            kind="JobSpec",
            session_id=spec.session_id,
            job_id=spec.job_id,
        )
        return not ack.duplicate

    async def dead_letter(self, consumer: str, msg: Msg, reason: str) -> None:
        headers = {
            "Sfvault-Reason": reason[:500],
            "Sfvault-Original-Subject": msg.subject,
        }
        seq = getattr(msg.metadata.sequence, "stream", 0) if msg.reply else 0
        await self._publish(
            self.config.deadletter_subject(consumer),
            msg.data,
            f"dlq:{consumer}:{msg.subject}:{seq}",
            headers,
            kind="dead-letter",
        )
        log.warning("dead-lettered a message from %s for consumer %s: %s", msg.subject, consumer, reason)

    async def pull_subscription(
        self,
        stream: str,
        durable: str,
        filter_subject: str,
        *,
        deliver_policy: DeliverPolicy = DeliverPolicy.ALL,
        max_ack_pending: int = 20000,
        ack_wait_s: float | None = None,
    ) -> JetStreamContext.PullSubscription:
        config = ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=deliver_policy,
            filter_subject=filter_subject,
            max_deliver=self.config.max_deliver + 1,  # one more than ours: we dead-letter, not JetStream
            ack_wait=ack_wait_s or self.config.ack_wait_s,
            max_ack_pending=max_ack_pending,
        )
        return await self.js.pull_subscribe(filter_subject, durable=durable, stream=stream, config=config)

    async def consume_events(
        self,
        durable: str,
        handler: BatchHandler,
        stop: asyncio.Event,
        *,
        filter_subject: str | None = None,
        batch_size: int = 500,
        fetch_timeout_s: float = 1.0,
        ack_wait_s: float | None = None,
    ) -> None:
        """Run a durable pull consumer on EVENTS until `stop` is set.

        The handler receives a batch of decoded events and must commit their effect before returning; the
        batch is acked only then. A failing batch is retried one message at a time, so one poisonous event
        cannot hold back the others; after `max_deliver` attempts it goes to the dead-letter subject.
        """
        sub = await self.pull_subscription(
            self.config.events_stream, durable, filter_subject or self.config.events_subject(), ack_wait_s=ack_wait_s
        )

        async def fetch() -> list[Msg]:
            try:
                return list(await sub.fetch(batch_size, timeout=fetch_timeout_s))
            except (TimeoutError, NatsTimeoutError):  # nats-py raises either when nothing came
                return []

        # the next batch is fetched while this one is folded and committed; only committed ones are acked
        pending: asyncio.Task[list[Msg]] = asyncio.create_task(fetch())
        try:
            while not stop.is_set():
                try:
                    msgs = await pending
                except ConnectionClosedError:
                    if stop.is_set():
                        return
                    raise
                pending = asyncio.create_task(fetch())
                if msgs:
                    await self.process_batch(durable, msgs, handler)
        finally:
            pending.cancel()  # fetched but unprocessed messages are redelivered after ack_wait
            with contextlib.suppress(BaseException):
                await pending

    async def process_batch(self, consumer: str, msgs: Sequence[Msg], handler: BatchHandler) -> None:
        deliveries: list[Delivery] = []
        for msg in msgs:
            try:
                deliveries.append(Delivery(events.decode(msg.data), msg, dict(msg.headers or {})))
            except events.MalformedEvent as exc:
                await self.dead_letter(consumer, msg, f"malformed: {exc}")
                await msg.ack()
        if not deliveries:
            return
        try:
            with telemetry.consuming(consumer, [d.traced() for d in deliveries]):
                await handler(deliveries)
        except Exception:
            log.exception("batch of %d events failed for %s; retrying one by one", len(deliveries), consumer)
            for delivery in deliveries:
                await self._process_one(consumer, delivery, handler)
            return
        # queued together, the acks leave in one write instead of one each
        await asyncio.gather(*(delivery.msg.ack() for delivery in deliveries))

    async def _process_one(self, consumer: str, delivery: Delivery, handler: BatchHandler) -> None:
        try:
            with telemetry.consuming(consumer, [delivery.traced()]):
                await handler([delivery])
        except Exception as exc:
            attempts = delivery.num_delivered
            if attempts >= self.config.max_deliver:
                await self.dead_letter(consumer, delivery.msg, f"failed {attempts} times: {exc!r}")
                await delivery.msg.ack()
            else:
                backoff = self.config.backoff_s
                await delivery.msg.nak(delay=backoff[min(attempts - 1, len(backoff) - 1)])
            return
        await delivery.msg.ack()


def _kind(env: events_pb2.Envelope) -> str:
    """The event type, for span names; never raises (a malformed event is the consumer's to judge)."""
    field = env.WhichOneof("payload")
    return type(getattr(env, field)).DESCRIPTOR.name if field else "event"


@contextlib.asynccontextmanager
async def heartbeat(msg: Msg, interval_s: float) -> AsyncIterator[None]:
    """Tell JetStream the message is still being worked on (in_progress) while a long job runs."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(interval_s)  # a periodic timer, not a wait for a condition
            with contextlib.suppress(Exception):
                await msg.in_progress()

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
