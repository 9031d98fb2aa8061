"""Fold 1,000,000 events through NATS JetStream into the session projection and print events/s.

Target: >= 5,000 events/s on a 2-core machine. Real NATS and PostgreSQL are started unless
SFVAULT_NATS_URL / SFVAULT_DATABASE_URL are set. BENCH_SESSION_EVENTS changes the volume.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import time

from sfvault.events.v1 import events_pb2 as pb

from devstack.embedded import nats_server, postgres_server
from services.platform import events
from services.platform.bus import Bus, BusConfig
from services.session import service
from services.session.config import SessionSettings

JOBS_PER_SESSION = 10
CHUNKS_PER_JOB = 97


def session_events(sid: str) -> list[pb.Envelope]:
    out: list[pb.Envelope] = []

    def add(payload: object, job: str = "", *parts: object) -> None:
        out.append(events.envelope(payload, session_id=sid, job_id=job, producer="bench", id_parts=parts))

    jobs = [f"j{i}" for i in range(JOBS_PER_SESSION)]
    add(pb.SessionRequested(policy_id="p", org_id="o"))
    add(pb.SessionStarted(policy_id="p", org_id="o", initial=True))
    add(pb.JobsPlanned(jobs=[pb.PlannedJob(job_id=j, type=pb.JOB_TYPE_DATA, object_name=j) for j in jobs]))
    for j in jobs:
        add(pb.JobStarted(worker_id="w", attempt=1), j)
    counts = pb.Counts(received=10_000, new_versions=100, changed=50, unchanged=9_850, bytes=1_000_000)
    for seq in range(1, CHUNKS_PER_JOB + 1):
        for j in jobs:
            add(pb.ChunkUploaded(chunk_seq=seq, counts=counts), j, seq)
    for j in jobs:
        add(pb.JobFinished(outcome=pb.JOB_OUTCOME_SUCCESS, chunks=CHUNKS_PER_JOB), j)
    return out


async def publish_all(bus: Bus, total: int) -> int:
    sent = 0
    n = 0
    while sent < total:
        for env in session_events(f"bench{n}"):
            await bus.js.publish_async(
                events.subject(env, bus.config.namespace),
                env.SerializeToString(),
                headers={"Nats-Msg-Id": env.event_id},
                wait_stall=5.0,
            )
            sent += 1
        n += 1
    await bus.js.publish_async_completed()
    return sent


async def bench(database_url: str, nats_url: str, total: int) -> None:
    config = BusConfig(url=nats_url, duplicate_window_s=600)
    bus = await Bus.connect(config, producer="bench")
    t0 = time.perf_counter()
    sent = await publish_all(bus, total)
    publish_s = time.perf_counter() - t0
    print(f"published {sent:,} events in {publish_s:.1f} s ({sent / publish_s:,.0f} events/s)", flush=True)

    settings = SessionSettings(
        database_url=database_url,
        nats_url=nats_url,
        session_port=0,
        stall_check_interval_s=3600,
        session_batch_size=1000,
        auth_disabled=True,
    )  # type: ignore[call-arg]
    stop = asyncio.Event()
    t1 = time.perf_counter()
    task = asyncio.create_task(service.serve(settings, stop))
    last = (await bus.js.stream_info(config.events_stream)).state.last_seq
    while True:
        with contextlib.suppress(Exception):
            info = await bus.js.consumer_info(config.events_stream, service.CONSUMER)
            if info.delivered.stream_seq >= last and info.num_ack_pending == 0:
                break
        if task.done():
            task.result()
        await asyncio.sleep(0.2)  # a benchmark's progress probe
    fold_s = time.perf_counter() - t1
    stop.set()
    await task
    await bus.close()
    rate = sent / fold_s
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"folded {sent:,} events into the projection in {fold_s:.1f} s: {rate:,.0f} events/s "
        f"(target >= 5,000: {'MET' if rate >= 5000 else 'MISSED'}); bench process peak RSS {rss_mb:,.0f} MB"
    )


def run() -> None:
    total = int(os.environ.get("BENCH_SESSION_EVENTS", "1000000"))
    with contextlib.ExitStack() as stack:
        db = os.environ.get("SFVAULT_DATABASE_URL") or stack.enter_context(postgres_server())
        nats_url = os.environ.get("SFVAULT_NATS_URL") or stack.enter_context(nats_server())
        asyncio.run(bench(db, nats_url, total))


if __name__ == "__main__":
    run()
