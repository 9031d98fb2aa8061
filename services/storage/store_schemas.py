"""Object schemas: the describes of each object, versioned when their fields change, and which one each session saw."""

from __future__ import annotations

import datetime as dt
import json

from services.storage.domain import (
    ObjectSchema,
    SchemaRef,
)
from services.storage.store_base import S, StoreBase


class SchemasStore(StoreBase):
    """Tables objects, object_schemas and session_schemas."""

    async def object_key(self, org_key: int, object_name: str) -> tuple[int, str] | None:
        row = await self._one(
            f"SELECT object_key, object_name FROM {S}.objects WHERE org_key = %s AND lower(object_name) = lower(%s)",
            (org_key, object_name),
        )
        return (int(row[0]), str(row[1])) if row else None

    async def put_schema(
        self, org_key: int, session_id: str, schema: ObjectSchema, describe_json: bytes | None
    ) -> tuple[int, bool]:
        digest = schema.digest()
        # the usual case, a schema as its latest version: the session pointed at that version in one statement
        # (an object's schema changes rarely; a job puts it each session)
        row = await self._one(
            f"WITH latest AS (SELECT s.object_key, s.schema_version, s.digest FROM {S}.objects o"
            f" JOIN {S}.object_schemas s USING (object_key) WHERE o.org_key = %s AND lower(o.object_name) = lower(%s)"
            " ORDER BY s.schema_version DESC LIMIT 1)"
            f" INSERT INTO {S}.session_schemas (session_id, object_key, schema_version)"
            " SELECT %s, object_key, schema_version FROM latest WHERE digest = %s"
            " ON CONFLICT (session_id, object_key) DO UPDATE SET schema_version = EXCLUDED.schema_version"
            " RETURNING schema_version",
            (org_key, schema.object_name, session_id, digest),
        )
        if row is not None:
            return int(row[0]), False
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(
                f"INSERT INTO {S}.objects (org_key, object_name) VALUES (%s, %s)"
                " ON CONFLICT (org_key, lower(object_name)) DO NOTHING",
                (org_key, schema.object_name),
            )
            cur = await conn.execute(
                f"SELECT object_key FROM {S}.objects WHERE org_key = %s AND lower(object_name) = lower(%s) FOR UPDATE",
                (org_key, schema.object_name),
            )
            object_key = int((await cur.fetchone())[0])  # type: ignore[index]
            cur = await conn.execute(
                f"SELECT schema_version, digest FROM {S}.object_schemas WHERE object_key = %s"
                " ORDER BY schema_version DESC LIMIT 1",
                (object_key,),
            )
            latest = await cur.fetchone()
            changed = latest is None or bytes(latest[1]) != digest
            if changed:
                version = 1 if latest is None else int(latest[0]) + 1
                await conn.execute(
                    f"INSERT INTO {S}.object_schemas"
                    " (object_key, schema_version, digest, key_prefix, fields, describe, first_session)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (
                        object_key,
                        version,
                        digest,
                        schema.key_prefix,
                        json.dumps(schema.to_json()),
                        describe_json.decode() if describe_json else None,
                        session_id,
                    ),
                )
            else:
                version = int(latest[0])  # type: ignore[index]
            await conn.execute(
                f"INSERT INTO {S}.session_schemas (session_id, object_key, schema_version) VALUES (%s, %s, %s)"
                " ON CONFLICT (session_id, object_key) DO UPDATE SET schema_version = EXCLUDED.schema_version",
                (session_id, object_key, version),
            )
            return version, changed

    async def session_schema(self, org_key: int, session_id: str, object_name: str) -> SchemaRef | None:
        row = await self._one(
            f"SELECT o.object_key, o.object_name, s.schema_version, s.key_prefix, s.fields"
            f" FROM {S}.objects o JOIN {S}.session_schemas ss USING (object_key)"
            f" JOIN {S}.object_schemas s ON s.object_key = o.object_key AND s.schema_version = ss.schema_version"
            " WHERE o.org_key = %s AND lower(o.object_name) = lower(%s) AND ss.session_id = %s",
            (org_key, object_name, session_id),
        )
        if row is None:
            return None
        return SchemaRef(row[0], row[1], row[2], ObjectSchema.from_json(row[1], row[3], row[4]))

    async def schema_history(self, object_key: int, object_name: str) -> dict[int, ObjectSchema]:
        """Every schema version of an object."""
        rows = await self._all(
            f"SELECT schema_version, key_prefix, fields FROM {S}.object_schemas WHERE object_key = %s", (object_key,)
        )
        return {r[0]: ObjectSchema.from_json(object_name, r[1], r[2]) for r in rows}

    async def schema_as_of(self, object_key: int, object_name: str, as_of: dt.datetime) -> ObjectSchema | None:
        """The describe in effect at a time: the newest schema version created at or before it."""
        row = await self._one(
            f"SELECT key_prefix, fields FROM {S}.object_schemas WHERE object_key = %s"
            " ORDER BY (created_at <= %s) DESC, schema_version DESC LIMIT 1",
            (object_key, as_of),
        )
        return ObjectSchema.from_json(object_name, row[0], row[1]) if row else None
