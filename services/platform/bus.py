"""The JetStream event bus every service shares: streams declared in code, de-duplicated publishing with
retries, and durable pull consumers with ack-after-commit, nak with back-off, heartbeats and a dead-letter
subject. A malformed or poisonous message is dead-lettered, never allowed to crash a service.

A NATS or PostgreSQL restart is not a failure: every consumer loop waits (bounded, jittered back-off), creates
its consumer again if the server lost it, and goes on; a batch whose effect could not be committed for such a
reason is retried in place (the messages kept in progress), never counted towards dead-lettering.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import nats
import nats.errors
import psycopg
from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError, NoRespondersError, NoServersError
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
from nats.js.errors import APIError, NoStreamResponseError, ServiceUnavailableError
from sfvault.events.v1 import events_pb2
from sfvault.jobs.v1 import jobs_pb2
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_random_exponential

from services.platform import events, metrics, telemetry
from services.platform.natsauth import inbox_prefix
from services.platform.ports import EVERY_EVENT, Consuming

log = logging.getLogger(__name__)

TRANSIENT = (
    NatsTimeoutError,
    NoRespondersError,
    NoServersError,
    ServiceUnavailableError,
    NoStreamResponseError,
    ConnectionClosedError,
    asyncio.TimeoutError,
)
# nats-py errors that say the request was wrong, not that the server was away
_NATS_PERMANENT = (
    nats.errors.BadSubjectError,
    nats.errors.BadHeaderError,
    nats.errors.MaxPayloadError,
    nats.errors.BadTimeoutError,
    nats.errors.InvalidCallbackTypeError,
    nats.errors.NotJSMessageError,
    nats.errors.MsgAlreadyAckdError,
    nats.errors.JsonParseError,
)
_JS_GONE = (10059, 10014)  # stream not found, consumer not found: a server restarted without its store


class TransientError(Exception):
    """An effect could not be committed now (database or network hiccup): retried later, never dead-lettered."""


def is_transient(exc: BaseException) -> bool:
    """Whether an error is the infrastructure's (NATS or PostgreSQL away or restarting, a timeout), not the
    message's: the consumer waits and tries again instead of counting it against the message."""
    if isinstance(exc, TransientError | TimeoutError | asyncio.TimeoutError | ConnectionError):
        return True
    if isinstance(
        exc, psycopg.OperationalError | psycopg.errors.SerializationFailure | psycopg.errors.DeadlockDetected
    ):
        return True  # connection lost, server shutting down or starting, pool exhausted, serialization
    if isinstance(exc, APIError):
        return exc.code is None or exc.code >= 500 or exc.err_code in _JS_GONE
    return isinstance(exc, nats.errors.Error) and not isinstance(exc, _NATS_PERMANENT)


class Backoff:
    """Bounded exponential back-off with jitter; reset after a success."""

    def __init__(self, initial_s: float = 0.2, cap_s: float = 10.0) -> None:
        self.initial_s = initial_s
        self.cap_s = cap_s
        self._next_s = initial_s

    def reset(self) -> None:
        self._next_s = self.initial_s

    def next_delay(self) -> float:
        delay = random.uniform(self._next_s / 2, self._next_s)
        self._next_s = min(self._next_s * 2, self.cap_s)
        return delay

    async def wait(self, stop: asyncio.Event | None = None) -> None:
        """Sleep the next delay; returns early when `stop` is set."""
        delay = self.next_delay()
        if stop is None:
            await asyncio.sleep(delay)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)


@dataclass(frozen=True)
class BusConfig:
    url: str  # one URL, or several comma-separated (the servers of a cluster)
    namespace: str = ""  # prefix of stream names and subjects (tests, multi-tenant)
    events_replicas: int = 1
    events_max_age_s: float = 90 * 86400.0  # how long events stay replayable (session rebuild)
    jobs_replicas: int = 1
    duplicate_window_s: float = 2 * 3600.0  # longer than any publisher's retries
    max_deliver: int = 6  # then the message goes to the dead-letter subject
    ack_wait_s: float = 60.0
    backoff_s: tuple[float, ...] = (1.0, 5.0, 15.0, 60.0)
    publish_retry_s: float = 30.0  # how long a publish is retried while NATS is away
    user: str = ""  # this service's NATS user (services.platform.natsauth); empty: no authentication
    password: str = field(default="", repr=False)
    tls_ca_file: str = ""  # verify the servers' certificates against this CA (and speak only TLS)
    connect_wait_s: float = 60.0  # how long a starting service waits for NATS (and JetStream) to answer

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
            kept_stream(
                self.events_stream,
                self.events_subject(),
                self.events_replicas,
                self.events_max_age_s,
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
            kept_stream(
                self.deadletter_stream, f"{self.namespace}sfvault.dlq.>", self.events_replicas, self.events_max_age_s
            ),
        ]


