"""The event bus as the applications see it: publish an event, queue a job, consume events in batches.

services.platform.bus.Bus is the adapter (NATS JetStream); tests/platform/fakes.py has the in-memory fake;
tests/platform/test_bus_contract.py holds both to the same rules.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from sfvault.events.v1 import events_pb2
from sfvault.jobs.v1 import jobs_pb2


class Delivered(Protocol):
    """One decoded event handed to a consumer's handler."""

    @property
    def envelope(self) -> events_pb2.Envelope: ...

    @property
    def num_delivered(self) -> int:
        """1 at the first delivery, then one more at each redelivery."""
        ...


BatchHandler = Callable[[Sequence[Delivered]], Awaitable[None]]


class EventPublisher(Protocol):
    async def publish(self, env: events_pb2.Envelope) -> bool:
        """Publish an event; False when its event id was published before (a duplicate, dropped)."""
        ...


class JobQueue(Protocol):
    async def enqueue_job(self, spec: jobs_pb2.JobSpec) -> bool:
        """Queue a job for one jobrunner; False when this job of this session was queued before."""
        ...


@dataclass(frozen=True)
class Consuming:
    """How a durable consumer reads EVENTS: the subjects it takes (None: all of them), how many events a batch
    holds at most, how long a fetch waits for one, how long an unacked event stays with it (None: the bus's)."""

    filter_subject: str | None = None
    batch_size: int = 500
    fetch_timeout_s: float = 1.0
    ack_wait_s: float | None = None


EVERY_EVENT = Consuming()  # every subject of EVENTS, the defaults above


class EventConsumer(Protocol):
    async def consume_events(
        self, durable: str, handler: BatchHandler, stop: asyncio.Event, how: Consuming = EVERY_EVENT
    ) -> None:
        """Hand the events to `handler` in batches until `stop` is set. An event is acked once its batch's
        handler returned; a durable consumer never sees an acked event again. A batch that fails is retried
        one event at a time; an event failing `max_deliver` times (or malformed) goes to the dead letters; a
        transient failure (services.platform.bus.is_transient) is waited out, never dead-lettered."""
        ...


class EventBus(EventPublisher, JobQueue, EventConsumer, Protocol):
    """All three: what a service's composition root hands to its application."""
