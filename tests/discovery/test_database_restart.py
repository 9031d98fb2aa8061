"""Discovery through a PostgreSQL outage (a server of the test's own, stopped as a crash would and started
again): health turns NOT_SERVING and back, the API answers UNAVAILABLE meanwhile and without an error at
once after, and the scheduler's loop goes on and starts the run that fell due during the outage."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2
from sfvault.discovery.v1 import discovery_pb2 as api
from sfvault.discovery.v1 import discovery_pb2_grpc

from services.discovery import domain as d
from services.discovery import service
from services.discovery.application import Scheduler
from services.discovery.store import DiscoveryStore, ScheduleRuns
from services.platform.auth import aio_channel
from services.platform.db import open_pool
from tests.auth import token
from tests.discovery.conftest import discovery_settings
from tests.session.conftest import OwnPostgres, health_becomes

pytestmark = pytest.mark.integration


@pytest.fixture
def pg() -> Iterator[OwnPostgres]:
    server = OwnPostgres()
    try:
        yield server
    finally:
        server.close()


CONNECTION = api.OrgConnection(
    login_url="https://login.example.com",
    auth_flow=api.AUTH_FLOW_CLIENT_CREDENTIALS,
    client_id="id",
    client_secret_ref="env:SFVAULT_SECRET_EXAMPLE",
)


@contextlib.asynccontextmanager
async def discovery(pg: OwnPostgres, nats_url: str, namespace: str, storage_addr: str) -> AsyncIterator[int]:
    settings = discovery_settings(
        pg.url,
        nats_url,
        namespace,
        storage_addr=storage_addr,
        health_check_interval_s=0.2,
        scheduler_interval_s=0,
    )
    stop = asyncio.Event()
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        service.serve(settings, stop, on_ready=lambda server, _planner: ready.set_result(server.port))
    )
    started: set[asyncio.Future[Any]] = {task, ready}
    done, _ = await asyncio.wait(started, return_when=asyncio.FIRST_COMPLETED, timeout=30)
    if task in done:
        task.result()
    try:
        yield ready.result()
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def test_discovery_outlives_a_database_outage(
    pg: OwnPostgres, nats_url: str, bus_namespace: str, storage_addr: str
) -> None:
    async with discovery(pg, nats_url, bus_namespace, storage_addr) as port:
        async with aio_channel(f"127.0.0.1:{port}", token("admin")) as channel:
            stub = discovery_pb2_grpc.DiscoveryServiceStub(channel)
            await health_becomes(port, health_pb2.HealthCheckResponse.SERVING)
            await stub.CreateOrg(api.CreateOrgRequest(org_id="acme", name="Acme", connection=CONNECTION))
            policy = api.Policy(policy_id="nightly", org_id="acme", name="nightly")
            await stub.CreatePolicy(api.CreatePolicyRequest(policy=policy))
            await asyncio.gather(*(stub.ListPolicies(api.ListPoliciesRequest()) for _ in range(8)))

            pg.stop()
            await health_becomes(port, health_pb2.HealthCheckResponse.NOT_SERVING)
            with pytest.raises(grpc.aio.AioRpcError) as away:
                await stub.GetPolicy(api.GetPolicyRequest(policy_id="nightly"))
            assert away.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "database" in (away.value.details() or "")

            pg.start()
            await health_becomes(port, health_pb2.HealthCheckResponse.SERVING)
            assert (await stub.GetPolicy(api.GetPolicyRequest(policy_id="nightly"))).org_id == "acme"

            # a restart quicker than any health check: the first calls meet the cut connections, and pass
            pg.stop()
            pg.start()
            for _ in range(10):
                assert [p.policy_id for p in (await stub.ListPolicies(api.ListPoliciesRequest())).policies] == [
                    "nightly"
                ]


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.current = now

    def now(self) -> dt.datetime:
        return self.current


class Starter:
    def __init__(self) -> None:
        self.started: list[str] = []
        self.event = asyncio.Event()

    async def running_session(self, policy_id: str) -> str | None:
        return None

    async def start(self, policy: d.Policy, session_id: str) -> str:
        self.started.append(session_id)
        self.event.set()
        return session_id


class FailureSeen(DiscoveryStore):
    """The store, telling when one of the scheduler's reads has failed."""

    failed = asyncio.Event()

    async def list_policies(self, org_id: str = "") -> list[d.Policy]:
        try:
            return await super().list_policies(org_id)
        except Exception:
            self.failed.set()
            raise


async def test_the_scheduler_loop_outlives_a_database_outage(pg: OwnPostgres) -> None:
    pool = await open_pool(pg.url, timeout_s=1)
    try:
        store = FailureSeen(pool)
        store.failed = asyncio.Event()
        await store.setup()
        connection = d.Connection("https://login.example.com", d.AuthFlow.CLIENT_CREDENTIALS, "id", "env:X")
        await store.create_org(d.Org("acme", "Acme", connection))
        policy = await store.create_policy(d.Policy(policy_id="hourly", org_id="acme", schedule="hourly"))
        assert policy.created_at is not None
        clock, starter, stop = Clock(policy.created_at), Starter(), asyncio.Event()
        loop = asyncio.create_task(
            service._schedule_forever(Scheduler(store, ScheduleRuns(store), starter, clock), 0.05, stop)
        )
        try:
            pg.stop()
            clock.current = policy.created_at + dt.timedelta(hours=1, minutes=1)  # a run falls due meanwhile
            await asyncio.wait_for(store.failed.wait(), 30)
            assert not loop.done() and starter.started == []
            pg.start()
            await asyncio.wait_for(starter.event.wait(), 30)
            assert len(starter.started) == 1 and not loop.done()
        finally:
            stop.set()
            await asyncio.wait_for(loop, 30)
    finally:
        await pool.close()
