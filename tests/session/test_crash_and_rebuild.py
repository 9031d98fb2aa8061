"""The session service as a real process: killed with SIGKILL mid-session and restarted it reaches the same
state; `python -m services.session rebuild` replays EVENTS into a projection equal to the live one."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator

import pytest
from sfvault.events.v1 import events_pb2 as pb
from sfvault.session.v1 import session_pb2 as api
from sfvault.session.v1 import session_pb2_grpc

from devstack.embedded import free_port
from services.platform.auth import aio_channel
from services.platform.bus import Bus, BusConfig
from services.platform.db import open_pool
from services.session.store import Projection
from tests.health import await_serving
from tests.session.conftest import AUTH_KEY, token

pytestmark = pytest.mark.e2e


class ServiceProcess:
    def __init__(self, env: dict[str, str], port: int) -> None:
        self.env = env
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "services.session"], env=self.env)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)

    async def serving(self, within: float = 30) -> None:
        """SERVING on the health Watch stream (no polling)."""
        await await_serving(self.port, within)


@pytest.fixture
def service_env(database_url: str, nats_url: str, bus_namespace: str) -> Iterator[tuple[dict[str, str], int]]:
    port = free_port()
    env = dict(os.environ)
    env.update(
        SFVAULT_DATABASE_URL=database_url,
        SFVAULT_NATS_URL=nats_url,
        SFVAULT_BUS_NAMESPACE=bus_namespace,
        SFVAULT_SESSION_PORT=str(port),
        SFVAULT_STALL_CHECK_INTERVAL_S="3600",
        SFVAULT_SESSION_BATCH_SIZE="50",
        SFVAULT_AUTH_KEY=AUTH_KEY.decode(),
    )
    yield env, port


@pytest.fixture
async def bus(nats_url: str, bus_namespace: str) -> AsyncIterator[Bus]:
    b = await Bus.connect(BusConfig(url=nats_url, namespace=bus_namespace), producer="test")
    yield b
    await b.close()


async def _watch_until(port: int, session_id: str, predicate, within: float = 60) -> api.Session:  # type: ignore[no-untyped-def]
    async with aio_channel(f"127.0.0.1:{port}", token("viewer")) as channel:
        stub = session_pb2_grpc.SessionServiceStub(channel)

        async def watch() -> api.Session:
            async for update in stub.WatchSession(api.WatchSessionRequest(session_id=session_id)):
                if predicate(update):
                    return update
            raise AssertionError("session ended without meeting the condition")

        return await asyncio.wait_for(watch(), within)


CHUNKS = 400


async def _publish_plan(bus: Bus, sid: str, jobs: list[str]) -> None:
    await bus.emit(pb.SessionRequested(policy_id="p", org_id="o"), session_id=sid)
    await bus.emit(pb.SessionStarted(policy_id="p", org_id="o", initial=True), session_id=sid)
    plan = [pb.PlannedJob(job_id=j, type=pb.JOB_TYPE_DATA, object_name=j) for j in jobs]
    await bus.emit(pb.JobsPlanned(jobs=plan), session_id=sid)
    for j in jobs:
        await bus.emit(pb.JobStarted(worker_id="w", attempt=1), session_id=sid, job_id=j)


async def _publish_chunks(bus: Bus, sid: str, job: str, seqs: range) -> None:
    for seq in seqs:
        counts = pb.Counts(received=10, new_versions=3, changed=2, unchanged=5, bytes=100)
        await bus.emit(pb.ChunkUploaded(chunk_seq=seq, counts=counts), session_id=sid, job_id=job, id_parts=(seq,))


async def test_sigkill_mid_session_then_restart_reaches_the_same_state_and_rebuild_equals_live(
    service_env: tuple[dict[str, str], int], bus: Bus, database_url: str
) -> None:
    env, port = service_env
    svc = ServiceProcess(env, port)
    svc.start()
    try:
        await svc.serving()
        await _publish_plan(bus, "s1", ["a", "b", "c"])
        await _publish_chunks(bus, "s1", "a", range(1, CHUNKS + 1))
        await _publish_chunks(bus, "s1", "b", range(1, CHUNKS + 1))
        # kill it while it is folding the uploads
        await _watch_until(port, "s1", lambda s: s.totals.received >= 1000)
        svc.kill9()

        # the rest of the session happens while the service is down
        await _publish_chunks(bus, "s1", "c", range(1, CHUNKS + 1))
        await _publish_chunks(bus, "s1", "a", range(1, 50))  # redelivered uploads of a
        await bus.emit(pb.JobFinished(outcome=pb.JOB_OUTCOME_SUCCESS, chunks=CHUNKS), session_id="s1", job_id="a")
        await bus.emit(
            pb.JobFinished(outcome=pb.JOB_OUTCOME_ERROR, message="boom", chunks=CHUNKS), session_id="s1", job_id="b"
        )
        await bus.emit(pb.JobFinished(outcome=pb.JOB_OUTCOME_WARNING, chunks=CHUNKS), session_id="s1", job_id="c")

        svc.start()
        await svc.serving()
        final = await _watch_until(port, "s1", lambda s: s.status not in (1, 2))
        assert final.status == pb.SESSION_STATUS_WARNING
        assert final.totals.received == 3 * CHUNKS * 10  # every chunk counted once: none lost, none twice
        assert final.totals.new_versions == 3 * CHUNKS * 3
        assert final.jobs_with_errors == 1

        # ... and folded back (the fold marks it seen)
        async def seen() -> None:
            pool = await open_pool(database_url)
            try:
                while True:
                    async with pool.connection() as conn:
                        row = await (
                            await conn.execute("SELECT finished_event_seen FROM session.sessions WHERE session_id='s1'")
                        ).fetchone()
                    if row and row[0]:
                        return
                    await asyncio.sleep(0.05)  # the projection has no notification channel to await
            finally:
                await pool.close()

        await asyncio.wait_for(seen(), 30)
        # the announcement was published exactly once
        subject = bus.config.events_subject("s1.SessionFinished")
        info = await bus.js.stream_info(bus.config.events_stream, subjects_filter=subject)
        assert (info.state.subjects or {}).get(subject) == 1

        assert svc.stop() == 0
    finally:
        with contextlib.suppress(Exception):
            if svc.proc and svc.proc.poll() is None:
                svc.kill9()

    rebuild = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.session",
        "rebuild",
        "--schema",
        "session_rebuild",
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(rebuild.communicate(), 120)
    assert rebuild.returncode == 0, stderr.decode()
    pool = await open_pool(database_url)
    try:
        live = await Projection(pool, "session").snapshot()
        rebuilt = await Projection(pool, "session_rebuild").snapshot()
    finally:
        await pool.close()
    assert rebuilt["sessions"]
    for key in ("sessions", "jobs"):
        for new, old in zip(rebuilt[key], live[key], strict=True):
            differing = sorted(k for k in new if new[k] != old[k])
            assert differing == [], f"{key} differ in {differing}"
    assert rebuilt == live


def test_missing_configuration_stops_start_up_naming_the_variable() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFVAULT_")}
    result = subprocess.run(
        [sys.executable, "-m", "services.session"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "SFVAULT_DATABASE_URL" in result.stderr and "SFVAULT_NATS_URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_refuses_to_start_without_an_auth_key(database_url: str, nats_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFVAULT_")}
    env.update(SFVAULT_DATABASE_URL=database_url, SFVAULT_NATS_URL=nats_url, SFVAULT_SESSION_PORT=str(free_port()))
    result = subprocess.run(
        [sys.executable, "-m", "services.session"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "SFVAULT_AUTH_KEY" in result.stderr and "Traceback" not in result.stderr
