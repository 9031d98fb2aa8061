"""The session projection in PostgreSQL (schema `session` by default): sessions, jobs, and the tracking
table that makes event processing idempotent. Only the session service reads or writes these tables."""

from __future__ import annotations

import contextlib
import dataclasses
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
from services.session import domain_alerts as alerts
from services.session.domain import Page
from services.session.domain_anomaly import Finding, History, PastSession
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
    "alerts",
    "anomalies",
    "findings",
    "baseline_at",
    "draft_of",
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
        _json(dict(s.alerts)),
        _json(dict(s.anomalies)),
        _json([f.to_json() for f in s.findings]),
        s.baseline_at,
        s.draft_of,
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
        findings=tuple(Finding.from_json(f) for f in r["findings"]),
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

    async def history(self, conn: psycopg.AsyncConnection, session: d.Session, limit: int) -> History:
        until = session.finished_at or dt.datetime.now(dt.UTC)
        backups = sql.SQL(
            "s.policy_id = %s AND s.kind = 'BACKUP' AND s.session_id <> %s AND s.finished_at <= %s"
            " AND s.status IN ('SUCCESS', 'WARNING', 'FAILED', 'STOPPED')"
        )
        key = (session.policy_id, session.session_id, until)
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                sql.SQL(
                    "SELECT s.session_id, s.finished_at, s.initial FROM {} s WHERE {}"
                    " AND s.status IN ('SUCCESS', 'WARNING') ORDER BY s.finished_at DESC, s.session_id DESC LIMIT %s"
                ).format(self._t("sessions"), backups),
                (*key, limit),
            )
            past = list(await cur.fetchall())
            await cur.execute(
                sql.SQL(
                    "SELECT session_id, job_type, object_name, uploaded, reported FROM {} WHERE session_id = ANY(%s)"
                    " AND job_type = 'data'"
                ).format(self._t("jobs")),
                ([p["session_id"] for p in past],),
            )
            objects: dict[str, dict[str, d.Counts]] = {}
            for r in await cur.fetchall():
                counts = d.Counts.from_json(r["uploaded"]).max(d.Counts.from_json(r["reported"]))
                mine = objects.setdefault(r["session_id"], {})
                name = r["object_name"]
                mine[name] = mine[name] + counts if name in mine else counts
            # per object: records first seen less records deleted, over every earlier backup that ended
            await cur.execute(
                sql.SQL(
                    "SELECT j.object_name, sum(greatest((j.uploaded->>'new_versions')::bigint,"
                    " (j.reported->>'new_versions')::bigint) - greatest((j.uploaded->>'deleted')::bigint,"
                    " (j.reported->>'deleted')::bigint)) AS records"
                    " FROM {} j JOIN {} s USING (session_id) WHERE {} AND j.job_type = 'data' AND j.object_name <> ''"
                    " GROUP BY j.object_name"
                ).format(self._t("jobs"), self._t("sessions"), backups),
                key,
            )
            records = {r["object_name"]: int(r["records"] or 0) for r in await cur.fetchall()}
        sessions = tuple(
            PastSession(p["session_id"], p["finished_at"], p["initial"], objects.get(p["session_id"], {})) for p in past
        )
        return History(sessions, records)

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

    async def list(self, query: d.SessionQuery) -> Page:
        return await reconnected(self.pool, lambda: self._list(query))

    async def _list(self, q: d.SessionQuery) -> Page:
        where: list[sql.Composable] = [sql.SQL("true")]
        params: list[Any] = []
        if q.policy_id:
            where.append(sql.SQL("policy_id = %s"))
            params.append(q.policy_id)
        if q.kind is not None:
            where.append(sql.SQL("kind = %s"))
            params.append(q.kind.value)
        if q.status is not None:
            where.append(sql.SQL("status = %s"))
            params.append(q.status.value)
        if q.after is not None:
            where.append(sql.SQL("listed_at >= %s"))
            params.append(q.after)
        if q.before is not None:
            where.append(sql.SQL("listed_at < %s"))
            params.append(q.before)
        if q.page_after is not None:
            where.append(sql.SQL("(listed_at, session_id) < (%s, %s)"))
            params.extend(q.page_after)
        query = sql.SQL(
            "SELECT session_id, listed_at FROM {} WHERE {} ORDER BY listed_at DESC, session_id DESC LIMIT %s"
        )
        params.append(q.page_size + 1)
        async with self.pool.connection() as conn:
            cur = await conn.execute(query.format(self._t("sessions"), sql.SQL(" AND ").join(where)), params)
            rows = await cur.fetchall()
            more = len(rows) > q.page_size
            rows = rows[: q.page_size]
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

    async def history(self, session: d.Session, limit: int) -> History:
        return await self.projection.history(self.conn, session, limit)

    async def add_alert(self, alert: alerts.Alert) -> bool:
        return await Alerts(self.projection.pool, self.projection.schema).add_in(self.conn, alert)


# The alert tables' columns are named like the fields of Alert (findings last, as JSON; deliveries in their own
# table) and of Delivery (after the alert's id and the delivery's number).
_ALERT_COLUMNS = tuple(f.name for f in dataclasses.fields(alerts.Alert) if f.name != "deliveries")
_DELIVERY_COLUMNS = tuple(f.name for f in dataclasses.fields(alerts.Delivery))
_DELIVERY_ROW = ("alert_id", "number", *_DELIVERY_COLUMNS)


