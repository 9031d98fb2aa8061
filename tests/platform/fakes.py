"""An in-memory event bus (the port services.platform.ports.EventBus), for application tests that need no
NATS. tests/platform/test_bus_contract.py holds it and the real Bus to the same rules."""

from __future__ import annotations

import asyncio
import dataclasses

from google.protobuf.message import Message
from sfvault.events.v1 import events_pb2
from sfvault.jobs.v1 import jobs_pb2

from services.platform import events
from services.platform.bus import Backoff, is_transient
from services.platform.ports import EVERY_EVENT, BatchHandler, Consuming


@dataclasses.dataclass
class FakeDelivery:
    envelope: events_pb2.Envelope
    num_delivered: int = 1


@dataclasses.dataclass(frozen=True)
class DeadLetter:
    consumer: str
    envelope: events_pb2.Envelope | None  # None: the message was not an event at all
    reason: str


class FakeBus:
    """EVENTS as a list in publication order, one cursor per durable consumer; JOBS as a list of specs.

    As on JetStream: an event id (a job's session and id) published twice is kept once; a durable consumer
    resumes after the last event it acked; a failing batch is retried one event at a time, an event failing
    `max_deliver` times is dead-lettered and acked, a transient failure is retried until it passes or `stop`.
    """

    def __init__(self, max_deliver: int = 6, producer: str = "test") -> None:
        self.max_deliver = max_deliver
        self.producer = producer
        self.events: list[events_pb2.Envelope] = []
        self.raw: list[bytes] = []  # the stream as bytes, so a malformed message can be put in it
        self.jobs: list[jobs_pb2.JobSpec] = []
        self.dead_letters: list[DeadLetter] = []
        self._event_ids: set[str] = set()
        self._job_ids: set[tuple[str, str]] = set()
        self._acked: dict[str, set[int]] = {}  # durable -> the stream positions it acked
        self._published = asyncio.Condition()

    # ---- publishing -------------------------------------------------------------------------------------

    async def publish(self, env: events_pb2.Envelope) -> bool:
        events.subject(env)  # the same checks the real bus makes before publishing
        if env.event_id in self._event_ids:
            return False
        self._event_ids.add(env.event_id)
        self.events.append(env)
        await self._append(env.SerializeToString())
        return True

    async def emit(
        self, payload: Message, *, session_id: str, job_id: str = "", id_parts: tuple[object, ...] = ()
    ) -> bool:
        env = events.envelope(payload, session_id=session_id, job_id=job_id, producer=self.producer, id_parts=id_parts)
        return await self.publish(env)

    async def publish_raw(self, data: bytes) -> None:
        """A message that may not be an event at all (a malformed one)."""
        await self._append(data)

    async def _append(self, data: bytes) -> None:
        async with self._published:
            self.raw.append(data)
            self._published.notify_all()

    async def enqueue_job(self, spec: jobs_pb2.JobSpec) -> bool:
        key = (spec.session_id, spec.job_id)
        if key in self._job_ids:
            return False
        self._job_ids.add(key)
        self.jobs.append(spec)
        return True

    # ---- consuming --------------------------------------------------------------------------------------

    async def consume_events(
        self, durable: str, handler: BatchHandler, stop: asyncio.Event, how: Consuming = EVERY_EVENT
    ) -> None:
        acked = self._acked.setdefault(durable, set())
        while not stop.is_set():
            positions = [i for i in range(len(self.raw)) if i not in acked][: how.batch_size]
            if not positions:
                await self._wait_for_more(len(self.raw), stop, how.fetch_timeout_s)
                continue
            await self._process(durable, positions, handler, stop)

    async def _wait_for_more(self, seen: int, stop: asyncio.Event, timeout_s: float) -> None:
        async def more() -> None:
            async with self._published:
                await self._published.wait_for(lambda: len(self.raw) > seen)

        stopping = asyncio.ensure_future(stop.wait())
        waiting = asyncio.ensure_future(more())
        try:
            await asyncio.wait({stopping, waiting}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            waiting.cancel()

    async def _process(self, durable: str, positions: list[int], handler: BatchHandler, stop: asyncio.Event) -> None:
        acked = self._acked[durable]
        deliveries: dict[int, FakeDelivery] = {}
        for i in positions:
            try:
                deliveries[i] = FakeDelivery(events.decode(self.raw[i]))
            except events.MalformedEvent as exc:
                self.dead_letters.append(DeadLetter(durable, None, f"malformed: {exc}"))
                acked.add(i)
        if not deliveries:
            return
        try:
            if await self._until_not_transient(list(deliveries.values()), handler, stop):
                acked.update(deliveries)
            return  # else stopped meanwhile: handed back, the next consumer of this durable gets them again
        except Exception:
            pass  # retried one at a time, so one poisonous event cannot hold back the others
        for i, delivery in deliveries.items():
            while True:
                try:
                    if await self._until_not_transient([delivery], handler, stop):
                        acked.add(i)
                    break
                except Exception as exc:
                    if delivery.num_delivered >= self.max_deliver:
                        reason = f"failed {delivery.num_delivered} times: {exc!r}"
                        self.dead_letters.append(DeadLetter(durable, delivery.envelope, reason))
                        acked.add(i)
                        break
                    delivery.num_delivered += 1  # handed back and delivered again

    @staticmethod
    async def _until_not_transient(deliveries: list[FakeDelivery], handler: BatchHandler, stop: asyncio.Event) -> bool:
        backoff = Backoff(initial_s=0.001, cap_s=0.01)
        while True:
            try:
                await handler(deliveries)
                return True
            except Exception as exc:
                if not is_transient(exc):
                    raise
                if stop.is_set():
                    return False
                await backoff.wait(stop)
