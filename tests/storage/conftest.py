"""Storage fixtures: the application on a fresh database and a temporary file repository, a recording
publisher, and helpers to build Ids, schemas and records."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sfvault.storage.v1 import storage_pb2 as pb

from services.canonical import CANONICAL_RULES, CanonicalParts, column_bytes
from services.storage.application import ChunkRef, FileHeaderIn, Storage, StorageOptions
from services.storage.domain import (
    Counts,
    FieldDef,
    FieldType,
    ObjectSchema,
    PendingEvent,
    RestoreCounts,
    StorageError,
    id_suffix,
)
from services.storage.files import LocalFileRepository
from services.storage.store import ChunkOutcome, PostgresStore, open_store_pool

ORG = "00D000000000062EAA"
DATA = 3  # JobType.JOB_TYPE_DATA
FILE = 2
METADATA = 1

ACCOUNT = ObjectSchema(
    "Account",
    (
        FieldDef("Id", FieldType.ID),
        FieldDef("Name", FieldType.STRING),
        FieldDef("AnnualRevenue", FieldType.DOUBLE),
        FieldDef("IsDeleted", FieldType.BOOLEAN),
        FieldDef("SystemModstamp", FieldType.DATETIME),
        FieldDef("Score__c", FieldType.DOUBLE, calculated=True),
    ),
    key_prefix="001",
)


def sf_id(prefix: str, n: int) -> str:
    id15 = f"{prefix}{n:012d}"
    return id15 + id_suffix(id15)


def random_org() -> str:
    # uuid, not random: hypothesis seeds the random module identically for every example
    return sf_id("00D", uuid.uuid4().int % 10**12)


def account(n: int, name: str = "Acme", **extra: object) -> bytes:
    return json.dumps(
        {"Id": sf_id("001", n), "Name": name, "SystemModstamp": "2024-01-01T00:00:00.000Z", **extra}
    ).encode()


@dataclass
class RecordingPublisher:
    published: list[tuple[str, str, int, Counts]] = field(default_factory=list)
    restore: dict[tuple[str, str, int], tuple[RestoreCounts, ...]] = field(default_factory=dict)  # restore chunks'
    fail: bool = False

    async def chunk_uploaded(self, event: PendingEvent) -> None:
        if self.fail:
            raise ConnectionError("NATS unavailable")
        self.published.append((event.session_id, event.job_id, event.chunk_seq, event.counts))
        if event.restore:
            self.restore[(event.session_id, event.job_id, event.chunk_seq)] = tuple(event.restore)


@dataclass
class Harness:
    storage: Storage
    store: PostgresStore
    publisher: RecordingPublisher
    files_dir: Path

    async def count(self, table: str) -> int:
        async with self.store.pool.connection() as conn:
            cur = await conn.execute(f"SELECT count(*) FROM storage.{table}")
            return int((await cur.fetchone())[0])  # type: ignore[index]

    async def live_counts(self) -> tuple[dict[tuple[int, int], int], dict[tuple[int, int], int]]:
        """The live records per (org, object) as the heads' triggers keep them, and as the heads say."""
        async with self.store.pool.connection() as conn:
            kept = await conn.execute(
                "SELECT org_key, object_key, sum(live) FROM storage.live_counts GROUP BY 1, 2 HAVING sum(live) <> 0"
            )
            counted = await conn.execute(
                "SELECT org_key, object_key, count(*) FROM storage.record_head WHERE deleted = 0 GROUP BY 1, 2"
            )
            return (
                {(r[0], r[1]): int(r[2]) for r in await kept.fetchall()},
                {(r[0], r[1]): int(r[2]) for r in await counted.fetchall()},
            )


@pytest.fixture
async def harness(database_url: str, tmp_path: Path) -> AsyncIterator[Harness]:
    pool = await open_store_pool(database_url, max_size=4)
    store = PostgresStore(pool)
    await store.migrate()
    publisher = RecordingPublisher()
    files = LocalFileRepository(tmp_path / "files")
    storage = Storage(store, files, publisher, StorageOptions(max_chunk_records=50))
    try:
        yield Harness(storage, store, publisher, tmp_path / "files")
    finally:
        await pool.close()


async def data_job(storage: Storage, org: str = ORG, session: str = "s1", job: str = "j1") -> None:
    await storage.begin_job(org, session, job, DATA, "Account")
    await storage.put_schema(org, session, ACCOUNT)


def columns_of(parts: list[CanonicalParts]) -> pb.CanonicalColumns:
    """Canonical records as PutRecordsRequest.canonical_columns carries them (what the jobrunner fills)."""
    return pb.CanonicalColumns(**dict(column_bytes(parts)))


async def put_raw(
    s: Storage, org: str, session: str, job: str, seq: int, object_name: str, raws: list[bytes]
) -> ChunkOutcome:
    """PutRecords as the jobrunner makes it: raw records canonicalised by the one canonicaliser
    (services/canonical.py) under the session's schema, sent column by column. A request storage refuses before
    reading its records (unknown job, no schema, too many records) is sent with that many empty records, for
    storage to refuse it itself."""
    try:
        _ref, canonicalizer = await s._schema(await s._job(org, session, job, seq), object_name)
    except StorageError:
        n = len(raws)
        chunk = pb.CanonicalColumns(record_ids=b"\n" * n, values=b"{}\n" * n, other_values=b"{}\n" * n)
        chunk.system_modstamps, chunk.deleted = b"\n" * n, bytes(n)
    else:
        chunk = columns_of([canonicalizer.parts(json.loads(raw), i) for i, raw in enumerate(raws)])
    return await s.put_records(
        ChunkRef(org, session, job, seq), object_name, chunk, CANONICAL_RULES, s.count_formula_changes
    )


async def file_body(data: bytes, piece: int = 4096) -> AsyncIterator[bytes]:
    """An UploadFile body: `data` in pieces of `piece` bytes."""
    for i in range(0, len(data), piece):
        yield data[i : i + piece]


def file_header(seq: int, record: int, data: bytes, **kw: object) -> FileHeaderIn:
    """The header of chunk `seq` of file job f1 of session s1: ContentVersion `record`, `data`'s size."""
    return FileHeaderIn(ChunkRef(ORG, "s1", "f1", seq), "ContentVersion", sf_id("068", record), len(data), **kw)  # type: ignore[arg-type]
