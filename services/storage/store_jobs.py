"""Jobs and the outbox: BeginJob's registration (and the org's, on first sight), and the committed chunks whose
ChunkUploaded the stream has not acknowledged yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from services.platform.counts import ZERO
from services.storage.domain import (
    Counts,
    FailedPrecondition,
    JobRef,
    PendingEvent,
    RestoreCounts,
)
from services.storage.store_base import S, StoreBase

# a job registered once: a second BeginJob of it (a resumed attempt) finds the row there
_INSERT_JOB = (
    f"INSERT INTO {S}.jobs (org_key, session_id, job_id, job_type, object_name)"
    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (session_id, job_id) DO NOTHING"
)


class JobsStore(StoreBase):
    """Tables orgs, jobs, chunks (progress) and outbox."""

    async def org_key(self, org_id: str) -> int | None:
        known = self._org_keys.get(org_id)
        if known is not None:
            return known
        async with self.pool.connection() as conn:
            cur = await conn.execute(f"SELECT org_key FROM {S}.orgs WHERE org_id = %s", (org_id,))
            row = await cur.fetchone()
            if row is None:
                return None
            self._org_keys[org_id] = int(row[0])
            return int(row[0])

    async def begin_job(
        self, org_id: str, session_id: str, job_id: str, job_type: int, object_name: str
    ) -> tuple[JobRef, int, int, Counts]:
        """Registers the job (and org); returns it with (last chunk_seq, chunks, totals) already stored. A job
        seen for the first time (the common case) in one statement: nothing of it can be stored yet."""
        org_key = self._org_keys.get(org_id)
        if org_key is not None:
            async with self.pool.connection() as conn:
                cur = await conn.execute(
                    _INSERT_JOB + " RETURNING job_key",
                    (org_key, session_id, job_id, job_type, object_name),
                )
                row = await cur.fetchone()
            if row is not None:
                return JobRef(int(row[0]), org_key, org_id, session_id, job_id, job_type, object_name), 0, 0, ZERO
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(f"INSERT INTO {S}.orgs (org_id) VALUES (%s) ON CONFLICT (org_id) DO NOTHING", (org_id,))
            cur = await conn.execute(f"SELECT org_key FROM {S}.orgs WHERE org_id = %s", (org_id,))
            org_key = int((await cur.fetchone())[0])  # type: ignore[index]
            await conn.execute(
                _INSERT_JOB,
                (org_key, session_id, job_id, job_type, object_name),
            )
            job = await self._job(conn, session_id, job_id)
            assert job is not None
            if (job.org_id, job.job_type, job.object_name) != (org_id, job_type, object_name):
                raise FailedPrecondition(
                    f"job {job_id} of session {session_id} is already registered for org {job.org_id}, "
                    f"type {job.job_type}, object {job.object_name!r}"
                )
            cur = await conn.execute(
                f"SELECT coalesce(max(chunk_seq), 0), count(*) FROM {S}.chunks WHERE job_key = %s", (job.job_key,)
            )
            last, chunks = await cur.fetchone()  # type: ignore[misc]
            cur = await conn.execute(f"SELECT result->'counts' FROM {S}.chunks WHERE job_key = %s", (job.job_key,))
            totals = sum((Counts.from_json(counts) for (counts,) in await cur.fetchall()), ZERO)
        self._org_keys[org_id] = org_key
        return job, int(last), int(chunks), totals

    async def _job(self, conn: psycopg.AsyncConnection[Any], session_id: str, job_id: str) -> JobRef | None:
        cur = await conn.execute(
            f"SELECT j.job_key, j.org_key, o.org_id, j.session_id, j.job_id, j.job_type, j.object_name"
            f" FROM {S}.jobs j JOIN {S}.orgs o USING (org_key) WHERE j.session_id = %s AND j.job_id = %s",
            (session_id, job_id),
        )
        row = await cur.fetchone()
        return JobRef(*row) if row else None

    async def job(self, session_id: str, job_id: str) -> JobRef | None:
        async with self.pool.connection() as conn:
            return await self._job(conn, session_id, job_id)

    async def pending_events(
        self, *, job_key: int | None = None, min_age_s: float | None = None, limit: int = 1000
    ) -> list[PendingEvent]:
        """Committed chunks whose ChunkUploaded the stream has not acknowledged yet, in (job, chunk) order;
        `min_age_s`: only chunks committed at least that long ago (by the database's clock)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT o.job_key, o.chunk_seq, j.session_id, j.job_id, c.result->'counts', c.committed_at,"
                " c.result->'restore'"
                f" FROM {S}.outbox o JOIN {S}.chunks c USING (job_key, chunk_seq) JOIN {S}.jobs j USING (job_key)"
                " WHERE (%s::int IS NULL OR o.job_key = %s)"
                " AND (%s::float8 IS NULL OR c.committed_at < now() - make_interval(secs => %s))"
                " ORDER BY o.job_key, o.chunk_seq LIMIT %s",
                (job_key, job_key, min_age_s, min_age_s, limit),
            )
            return [
                PendingEvent(
                    r[0],
                    int(r[1]),
                    r[2],
                    r[3],
                    Counts.from_json(r[4] or {}),
                    r[5],
                    tuple(RestoreCounts.from_json(c) for c in r[6] or ()),
                )
                for r in await cur.fetchall()
            ]

    async def events_published(self, keys: Sequence[tuple[int, int]]) -> None:
        """Forget the outbox rows whose events the stream acknowledged."""
        if not keys:
            return
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(
                f"DELETE FROM {S}.outbox o USING unnest(%s::int[], %s::bigint[]) AS k(job_key, chunk_seq)"
                " WHERE o.job_key = k.job_key AND o.chunk_seq = k.chunk_seq",
                ([k[0] for k in keys], [k[1] for k in keys]),
            )
