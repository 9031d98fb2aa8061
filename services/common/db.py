"""PostgreSQL plumbing: connection pools and versioned migrations, one schema per service."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool


def _lock_key(schema: str) -> int:
    return int.from_bytes(hashlib.sha256(f"sfvault-migrate:{schema}".encode()).digest()[:8], "big", signed=True)


async def migrate(conn: psycopg.AsyncConnection, schema: str, migrations: Sequence[str]) -> int:
    """Apply migrations[i] as version i+1 in `schema`, each once, in order; returns the schema version.

    Migrations are append-only: a released one is never edited, a change is a new entry. An advisory lock
    makes concurrent starts of several replicas safe.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(schema),))
        await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        await conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {}.schema_migrations ("
                " version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            ).format(sql.Identifier(schema))
        )
        cur = await conn.execute(
            sql.SQL("SELECT coalesce(max(version), 0) FROM {}.schema_migrations").format(sql.Identifier(schema))
        )
        row = await cur.fetchone()
        current = int(row[0]) if row else 0
        for version, statement in enumerate(migrations, start=1):
            if version <= current:
                continue
            await conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
            await conn.execute(statement.encode())
            await conn.execute(
                sql.SQL("INSERT INTO {}.schema_migrations (version) VALUES (%s)").format(sql.Identifier(schema)),
                (version,),
            )
        return max(current, len(migrations))


async def open_pool(url: str, *, min_size: int = 1, max_size: int = 8) -> AsyncConnectionPool:
    pool = AsyncConnectionPool(url, min_size=min_size, max_size=max_size, open=False)
    await pool.open(wait=True, timeout=30)
    return pool
