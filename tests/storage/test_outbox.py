"""Storage as a real process, killed with SIGKILL exactly between a chunk's commit and its ChunkUploaded (the
failpoint `storage.chunk_committed`): started again, it announces that chunk from its outbox, and every
chunk's event is on the stream exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import psycopg
import pytest
from sfvault.events.v1 import events_pb2
from sfvault.restore.v1 import restore_pb2 as rpb
from sfvault.storage.v1 import storage_pb2 as pb
from sfvault.storage.v1 import storage_pb2_grpc

from devstack.embedded import free_port
from services.platform import events
from services.platform.auth import aio_channel
from services.platform.bus import Bus, BusConfig
from tests.auth import AUTH_KEY, token
from tests.health import await_serving
from tests.storage.conftest import DATA, ORG, account, sf_id
from tests.storage.test_api import SCHEMA, chunk

pytestmark = pytest.mark.e2e


class StorageProcess:
    def __init__(self, env: dict[str, str], port: int) -> None:
        self.env, self.port = env, port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "services.storage"], env=self.env)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)

    async def serving(self, within: float = 60) -> None:
        """SERVING on the health Watch stream (no polling)."""
        await await_serving(self.port, within)


@pytest.fixture
def storage_process(database_url: str, nats_url: str, bus_namespace: str, tmp_path: Path) -> Iterator[StorageProcess]:
    port = free_port()
    env = {
        **os.environ,
        "SFVAULT_DATABASE_URL": database_url,
        "SFVAULT_NATS_URL": nats_url,
        "SFVAULT_BUS_NAMESPACE": bus_namespace,
        "SFVAULT_STORAGE_PORT": str(port),
        "SFVAULT_FILE_REPOSITORY": f"file://{tmp_path / 'files'}",
        "SFVAULT_AUTH_KEY": AUTH_KEY.decode(),
        "SFVAULT_FAILPOINTS": "storage.chunk_committed",
        "SFVAULT_FAILPOINT_DIR": str(tmp_path),
    }
    process = StorageProcess(env, port)
    yield process
    process.stop()


def _chunk(seq: int) -> pb.PutRecordsRequest:
    return pb.PutRecordsRequest(
        org_id=ORG, session_id="s1", job_id="j1", chunk_seq=seq, object_name="Account", **chunk([account(seq)])
    )


async def test_killed_between_commit_and_publish_the_chunk_is_announced_once_after_restart(
    storage_process: StorageProcess, database_url: str, nats_url: str, bus_namespace: str, tmp_path: Path
) -> None:
    storage_process.start()
    await storage_process.serving()
    async with aio_channel(f"127.0.0.1:{storage_process.port}", token("service", "jobrunner")) as channel:
        stub = storage_pb2_grpc.StorageServiceStub(channel)
        begin = pb.BeginJobRequest(org_id=ORG, session_id="s1", job_id="j1", type=DATA, object_name="Account")
        await stub.BeginJob(begin)
        await stub.PutObjectSchema(pb.PutObjectSchemaRequest(org_id=ORG, session_id="s1", schema=SCHEMA))
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.PutRecords(_chunk(1))  # the process dies after the commit, before the publish
    assert storage_process.proc is not None
    assert storage_process.proc.wait(timeout=60) == -signal.SIGKILL
    assert (tmp_path / "storage.chunk_committed.fired").exists()

    bus = await Bus.connect(BusConfig(nats_url, namespace=bus_namespace), producer="test")
    try:
        info = await bus.js.stream_info(bus.config.events_stream)
        assert info.state.messages == 0  # committed, never announced
        with psycopg.connect(database_url) as conn:
            assert conn.execute("SELECT count(*) FROM storage.chunks").fetchone() == (1,)
            assert conn.execute("SELECT job_key, chunk_seq FROM storage.outbox").fetchall() == [(1, 1)]

        storage_process.start()
        await storage_process.serving()  # the start-up relay ran before SERVING
        async with aio_channel(f"127.0.0.1:{storage_process.port}", token("service", "jobrunner")) as channel:
            stub = storage_pb2_grpc.StorageServiceStub(channel)
            resumed = await stub.BeginJob(begin)  # the resumed job announces its pending chunks again
            assert resumed.last_chunk_seq == 1
            assert (await stub.PutRecords(_chunk(1))).replayed  # the jobrunner's retry of the failed call
            assert not (await stub.PutRecords(_chunk(2))).replayed

        info = await bus.js.stream_info(bus.config.events_stream)
        assert info.state.messages == 2
        sub = await bus.pull_subscription(
            bus.config.events_stream, "observer", bus.config.events_subject("s1.ChunkUploaded")
        )
        received = [events.decode(m.data) for m in await sub.fetch(2, timeout=10)]
        assert [e.event_id for e in received] == [events.event_id("ChunkUploaded", "s1", "j1", s) for s in (1, 2)]
        assert [e.chunk_uploaded.counts.new_versions for e in received] == [1, 1]
    finally:
        await bus.close()


async def test_a_restore_chunk_killed_before_its_publish_is_announced_with_its_counts_after_restart(
    storage_process: StorageProcess, nats_url: str, bus_namespace: str
) -> None:
    target = sf_id("00D", 42)
    begin = pb.BeginJobRequest(org_id=target, session_id="r1", job_id="restore", type=events_pb2.JOB_TYPE_RESTORE)
    put = pb.PutRestoreOutcomesRequest(
        source_org_id=ORG,
        target_org_id=target,
        session_id="r1",
        job_id="restore",
        chunk_seq=1,
        outcomes=[
            rpb.RecordOutcome(
                object_name="Account", source_id=sf_id("001", 1), target_id=sf_id("001", 9),
                state=rpb.RECORD_STATE_CREATED,
            )
        ],
        write_calls=1,
        api_calls=2,
    )  # fmt: skip
    storage_process.start()
    await storage_process.serving()
    async with aio_channel(f"127.0.0.1:{storage_process.port}", token("service", "jobrunner")) as channel:
        stub = storage_pb2_grpc.StorageServiceStub(channel)
        # the backed-up org is known to storage (BeginJob registers it), the restore job is begun on the target
        await stub.BeginJob(
            pb.BeginJobRequest(org_id=ORG, session_id="s1", job_id="j1", type=DATA, object_name="Account")
        )
        await stub.BeginJob(begin)
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.PutRestoreOutcomes(put)  # the process dies after the commit, before the publish
    assert storage_process.proc is not None
    assert storage_process.proc.wait(timeout=60) == -signal.SIGKILL

    storage_process.start()
    await storage_process.serving()  # the start-up relay announced it
    async with aio_channel(f"127.0.0.1:{storage_process.port}", token("service", "jobrunner")) as channel:
        stub = storage_pb2_grpc.StorageServiceStub(channel)
        assert (await stub.BeginJob(begin)).last_chunk_seq == 1
        again = await stub.PutRestoreOutcomes(put)  # the jobrunner's retry: the first result
        assert again.replayed and [(r.object_name, r.created, r.write_calls) for r in again.restore] == [
            ("Account", 1, 1)
        ]
        ids = await stub.GetIdMap(pb.GetIdMapRequest(source_org_id=ORG, target_org_id=target))
        assert dict(ids.ids) == {sf_id("001", 1): sf_id("001", 9)}
    bus = await Bus.connect(BusConfig(nats_url, namespace=bus_namespace), producer="test")
    try:
        sub = await bus.pull_subscription(
            bus.config.events_stream, "observer", bus.config.events_subject("r1.ChunkUploaded")
        )
        [msg] = await sub.fetch(1, timeout=10)
        chunk_uploaded = events.decode(msg.data).chunk_uploaded
        assert chunk_uploaded.counts.api_calls == 2
        assert [(r.object_name, r.created, r.write_calls) for r in chunk_uploaded.restore] == [("Account", 1, 1)]
        assert (await bus.js.stream_info(bus.config.events_stream)).state.messages == 1
    finally:
        await bus.close()
