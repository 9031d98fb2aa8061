"""Compare (issue 18) and the live count: the records whose state differs between two points, decided in SQL on
the stored hashes, and the live records per object in the latest state.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Sequence

from services.storage.store_base import S, StoreBase

# The records of an object whose state differs between two points. A record's head carries `changed_at`, the time
# of its latest version (the head and its version are written by one transaction, whose now() both take), so
# only heads changed after `from` can differ: one pass over the object's heads (narrow rows, no values) finds
# them, and each is probed twice by primary key (pruned to its partition at run time) for the version in force
# at `from` and at `to` -- the last version captured at or before that point, as every as-of read finds it.
# Live = a version in force that is not deleted. The values (jsonb) are read only for the records live at both
# points with different hashes.
_COMPARE = f"""
SELECT c.record_id, c.kind, fv.schema_version, fv.data::text, tv.schema_version, tv.data::text FROM (
  SELECT h.record_id, a.version_id AS from_version, b.version_id AS to_version,
    CASE WHEN a.deleted = 0 AND b.deleted = 0 THEN 'changed' WHEN b.deleted = 0 THEN 'added' ELSE 'deleted' END
      AS kind
  FROM {S}.record_head h
  LEFT JOIN LATERAL (
    SELECT v.version_id, v.deleted, v.hash FROM {S}.record_versions v
    WHERE v.org_key = %(org)s AND v.object_key = %(object)s AND v.record_id = h.record_id
      AND v.captured_at <= %(since)s ORDER BY v.version_id DESC LIMIT 1) a ON true
  LEFT JOIN LATERAL (
    SELECT v.version_id, v.deleted, v.hash FROM {S}.record_versions v
    WHERE v.org_key = %(org)s AND v.object_key = %(object)s AND v.record_id = h.record_id
      AND v.captured_at <= %(until)s ORDER BY v.version_id DESC LIMIT 1) b ON true
  WHERE h.org_key = %(org)s AND h.object_key = %(object)s AND h.changed_at > %(since)s
    AND ((coalesce(a.deleted, 1) = 0) <> (coalesce(b.deleted, 1) = 0)
         OR (a.deleted = 0 AND b.deleted = 0 AND a.hash <> b.hash))
) c
LEFT JOIN LATERAL (
  SELECT v.schema_version, v.data FROM {S}.record_versions v
  WHERE c.kind = 'changed' AND v.org_key = %(org)s AND v.object_key = %(object)s AND v.record_id = c.record_id
    AND v.version_id = c.from_version) fv ON true
LEFT JOIN LATERAL (
  SELECT v.schema_version, v.data FROM {S}.record_versions v
  WHERE c.kind = 'changed' AND v.org_key = %(org)s AND v.object_key = %(object)s AND v.record_id = c.record_id
    AND v.version_id = c.to_version) tv ON true
ORDER BY c.record_id COLLATE "C"
"""

# (record Id, added | deleted | changed, from: schema version, values JSON; to: the same) -- values of changed only
CompareRow = tuple[str, str, int | None, str | None, int | None, str | None]


class CompareStore(StoreBase):
    """Reads of record_head and record_versions for compare and the live count."""

    async def org_objects(self, org_key: int, lowered: Sequence[str] = ()) -> list[tuple[int, str]]:
        """(object_key, name) of every object of an org, by name; only those named (in lower case) when given."""
        rows = await self._all(
            f"SELECT object_key, object_name FROM {S}.objects WHERE org_key = %s"
            " AND (cardinality(%s::text[]) = 0 OR lower(object_name) = ANY(%s::text[])) ORDER BY lower(object_name)",
            (org_key, list(lowered), list(lowered)),
        )
        return [(int(r[0]), str(r[1])) for r in rows]

    async def compare(
        self, org_key: int, object_key: int, since: dt.datetime, until: dt.datetime, *, batch: int = 1000
    ) -> AsyncIterator[list[CompareRow]]:
        """The records whose state differs between `since` and `until`, in Id order, in batches (a server-side
        cursor: memory stays one batch whatever the count)."""
        async with self.pool.connection() as conn, conn.transaction():
            cur = conn.cursor(name="compare")
            await cur.execute(_COMPARE, {"org": org_key, "object": object_key, "since": since, "until": until})
            while rows := await cur.fetchmany(batch):
                yield [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]
            await cur.close()

    async def count_live(self, org_key: int, object_keys: Sequence[int]) -> dict[int, int]:
        """{object_key: live records in the latest state} (heads not deleted); an object without any: absent."""
        rows = await self._all(  # the counts the heads' triggers keep (migration V14): a few rows an object
            f"SELECT object_key, sum(live) FROM {S}.live_counts"
            " WHERE org_key = %s AND object_key = ANY(%s) GROUP BY object_key HAVING sum(live) > 0",
            (org_key, list(object_keys)),
        )
        return {int(r[0]): int(r[1]) for r in rows}
