"""The jobrunner's PostgreSQL adapter (schema `jobrunner`, its tables in migrations.py): the ports MarkStore,
CheckpointStore, StoredFiles and StoredMetadata. Synchronous: jobs run in worker threads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from services.jobrunner.domain import ObjectMarks
from services.jobrunner.ports import FileRecord


class JobStore:
    def __init__(self, url: str, schema: str = "jobrunner", max_size: int = 8) -> None:
        self.schema = schema
        self.pool = ConnectionPool(url, min_size=1, max_size=max_size, open=True, kwargs={"autocommit": True})

    def close(self) -> None:
        self.pool.close()

    def _q(self, text: str) -> sql.Composed:
        return sql.SQL(text).format(s=sql.Identifier(self.schema))

    # ------------------------------------------------------------ marks
    def marks(self, policy_id: str, object_name: str, id_from: str = "", id_to: str = "") -> ObjectMarks:
        with self.pool.connection() as conn:
            row = conn.execute(
                self._q(
                    "SELECT mark, last_full, last_reconcile, last_success FROM {s}.object_marks"
                    " WHERE policy_id=%s AND object_name=%s AND id_from=%s AND id_to=%s"
                ),
                (policy_id, object_name, id_from, id_to),
            ).fetchone()
        if row is None:
            return ObjectMarks()
        return ObjectMarks(*row)

    def save_marks(self, policy_id: str, object_name: str, id_from: str, id_to: str, marks: ObjectMarks) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                self._q(
                    "INSERT INTO {s}.object_marks"
                    " (policy_id, object_name, id_from, id_to, mark, last_full, last_reconcile, last_success)"
                    " VALUES (%s,%s,%s,%s,%s,%s,%s,%s)"
                    " ON CONFLICT (policy_id, object_name, id_from, id_to) DO UPDATE SET mark=EXCLUDED.mark,"
                    " last_full=EXCLUDED.last_full, last_reconcile=EXCLUDED.last_reconcile,"
                    " last_success=EXCLUDED.last_success, updated_at=now()"
                ),
                (
                    policy_id,
                    object_name,
                    id_from,
                    id_to,
                    marks.mark,
                    marks.last_full,
                    marks.last_reconcile,
                    marks.last_success,
                ),
            )

    # ------------------------------------------------------------ checkpoints
    def checkpoint(self, session_id: str, job_id: str) -> dict[str, Any] | None:
        with self.pool.connection() as conn:
            row = conn.execute(
                self._q("SELECT state FROM {s}.checkpoints WHERE session_id=%s AND job_id=%s"), (session_id, job_id)
            ).fetchone()
        return dict(row[0]) if row else None

    def save_checkpoint(self, session_id: str, job_id: str, state: dict[str, Any]) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                self._q(
                    "INSERT INTO {s}.checkpoints (session_id, job_id, state) VALUES (%s,%s,%s)"
                    " ON CONFLICT (session_id, job_id) DO UPDATE SET state=EXCLUDED.state, updated_at=now()"
                ),
                (session_id, job_id, Jsonb(state)),
            )

    # ------------------------------------------------------------ files
    def stored_files(self, org_id: str, object_name: str) -> dict[str, str]:
        """record Id -> the SystemModstamp its stored body was read at."""
        with self.pool.connection() as conn:
            rows = conn.execute(
                self._q("SELECT record_id, system_modstamp FROM {s}.stored_files WHERE org_id=%s AND object_name=%s"),
                (org_id, object_name),
            ).fetchall()
        return {r[0]: r[1] for r in rows}

    def file_stored(
        self,
        org_id: str,
        object_name: str,
        record_id: str,
        modstamp: str,
        sha256: str,
        size: int,
        conn: psycopg.Connection[Any] | None = None,
    ) -> None:
        """One file recorded (in `conn`'s transaction when given, else in its own)."""
        if conn is None:
            with self.pool.connection() as own:
                self.file_stored(org_id, object_name, record_id, modstamp, sha256, size, own)
            return
        conn.execute(
            self._q(
                "INSERT INTO {s}.stored_files (org_id, object_name, record_id, system_modstamp, sha256, size)"
                " VALUES (%s,%s,%s,%s,%s,%s) ON CONFLICT (org_id, object_name, record_id) DO UPDATE SET"
                " system_modstamp=EXCLUDED.system_modstamp, sha256=EXCLUDED.sha256, size=EXCLUDED.size,"
                " stored_at=now()"
            ),
            (org_id, object_name, record_id, modstamp, sha256, size),
        )

    def files_stored(self, org_id: str, files: Sequence[FileRecord]) -> None:
        """Files recorded in one transaction: one commit for the lot (a commit a file cost more than the row)."""
        if not files:
            return
        with self.pool.connection() as conn, conn.transaction():
            for f in files:
                self.file_stored(org_id, *f, conn)  # positional: a test may stand in for file_stored

    # ------------------------------------------------------------ metadata
    def stored_metadata(self, org_id: str) -> dict[tuple[str, str], tuple[str, bool]]:
        with self.pool.connection() as conn:
            rows = conn.execute(
                self._q("SELECT type, full_name, last_modified, deleted FROM {s}.stored_metadata WHERE org_id=%s"),
                (org_id,),
            ).fetchall()
        return {(r[0], r[1]): (r[2], r[3]) for r in rows}

    def metadata_stored(self, org_id: str, items: list[tuple[str, str, str, bool]]) -> None:
        with self.pool.connection() as conn, conn.transaction():
            for mtype, full_name, modified, deleted in items:
                conn.execute(
                    self._q(
                        "INSERT INTO {s}.stored_metadata (org_id, type, full_name, last_modified, deleted)"
                        " VALUES (%s,%s,%s,%s,%s) ON CONFLICT (org_id, type, full_name) DO UPDATE SET"
                        " last_modified=EXCLUDED.last_modified, deleted=EXCLUDED.deleted, stored_at=now()"
                    ),
                    (org_id, mtype, full_name, modified, deleted),
                )