def kept_stream(name: str, subject: str, replicas: int, max_age_s: float, **more: Any) -> StreamConfig:
    """A stream kept on file whose messages age out after `max_age_s` (the events, the dead letters, the audit)."""
    return StreamConfig(
        name=name,
        subjects=[subject],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        num_replicas=replicas,
        max_age=max_age_s,
        **more,
    )


async def ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    """Create the stream, or update it where it stands with another configuration: safe at every start."""
    try:
        await js.add_stream(config)
    except APIError as exc:
        if exc.err_code != 10058:  # stream name already in use with a different configuration
            raise
        await js.update_stream(config)


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


# the handler of a batch (services.platform.ports.BatchHandler takes any Sequence of Delivered)
BatchHandler = Callable[[list[Delivery]], Awaitable[None]]


class Bus:
    def __init__(self, config: BusConfig, nc: nats.NATS, producer: str) -> None:
        self.config = config
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self.producer = producer

    @classmethod
    async def connect(cls, config: BusConfig, producer: str, **options: Any) -> Bus:
        if config.user:
            credentials = {"user": config.user, "password": config.password, "inbox_prefix": inbox_prefix(config.user)}
            options = credentials | options
        if config.tls_ca_file:
            options = {"tls": ssl.create_default_context(cafile=config.tls_ca_file)} | options
        servers = [u.strip() for u in config.url.split(",") if u.strip()]  # a cluster: any of its servers
        # a service starting while NATS restarts waits for it (bounded) instead of exiting at once
        deadline = asyncio.get_running_loop().time() + config.connect_wait_s
        backoff = Backoff(cap_s=5.0)
        while True:
            nc: nats.NATS | None = None
            try:
                nc = await _connect(servers, producer, options)
                bus = cls(config, nc, producer)
                await bus.ensure_streams()
                return bus
            except Exception as exc:
                if nc is not None:
                    with contextlib.suppress(Exception):
                        await nc.close()
                unreachable = isinstance(exc, OSError) or (
                    is_transient(exc) and not isinstance(exc, nats.errors.AuthorizationError)
                )
                if not unreachable or asyncio.get_running_loop().time() >= deadline:
                    raise
                log.warning("NATS is not reachable yet (%s); trying again", type(exc).__name__)
                await backoff.wait()

    async def ensure_streams(self) -> None:
        """Create or update the streams; safe to call from every service at every start."""
        for cfg in self.config.stream_configs():
            await ensure_stream(self.js, cfg)

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
            # long enough to ride out a NATS restart; a closed connection (we are stopping) is not retried
            async for attempt in AsyncRetrying(
                retry=retry_if_exception(lambda exc: is_transient(exc) and not self.nc.is_closed),
                stop=stop_after_delay(self.config.publish_retry_s),
                wait=wait_random_exponential(multiplier=0.1, max=5),
                reraise=True,
            ):
                with attempt:
                    try:
                        return await self.js.publish(subject, data, headers=hdrs)
                    except (NoRespondersError, NoStreamResponseError):
                        # no stream takes the subject: JetStream is starting, or a server came back without
                        # its store; declaring the streams again is harmless in the first case
                        await self._redeclare_streams()
                        raise

    async def _redeclare_streams(self) -> None:
        try:
            await self.ensure_streams()
        except Exception as exc:  # the caller retries; this only helps a lost stream come back
            log.debug("streams could not be declared again yet: %r", exc)

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
    ) -> PullConsumer:
        """A durable pull consumer that outlives NATS restarts (see `PullConsumer.fetch`)."""
        config = ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=deliver_policy,
            filter_subject=filter_subject,
            max_deliver=self.config.max_deliver + 1,  # one more than ours: we dead-letter, not JetStream
            ack_wait=ack_wait_s or self.config.ack_wait_s,
            max_ack_pending=max_ack_pending,
        )
        consumer = PullConsumer(self, stream, durable, filter_subject, config)
        await consumer.subscribe()
        return consumer

    async def consume_events(
        self, durable: str, handler: BatchHandler, stop: asyncio.Event, how: Consuming = EVERY_EVENT
    ) -> None:
        """Run a durable pull consumer on EVENTS until `stop` is set.

        The handler receives a batch of decoded events and must commit their effect before returning; the
        batch is acked only then. A failing batch is retried one message at a time, so one poisonous event
        cannot hold back the others; after `max_deliver` attempts it goes to the dead-letter subject. A
        transient failure (`is_transient`: NATS or PostgreSQL away) is waited out and retried, whatever its
        length; the loop ends only when `stop` is set.
        """
        subject = how.filter_subject or self.config.events_subject()
        sub = await self.pull_subscription(self.config.events_stream, durable, subject, ack_wait_s=how.ack_wait_s)

        async def fetch() -> list[Msg]:
            return await sub.fetch(how.batch_size, timeout=how.fetch_timeout_s, stop=stop)

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
                    await self.process_batch(durable, msgs, handler, stop)
        finally:
            pending.cancel()  # fetched but unprocessed messages are redelivered after ack_wait
            with contextlib.suppress(BaseException):
                await pending

    async def process_batch(
        self, consumer: str, msgs: Sequence[Msg], handler: BatchHandler, stop: asyncio.Event | None = None
    ) -> None:
        metrics.consumer_lag(consumer, msgs[-1].metadata.num_pending)
        deliveries: list[Delivery] = []
        for msg in msgs:
            try:
                deliveries.append(Delivery(events.decode(msg.data), msg, dict(msg.headers or {})))
            except events.MalformedEvent as exc:
                await self._dead_letter_or_later(consumer, msg, f"malformed: {exc}")
        if not deliveries:
            return
        try:
            handled = await self._handle_waiting_out_outages(consumer, deliveries, handler, stop)
        except Exception:
            log.exception("batch of %d events failed for %s; retrying one by one", len(deliveries), consumer)
            for delivery in deliveries:
                await self._process_one(consumer, delivery, handler, stop)
            return
        if handled:
            # queued together, the acks leave in one write instead of one each
            await asyncio.gather(*(_settle(delivery.msg.ack()) for delivery in deliveries))

    async def _handle_waiting_out_outages(
        self, consumer: str, deliveries: list[Delivery], handler: BatchHandler, stop: asyncio.Event | None
    ) -> bool:
        """Run the handler until it succeeds (True) or fails for a reason of the message's (raises). While
        it fails for a transient reason the messages are kept in progress and retried after a back-off;
        when `stop` is set meanwhile, they are handed back (nak) and False is returned."""
        backoff = Backoff()
        while True:
            try:
                with telemetry.consuming(consumer, [d.traced() for d in deliveries]):
                    await handler(deliveries)
                return True
            except Exception as exc:
                if not is_transient(exc):
                    raise
                if stop is not None and stop.is_set():
                    await asyncio.gather(*(_settle(d.msg.nak()) for d in deliveries))
                    return False
                log.warning(
                    "%d events for %s wait: %s (%s); retrying", len(deliveries), consumer, type(exc).__name__, exc
                )
                await asyncio.gather(*(_settle(d.msg.in_progress()) for d in deliveries))
                await backoff.wait(stop)

    async def _process_one(
        self, consumer: str, delivery: Delivery, handler: BatchHandler, stop: asyncio.Event | None = None
    ) -> None:
        try:
            handled = await self._handle_waiting_out_outages(consumer, [delivery], handler, stop)
        except Exception as exc:
            attempts = delivery.num_delivered
            if attempts >= self.config.max_deliver:
                await self._dead_letter_or_later(consumer, delivery.msg, f"failed {attempts} times: {exc!r}")
            else:
                backoff = self.config.backoff_s
                await _settle(delivery.msg.nak(delay=backoff[min(attempts - 1, len(backoff) - 1)]))
            return
        if handled:
            await _settle(delivery.msg.ack())

    async def _dead_letter_or_later(self, consumer: str, msg: Msg, reason: str) -> None:
        """Dead-letter and ack; while NATS cannot take the dead letter, hand the message back instead (it
        comes again later), so an outage never stops the consumer nor loses the message."""
        try:
            await self.dead_letter(consumer, msg, reason)
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("a message for %s could not be dead-lettered yet (%s)", consumer, type(exc).__name__)
            await _settle(msg.nak(delay=self.config.backoff_s[-1]))
            return
        await _settle(msg.ack())


