"""Storage as the jobs call it (port Storage): the fake and StorageClient against the storage service hold to
the same rules. The client is synchronous (jobs run in worker threads): its calls run in a thread here."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import pytest
from sfvault.events.v1 import events_pb2 as ev
from sfvault.jobs.v1 import jobs_pb2
from sfvault.storage.v1 import storage_pb2 as spb

from services.canonical import CANONICAL_RULES, CanonicalParts, RecordCanonicalizer
from services.jobrunner import translate
from services.jobrunner.ports import Chunk, Storage
from services.jobrunner.storage_client import StorageClient, StorageConflict
from services.storage import service as st_service
from services.storage.config import StorageSettings
from sforg.ids import to18
from tests.jobrunner.fakes import FakeStorage

T = TypeVar("T")
ORG = to18("00D000000000001")
SPEC = jobs_pb2.JobSpec(
    object_name="Opportunity",
    data=jobs_pb2.DataJob(
        key_prefix="006",
        fields=[
            jobs_pb2.FieldSpec(name="Id", sf_type="id"),
            jobs_pb2.FieldSpec(name="Name", sf_type="string"),
            jobs_pb2.FieldSpec(name="IsDeleted", sf_type="boolean"),
            jobs_pb2.FieldSpec(name="SystemModstamp", sf_type="datetime"),
        ],
    ),
)
SCHEMA = translate.schema_of(SPEC)
CANON = RecordCanonicalizer(translate.canonical_schema(SCHEMA))


def rid(n: int) -> str:
    return to18(f"006{n:012d}")


def parts(*records: tuple[int, str, bool]) -> list[CanonicalParts]:
    return [
        CANON.parts(
            {"Id": rid(n), "Name": name, "IsDeleted": deleted, "SystemModstamp": "2026-01-01T00:00:00.000+0000"}, i
        )
        for i, (n, name, deleted) in enumerate(records)
    ]


class Calls:
    """The port's calls, each in a thread (the real client blocks; storage serves on this event loop)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def __call__(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(functools.partial(method, *args, **kwargs))

    async def begin(self, session: str, job: str = "j1") -> spb.BeginJobResponse:
        return await self(self.storage.begin_job, ORG, session, job, ev.JOB_TYPE_DATA, "Opportunity")

    async def put(self, session: str, seq: int, records: list[CanonicalParts], job: str = "j1") -> spb.ChunkResult:
        return await self(
            self.storage.put_records,
            Chunk(ORG, session, job, seq, "Opportunity"),
            records,
            rules=CANONICAL_RULES,
            formula_changes_counted=False,
        )

    async def delete(self, session: str, seq: int, ids: list[str], state: int) -> spb.ChunkResult:
        return await self(self.storage.mark_deleted, Chunk(ORG, session, "j1", seq, "Opportunity"), ids, state)

    async def held(self) -> dict[str, bool]:
        return dict(await self(lambda: list(self.storage.stored_ids(ORG, "Opportunity"))))


@pytest.fixture(params=["fake", "storage"])
async def calls(request: pytest.FixtureRequest) -> AsyncIterator[Calls]:
    if request.param == "fake":
        yield Calls(FakeStorage())
        return
    storage = await st_service.start(
        StorageSettings(
            database_url=request.getfixturevalue("database_url"),
            nats_url=request.getfixturevalue("nats_url"),
            bus_namespace=request.getfixturevalue("bus_namespace"),
            storage_port=0,
            file_repository=f"file://{request.getfixturevalue('tmp_path') / 'files'}",
            auth_disabled=True,
        )
    )
    client = StorageClient(f"127.0.0.1:{storage.port}")
    try:
        yield Calls(client)
    finally:
        client.close()
        await storage.stop(1)


def counts(result: Any) -> tuple[int, int, int, int, int]:
    c = result.counts
    return (c.received, c.new_versions, c.changed, c.unchanged, c.deleted)


async def test_a_new_job_begins_at_zero_under_the_canonical_rules(calls: Calls) -> None:
    begun = await calls.begin("s1")
    assert (begun.last_chunk_seq, begun.counts.received, begun.canonical_rules) == (0, 0, CANONICAL_RULES)


async def test_chunks_are_counted_by_what_they_change_and_stored_once(calls: Calls) -> None:
    await calls.begin("s1")
    await calls(calls.storage.put_schema, ORG, "s1", SCHEMA)
    first = await calls.put("s1", 1, parts((1, "a", False), (2, "b", False), (3, "c", False)))
    assert counts(first) == (3, 3, 0, 0, 0)
    again = await calls.put("s1", 1, parts((1, "a", False), (2, "b", False), (3, "c", False)))
    assert again.replayed and counts(again) == (3, 3, 0, 0, 0)  # a redelivered chunk: its first result
    with pytest.raises(StorageConflict):  # never another content under a stored chunk_seq
        await calls.put("s1", 1, parts((1, "x", False)))
    second = await calls.put("s1", 2, parts((1, "a", False), (2, "b2", False), (3, "c", True)))
    assert counts(second) == (3, 0, 1, 1, 1)
    begun = await calls.begin("s1")
    assert begun.last_chunk_seq == 2 and begun.counts.received == 6 and begun.counts.new_versions == 3
    assert await calls.held() == {rid(1): False, rid(2): False, rid(3): True}


async def test_the_list_sent_is_emptied_once_sent(calls: Calls) -> None:
    await calls.begin("s1")
    await calls(calls.storage.put_schema, ORG, "s1", SCHEMA)
    records = parts((1, "a", False))
    await calls.put("s1", 1, records)
    assert records == []


async def test_soft_deletes_stay_held_and_hard_deletes_are_gone(calls: Calls) -> None:
    await calls.begin("s1")
    await calls(calls.storage.put_schema, ORG, "s1", SCHEMA)
    await calls.put("s1", 1, parts((1, "a", False), (2, "b", False), (3, "c", False)))
    soft = await calls.delete("s1", 2, [rid(1)], spb.DELETED_STATE_SOFT)
    assert soft.counts.deleted == 1
    hard = await calls.delete("s1", 3, [rid(2)], spb.DELETED_STATE_HARD)
    assert hard.counts.deleted == 1
    assert await calls.held() == {rid(1): True, rid(3): False}
    assert (await calls.begin("s1")).last_chunk_seq == 3
