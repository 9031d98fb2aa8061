"""The session service through a PostgreSQL outage (its own server, stopped as a crash would and started
again): health turns NOT_SERVING and back, events published meanwhile are folded afterwards, the stall
enforcement goes on, and the API answers UNAVAILABLE while the database is away, then at once after."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2
from sfvault.events.v1 import events_pb2 as pb
from sfvault.session.v1 import session_pb2 as api
from sfvault.session.v1 import session_pb2_grpc

from services.platform.auth import aio_channel
from services.platform.bus import Bus, BusConfig
from tests.session.conftest import FakeClock, OwnPostgres, health_becomes, serving, session_settings, token

pytestmark = pytest.mark.integration


async def _until(stub: session_pb2_grpc.SessionServiceStub, session_id: str, done: Any, within: float = 30) -> Any:
    async def watch() -> Any:
        async for update in stub.WatchSession(api.WatchSessionRequest(session_id=session_id)):
            if done(update):
                return update
        raise AssertionError(f"session {session_id} ended without the condition")

    return await asyncio.wait_for(watch(), within)


@pytest.fixture
async def bus(nats_url: str, bus_namespace: str) -> AsyncIterator[Bus]:
    b = await Bus.connect(BusConfig(url=nats_url, namespace=bus_namespace), producer="test")
    yield b
    await b.close()


async def test_the_session_service_outlives_a_database_outage(
    own_postgres: OwnPostgres, nats_url: str, bus_namespace: str, bus: Bus
) -> None:
    settings = session_settings(own_postgres.url, nats_url, bus_namespace, health_check_interval_s=0.2)
    clock = FakeClock()
    stall = dt.timedelta(hours=1)
    async with serving(settings, clock) as (port, _app):
        async with aio_channel(f"127.0.0.1:{port}", token("operator")) as channel:
            stub = session_pb2_grpc.SessionServiceStub(channel)
            await health_becomes(port, health_pb2.HealthCheckResponse.SERVING)
            request = pb.SessionRequested(policy_id="p", org_id="o")
            request.stall_timeout.FromTimedelta(stall)
            await bus.emit(request, session_id="s1")
            await bus.emit(pb.SessionStarted(policy_id="p", org_id="o"), session_id="s1")
            jobs = [pb.PlannedJob(job_id=j, type=pb.JOB_TYPE_DATA) for j in ("a", "b")]
            await bus.emit(pb.JobsPlanned(jobs=jobs), session_id="s1")
            for job in ("a", "b"):
                await bus.emit(pb.JobStarted(worker_id="w"), session_id="s1", job_id=job)
            await _until(stub, "s1", lambda s: s.planned and s.status == pb.SESSION_STATUS_RUNNING)

            own_postgres.stop()
            # while it is away: events keep coming, enforcement rounds fail, the API says UNAVAILABLE
            for seq in (1, 2):
                counts = pb.Counts(received=10)
                await bus.emit(
                    pb.ChunkUploaded(chunk_seq=seq, counts=counts), session_id="s1", job_id="a", id_parts=(seq,)
                )
            await health_becomes(port, health_pb2.HealthCheckResponse.NOT_SERVING)
            with pytest.raises(grpc.aio.AioRpcError) as away:
                await stub.ListSessions(api.ListSessionsRequest())
            assert away.value.code() == grpc.StatusCode.UNAVAILABLE

            own_postgres.start()
            await health_becomes(port, health_pb2.HealthCheckResponse.SERVING)
            # every pooled connection was cut: the first calls after the restart must not fail for it
            for _ in range(10):
                assert (await stub.ListSessions(api.ListSessionsRequest())).sessions
            await bus.emit(pb.JobFinished(outcome=pb.JOB_OUTCOME_SUCCESS, chunks=2), session_id="s1", job_id="a")
            await _until(stub, "s1", lambda s: s.jobs_finished == 1 and s.totals.received == 20)
            # b uploads nothing for an hour (its events carry real times, a little past the clock's start)
            clock.advance(stall + dt.timedelta(minutes=5))
            final = await _until(stub, "s1", lambda s: s.status != pb.SESSION_STATUS_RUNNING)
            assert final.status == pb.SESSION_STATUS_WARNING
            started = await stub.StartSession(api.StartSessionRequest(policy_id="p", org_id="o"))
            assert (await stub.GetSession(api.GetSessionRequest(session_id=started.session_id))).policy_id == "p"


async def test_the_first_calls_after_a_quick_restart_find_live_connections(
    own_postgres: OwnPostgres, nats_url: str, bus_namespace: str
) -> None:
    # health and enforcement rarely run here, so nothing else meets the dead connections first
    settings = session_settings(
        own_postgres.url, nats_url, bus_namespace, health_check_interval_s=3600, stall_check_interval_s=3600
    )
    async with serving(settings, FakeClock()) as (port, _app):
        async with aio_channel(f"127.0.0.1:{port}", token("operator")) as channel:
            stub = session_pb2_grpc.SessionServiceStub(channel)
            # several connections in the pool, all cut by the restart
            await asyncio.gather(*(stub.ListSessions(api.ListSessionsRequest()) for _ in range(8)))
            own_postgres.stop()
            own_postgres.start()
            for _ in range(10):
                await stub.ListSessions(api.ListSessionsRequest())
            started = await stub.StartSession(api.StartSessionRequest(policy_id="p", org_id="o"))
            assert (await stub.GetSession(api.GetSessionRequest(session_id=started.session_id))).policy_id == "p"
