"""Schema `jobrunner`: marks per object, checkpoints per job, what file and metadata jobs have stored."""

from __future__ import annotations

import psycopg

from services.platform import db

MIGRATIONS: list[str] = [
    """
    CREATE TABLE object_marks (
        policy_id text NOT NULL,
        object_name text NOT NULL,
        id_from text NOT NULL DEFAULT '',
        id_to text NOT NULL DEFAULT '',
        mark timestamptz,            -- every change with SystemModstamp <= mark is stored
        last_full timestamptz,
        last_reconcile timestamptz,
        last_success timestamptz,    -- org time of the last successful job
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (policy_id, object_name, id_from, id_to)
    );
    CREATE TABLE checkpoints (
        session_id text NOT NULL,
        job_id text NOT NULL,
        state jsonb NOT NULL,        -- phase, window, resume positions of the last two chunks
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (session_id, job_id)
    );
    CREATE TABLE stored_files (
        org_id text NOT NULL,
        object_name text NOT NULL,
        record_id text NOT NULL,
        system_modstamp text NOT NULL,
        sha256 text NOT NULL,
        size bigint NOT NULL,
        stored_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (org_id, object_name, record_id)
    );
    CREATE TABLE stored_metadata (
        org_id text NOT NULL,
        type text NOT NULL,
        full_name text NOT NULL,
        last_modified text NOT NULL,
        deleted boolean NOT NULL DEFAULT false,
        stored_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (org_id, type, full_name)
    );
    """,
]


async def migrate(url: str, schema: str) -> int:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await db.migrate(conn, schema, MIGRATIONS)
