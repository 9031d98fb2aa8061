"""Sensitive field values (issue 18): each org's value key, wrapped by the KEK (sensitive.py)."""

from __future__ import annotations

from collections.abc import Callable

from services.storage.encryption import Envelope
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
        row = await self._one(
            f"UPDATE {S}.value_keys SET kek_id = %s, wrapped_key = %s"
            " WHERE org_key = %s AND kek_id = %s AND wrapped_key = %s RETURNING 1",
            (new.kek_id, new.wrapped_key, org_key, old.kek_id, old.wrapped_key),
        )
        return row is not None
