"""A discovery service running in-process against real PostgreSQL and NATS, a stand-in storage health
server, and helpers that publish SessionRequested and collect what discovery published."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from nats.errors import TimeoutError as NatsTimeoutError
from sfvault.discovery.v1 import discovery_pb2 as api
from sfvault.discovery.v1 import discovery_pb2_grpc
from sfvault.events.v1 import events_pb2 as ev
from sfvault.jobs.v1 import jobs_pb2

from services.discovery import service
from services.discovery.application import Planner
from services.discovery.config import DiscoverySettings
from services.platform import events
from services.platform.auth import aio_channel
from services.platform.bus import Bus, BusConfig
from sforg.testing import Admin, running_org
from tests.auth import AUTH_KEY, token

SECRET_ENV = "SFVAULT_SECRET_T_DISCOVERY_CLIENT"  # secrets come only from the SFVAULT_SECRET_ prefix


@pytest.fixture(scope="module")
def org(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with running_org(tmp_path_factory.mktemp("sforg-discovery"), scale="tiny", seed=7) as info:
        yield info


@pytest.fixture(scope="module")
def admin(org: dict[str, Any]) -> Admin:
    return Admin(org)


@pytest.fixture
def connection(org: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> api.OrgConnection:
    monkeypatch.setenv(SECRET_ENV, org["client_secret"])
    return api.OrgConnection(
        login_url=org["login_url"],
        auth_flow=api.AUTH_FLOW_CLIENT_CREDENTIALS,
        client_id=org["client_id"],
        client_secret_ref=f"env:{SECRET_ENV}",
        ca_bundle_ref=f"file:{org['ca_file']}",
        api_version=org["api_version"],
    )


@pytest.fixture
async def storage_addr() -> AsyncIterator[str]:
    """Storage as discovery sees it: a gRPC health service that says SERVING."""
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    yield f"127.0.0.1:{port}"
    await server.stop(0)


@dataclasses.dataclass
class Running:
    settings: DiscoverySettings
    planner: Planner
    stub: discovery_pb2_grpc.DiscoveryServiceStub
    bus: Bus
    port: int

    async def request(self, session_id: str, policy_id: str, org_id: str = "", *id_parts: object) -> None:
        req = ev.SessionRequested(policy_id=policy_id, org_id=org_id, trigger="test", requested_by="tests")
        await self.bus.emit(req, session_id=session_id, id_parts=id_parts)

    async def events(self, session_id: str) -> list[ev.Envelope]:
        """Every event of the session now in EVENTS, in stream order."""
        sub = await self.bus.js.subscribe(
            self.bus.config.events_subject(f"{session_id}.>"),
            ordered_consumer=True,
            stream=self.bus.config.events_stream,
        )
        out: list[ev.Envelope] = []
        try:
            info = await self.bus.js.stream_info(self.bus.config.events_stream)
            while True:
                try:
                    msg = await sub.next_msg(timeout=0.3)
                except (TimeoutError, NatsTimeoutError):
                    break
                out.append(events.decode(msg.data))
                if msg.metadata.sequence.stream >= info.state.last_seq:
                    break
        finally:
            await sub.unsubscribe()
        return out

    async def outcome(self, session_id: str, within: float = 60) -> list[ev.Envelope]:
        """Wait until discovery has decided the session (SessionFailed, or JobsPlanned and every job enqueued);
        returns the session's events up to then."""

        async def wait() -> list[ev.Envelope]:
            sub = await self.bus.js.subscribe(
                self.bus.config.events_subject(f"{session_id}.>"),
                ordered_consumer=True,
                stream=self.bus.config.events_stream,
            )
            out: list[ev.Envelope] = []
            try:
                async for msg in sub.messages:
                    env = events.decode(msg.data)
                    out.append(env)
                    if env.WhichOneof("payload") in ("jobs_planned", "session_failed"):
                        return out
            finally:
                await sub.unsubscribe()
            return out

        async def enqueued(expected: int) -> None:
            # JOBS is a work queue: it cannot be watched without taking the jobs, so poll it for the condition
            while len(await self.job_specs(session_id)) < expected:  # noqa: ASYNC110
                await asyncio.sleep(0.05)

        envs = await asyncio.wait_for(wait(), within)
        if envs and envs[-1].WhichOneof("payload") == "jobs_planned":
            await asyncio.wait_for(enqueued(len(envs[-1].jobs_planned.jobs)), within)
        return envs

    async def job_specs(self, session_id: str) -> list[jobs_pb2.JobSpec]:
        """The session's JobSpecs on JOBS, read without taking them."""
        stream = self.bus.config.jobs_stream
        info = await self.bus.js.stream_info(stream)
        specs = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            try:
                raw = await self.bus.js.get_msg(stream, seq)
            except Exception:
                continue
            spec = jobs_pb2.JobSpec.FromString(raw.data or b"")
            if spec.session_id == session_id:
                specs.append(spec)
        return specs

    async def finish(self, session_id: str, *, failing: tuple[str, ...] = ()) -> None:
        """Publish what jobrunners would when the session's data jobs end (the `failing` ones with errors),
        and wait until discovery has recorded every outcome."""
        jobs = [s.job_id for s in await self.job_specs(session_id) if s.type == ev.JOB_TYPE_DATA]
        for job_id in jobs:
            outcome = ev.JOB_OUTCOME_ERROR if job_id in failing else ev.JOB_OUTCOME_SUCCESS
            await self.bus.emit(ev.JobFinished(outcome=outcome), session_id=session_id, job_id=job_id)
        everything = ("JOB_OUTCOME_SUCCESS", "JOB_OUTCOME_ERROR")

        async def recorded() -> None:
            # the outcomes land in discovery's table, which has no change feed: poll it for the condition
            while len(await self.planner.store.completed_jobs(session_id, everything)) < len(jobs):  # noqa: ASYNC110
                await asyncio.sleep(0.05)

        await asyncio.wait_for(recorded(), 30)

    async def create_org(self, connection: api.OrgConnection, org_id: str = "org-1") -> api.Org:
        return await self.stub.CreateOrg(api.CreateOrgRequest(org_id=org_id, name="sforg", connection=connection))

    async def create_policy(self, policy_id: str, org_id: str = "org-1", **kw: Any) -> api.Policy:
        values: dict[str, Any] = {
            "auto_add_new_objects": True,
            "auto_add_new_fields": True,
            "files": True,
            "metadata": True,
        }
        values.update(kw)
        policy = api.Policy(policy_id=policy_id, org_id=org_id, name=policy_id, **values)
        return await self.stub.CreatePolicy(api.CreatePolicyRequest(policy=policy))


