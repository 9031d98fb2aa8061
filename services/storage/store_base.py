"""What every storage table adapter shares: the pool, the test hook, and the claim of a chunk -- every write is one
transaction that first claims its (job, chunk_seq), so a redelivered chunk finds its claim and returns the result
stored with it (changing nothing), and finishes by storing its result with its ChunkUploaded in the outbox.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from services.platform.encryption import Envelope
from services.storage.domain import FailedPrecondition
from services.storage.migrations import SCHEMA

S = SCHEMA
Fault = Callable[[str], Awaitable[None]]


class StoreBase:
    def __init__(self, pool: AsyncConnectionPool, *, fault: Fault | None = None) -> None:
        self.pool = pool
        self._fault = fault  # test hook: called at named points inside write transactions
        # org_id -> org_key: an org's key never changes and an org is never removed, so one read per process
        self._org_keys: dict[str, int] = {}

    async def _at(self, point: str) -> None:
        if self._fault is not None:
            await self._fault(point)

    async def ping(self) -> None:
        async with self.pool.connection() as conn:
            await conn.execute("SELECT 1")

    async def _one(self, query: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        """The first row of one statement, on a connection of its own (committed when the statement writes)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(query, params)
            return await cur.fetchone()

    async def _all(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Every row of a read, on a connection of its own."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(query, params)
            return await cur.fetchall()

    async def _rewrap(self, table: str, key_column: str, key: object, old: Envelope, new: Envelope) -> bool:
        """Re-wraps the data key of the row of `table` whose `key_column` is `key`, only if that row still holds
        `old` (a concurrent rewrap wins); whether it did. The rewrap of file bodies and of value keys alike."""
        row = await self._one(
            f"UPDATE {S}.{table} SET kek_id = %s, wrapped_key = %s"
            f" WHERE {key_column} = %s AND kek_id = %s AND wrapped_key = %s RETURNING 1",
            (new.kek_id, new.wrapped_key, key, old.kek_id, old.wrapped_key),
        )
        return row is not None

    # --- chunks --------------------------------------------------------------------------------------------

    async def _claim(
        self,
        conn: psycopg.AsyncConnection[Any],
        job_key: int,
        seq: int,
        kind: str,
        digest: bytes,
        object_key: int | None = None,
    ) -> dict[str, Any] | None:
        """Claims (job, chunk_seq) inside the caller's transaction; returns the stored result when a previous
        delivery already committed it. A concurrent delivery waits here until the first one commits."""
        cur = await conn.execute(
            f"INSERT INTO {S}.chunks (job_key, chunk_seq, kind, object_key, digest) VALUES (%s, %s, %s, %s, %s)"
            " ON CONFLICT (job_key, chunk_seq) DO NOTHING RETURNING 1",
            (job_key, seq, kind, object_key, digest),
        )
        if await cur.fetchone():
            return None
        cur = await conn.execute(
            f"SELECT kind, digest, result FROM {S}.chunks WHERE job_key = %s AND chunk_seq = %s", (job_key, seq)
        )
        row = await cur.fetchone()
        assert row is not None
        if row[0] != kind or bytes(row[1]) != digest:
            raise FailedPrecondition(
                f"chunk {seq} of this job was already stored with other content; a retried job must resend the "
                "same chunk or continue after the last stored chunk_seq (see BeginJob)"
            )
        return dict(row[2])

    async def chunk_result(self, job_key: int, seq: int) -> tuple[str, bytes, dict[str, Any]] | None:
        row = await self._one(
            f"SELECT kind, digest, result FROM {S}.chunks WHERE job_key = %s AND chunk_seq = %s", (job_key, seq)
        )
        return (row[0], bytes(row[1]), dict(row[2])) if row else None

    async def _finish(self, conn: psycopg.AsyncConnection[Any], job_key: int, seq: int, result: dict[str, Any]) -> None:
        """The chunk's result, and its ChunkUploaded in the outbox: one statement, in the chunk's transaction."""
        await conn.execute(
            f"WITH done AS (UPDATE {S}.chunks SET result = %s WHERE job_key = %s AND chunk_seq = %s"
            " RETURNING job_key, chunk_seq)"
            f" INSERT INTO {S}.outbox (job_key, chunk_seq) SELECT job_key, chunk_seq FROM done",
            (json.dumps(result), job_key, seq),
        )
