"""PostgreSQL plumbing: connection pools and versioned migrations, one schema per service."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, PoolTimeout

T = TypeVar("T")

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    D = TypeVar("D", bound=DataclassInstance)


def from_row(cls: type[D], row: Mapping[str, Any], **given: Any) -> D:
    """A dataclass from a row whose columns are named like its fields (a KeyError where a column is missing);
    `given` holds the fields whose columns are named or typed otherwise."""
    return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls) if f.name not in given}, **given)


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


async def open_pool(url: str, *, min_size: int = 1, max_size: int = 8, timeout_s: float = 30.0) -> AsyncConnectionPool:
    """`timeout_s`: how long a caller waits for a connection (then PoolTimeout, an OperationalError: the
    database is away). Connections are not checked as they are handed out: after a restart, psycopg_pool's
    check backs off between dead connections (seconds each); `reconnected` drops them all at once instead."""
    pool = AsyncConnectionPool(url, min_size=min_size, max_size=max_size, timeout=timeout_s, open=False)
    await pool.open(wait=True, timeout=30)
    return pool


async def reconnected(pool: AsyncConnectionPool, operation: Callable[[], Awaitable[T]]) -> T:
    """Run a read; if it met a connection that a PostgreSQL restart cut, drop every such connection of the pool
    (`check`) and run it once more. The database still away raises as before (the caller answers UNAVAILABLE)."""
    try:
        return await operation()
    except PoolTimeout:
        raise
    except psycopg.OperationalError:
        await pool.check()
        return await operation()