class Alerts:
    """Alerts and their deliveries (the port ports.AlertStore), in the projection's schema."""

    def __init__(self, pool: AsyncConnectionPool, schema: str = "session") -> None:
        self.pool = pool
        self.schema = schema

    def _t(self, table: str) -> sql.Composed:
        return sql.SQL("{}.{}").format(sql.Identifier(self.schema), sql.Identifier(table))

    async def add(self, alert: alerts.Alert) -> bool:
        async with self.pool.connection() as conn, conn.transaction():
            return await self.add_in(conn, alert)

    async def add_in(self, conn: psycopg.AsyncConnection, alert: alerts.Alert) -> bool:
        cur = await conn.execute(
            sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT DO NOTHING RETURNING alert_id").format(
                self._t("alerts"), _names(_ALERT_COLUMNS), _placeholders(_ALERT_COLUMNS)
            ),
            (*_values(alert, _ALERT_COLUMNS[:-1]), _json([f.to_json() for f in alert.findings])),
        )
        if await cur.fetchone() is None:
            return False
        async with conn.cursor() as c:
            await c.executemany(
                sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                    self._t("deliveries"), _names(_DELIVERY_ROW), _placeholders(_DELIVERY_ROW)
                ),
                [(alert.alert_id, n, *_values(x, _DELIVERY_COLUMNS)) for n, x in enumerate(alert.deliveries)],
            )
        return True

    async def _alerts(self, conn: psycopg.AsyncConnection, ids: list[str]) -> dict[str, alerts.Alert]:
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql.SQL("SELECT * FROM {} WHERE alert_id = ANY(%s)").format(self._t("alerts")), (ids,))
            rows = await cur.fetchall()
            await cur.execute(
                sql.SQL("SELECT * FROM {} WHERE alert_id = ANY(%s) ORDER BY alert_id, number").format(
                    self._t("deliveries")
                ),
                (ids,),
            )
            deliveries: dict[str, list[alerts.Delivery]] = {}
            for r in await cur.fetchall():
                deliveries.setdefault(r["alert_id"], []).append(_delivery(r))
        return {
            r["alert_id"]: from_row(
                alerts.Alert,
                r,
                findings=tuple(Finding.from_json(f) for f in r["findings"]),
                deliveries=tuple(deliveries.get(r["alert_id"], ())),
            )
            for r in rows
        }

    async def due(self, now: dt.datetime, limit: int) -> list[tuple[alerts.Alert, int, alerts.Delivery]]:
        async with self.pool.connection() as conn:
            async with conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(
                    sql.SQL(
                        "SELECT * FROM {} WHERE status = 'pending' AND next_attempt_at <= %s"
                        " ORDER BY next_attempt_at LIMIT %s"
                    ).format(self._t("deliveries")),
                    (now, limit),
                )
                rows = await cur.fetchall()
            found = await self._alerts(conn, sorted({r["alert_id"] for r in rows}))
        return [(found[r["alert_id"]], r["number"], _delivery(r)) for r in rows if r["alert_id"] in found]

    async def next_due(self) -> dt.datetime | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                sql.SQL("SELECT min(next_attempt_at) FROM {} WHERE status = 'pending'").format(self._t("deliveries"))
            )
            row = await cur.fetchone()
        return row[0] if row else None

    async def update(self, alert_id: str, number: int, delivery: alerts.Delivery) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                sql.SQL(
                    "UPDATE {} SET status = %s, attempts = %s, last_error = %s, delivered_at = %s, next_attempt_at = %s"
                    " WHERE alert_id = %s AND number = %s"
                ).format(self._t("deliveries")),
                (
                    delivery.status,
                    delivery.attempts,
                    delivery.last_error,
                    delivery.delivered_at,
                    delivery.next_attempt_at,
                    alert_id,
                    number,
                ),
            )

    async def page(
        self, *, policy_id: str = "", session_id: str = "", kind: str = "", page_size: int = 50, page_after: str = ""
    ) -> tuple[list[alerts.Alert], str]:
        return await reconnected(self.pool, lambda: self._list(policy_id, session_id, kind, page_size, page_after))

    async def _list(
        self, policy_id: str, session_id: str, kind: str, page_size: int, page_after: str
    ) -> tuple[list[alerts.Alert], str]:
        where: list[sql.Composable] = [sql.SQL("true")]
        params: list[Any] = []
        for column, value in (("policy_id", policy_id), ("session_id", session_id), ("kind", kind)):
            if value:
                where.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
                params.append(value)
        if page_after:
            where.append(
                sql.SQL("(at, alert_id) < (SELECT at, alert_id FROM {} WHERE alert_id = %s)").format(self._t("alerts"))
            )
            params.append(page_after)
        params.append(page_size + 1)
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                sql.SQL("SELECT alert_id FROM {} WHERE {} ORDER BY at DESC, alert_id DESC LIMIT %s").format(
                    self._t("alerts"), sql.SQL(" AND ").join(where)
                ),
                params,
            )
            ids = [r[0] for r in await cur.fetchall()]
            more = len(ids) > page_size
            ids = ids[:page_size]
            found = await self._alerts(conn, ids)
        return [found[i] for i in ids if i in found], (ids[-1] if more and ids else "")


def _delivery(r: dict[str, Any]) -> alerts.Delivery:
    return from_row(alerts.Delivery, r)


def _names(columns: Sequence[str]) -> sql.Composed:
    return sql.SQL(", ").join(map(sql.Identifier, columns))


def _placeholders(columns: Sequence[str]) -> sql.Composed:
    return sql.SQL(", ").join(sql.Placeholder() * len(columns))


def _values(obj: Any, columns: Sequence[str]) -> tuple[Any, ...]:
    return tuple(getattr(obj, c) for c in columns)