def discovery_settings(database_url: str, nats_url: str, namespace: str, **overrides: object) -> DiscoverySettings:
    values: dict[str, object] = {
        "database_url": database_url,
        "nats_url": nats_url,
        "bus_namespace": namespace,
        "discovery_port": 0,
        "auth_key": AUTH_KEY.decode(),
        "storage_check_timeout_s": 2.0,
    }
    values.update(overrides)
    return DiscoverySettings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def discovery_overrides() -> dict[str, object]:
    return {}


@pytest.fixture
async def running(
    database_url: str, nats_url: str, bus_namespace: str, storage_addr: str, discovery_overrides: dict[str, object]
) -> AsyncIterator[Running]:
    settings = discovery_settings(
        database_url, nats_url, bus_namespace, **{"storage_addr": storage_addr, **discovery_overrides}
    )
    stop = asyncio.Event()
    ready: asyncio.Future[tuple[int, Planner]] = asyncio.get_running_loop().create_future()

    def on_ready(server, planner):  # type: ignore[no-untyped-def]
        ready.set_result((server.port, planner))

    task = asyncio.create_task(service.serve(settings, stop, on_ready=on_ready))
    done, _ = await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED, timeout=30)
    if task in done:
        task.result()
    port, planner = ready.result()
    bus = await Bus.connect(BusConfig(url=nats_url, namespace=bus_namespace), producer="test")
    channel = aio_channel(f"127.0.0.1:{port}", token("admin"))
    try:
        yield Running(settings, planner, discovery_pb2_grpc.DiscoveryServiceStub(channel), bus, port)
    finally:
        await channel.close()
        await bus.close()
        stop.set()
        await asyncio.wait_for(task, 30)
