"""The read audit's table: appended in batches by COPY, listed by entry_id."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from services.storage.domain import (
    ReadEntry,
)
from services.storage.store_base import S, StoreBase

_READ_AUDIT_COLUMNS = "at, actor, role, token_id, method, outcome, org_id, object_name, target, as_of, count"


class AuditStore(StoreBase):
    """Table read_audit."""

    async def record_reads(self, entries: Sequence[ReadEntry]) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            async with conn.cursor().copy(f"COPY {S}.read_audit ({_READ_AUDIT_COLUMNS}) FROM STDIN") as copy:
                for e in entries:
                    await copy.write_row(
                        (
                            e.at,
                            e.actor,
                            e.role,
                            e.token_id,
                            e.method,
                            e.outcome,
                            e.org_id,
                            e.object_name,
                            e.target,
                            e.as_of,
                            e.count,
                        )
                    )

    async def read_audit(self, *, since: dt.datetime | None, actor: str, after: int, limit: int) -> list[ReadEntry]:
        """Entries after entry `after`, oldest first."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_READ_AUDIT_COLUMNS}, entry_id FROM {S}.read_audit WHERE entry_id > %s"
                " AND (%s::timestamptz IS NULL OR at >= %s) AND (%s = '' OR actor = %s)"
                " ORDER BY entry_id LIMIT %s",
                (after, since, since, actor, actor, limit),
            )
            return [ReadEntry(*r) for r in await cur.fetchall()]
