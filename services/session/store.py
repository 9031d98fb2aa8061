"""The session projection in PostgreSQL (schema `session` by default): sessions, jobs, and the tracking
table that makes event processing idempotent. Only the session service reads or writes these tables."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from services.platform.db import from_row, migrate, reconnected
from services.session import domain as d
from services.session.domain import Page
from services.session.migrations import MIGRATIONS

_SESSION_COLUMNS = [
    "session_id",
    "policy_id",
    "org_id",
    "status",
    "reason",
    "initial",
    "trigger",
    "requested_by",
    "stall_timeout_s",
    "planned",
    "cancel_requested",
    "cancelled_at",
    "failure_reason",
    "finished_event_seen",
    "requested_at",
    "started_at",
    "finished_at",
    "listed_at",
    "totals",
    "jobs_total",
    "jobs_finished",
    "jobs_with_errors",
    "version",
    "warnings",
    "kind",
    "restore",
    "restore_resolved",
    "restore_counts",
    "verification",
]
_JOB_COLUMNS = [
    "session_id",
    "job_id",
    "job_type",
    "object_name",
    "phase",
    "outcome",
    "message",
    "uploaded",
    "reported",
    "chunks_upto",
    "chunks_ahead",
    "planned",
    "planned_at",
    "started_at",
    "last_upload_at",
    "finished_at",
    "worker_id",
    "expected_chunks",
    "restore_uploaded",
    "restore_reported",
    "verification",
]


def _upsert(schema: str, table: str, columns: list[str], key: list[str]) -> sql.Composed:
    updates = [c for c in columns if c not in key]
    return sql.SQL("INSERT INTO {}.{} ({}) VALUES ({}) ON CONFLICT ({}) DO UPDATE SET {}{}").format(
        sql.Identifier(schema),
        sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(", ").join(sql.Placeholder() * len(columns)),
        sql.SQL(", ").join(map(sql.Identifier, key)),
        sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in updates),
        sql.SQL(", updated_at = now()") if table == "sessions" else sql.SQL(""),
    )


def _counts_json(c: d.Counts) -> str:
    return json.dumps(c.to_json(), separators=(",", ":"))


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _objects_json(objects: d.ObjectCounts) -> str:
    return _json({name: counts.to_json() for name, counts in objects.items()})


def _objects(data: dict[str, Any]) -> dict[str, d.RestoreCounts]:
    return {name: d.RestoreCounts.from_json(counts) for name, counts in data.items()}


def session_row(s: d.Session) -> tuple[Any, ...]:
    listed = s.requested_at or s.started_at or dt.datetime.now(dt.UTC)
    return (
        s.session_id,
        s.policy_id,
        s.org_id,
        s.status.value,
        s.reason,
        s.initial,
        s.trigger,
        s.requested_by,
        s.stall_timeout.total_seconds() if s.stall_timeout else None,
        s.planned,
        s.cancel_requested,
        s.cancelled_at,
        s.failure_reason,
        s.finished_event_seen,
        s.requested_at,
        s.started_at,
        s.finished_at,
        listed,
        _counts_json(s.totals),
        len(s.jobs),
        s.jobs_finished,
        s.jobs_with_errors,
        s.version,
        list(s.warnings),
        s.kind.value,
        _json(dict(s.restore)),
        s.restore_resolved,
        _objects_json(s.restore_counts),
        _json(s.verification.to_json()),
    )


def job_row(session_id: str, j: d.Job) -> tuple[Any, ...]:
    return (
        session_id,
        j.job_id,
        j.job_type,
        j.object_name,
        j.phase.value,
        j.outcome.value,
        j.message,
        _counts_json(j.uploaded),
        _counts_json(j.reported),
        j.chunks_upto,
        sorted(j.chunks_ahead),
        j.planned,
        j.planned_at,
        j.started_at,
        j.last_upload_at,
        j.finished_at,
        j.worker_id,
        j.expected_chunks,
        _objects_json(j.restore_uploaded),
        _objects_json(j.restore_reported),
        _json(j.verification.to_json()),
    )


def _job_from_row(r: dict[str, Any]) -> d.Job:
    return from_row(
        d.Job,
        r,
        phase=d.Phase(r["phase"]),
        outcome=d.Outcome(r["outcome"]),
        uploaded=d.Counts.from_json(r["uploaded"]),
        reported=d.Counts.from_json(r["reported"]),
        chunks_ahead=frozenset(r["chunks_ahead"]),
        restore_uploaded=_objects(r["restore_uploaded"]),
        restore_reported=_objects(r["restore_reported"]),
        verification=d.Verification.from_json(r["verification"]),
    )


def _session_from_row(r: dict[str, Any], jobs: dict[str, d.Job]) -> d.Session:
    return from_row(
        d.Session,
        r,
        status=d.Status(r["status"]),
        stall_timeout=dt.timedelta(seconds=r["stall_timeout_s"]) if r["stall_timeout_s"] else None,
        jobs=jobs,
        warnings=tuple(r["warnings"]),
        kind=d.Kind(r["kind"]),
    )


class Projection:
    """Reads and writes the projection (the port ports.ProjectionStore); a `transaction` commits folded states
    and their tracking rows together."""

    def __init__(self, pool: AsyncConnectionPool, schema: str = "session", consumer: str = "session-projection"):
        self.pool = pool
        self.schema = schema
        self.consumer = consumer
        self._upsert_session = _upsert(schema, "sessions", _SESSION_COLUMNS, ["session_id"])
        self._upsert_job = _upsert(schema, "jobs", _JOB_COLUMNS, ["session_id", "job_id"])

    def _t(self, table: str) -> sql.Composed:
        return sql.SQL("{}.{}").format(sql.Identifier(self.schema), sql.Identifier(table))

    async def setup(self) -> None:
        async with self.pool.connection() as conn:
            await migrate(conn, self.schema, MIGRATIONS)

    async def reset(self) -> None:
        """Empty the projection (for a rebuild)."""
        async with self.pool.connection() as conn:
            await conn.execute(
                sql.SQL("TRUNCATE {}, {}, {}").format(self._t("sessions"), self._t("jobs"), self._t("processed_events"))
            )

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[ProjectionTransaction]:
        async with self.pool.connection() as conn, conn.transaction():
            yield ProjectionTransaction(self, conn)

    async def load(self, conn: psycopg.AsyncConnection, session_ids: Sequence[str]) -> dict[str, d.Session]:
        if not session_ids:
            return {}
        ids = list(session_ids)
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql.SQL("SELECT * FROM {} WHERE session_id = ANY(%s)").format(self._t("jobs")), (ids,))
            jobs: dict[str, dict[str, d.Job]] = {}
            for r in await cur.fetchall():
                jobs.setdefault(r["session_id"], {})[r["job_id"]] = _job_from_row(r)
            await cur.execute(
                sql.SQL("SELECT * FROM {} WHERE session_id = ANY(%s)").format(self._t("sessions")), (ids,)
            )
            return {r["session_id"]: _session_from_row(r, jobs.get(r["session_id"], {})) for r in await cur.fetchall()}

    async def claim(self, conn: psycopg.AsyncConnection, event_ids: Sequence[str]) -> set[str]:
        """Record the events as processed; returns those that were not processed before."""
        cur = await conn.execute(
            sql.SQL(
                "INSERT INTO {} (consumer, event_id) SELECT %s, unnest(%s::text[])"
                " ON CONFLICT DO NOTHING RETURNING event_id"
            ).format(self._t("processed_events")),
            (self.consumer, list(event_ids)),
        )
        return {r[0] for r in await cur.fetchall()}

    async def save(
        self,
        conn: psycopg.AsyncConnection,
        sessions: Iterable[d.Session],
        jobs: Iterable[tuple[str, d.Job]],
    ) -> None:
        async with conn.cursor() as cur:
            session_rows = [session_row(s) for s in sessions]
            job_rows = [job_row(sid, j) for sid, j in jobs]
            if job_rows:
                await cur.executemany(self._upsert_job, job_rows)
            if session_rows:
                await cur.executemany(self._upsert_session, session_rows)

    async def get(self, session_id: str) -> d.Session | None:
        return await reconnected(self.pool, lambda: self._get(session_id))

    async def _get(self, session_id: str) -> d.Session | None:
        async with self.pool.connection() as conn:
            return (await self.load(conn, [session_id])).get(session_id)

    async def open_sessions(self) -> dict[str, d.Session]:
        return await reconnected(self.pool, self._open_sessions)

    async def _open_sessions(self) -> dict[str, d.Session]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                sql.SQL("SELECT session_id FROM {} WHERE status IN ('PENDING', 'RUNNING')").format(self._t("sessions"))
            )
            ids = [r[0] for r in await cur.fetchall()]
            return await self.load(conn, ids)

    async def unannounced_final_sessions(self) -> dict[str, d.Session]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                sql.SQL(
                    "SELECT session_id FROM {} WHERE status NOT IN ('PENDING', 'RUNNING') AND NOT finished_event_seen"
                ).format(self._t("sessions"))
            )
            return await self.load(conn, [r[0] for r in await cur.fetchall()])

    async def list(
        self,
        *,
        policy_id: str = "",
        status: d.Status | None = None,
        after: dt.datetime | None = None,
        before: dt.datetime | None = None,
        page_size: int = 50,
        page_after: tuple[dt.datetime, str] | None = None,
        kind: d.Kind | None = None,
    ) -> Page:
        return await reconnected(
            self.pool, lambda: self._list(policy_id, status, after, before, page_size, page_after, kind)
        )

    async def _list(
        self,
        policy_id: str,
        status: d.Status | None,
        after: dt.datetime | None,
        before: dt.datetime | None,
        page_size: int,
        page_after: tuple[dt.datetime, str] | None,
        kind: d.Kind | None,
    ) -> Page:
        where: list[sql.Composable] = [sql.SQL("true")]
        params: list[Any] = []
        if policy_id:
            where.append(sql.SQL("policy_id = %s"))
            params.append(policy_id)
        if kind is not None:
            where.append(sql.SQL("kind = %s"))
            params.append(kind.value)
        if status is not None:
            where.append(sql.SQL("status = %s"))
            params.append(status.value)
        if after is not None:
            where.append(sql.SQL("listed_at >= %s"))
            params.append(after)
        if before is not None:
            where.append(sql.SQL("listed_at < %s"))
            params.append(before)
        if page_after is not None:
            where.append(sql.SQL("(listed_at, session_id) < (%s, %s)"))
            params.extend(page_after)
        query = sql.SQL(
            "SELECT session_id, listed_at FROM {} WHERE {} ORDER BY listed_at DESC, session_id DESC LIMIT %s"
        )
        params.append(page_size + 1)
        async with self.pool.connection() as conn:
            cur = await conn.execute(query.format(self._t("sessions"), sql.SQL(" AND ").join(where)), params)
            rows = await cur.fetchall()
            more = len(rows) > page_size
            rows = rows[:page_size]
            loaded = await self.load(conn, [r[0] for r in rows])
        sessions = [loaded[r[0]] for r in rows if r[0] in loaded]
        return Page(sessions, (rows[-1][1], rows[-1][0]) if more and rows else None)

    async def snapshot(self) -> dict[str, Any]:
        """Everything the projection holds except bookkeeping, for comparing a rebuild with the live one."""
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql.SQL("SELECT * FROM {} ORDER BY session_id").format(self._t("sessions")))
            sessions = [
                {k: v for k, v in r.items() if k not in ("updated_at", "listed_at")} for r in await cur.fetchall()
            ]
            await cur.execute(sql.SQL("SELECT * FROM {} ORDER BY session_id, job_id").format(self._t("jobs")))
            jobs = list(await cur.fetchall())
        return {"sessions": sessions, "jobs": jobs}


class ProjectionTransaction:
    """One transaction of the projection: claims, reads and writes commit together or not at all."""

    def __init__(self, projection: Projection, conn: psycopg.AsyncConnection) -> None:
        self.projection = projection
        self.conn = conn

    async def claim(self, event_ids: Sequence[str]) -> set[str]:
        return await self.projection.claim(self.conn, event_ids)

    async def load(self, session_ids: Sequence[str]) -> dict[str, d.Session]:
        return await self.projection.load(self.conn, session_ids)

    async def save(self, sessions: Iterable[d.Session], jobs: Iterable[tuple[str, d.Job]]) -> None:
        await self.projection.save(self.conn, sessions, jobs)
