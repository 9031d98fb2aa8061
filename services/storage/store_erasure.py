"""Erasure's tables (erasures, erased_records, erasure_key) and what an erasure deletes: record versions and heads,
file versions, and the file bodies no version of any org or object references any more. One transaction per
erasure; the bodies are removed from the repository inside it (before the commit: a failure leaves the rows, and
a retried Erase finishes the work; never a row gone while its body stays).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import psycopg

from services.storage.erasure import (
    DeleteBodies,
    ErasedRecordRow,
    Erasure,
    ErasureResult,
    ValueSought,
    VerificationResult,
    json_needle,
    sample,
    value_key,
)
from services.storage.store_base import S, StoreBase


async def held(conn: psycopg.AsyncConnection[Any], org_key: int, object_name: str) -> bool:
    """Whether an active legal hold (legal_holds, store_retention.py) covers the org (whole) or this object of it."""
    cur = await conn.execute(
        f"SELECT 1 FROM {S}.legal_holds WHERE org_key = %s AND released_at IS NULL"
        " AND (object_name = '' OR lower(object_name) = lower(%s)) LIMIT 1",
        (org_key, object_name),
    )
    return await cur.fetchone() is not None


# a version holding one of the keyed search hashes (sensitive.py) of a value: each names its org, object and field
_SEALED_HELD = "EXISTS (SELECT 1 FROM unnest(%s::text[]) AS n(hash) WHERE strpos(v.data::text, n.hash) > 0)"


class ErasureStore(StoreBase):
    """Tables erasures, erased_records and erasure_key; erasure's deletes and scans."""

    async def erasure_generation(self) -> int:
        """The last erasure's sequence number (0: none): the tombstone cache reloads when it moves."""
        row = await self._one(f"SELECT coalesce(max(erasure_seq), 0) FROM {S}.erasures")
        return int(row[0]) if row else 0

    async def tombstones(self) -> dict[tuple[int, int], frozenset[str]]:
        """{(org_key, object_key): erased Ids} of every org."""
        rows = await self._all(
            f"SELECT org_key, object_key, array_agg(record_id) FROM {S}.erased_records GROUP BY org_key, object_key"
        )
        return {(r[0], r[1]): frozenset(r[2]) for r in rows}

    async def erasure_key(self) -> bytes:
        """The installation's key of the audit's value hashes, created at the first erasure."""
        async with self.pool.connection() as conn:
            await conn.execute(
                f"INSERT INTO {S}.erasure_key (id, key) VALUES (1, %s) ON CONFLICT (id) DO NOTHING",
                (secrets.token_bytes(32),),
            )
            cur = await conn.execute(f"SELECT key FROM {S}.erasure_key WHERE id = 1")
            row = await cur.fetchone()
            assert row is not None
            return bytes(row[0])

    @staticmethod
    async def _objects(conn: psycopg.AsyncConnection[Any], org_key: int, names: Sequence[str]) -> dict[str, int]:
        """{stored object name: object_key} of the names the org has (case-insensitive); others left out."""
        cur = await conn.execute(
            f"SELECT object_name, object_key FROM {S}.objects WHERE org_key = %s AND lower(object_name) = ANY(%s)",
            (org_key, [n.lower() for n in names]),
        )
        return {r[0]: r[1] for r in await cur.fetchall()}

    @staticmethod
    async def _holding_value(
        conn: psycopg.AsyncConnection[Any],
        org_key: int,
        object_key: int,
        fields: Sequence[str],
        value: str,
        sealed: Sequence[str] = (),
    ) -> list[str]:
        """Ids of the object's records whose any version holds the value (trimmed, any case) in one of the fields;
        or, sealed (a sensitive field), one of the value's keyed search hashes in those fields (`sealed`)."""
        cur = await conn.execute(
            f"SELECT DISTINCT v.record_id FROM {S}.record_versions v"
            " WHERE v.org_key = %s AND v.object_key = %s AND ((strpos(lower(v.data::text), %s) > 0"
            "  AND EXISTS (SELECT 1 FROM jsonb_each_text(v.data) e"
            "   WHERE lower(e.key) = ANY(%s) AND lower(btrim(e.value)) = %s))"
            f"  OR {_SEALED_HELD})"
            " ORDER BY v.record_id",
            (org_key, object_key, json_needle(value), [f.lower() for f in fields], value_key(value), list(sealed)),
        )
        return [r[0] for r in await cur.fetchall()]

    async def erase(
        self,
        org_key: int,
        erasure: Erasure,
        delete_bodies: DeleteBodies,
        *,
        is_held: Callable[[psycopg.AsyncConnection[Any], int, str], Awaitable[bool]] = held,
    ) -> ErasureResult:
        """Finds the records (by Id, or holding the value) and, unless a dry run, deletes them whole; raises
        FailedPrecondition (from the caller's check) under a legal hold. Returns what was (or would be) erased.
        `erasure.sealed`: {object, lower case: the value's keyed search hashes in its sensitive fields asked}."""
        from services.storage.domain import FailedPrecondition

        request, eraser = erasure.request, erasure.eraser

        result = ErasureResult(erasure.erasure_id if not request.dry_run else "")
        async with self.pool.connection() as conn, conn.transaction():
            objects = await self._objects(conn, org_key, request.objects())
            targets: list[tuple[str, int, list[str]]] = []
            for name, object_key in objects.items():
                if await is_held(conn, org_key, name):
                    raise FailedPrecondition(
                        f"{name} of this org is under a legal hold: nothing in it is erased until the hold is released"
                    )
                if request.by_value:
                    ids = await self._holding_value(
                        conn,
                        org_key,
                        object_key,
                        request.fields_of(name),
                        request.value,
                        erasure.sealed.get(name.lower(), ()),
                    )
                else:
                    cur = await conn.execute(
                        f"SELECT DISTINCT record_id FROM {S}.record_versions v"
                        " JOIN unnest(%s::text[]) AS u(id) ON v.record_id = u.id"
                        " WHERE v.org_key = %s AND v.object_key = %s ORDER BY record_id",
                        (list(request.ids), org_key, object_key),
                    )
                    ids = [r[0] for r in await cur.fetchall()]
                if ids:
                    targets.append((name, object_key, ids))
            for name, object_key, ids in targets:
                rows = {i: ErasedRecordRow(name, i) for i in ids}
                result.records.extend(rows.values())
                if request.dry_run:
                    await self._count_records(conn, org_key, object_key, name, rows, delete=False)
                    continue
                # the heads locked first, in the order a chunk locks them: a chunk writing one of these records
                # commits before (and its version is deleted here) or waits and finds no head
                await conn.execute(
                    f"SELECT 1 FROM {S}.record_head h JOIN unnest(%s::text[]) AS u(id) ON h.record_id = u.id"
                    ' WHERE h.org_key = %s AND h.object_key = %s ORDER BY h.record_id COLLATE "C" FOR UPDATE OF h',
                    (ids, org_key, object_key),
                )
                locations = await self._count_records(conn, org_key, object_key, name, rows, delete=True)
                await conn.execute(
                    f"DELETE FROM {S}.record_head h USING unnest(%s::text[]) AS u(id)"
                    " WHERE h.org_key = %s AND h.object_key = %s AND h.record_id = u.id",
                    (ids, org_key, object_key),
                )
                if locations:
                    await delete_bodies(locations)
            for r in result.records:
                result.versions += r.versions
                result.file_bodies += r.file_bodies
            if request.dry_run:
                return result
            await self._at("erase.before_audit")
            cur = await conn.execute(
                f"INSERT INTO {S}.erasures (erasure_id, org_key, erased_by, role, token_id, reason, value_hash,"
                " fields, records, versions, file_bodies) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " RETURNING erasure_seq",
                (
                    erasure.erasure_id,
                    org_key,
                    eraser.name,
                    eraser.role,
                    eraser.token_id,
                    request.reason,
                    erasure.value_hash,
                    [f"{f.object_name}.{f.field}" for f in request.fields],
                    json.dumps(
                        [
                            {"object": r.object_name, "id": r.record_id, "versions": r.versions, "files": r.file_bodies}
                            for r in result.records
                        ]
                    ),
                    result.versions,
                    result.file_bodies,
                ),
            )
            seq_row = await cur.fetchone()
            assert seq_row is not None
            for _name, object_key, ids in targets:
                await conn.execute(
                    f"INSERT INTO {S}.erased_records (org_key, object_key, record_id, erasure_seq)"
                    " SELECT %s, %s, u.id, %s FROM unnest(%s::text[]) AS u(id)"
                    " ON CONFLICT (org_key, object_key, record_id) DO UPDATE SET erasure_seq = EXCLUDED.erasure_seq",
                    (org_key, object_key, seq_row[0], ids),
                )
        return result

    @staticmethod
    async def _count_records(
        conn: psycopg.AsyncConnection[Any],
        org_key: int,
        object_key: int,
        object_name: str,
        rows: dict[str, ErasedRecordRow],
        *,
        delete: bool,
    ) -> list[str]:
        """Counts each record's versions, its file versions and the bodies only they referenced into its row; with
        `delete`, deletes them as it counts them (the bodies' rows too). Returns the repository addresses of the
        bodies to remove."""
        versions = (
            f"DELETE FROM {S}.record_versions v USING unnest(%s::text[]) AS u(id)"
            " WHERE v.org_key = %s AND v.object_key = %s AND v.record_id = u.id RETURNING v.record_id"
            if delete
            else f"SELECT v.record_id FROM {S}.record_versions v JOIN unnest(%s::text[]) AS u(id) ON v.record_id = u.id"
            " WHERE v.org_key = %s AND v.object_key = %s"
        )
        cur = await conn.execute(
            f"WITH counted AS ({versions}) SELECT record_id, count(*) FROM counted GROUP BY record_id",
            (list(rows), org_key, object_key),
        )
        for rid, n in await cur.fetchall():
            rows[rid].versions = int(n)
        ids = list(rows)
        if delete:
            cur = await conn.execute(
                f"DELETE FROM {S}.file_versions f USING unnest(%s::text[]) AS u(id)"
                " WHERE f.org_key = %s AND lower(f.object_name) = lower(%s) AND f.record_id = u.id"
                " RETURNING f.record_id, f.sha256",
                (ids, org_key, object_name),
            )
        else:
            cur = await conn.execute(
                f"SELECT f.record_id, f.sha256 FROM {S}.file_versions f JOIN unnest(%s::text[]) AS u(id)"
                " ON f.record_id = u.id WHERE f.org_key = %s AND lower(f.object_name) = lower(%s)",
                (ids, org_key, object_name),
            )
        owners: dict[bytes, str] = {}
        for rid, sha in await cur.fetchall():
            owners.setdefault(bytes(sha), rid)
        if not owners:
            return []
        shas = list(owners)
        # a body stays while any other file version (of any org or object) or metadata version references it;
        # counting (a dry run), the records' own file versions do not count as other references
        not_own = (
            "" if delete else " AND NOT (o.org_key = %s AND lower(o.object_name) = lower(%s) AND o.record_id = ANY(%s))"
        )
        params: list[Any] = [shas]
        if not delete:
            params += [org_key, object_name, ids]
        query = (
            f"SELECT s.sha FROM unnest(%s::bytea[]) AS s(sha) WHERE NOT EXISTS ("
            f" SELECT 1 FROM {S}.file_versions o WHERE o.sha256 = s.sha{not_own})"
            f" AND NOT EXISTS (SELECT 1 FROM {S}.metadata_versions m WHERE m.sha256 = s.sha)"
        )
        cur = await conn.execute(query, params)
        orphans = [bytes(r[0]) for r in await cur.fetchall()]
        for sha in orphans:
            rows[owners[sha]].file_bodies += 1
        if not delete or not orphans:
            return []
        cur = await conn.execute(f"DELETE FROM {S}.files WHERE sha256 = ANY(%s) RETURNING location", (orphans,))
        return [r[0] for r in await cur.fetchall()]

    # --- verification ----------------------------------------------------------------------------------------

    async def versions_holding(self, org_key: int, sought: ValueSought, result: VerificationResult) -> None:
        """Counts the org's versions holding the value (in any field, or in the given (object, field)s; contained,
        any case; in a sensitive field, sealed: equal as erasure compares, by its keyed search hash in `sealed`, by
        object in lower case) into `result`, with samples."""
        value, fields, sealed = sought.value, sought.fields, sought.sealed
        async with self.pool.connection() as conn:
            if not fields:
                cur = await conn.execute(
                    f"SELECT o.object_name, v.record_id FROM {S}.record_versions v"
                    f" JOIN {S}.objects o USING (object_key)"
                    f" WHERE v.org_key = %s AND (strpos(lower(v.data::text), %s) > 0 OR {_SEALED_HELD})",
                    (org_key, json_needle(value), [h for hashes in sealed.values() for h in hashes]),
                )
                self._tally(await cur.fetchall(), result)
                return
            by_object: dict[str, list[str]] = {}
            for obj, f in fields:
                by_object.setdefault(obj.lower(), []).append(f.lower())
            objects = await self._objects(conn, org_key, list(by_object))
            for name, object_key in objects.items():
                cur = await conn.execute(
                    f"SELECT %s::text, v.record_id FROM {S}.record_versions v"
                    " WHERE v.org_key = %s AND v.object_key = %s AND ((strpos(lower(v.data::text), %s) > 0"
                    "  AND EXISTS (SELECT 1 FROM jsonb_each_text(v.data) e"
                    "   WHERE lower(e.key) = ANY(%s) AND strpos(lower(e.value), %s) > 0))"
                    f"  OR {_SEALED_HELD})",
                    (
                        name,
                        org_key,
                        object_key,
                        json_needle(value),
                        by_object[name.lower()],
                        value_key(value),
                        list(sealed.get(name.lower(), ())),
                    ),
                )
                self._tally(await cur.fetchall(), result)

    @staticmethod
    def _tally(rows: Sequence[tuple[Any, ...]], result: VerificationResult) -> None:
        result.versions_holding += len(rows)
        for obj, rid in rows:
            result.add_sample(sample(obj, rid))

    async def erasure_leftovers(self, org_key: int, erasure_id: str, result: VerificationResult) -> bool:
        """Counts what is still stored of an erasure's records (versions, file versions); False: no such erasure
        of this org."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT records FROM {S}.erasures WHERE org_key = %s AND erasure_id = %s", (org_key, erasure_id)
            )
            row = await cur.fetchone()
            if row is None:
                return False
            records = row[0] if isinstance(row[0], list) else json.loads(row[0])
            by_object: dict[str, list[str]] = {}
            for r in records:
                by_object.setdefault(r["object"], []).append(r["id"])
            objects = await self._objects(conn, org_key, list(by_object))
            for name, object_key in objects.items():
                ids = [i for o, got in by_object.items() if o.lower() == name.lower() for i in got]
                cur = await conn.execute(
                    f"SELECT %s::text, v.record_id FROM {S}.record_versions v JOIN unnest(%s::text[]) AS u(id)"
                    " ON v.record_id = u.id WHERE v.org_key = %s AND v.object_key = %s",
                    (name, ids, org_key, object_key),
                )
                self._tally(await cur.fetchall(), result)
                cur = await conn.execute(
                    f"SELECT %s::text, f.record_id FROM {S}.file_versions f JOIN unnest(%s::text[]) AS u(id)"
                    " ON f.record_id = u.id WHERE f.org_key = %s AND lower(f.object_name) = lower(%s)",
                    (name, ids, org_key, name),
                )
                files = await cur.fetchall()
                result.file_bodies_holding += len(files)
                for obj, rid in files:
                    result.add_sample(sample(obj, rid))
            return True

    async def org_bodies(self, org_key: int) -> dict[str, list[str]]:
        """{repository address: ["Object:Id" or "Type:FullName" referencing it]} of every body the org's file
        and metadata versions reference."""
        rows = await self._all(
            f"SELECT f.location, v.object_name || ':' || v.record_id FROM {S}.file_versions v"
            f" JOIN {S}.files f USING (sha256) WHERE v.org_key = %s"
            " UNION ALL"
            f" SELECT f.location, m.type || ':' || m.full_name FROM {S}.metadata_versions m"
            f" JOIN {S}.files f USING (sha256) WHERE m.org_key = %s",
            (org_key, org_key),
        )
        out: dict[str, list[str]] = {}
        for location, owner in rows:
            out.setdefault(location, []).append(owner)
        return out
