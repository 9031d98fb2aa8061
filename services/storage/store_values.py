"""Sensitive field values (issue 18): each org's value key, wrapped by the KEK (sensitive.py); the versions
whose values of a field marked sensitive later are still in clear, and their rewrite sealed."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from services.platform.encryption import Envelope
from services.storage.sensitive import TOKEN
from services.storage.store_base import S, StoreBase


class ValueKeysStore(StoreBase):
    """Table value_keys."""

    async def value_key(self, org_key: int, make: Callable[[], Envelope] | None) -> Envelope | None:
        """The org's wrapped value key; made by `make` when it has none yet (replicas racing: the first one kept),
        None when it has none and `make` is None."""
        if make is not None:
            row = await self._one(f"SELECT kek_id, wrapped_key FROM {S}.value_keys WHERE org_key = %s", (org_key,))
            if row is None:
                made = make()
                await self._one(
                    f"INSERT INTO {S}.value_keys (org_key, kek_id, wrapped_key) VALUES (%s, %s, %s)"
                    " ON CONFLICT (org_key) DO NOTHING RETURNING 1",
                    (org_key, made.kek_id, made.wrapped_key),
                )
        row = await self._one(f"SELECT kek_id, wrapped_key FROM {S}.value_keys WHERE org_key = %s", (org_key,))
        return Envelope(str(row[0]), bytes(row[1])) if row else None

    async def value_keys_not_under(self, kek_id: str) -> list[tuple[int, Envelope]]:
        """(org_key, envelope) of the value keys wrapped by another KEK than `kek_id` (one per org: few)."""
        rows = await self._all(
            f"SELECT org_key, kek_id, wrapped_key FROM {S}.value_keys WHERE kek_id <> %s ORDER BY org_key", (kek_id,)
        )
        return [(int(r[0]), Envelope(str(r[1]), bytes(r[2]))) for r in rows]

    async def replace_value_key(self, org_key: int, old: Envelope, new: Envelope) -> bool:
        """Re-wraps an org's value key (only if its row still holds `old`: a concurrent rewrap wins)."""
        return await self._rewrap("value_keys", "org_key", org_key, old, new)

    async def versions_in_clear(
        self, org_key: int, object_key: int, fields: Sequence[str], after: tuple[str, int], limit: int
    ) -> list[tuple[str, int, str]]:
        """(record Id, version_id, values JSON) of the object's versions holding one of these fields not sealed,
        in (Id, version) order after `after` (a cursor: one pass over the object's versions in all)."""
        return [
            (str(r[0]), int(r[1]), str(r[2]))
            for r in await self._all(
                f"SELECT record_id, version_id, data::text FROM {S}.record_versions v"
                " WHERE org_key = %s AND object_key = %s AND (record_id, version_id) > (%s, %s)"
                "  AND EXISTS (SELECT 1 FROM unnest(%s::text[]) AS f(name) WHERE v.data ? f.name"
                "   AND NOT (jsonb_typeof(v.data -> f.name) = 'object' AND v.data -> f.name ? %s))"
                " ORDER BY record_id, version_id LIMIT %s",
                (org_key, object_key, after[0], after[1], list(fields), TOKEN, limit),
            )
        ]

    async def replace_values(self, org_key: int, object_key: int, rows: Sequence[tuple[str, int, str]]) -> int:
        """Rewrites these versions' values (record Id, version_id, values JSON): the same values, sealed."""
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                f"UPDATE {S}.record_versions v SET data = u.data::jsonb"
                " FROM unnest(%s::text[], %s::bigint[], %s::text[]) AS u(id, version_id, data)"
                " WHERE v.org_key = %s AND v.object_key = %s AND v.record_id = u.id AND v.version_id = u.version_id",
                ([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], org_key, object_key),
            )
            return cur.rowcount

    async def every_object(self) -> list[tuple[int, int, str]]:
        """(org_key, object_key, name) of every object stored."""
        rows = await self._all(f"SELECT org_key, object_key, object_name FROM {S}.objects ORDER BY object_key")
        return [(int(r[0]), int(r[1]), str(r[2])) for r in rows]
