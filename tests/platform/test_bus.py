"""The bus against a real nats-server: streams, de-duplication, ack after commit, dead-lettering, and consumers
that outlive NATS and PostgreSQL restarts."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from nats.js.api import RetentionPolicy
from sfvault.events.v1 import events_pb2
from sfvault.jobs.v1 import jobs_pb2

from devstack.embedded import nats_process
from services.platform.bus import Bus, BusConfig, Delivery, TransientError, ensure_stream, is_transient, kept_stream
from services.platform.ports import Consuming


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


async def test_a_stream_standing_with_another_configuration_is_updated(bus: Bus) -> None:
    name = f"{bus.config.namespace.upper()}KEPT"
    await ensure_stream(bus.js, kept_stream(name, f"{bus.config.namespace}kept.>", 1, 3600.0))
    await ensure_stream(bus.js, kept_stream(name, f"{bus.config.namespace}kept.>", 1, 7200.0))
    info = await bus.js.stream_info(name)
    assert (info.config.max_age, info.config.retention) == (7200.0, RetentionPolicy.LIMITS)
    await bus.js.delete_stream(name)


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

    task = asyncio.create_task(
        bus.consume_events("test-consumer", handler, stop, Consuming(batch_size=10, fetch_timeout_s=0.2))
    )
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


# --- outages: a consumer outlives NATS and PostgreSQL restarts ---------------------------------------------


@pytest.fixture
def restartable_nats(tmp_path):
    with nats_process(str(tmp_path / "nats")) as server:
        yield server


async def _emit_chunks(bus: Bus, seqs: range) -> None:
    for i in seqs:
        await bus.emit(events_pb2.ChunkUploaded(chunk_seq=i), session_id="s1", job_id="j1", id_parts=(i,))


async def _consume_until(bus: Bus, expected: set[int], before_done) -> set[int]:
    """Consume EVENTS; `before_done(seen)` runs once the first half is seen (the outage happens there)."""
    seen: set[int] = set()
    half = asyncio.Event()
    done = asyncio.Event()
    stop = asyncio.Event()

    async def handler(batch: list[Delivery]) -> None:
        seen.update(d.envelope.chunk_uploaded.chunk_seq for d in batch)
        if len(seen) >= len(expected) // 2:
            half.set()
        if seen >= expected:
            done.set()

    task = asyncio.create_task(
        bus.consume_events("outage", handler, stop, Consuming(batch_size=10, fetch_timeout_s=0.2))
    )
    await asyncio.wait_for(half.wait(), 20)
    await before_done(seen)
    await asyncio.wait_for(done.wait(), 60)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert not task.exception()
    return seen


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
async def test_a_consumer_survives_a_nats_restart_and_takes_what_was_published_after_it(restartable_nats, kill):
    config = BusConfig(url=restartable_nats.url, ack_wait_s=5)
    bus = await Bus.connect(config, producer="test")
    try:
        await _emit_chunks(bus, range(1, 11))

        async def restart(_seen: set[int]) -> None:
            await asyncio.to_thread(restartable_nats.restart, kill=kill)
            await _emit_chunks(bus, range(11, 21))  # published once the server is back

        seen = await _consume_until(bus, set(range(1, 21)), restart)
        assert seen == set(range(1, 21))
    finally:
        await bus.close()


async def test_a_consumer_survives_a_server_that_came_back_without_its_store(tmp_path):
    """The consumer (and the streams) are gone after the restart: both are declared again."""
    with nats_process(str(tmp_path / "a")) as server:
        bus = await Bus.connect(BusConfig(url=server.url, ack_wait_s=5), producer="test")
        try:
            await _emit_chunks(bus, range(1, 11))

            async def come_back_empty(_seen: set[int]) -> None:
                server.stop(kill=True)
                server.store_dir = str(tmp_path / "b")  # a memory store would lose it all the same way
                await asyncio.to_thread(server.start)
                await _emit_chunks(bus, range(11, 21))

            seen = await _consume_until(bus, set(range(1, 21)), come_back_empty)
            assert seen >= set(range(11, 21))
        finally:
            await bus.close()


async def test_a_pull_consumer_fetch_rides_out_a_restart(restartable_nats):
    """The jobs work-queue consumer's loop (fetch, handle): fetch returns nothing while NATS is away."""
    bus = await Bus.connect(BusConfig(url=restartable_nats.url), producer="test")
    try:
        sub = await bus.pull_subscription(bus.config.jobs_stream, "jobrunner", bus.config.jobs_subject())
        await asyncio.to_thread(restartable_nats.restart, kill=True)
        spec = jobs_pb2.JobSpec(session_id="s1", job_id="j1", type=events_pb2.JOB_TYPE_DATA, object_name="Account")
        await bus.enqueue_job(spec)
        msgs: list = []
        while not msgs:
            msgs = await sub.fetch(1, timeout=0.5)
        assert jobs_pb2.JobSpec.FromString(msgs[0].data).job_id == "j1"
    finally:
        await bus.close()


