"""Discovery's PostgreSQL adapter (schema `discovery` by default): orgs, policies, and per session the plan
and the schema seen (objects, fields, describes by content hash). Only the discovery service reads these."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from services.discovery import domain as d
from services.discovery.domain import SessionDecision, SessionRecord, StoredJob
from services.discovery.domain_schedule import COULD_NOT_START
from services.discovery.domain_split import WHOLE, IdRange, bounds_of, ranges_of
from services.discovery.migrations import MIGRATIONS
from services.discovery.ports import Conflict
from services.platform.db import from_row, migrate, reconnected

# ---- (de)serialisation of domain values -----------------------------------------------------------------


def _connection_json(c: d.Connection) -> dict[str, Any]:
    out = dataclasses.asdict(c)
    out["auth_flow"] = c.auth_flow.value
    return out


def _connection(data: Mapping[str, Any]) -> d.Connection:
    return d.Connection(**{**data, "auth_flow": d.AuthFlow(data["auth_flow"])})


def _scope_json(s: d.Scope) -> dict[str, Any]:
    return {
        "include_objects": list(s.include_objects),
        "exclude_objects": list(s.exclude_objects),
        "exclude_fields": {k: list(v) for k, v in s.exclude_fields.items()},
    }


def _scope(data: Mapping[str, Any]) -> d.Scope:
    return d.Scope(
        tuple(data.get("include_objects", ())),
        tuple(data.get("exclude_objects", ())),
        {k: tuple(v) for k, v in data.get("exclude_fields", {}).items()},
    )


def _org(row: Mapping[str, Any]) -> d.Org:
    return from_row(d.Org, row, connection=_connection(row["connection"]))


def _alerts(data: Mapping[str, Any]) -> d.AlertSettings:
    return d.AlertSettings(
        webhooks=tuple(d.Webhook(h["url_ref"], h.get("format", "json")) for h in data.get("webhooks", ())),
        emails=tuple(data.get("emails", ())),
        on=tuple(data.get("on", ())),
    )


def _policy(row: Mapping[str, Any]) -> d.Policy:
    return from_row(
        d.Policy,
        row,
        alerts=_alerts(row["alerts"]),
        anomalies=d.AnomalySettings(**row["anomalies"]),
        retention=d.RetentionSettings(**row["retention"]),
        scope=_scope(row["scope"]),
        stall_timeout=dt.timedelta(seconds=row["stall_timeout_s"]),
        reconcile_every=dt.timedelta(seconds=row["reconcile_every_s"]),
        sensitive_fields=tuple(row["sensitive_fields"]),
    )


def _field_json(f: d.FieldState) -> dict[str, Any]:
    return {**dataclasses.asdict(f.info), "status": f.status.value, "backfill": f.backfill}


def _field(data: Mapping[str, Any]) -> d.FieldState:
    info = d.FieldInfo(data["name"], data["sf_type"], data["calculated"], data["nillable"], data["label"])
    return d.FieldState(info, d.FieldStatus(data["status"]), data["backfill"])


def _object(row: Mapping[str, Any]) -> d.ObjectState:
    info = d.GlobalObject(**row["info"]) if row["info"] else None
    return d.ObjectState(
        name=row["object_name"],
        status=d.ObjectStatus(row["status"]),
        info=info,
        fields=tuple(_field(f) for f in row["fields"]),
        describe_hash=row["describe_hash"],
        full=row["full_read"],
        reason=row["reason"],
    )


_POLICY_COLUMNS = (
    "policy_id",
    "org_id",
    "name",
    "scope",
    "auto_add_new_objects",
    "auto_add_new_fields",
    "files",
    "metadata",
    "stall_timeout_s",
    "daily_share_percent",
    "per_run_cap",
    "reconcile_every_s",
    "schedule",
    "alerts",
    "anomalies",
    "retention",
    "legal_hold",
    "sensitive_fields",
    "time_zone",
)


def _policy_values(p: d.Policy) -> tuple[Any, ...]:
    return (
        p.policy_id,
        p.org_id,
        p.name,
        Jsonb(_scope_json(p.scope)),
        p.auto_add_new_objects,
        p.auto_add_new_fields,
        p.files,
        p.metadata,
        p.stall_timeout.total_seconds(),
        p.daily_share_percent,
        p.per_run_cap,
        p.reconcile_every.total_seconds(),
        p.schedule,
        Jsonb(dataclasses.asdict(p.alerts)),
        Jsonb(dataclasses.asdict(p.anomalies)),
        Jsonb(dataclasses.asdict(p.retention)),
        p.legal_hold,
        list(p.sensitive_fields),
        p.time_zone,
    )


class DiscoveryStore:
    def __init__(self, pool: AsyncConnectionPool, schema: str = "discovery") -> None:
        self.pool = pool
        self.schema = schema

    async def setup(self) -> None:
        async with self.pool.connection() as conn:
            await migrate(conn, self.schema, MIGRATIONS)

    async def _fetch(self, text: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        if text.lstrip().upper().startswith("SELECT"):  # a read runs again on a fresh connection after a restart
            return await reconnected(self.pool, lambda: self._run(text, params))
        return await self._run(text, params)

    async def _insert(self, text: str, params: Sequence[Any], *, exists: str) -> dict[str, Any]:
        """The row an INSERT ... RETURNING * made; Conflict(exists) where its key is taken."""
        try:
            return (await self._fetch(text, params))[0]
        except psycopg.errors.UniqueViolation:
            raise Conflict(exists) from None

    async def _run(self, text: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn, conn.transaction():
            await self._path(conn)
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(text.encode(), params)
            return await cur.fetchall() if cur.description else []

    async def _path(self, conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(self.schema)))

    async def ping(self) -> None:
        await self._fetch("SELECT 1")

    # ---- orgs -----------------------------------------------------------------------------------------------

    async def create_org(self, org: d.Org) -> d.Org:
        row = await self._insert(
            "INSERT INTO orgs (org_id, name, connection, sandbox) VALUES (%s, %s, %s, %s) RETURNING *",
            (org.org_id, org.name, Jsonb(_connection_json(org.connection)), org.sandbox),
            exists=f"org {org.org_id!r} exists already",
        )
        return _org(row)

    async def get_org(self, org_id: str) -> d.Org | None:
        rows = await self._fetch("SELECT * FROM orgs WHERE org_id = %s", (org_id,))
        return _org(rows[0]) if rows else None

    async def list_orgs(self) -> list[d.Org]:
        return [_org(r) for r in await self._fetch("SELECT * FROM orgs ORDER BY org_id")]

    async def update_org(self, org: d.Org) -> d.Org | None:
        rows = await self._fetch(
            "UPDATE orgs SET name = %s, connection = %s, sandbox = %s, updated_at = now() WHERE org_id = %s"
            " RETURNING *",
            (org.name, Jsonb(_connection_json(org.connection)), org.sandbox, org.org_id),
        )
        return _org(rows[0]) if rows else None

    async def set_org_identity(self, org_id: str, salesforce_org_id: str, instance_url: str) -> None:
        """What the last successful login said; updated_at stays (it tracks changes a user made)."""
        await self._fetch(
            "UPDATE orgs SET salesforce_org_id = %s, instance_url = %s WHERE org_id = %s",
            (salesforce_org_id, instance_url, org_id),
        )

    async def delete_org(self, org_id: str) -> bool:
        try:
            rows = await self._fetch("DELETE FROM orgs WHERE org_id = %s RETURNING org_id", (org_id,))
        except psycopg.errors.ForeignKeyViolation:
            raise Conflict(f"org {org_id!r} still has policies; delete them first") from None
        return bool(rows)

    # ---- policies -------------------------------------------------------------------------------------------

    async def create_policy(self, policy: d.Policy) -> d.Policy:
        columns = ", ".join(_POLICY_COLUMNS)
        marks = ", ".join(["%s"] * len(_POLICY_COLUMNS))
        row = await self._insert(
            f"INSERT INTO policies ({columns}) VALUES ({marks}) RETURNING *",
            _policy_values(policy),
            exists=f"policy {policy.policy_id!r} exists already",
        )
        return _policy(row)

    async def get_policy(self, policy_id: str) -> d.Policy | None:
        rows = await self._fetch("SELECT * FROM policies WHERE policy_id = %s", (policy_id,))
        return _policy(rows[0]) if rows else None

    async def list_policies(self, org_id: str = "") -> list[d.Policy]:
        if org_id:
            rows = await self._fetch("SELECT * FROM policies WHERE org_id = %s ORDER BY policy_id", (org_id,))
        else:
            rows = await self._fetch("SELECT * FROM policies ORDER BY policy_id")
        return [_policy(r) for r in rows]

    async def update_policy(self, policy: d.Policy) -> d.Policy | None:
        sets = ", ".join(f"{c} = %s" for c in _POLICY_COLUMNS[1:])
        values = _policy_values(policy)
        rows = await self._fetch(
            f"UPDATE policies SET {sets}, updated_at = now() WHERE policy_id = %s RETURNING *",
            (*values[1:], policy.policy_id),
        )
        return _policy(rows[0]) if rows else None

    async def delete_policy(self, policy_id: str) -> bool:
        rows = await self._fetch("DELETE FROM policies WHERE policy_id = %s RETURNING policy_id", (policy_id,))
        return bool(rows)

    # ---- sessions -------------------------------------------------------------------------------------------

    async def get_session(self, session_id: str) -> SessionRecord | None:
        rows = await self._fetch("SELECT * FROM sessions WHERE session_id = %s", (session_id,))
        return _session(rows[0]) if rows else None

    async def previous_session(self, policy_id: str, session_id: str) -> SessionRecord | None:
        """The policy's last planned session other than this one."""
        rows = await self._fetch(
            "SELECT * FROM sessions WHERE policy_id = %s AND planned AND session_id <> %s"
            " ORDER BY planned_at DESC, session_id DESC LIMIT 1",
            (policy_id, session_id),
        )
        return _session(rows[0]) if rows else None

    async def session_schema(self, session_id: str) -> d.Schema:
        rows = await self._fetch(
            "SELECT * FROM session_objects WHERE session_id = %s ORDER BY object_name", (session_id,)
        )
        return d.Schema(tuple(_object(r) for r in rows))

    async def session_jobs(self, session_id: str) -> list[StoredJob]:
        rows = await self._fetch(
            "SELECT job_id, job_type, object_name, spec FROM session_jobs WHERE session_id = %s ORDER BY position",
            (session_id,),
        )
        return [StoredJob(r["job_id"], r["job_type"], r["object_name"], bytes(r["spec"])) for r in rows]

    async def describes(self, hashes: Iterable[str]) -> dict[str, bytes]:
        wanted = sorted({h for h in hashes if h})
        if not wanted:
            return {}
        rows = await self._fetch("SELECT describe_hash, body FROM describes WHERE describe_hash = ANY(%s)", (wanted,))
        return {r["describe_hash"]: bytes(r["body"]) for r in rows}

    async def save_session(self, decision: SessionDecision) -> SessionRecord:
        record, schema, jobs, describes = decision.record, decision.schema, decision.jobs, decision.describes
        async with self.pool.connection() as conn, conn.transaction():  # one transaction
            await self._path(conn)
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "INSERT INTO sessions (session_id, policy_id, org_id, planned, failure_reason, initial, warnings,"
                " global_hash, describe_date, full_describe_at, api_calls, planned_at, stall_timeout_s, kind,"
                " restore_spec) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (session_id) DO NOTHING RETURNING session_id",
                (
                    record.session_id,
                    record.policy_id,
                    record.org_id,
                    record.planned,
                    record.failure_reason,
                    record.initial,
                    Jsonb(list(record.warnings)),
                    record.global_hash,
                    record.describe_date,
                    record.full_describe_at,
                    record.api_calls,
                    record.planned_at or dt.datetime.now(dt.UTC),
                    record.stall_timeout.total_seconds(),
                    record.kind.value,
                    record.restore_spec,
                ),
            )
            if await cur.fetchone() is None:
                await cur.execute("SELECT * FROM sessions WHERE session_id = %s", (record.session_id,))
                row = await cur.fetchone()
                assert row is not None
                return _session(row)
            if describes:
                await cur.executemany(
                    "INSERT INTO describes (describe_hash, body) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                    sorted(describes.items()),
                )
            if schema is not None and schema.objects:
                await cur.executemany(
                    "INSERT INTO session_objects (session_id, object_name, status, info, fields, describe_hash,"
                    " full_read, reason) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    [
                        (
                            record.session_id,
                            o.name,
                            o.status.value,
                            Jsonb(dataclasses.asdict(o.info)) if o.info else None,
                            Jsonb([_field_json(f) for f in o.fields]),
                            o.describe_hash,
                            o.full,
                            o.reason,
                        )
                        for o in schema.objects
                    ],
                )
            if jobs:
                await cur.executemany(
                    "INSERT INTO session_jobs (session_id, job_id, position, job_type, object_name, spec)"
                    " VALUES (%s, %s, %s, %s, %s, %s)",
                    [(record.session_id, j.job_id, i, j.job_type, j.object_name, j.spec) for i, j in enumerate(jobs)],
                )
        return record

    async def record_outcomes(self, outcomes: Sequence[tuple[str, str, str]]) -> None:
        """(session_id, job_id, outcome) of finished jobs; the first word on a job stands (redeliveries)."""
        if not outcomes:
            return
        async with self.pool.connection() as conn, conn.transaction():
            await self._path(conn)
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO job_outcomes (session_id, job_id, outcome) VALUES (%s, %s, %s)"
                    " ON CONFLICT (session_id, job_id) DO NOTHING",
                    list(outcomes),
                )

    async def completed_jobs(self, session_id: str, outcomes: Sequence[str]) -> set[str]:
        rows = await self._fetch(
            "SELECT job_id FROM job_outcomes WHERE session_id = %s AND outcome = ANY(%s)",
            (session_id, list(outcomes)),
        )
        return {r["job_id"] for r in rows}

    async def mark_published(self, session_id: str) -> None:
        await self._fetch(
            "UPDATE sessions SET published = true, updated_at = now() WHERE session_id = %s", (session_id,)
        )

    # ---- split objects (issue 21) ---------------------------------------------------------------------------

    async def object_splits(self, policy_id: str) -> dict[str, tuple[IdRange, ...]]:
        rows = await self._fetch("SELECT object_name, bounds FROM object_splits WHERE policy_id = %s", (policy_id,))
        return {r["object_name"]: ranges_of(r["bounds"]) for r in rows}

    async def keep_split(
        self, policy_id: str, object_name: str, ranges: Sequence[IdRange], replacing: Sequence[IdRange] = ()
    ) -> tuple[IdRange, ...]:
        bounds = bounds_of(ranges)
        if replacing:  # the top range cut further, unless another plan changed the split meanwhile
            await self._fetch(
                "UPDATE object_splits SET bounds = %s, decided_at = now()"
                " WHERE policy_id = %s AND object_name = %s AND bounds = %s",
                (bounds, policy_id, object_name, bounds_of(replacing)),
            )
        else:  # the first plan to split the object decides
            await self._fetch(
                "INSERT INTO object_splits (policy_id, object_name, bounds) VALUES (%s, %s, %s)"
                " ON CONFLICT (policy_id, object_name) DO NOTHING",
                (policy_id, object_name, bounds),
            )
        rows = await self._fetch(
            "SELECT bounds FROM object_splits WHERE policy_id = %s AND object_name = %s", (policy_id, object_name)
        )
        return ranges_of(rows[0]["bounds"]) if rows else WHOLE


