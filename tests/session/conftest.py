"""A session service running in-process against real PostgreSQL and NATS, with an injected clock, and
helpers that publish the events other services would."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sfvault.events.v1 import events_pb2 as pb
from sfvault.session.v1 import session_pb2 as api
from sfvault.session.v1 import session_pb2_grpc

from services.platform.auth import aio_channel, mint
from services.platform.bus import Bus, BusConfig
from services.session import service
from services.session.application import SessionService
from services.session.config import SessionSettings
from tests.session.fakes import FakeClock

AUTH_KEY = b"test-signing-key"


def token(role: str = "admin", name: str = "tester") -> str:
    return mint(AUTH_KEY, name, role)


@dataclasses.dataclass
class Running:
    settings: SessionSettings
    clock: FakeClock
    app: SessionService
    stub: session_pb2_grpc.SessionServiceStub
    bus: Bus
    port: int

    async def publish(self, payload: object, session_id: str, job_id: str = "", *id_parts: object) -> None:
        await self.bus.emit(payload, session_id=session_id, job_id=job_id, id_parts=id_parts)

    async def final(self, session_id: str, within: float = 30) -> api.Session:
        """Watch the session until its final status (no polling, no sleeping)."""

        async def watch() -> api.Session:
            last = None
            async for update in self.stub.WatchSession(api.WatchSessionRequest(session_id=session_id)):
                last = update
            assert last is not None
            return last

        return await asyncio.wait_for(watch(), within)

    async def run_session(
        self, session_id: str, outcomes: dict[str, int], *, chunks: int = 2, stall: dt.timedelta | None = None
    ) -> None:
        """Publish what discovery, jobrunners and storage would for a session whose jobs end so."""
        req = pb.SessionRequested(policy_id="policy-1", org_id="org-1", trigger="test")
        if stall is not None:
            req.stall_timeout.FromTimedelta(stall)
        await self.publish(req, session_id)
        await self.publish(pb.SessionStarted(policy_id="policy-1", org_id="org-1", initial=True), session_id)
        await self.publish(
            pb.JobsPlanned(jobs=[pb.PlannedJob(job_id=j, type=pb.JOB_TYPE_DATA, object_name=j) for j in outcomes]),
            session_id,
        )
        for job_id, outcome in outcomes.items():
            await self.publish(pb.JobStarted(worker_id="w1", attempt=1, type=pb.JOB_TYPE_DATA), session_id, job_id)
            for seq in range(1, chunks + 1):
                counts = pb.Counts(received=100, new_versions=60, unchanged=40, bytes=1000)
                await self.publish(pb.ChunkUploaded(chunk_seq=seq, counts=counts), session_id, job_id, seq)
            if outcome:
                total = pb.Counts(received=100 * chunks, new_versions=60 * chunks, unchanged=40 * chunks, api_calls=3)
                await self.publish(
                    pb.JobFinished(outcome=outcome, message="", counts=total, chunks=chunks), session_id, job_id
                )


def session_settings(database_url: str, nats_url: str, namespace: str, **overrides: object) -> SessionSettings:
    values: dict[str, object] = {
        "database_url": database_url,
        "nats_url": nats_url,
        "bus_namespace": namespace,
        "session_port": 0,
        "auth_key": AUTH_KEY.decode(),
        "stall_check_interval_s": 0.05,
    }
    values.update(overrides)
    return SessionSettings(**values)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def serving(settings: SessionSettings, clock: FakeClock) -> AsyncIterator[tuple[int, SessionService]]:
    """The session service in-process until the block ends: its port and its application."""
    stop = asyncio.Event()
    ready: asyncio.Future[tuple[int, SessionService]] = asyncio.get_running_loop().create_future()

    def on_ready(server, app):  # type: ignore[no-untyped-def]
        ready.set_result((server.port, app))

    task = asyncio.create_task(service.serve(settings, stop, clock=clock, on_ready=on_ready))
    started: set[asyncio.Future[Any]] = {task, ready}
    done, _ = await asyncio.wait(started, return_when=asyncio.FIRST_COMPLETED, timeout=30)
    if task in done:
        task.result()
    try:
        yield ready.result()
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


@pytest.fixture
async def running(database_url: str, nats_url: str, bus_namespace: str) -> AsyncIterator[Running]:
    settings = session_settings(database_url, nats_url, bus_namespace)
    clock = FakeClock()
    async with serving(settings, clock) as (port, app):
        bus = await Bus.connect(BusConfig(url=nats_url, namespace=bus_namespace), producer="test")
        channel = aio_channel(f"127.0.0.1:{port}", token("operator", "alice"))
        try:
            yield Running(settings, clock, app, session_pb2_grpc.SessionServiceStub(channel), bus, port)
        finally:
            await channel.close()
            await bus.close()


class OwnPostgres:
    """A PostgreSQL server of this test alone, so it can be stopped and started."""

    def __init__(self) -> None:
        if not os.environ.get("XDG_RUNTIME_DIR"):
            os.environ["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="sfvault-run-")
        import pgserver

        self.server: Any = pgserver.get_server(tempfile.mkdtemp(prefix="sfvault-pg-"), cleanup_mode="delete")
        self.url: str = self.server.get_uri()
        self.socket_dir = psycopg.conninfo.conninfo_to_dict(self.url)["host"]

    def _pg_ctl(self, *args: str) -> None:
        from pgserver._commands import POSTGRES_BIN_PATH  # type: ignore[attr-defined]

        command = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.server.pgdata), "-w", *args]
        if self.server.system_user:  # root runs PostgreSQL as another user; runuser, not a fork that switches
            command = ["runuser", "-u", self.server.system_user, "--", *command]  # users (gRPC's fork handlers)
        subprocess.run(command, check=True, timeout=60, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        """As a crash would: every connection cut, no checkpoint."""
        self._pg_ctl("-m", "immediate", "stop")

    def start(self) -> None:
        """On the same data directory and socket (the same URL), with the options it was started with."""
        self._pg_ctl("-l", str(self.server.log), "-o", f"-h '' -k {self.socket_dir}", "start")

    def close(self) -> None:
        if (self.server.pgdata / "postmaster.pid").exists():
            self.server.cleanup()  # stops it and removes its directory
        else:  # left stopped by a failed test: nothing to stop (and no stale pid to signal)
            shutil.rmtree(self.server.pgdata, ignore_errors=True)


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    pg = OwnPostgres()
    try:
        yield pg
    finally:
        pg.close()


async def health_becomes(port: int, wanted: int, within: float = 60) -> None:
    """Wait for a server's health to become `wanted` (its Watch stream: no polling)."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)

        async def watch() -> None:
            async for update in stub.Watch(health_pb2.HealthCheckRequest(service="")):
                if update.status == wanted:
                    return

        await asyncio.wait_for(watch(), within)