async def test_a_database_outage_longer_than_max_deliver_is_waited_out_not_dead_lettered(bus: Bus) -> None:
    await _emit_chunks(bus, range(1, 4))
    failures = 0
    done = asyncio.Event()
    stop = asyncio.Event()

    async def handler(batch: list[Delivery]) -> None:
        nonlocal failures
        if failures < 3 * bus.config.max_deliver:  # far more attempts than a poison message gets
            failures += 1
            raise psycopg.OperationalError("the database system is shutting down")
        done.set()

    task = asyncio.create_task(
        bus.consume_events("db-outage", handler, stop, Consuming(batch_size=10, fetch_timeout_s=0.2))
    )
    await asyncio.wait_for(done.wait(), 60)
    stop.set()
    await asyncio.wait_for(task, 10)
    info = await bus.js.stream_info(bus.config.deadletter_stream)
    assert info.state.messages == 0


def test_transient_errors_are_told_from_the_message_s() -> None:
    from nats.errors import BadSubjectError, ConnectionClosedError, NoServersError
    from nats.js.errors import APIError, BadRequestError, ServiceUnavailableError

    for exc in (
        ServiceUnavailableError(),
        NoServersError(),
        ConnectionClosedError(),
        APIError(code=503),
        APIError(code=404, err_code=10014),
        psycopg.OperationalError("x"),
        TransientError("x"),
    ):
        assert is_transient(exc), exc
    for exc in (RuntimeError("poison"), ValueError(), BadSubjectError(), BadRequestError(code=400)):
        assert not is_transient(exc), exc


async def test_a_dead_letter_nats_cannot_take_yet_is_retried_and_the_consumer_goes_on(bus: Bus) -> None:
    from nats.errors import NoRespondersError

    original = bus.dead_letter
    refused: list[str] = []

    async def refused_once(consumer: str, msg, reason: str) -> None:
        if not refused:
            refused.append(reason)
            raise NoRespondersError  # NATS restarting: the dead-letter stream does not answer
        await original(consumer, msg, reason)

    bus.dead_letter = refused_once  # type: ignore[method-assign]
    await bus.js.publish(bus.config.events_subject("s1.Garbage"), b"\xff\x00not protobuf")
    await _emit_chunks(bus, range(1, 2))
    seen = asyncio.Event()
    stop = asyncio.Event()

    async def handler(batch: list[Delivery]) -> None:
        seen.set()

    task = asyncio.create_task(
        bus.consume_events("dlq-outage", handler, stop, Consuming(batch_size=10, fetch_timeout_s=0.2))
    )
    await asyncio.wait_for(seen.wait(), 20)
    dlq = await bus.pull_subscription(bus.config.deadletter_stream, "dlq-reader", bus.config.deadletter_subject(">"))
    msgs: list = []
    while not msgs:  # the message came back and was dead-lettered on its second delivery
        msgs = await dlq.fetch(1, timeout=5)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert refused and msgs[0].headers["Sfvault-Reason"].startswith("malformed")


async def test_a_service_starting_while_nats_is_away_waits_for_it(tmp_path, caplog) -> None:
    from devstack.embedded import NatsServer, free_port

    server = NatsServer(str(tmp_path / "nats"), free_port())  # not started yet
    connecting = asyncio.create_task(Bus.connect(BusConfig(url=server.url), producer="test"))
    while not any(r.name == "services.platform.bus" for r in caplog.records):  # a first attempt was refused
        assert not connecting.done(), connecting
        await asyncio.sleep(0.05)  # waiting for the first refused attempt: a log record, no event
    await asyncio.to_thread(server.start)
    try:
        bus = await asyncio.wait_for(connecting, 30)
        assert await bus.emit(events_pb2.ChunkUploaded(chunk_seq=1), session_id="s1", job_id="j1", id_parts=(1,))
        await bus.close()
    finally:
        server.stop()