def _session(row: Mapping[str, Any]) -> SessionRecord:
    warnings = row["warnings"]
    if isinstance(warnings, str):
        warnings = json.loads(warnings)
    return from_row(
        SessionRecord,
        row,
        warnings=tuple(warnings),
        stall_timeout=dt.timedelta(seconds=row["stall_timeout_s"]),
        kind=d.SessionKind(row["kind"]),
        restore_spec=bytes(row["restore_spec"]),
    )


class ScheduleRuns:
    """The record of scheduled runs: when each policy last fired, and what came of each trigger."""

    def __init__(self, store: DiscoveryStore) -> None:
        self.store = store

    async def last_due(self, policy_id: str) -> dt.datetime | None:
        rows = await self.store._fetch(
            "SELECT max(due_at) AS due FROM schedule_runs WHERE policy_id = %s", (policy_id,)
        )
        return rows[0]["due"] if rows else None

    async def claim(self, policy_id: str, due_at: dt.datetime) -> bool:
        rows = await self.store._fetch(
            "INSERT INTO schedule_runs (policy_id, due_at) VALUES (%s, %s) ON CONFLICT DO NOTHING RETURNING policy_id",
            (policy_id, due_at),
        )
        return bool(rows)

    async def decide(self, policy_id: str, due_at: dt.datetime, session_id: str = "", skipped: str = "") -> None:
        await self.store._fetch(
            "UPDATE schedule_runs SET session_id = %s, skipped_reason = %s, decided_at = now()"
            " WHERE policy_id = %s AND due_at = %s RETURNING policy_id",
            (session_id, skipped, policy_id, due_at),
        )

    async def failed_start(self, policy_id: str, since: dt.datetime) -> dt.datetime | None:
        """The policy's latest run, if it is due after `since` and could not start (to try it again)."""
        rows = await self.store._fetch(
            "SELECT due_at, skipped_reason FROM schedule_runs WHERE policy_id = %s ORDER BY due_at DESC LIMIT 1",
            (policy_id,),
        )
        if rows and rows[0]["due_at"] > since and rows[0]["skipped_reason"].startswith(COULD_NOT_START):
            return rows[0]["due_at"]  # type: ignore[no-any-return]
        return None

    async def history(self, policy_id: str) -> list[dict[str, Any]]:
        return await self.store._fetch("SELECT * FROM schedule_runs WHERE policy_id = %s ORDER BY due_at", (policy_id,))
