"""Trace context across NATS (real nats-server): a message published on one Bus is consumed on another in
the same trace, and what the consumer publishes for a session continues that session's trace."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from opentelemetry.trace import SpanKind
from sfvault.events.v1 import events_pb2

from services.platform.bus import Bus, BusConfig, Delivery
from services.platform.ports import Consuming
from tests.telemetry.conftest import Captured


@pytest.fixture
async def buses(nats_url: str, bus_namespace: str) -> AsyncIterator[tuple[Bus, Bus]]:
    config = BusConfig(url=nats_url, namespace=bus_namespace, ack_wait_s=5)
    producer = await Bus.connect(config, producer="producer")
    consumer = await Bus.connect(config, producer="consumer")
    yield producer, consumer
    await consumer.close()
    await producer.close()


async def consume_until(bus: Bus, count: int, on_batch=None) -> list[Delivery]:  # type: ignore[no-untyped-def]
    seen: list[Delivery] = []
    enough = asyncio.Event()
    stop = asyncio.Event()

    async def handler(batch: list[Delivery]) -> None:
        if on_batch is not None:
            await on_batch(batch)
        seen.extend(batch)
        if len(seen) >= count:
            enough.set()

    task = asyncio.create_task(bus.consume_events("traced", handler, stop, Consuming(fetch_timeout_s=0.2)))
    await asyncio.wait_for(enough.wait(), 10)
    stop.set()
    await asyncio.wait_for(task, 10)
    return seen


async def test_consumer_span_is_in_the_producers_trace(buses: tuple[Bus, Bus], captured: Captured) -> None:
    producer, consumer = buses
    await producer.emit(events_pb2.JobStarted(worker_id="w1", attempt=1), session_id="s1", job_id="j1")
    [delivery] = await consume_until(consumer, 1)
    assert "traceparent" in delivery.headers

    [published] = captured.named("publish JobStarted")
    [processed] = captured.named("process JobStarted")
    assert published.kind == SpanKind.PRODUCER and processed.kind == SpanKind.CONSUMER
    assert processed.context.trace_id == published.context.trace_id
    assert processed.parent is not None and processed.parent.span_id == published.context.span_id
    for span in (published, processed):
        assert span.attributes is not None
        assert span.attributes["sfvault.session_id"] == "s1"
        assert span.attributes["sfvault.job_id"] == "j1"
        assert span.attributes["messaging.system"] == "nats"


async def test_publishing_while_consuming_continues_each_sessions_trace(
    buses: tuple[Bus, Bus], captured: Captured
) -> None:
    """A batch mixing two sessions: what the handler publishes for a session joins that session's trace."""
    producer, consumer = buses
    for session in ("s1", "s2"):
        await producer.emit(
            events_pb2.JobFinished(outcome=events_pb2.JOB_OUTCOME_SUCCESS), session_id=session, job_id="j1"
        )

    async def announce(batch: list[Delivery]) -> None:
        for delivery in batch:
            await consumer.emit(events_pb2.SessionFinished(), session_id=delivery.envelope.session_id)

    await consume_until(consumer, 2, announce)

    traces = {}
    for span in captured.named("publish JobFinished"):
        assert span.attributes is not None
        traces[span.attributes["sfvault.session_id"]] = span.context.trace_id
    assert len(set(traces.values())) == 2  # two independent sessions, two traces
    finished = captured.named("publish SessionFinished")
    assert len(finished) == 2
    for span in finished:
        assert span.attributes is not None
        assert span.context.trace_id == traces[span.attributes["sfvault.session_id"]]
    consumed = {s.context.span_id for s in captured.named("process JobFinished")}
    assert all(s.parent is not None and s.parent.span_id in consumed for s in finished)


async def test_jobs_carry_the_trace_context(buses: tuple[Bus, Bus], captured: Captured) -> None:
    from sfvault.jobs.v1 import jobs_pb2

    producer, consumer = buses
    spec = jobs_pb2.JobSpec(session_id="s1", job_id="j1", type=events_pb2.JOB_TYPE_DATA, object_name="Account")
    await producer.enqueue_job(spec)
    sub = await consumer.pull_subscription(consumer.config.jobs_stream, "jobrunner", consumer.config.jobs_subject())
    [msg] = await sub.fetch(1, timeout=5)
    await msg.ack()
    [published] = captured.named("publish JobSpec")
    assert msg.headers is not None
    assert f"{published.context.trace_id:032x}" in msg.headers["traceparent"]