class PullConsumer:
    """A durable JetStream pull consumer that survives the server: while NATS is away, restarting, or back
    without the consumer (a server that lost its store), `fetch` logs, backs off (bounded, jittered),
    declares the streams and the consumer again and returns nothing; the caller's loop simply goes on."""

    def __init__(self, bus: Bus, stream: str, durable: str, filter_subject: str, config: ConsumerConfig) -> None:
        self.bus = bus
        self.stream = stream
        self.durable = durable
        self.filter_subject = filter_subject
        self.config = config
        self.backoff = Backoff()
        self._sub: JetStreamContext.PullSubscription | None = None

    async def subscribe(self) -> None:
        self._sub = await self.bus.js.pull_subscribe(
            self.filter_subject, durable=self.durable, stream=self.stream, config=self.config
        )

    async def fetch(
        self,
        batch: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109 - nats-py's fetch signature, which the callers use
        *,
        stop: asyncio.Event | None = None,
    ) -> list[Msg]:
        """Up to `batch` messages, or none when none came within `timeout` or the server is away. Raises
        ConnectionClosedError only once the connection was closed on purpose (the service is stopping)."""
        if self.bus.nc.is_closed:
            raise ConnectionClosedError
        try:
            if self._sub is None:
                await self.bus._redeclare_streams()
                await self.subscribe()
            assert self._sub is not None
            msgs = list(await self._sub.fetch(batch, timeout=timeout))
        except (TimeoutError, NatsTimeoutError):  # nats-py raises either when nothing came
            return []
        except Exception as exc:
            if self.bus.nc.is_closed:
                raise ConnectionClosedError from exc
            if not is_transient(exc):
                raise
            log.warning("consumer %s on %s: %s (%s); trying again", self.durable, self.stream, type(exc).__name__, exc)
            await self._drop()
            await self.backoff.wait(stop)
            return []
        self.backoff.reset()
        return msgs

    async def _drop(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def unsubscribe(self) -> None:
        await self._drop()


async def _settle(reply: Awaitable[Any]) -> None:
    """Ack, nak or in_progress: one lost while NATS is away only means a redelivery (every handler is
    idempotent), so it must not stop the consumer."""
    try:
        await reply
    except Exception as exc:  # see above
        if not is_transient(exc):
            raise
        log.info("an acknowledgement was lost (%s); the message will be delivered again", type(exc).__name__)


class NatsRefused(Exception):
    """NATS refused this service's user or password: a configuration error, not an outage."""


async def _connect(servers: list[str], producer: str, options: dict[str, Any]) -> nats.NATS:
    """nats.connect, waiting for a server that is not there yet and reconnecting for ever once connected, but
    failing at once when the first connection is refused for its credentials (nats-py alone retries a wrong
    password for ever: the service would hang at start-up)."""
    nc = nats.NATS()
    connecting = True

    async def on_error(exc: Exception) -> None:
        text = str(exc)
        refused = "authorization violation" in text.lower() or isinstance(exc, nats.errors.AuthorizationError)
        if refused and connecting:  # raised here, it ends nats-py's connect loop
            raise NatsRefused(f"NATS refused user {options.get('user') or '(none)'}: {text}")
        log.warning("nats: %s", text)

    settings: dict[str, Any] = {"max_reconnect_attempts": -1, "reconnect_time_wait": 0.5, "error_cb": on_error}
    try:
        await nc.connect(servers, name=producer, **(settings | options))
    except NatsRefused:
        with contextlib.suppress(Exception):
            await nc.close()
        raise
    finally:
        connecting = False
    return nc


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
