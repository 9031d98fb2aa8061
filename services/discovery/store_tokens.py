"""The `tokens` table of discovery's schema: the registered tokens' claims (never a token) and their
revocations. Its migration is in migrations.py."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from services.discovery.domain import TokenRecord
from services.platform.auth import Claims


def _utc(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


class TokenStore:
    """The `tokens` table of discovery's schema (its migration 4)."""

    def __init__(self, pool: AsyncConnectionPool, schema: str = "discovery") -> None:
        self.pool = pool
        self.schema = schema

    async def _fetch(self, text: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        from psycopg import sql

        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(self.schema)))
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(text.encode(), params)
            return await cur.fetchall() if cur.description else []

    async def register(self, claims: Claims, by: str) -> TokenRecord:
        """Idempotent: registering a token again returns the first registration."""
        await self._fetch(
            "INSERT INTO tokens (token_id, name, role, issued_at, expires_at, registered_by)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (token_id) DO NOTHING",
            (claims.token_id, claims.name, claims.role, _utc(claims.issued_at), _utc(claims.expires_at), by),
        )
        found = await self.get(claims.token_id)
        assert found is not None
        return found

    async def get(self, token_id: str) -> TokenRecord | None:
        rows = await self._fetch("SELECT * FROM tokens WHERE token_id = %s", (token_id,))
        return _record(rows[0]) if rows else None

    async def list_tokens(self, include_expired: bool, now: dt.datetime) -> list[TokenRecord]:
        if include_expired:
            rows = await self._fetch("SELECT * FROM tokens ORDER BY issued_at, token_id")
        else:
            rows = await self._fetch("SELECT * FROM tokens WHERE expires_at > %s ORDER BY issued_at, token_id", (now,))
        return [_record(r) for r in rows]

    async def revoke(self, token_id: str, by: str, now: dt.datetime) -> TokenRecord | None:
        """Marks it revoked (the first revocation's time and author stay)."""
        await self._fetch(
            "UPDATE tokens SET revoked_at = %s, revoked_by = %s WHERE token_id = %s AND revoked_at IS NULL",
            (now, by, token_id),
        )
        return await self.get(token_id)

    async def revoked_unexpired(self, now: dt.datetime) -> list[TokenRecord]:
        rows = await self._fetch(
            "SELECT * FROM tokens WHERE revoked_at IS NOT NULL AND expires_at > %s ORDER BY token_id", (now,)
        )
        return [_record(r) for r in rows]


def _record(row: Mapping[str, Any]) -> TokenRecord:
    return TokenRecord(
        row["token_id"],
        row["name"],
        row["role"],
        row["issued_at"],
        row["expires_at"],
        row["registered_by"],
        row["revoked_at"],
        row["revoked_by"],
    )
