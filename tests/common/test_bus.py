"""The bus against a real nats-server: streams, de-duplication, ack after commit, dead-lettering."""

from __future__ import annotations

import asyncio

import pytest
from nats.js.api import RetentionPolicy
from sfvault.events.v1 import events_pb2
from sfvault.jobs.v1 import jobs_pb2

from services.common.bus import Bus, BusConfig, Delivery


@pytest.fixture
async def bus(nats_url: str, bus_namespace: str):
    config = BusConfig(url=nats_url, namespace=bus_namespace, max_deliver=2, backoff_s=(0.05,), ack_wait_s=5)
    b = await Bus.connect(config, producer="test")
    yield b
    await b.close()


async def test_streams_are_declared_idempotently(bus: Bus) -> None:
    await bus.ensure_streams()  # a second start changes nothing
    events_info = await bus.js.stream_info(bus.config.events_stream)
    jobs_info = await bus.js.stream_info(bus.config.jobs_stream)
    assert events_info.config.retention == RetentionPolicy.LIMITS
    assert jobs_info.config.retention == RetentionPolicy.WORK_QUEUE


async def test_republishing_the_same_fact_is_deduplicated(bus: Bus) -> None:
    payload = events_pb2.JobStarted(worker_id="w1", attempt=1)
    assert await bus.emit(payload, session_id="s1", job_id="j1")
    assert not await bus.emit(payload, session_id="s1", job_id="j1")
    info = await bus.js.stream_info(bus.config.events_stream)
    assert info.state.messages == 1


async def test_jobs_are_a_work_queue(bus: Bus) -> None:
    spec = jobs_pb2.JobSpec(session_id="s1", job_id="j1", type=events_pb2.JOB_TYPE_DATA, object_name="Account")
    assert await bus.enqueue_job(spec)
    assert not await bus.enqueue_job(spec)
    sub = await bus.pull_subscription(bus.config.jobs_stream, "jobrunner", bus.config.jobs_subject())
    [msg] = await sub.fetch(1, timeout=5)
    assert jobs_pb2.JobSpec.FromString(msg.data).object_name == "Account"
    await msg.ack_sync()
    info = await bus.js.stream_info(bus.config.jobs_stream)
    assert info.state.messages == 0


async def test_consumer_acks_good_events_and_dead_letters_poison_and_malformed(bus: Bus) -> None:
    for i in range(5):
        await bus.emit(events_pb2.ChunkUploaded(chunk_seq=i + 1), session_id="s1", job_id="j1", id_parts=(i + 1,))
    await bus.js.publish(bus.config.events_subject("s1.Garbage"), b"\xff\x00not protobuf")

    seen: list[int] = []
    done = asyncio.Event()
    stop = asyncio.Event()

    async def handler(batch: list[Delivery]) -> None:
        for d in batch:
            seq = d.envelope.chunk_uploaded.chunk_seq
            if seq == 3:
                raise RuntimeError("poison")
        seen.extend(d.envelope.chunk_uploaded.chunk_seq for d in batch)
        if len(set(seen)) == 4:
            done.set()

    task = asyncio.create_task(bus.consume_events("test-consumer", handler, stop, batch_size=10, fetch_timeout_s=0.2))
    await asyncio.wait_for(done.wait(), 20)

    dlq = await bus.pull_subscription(bus.config.deadletter_stream, "dlq-reader", bus.config.deadletter_subject(">"))

    reasons: list[str] = []
    while len(reasons) < 2:
        for msg in await dlq.fetch(2, timeout=10):
            reasons.append(msg.headers["Sfvault-Reason"])
            await msg.ack()
    stop.set()
    await asyncio.wait_for(task, 10)
    assert sorted(set(seen)) == [1, 2, 4, 5]
    assert any(r.startswith("malformed") for r in reasons)
    assert any("poison" in r for r in reasons)
