"""The PostgreSQL adapter of storage: its own schema (see migrations.py), one class per table or concern
(store_jobs, store_schemas, store_records, store_files, store_metadata, store_audit, store_restore,
store_compare, store_retention; the chunk claim they share in store_base), joined here into the one PostgresStore
the service wires in (it implements every port of ports.py).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from services.platform import db
from services.storage.domain import (
    ChunkOutcome,
    FileVersionRow,
    JobRef,
    MetadataComponentIn,
    MetadataVersionRow,
    PendingEvent,
    ReadEntry,
    RecordVersionRow,
    RestorePointRow,
    SchemaRef,
)
from services.storage.migrations import MIGRATIONS, SCHEMA
from services.storage.store_audit import AuditStore
from services.storage.store_base import Fault, StoreBase
from services.storage.store_compare import CompareStore
from services.storage.store_erasure import ErasureStore
from services.storage.store_files import FilesStore
from services.storage.store_jobs import JobsStore
from services.storage.store_metadata import MetadataStore
from services.storage.store_records import RecordsStore, first_version_rows
from services.storage.store_restore import RestoreStore
from services.storage.store_retention import RetentionStore
from services.storage.store_schemas import SchemasStore
from services.storage.store_values import ValueKeysStore

__all__ = [
    "ChunkOutcome",
    "Fault",
    "FileVersionRow",
    "JobRef",
    "MetadataComponentIn",
    "MetadataVersionRow",
    "PendingEvent",
    "PostgresStore",
    "ReadEntry",
    "RecordVersionRow",
    "RestorePointRow",
    "SchemaRef",
    "StoreBase",
    "first_version_rows",
    "open_store_pool",
]


async def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
    # one temporary table per connection, emptied at every commit, instead of one per chunk (catalog churn)
    await conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS incoming ("
        " record_id text NOT NULL, hash bytea NOT NULL, deleted smallint NOT NULL, system_modstamp timestamptz,"
        " raw_hash bytea"
        ") ON COMMIT DELETE ROWS"
    )
    await conn.commit()


async def open_store_pool(url: str, *, min_size: int = 1, max_size: int = 8) -> AsyncConnectionPool:
    pool = AsyncConnectionPool(url, min_size=min_size, max_size=max_size, open=False, configure=_configure)
    await pool.open(wait=True, timeout=30)
    return pool


class PostgresStore(
    JobsStore,
    SchemasStore,
    RecordsStore,
    FilesStore,
    MetadataStore,
    AuditStore,
    RestoreStore,
    CompareStore,
    RetentionStore,
    ErasureStore,
    ValueKeysStore,
):
    """Storage's tables, every concern's adapter in one object over one pool."""

    async def migrate(self, *, count_formula_changes: bool = False) -> int:
        async with self.pool.connection() as conn:
            version = await db.migrate(conn, SCHEMA, MIGRATIONS)
        await self.rehash_rules_1_heads(count_formula_changes=count_formula_changes)
        return version
