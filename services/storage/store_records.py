"""Records: heads and versions. A chunk's set-based write (put_records), deletes, the one-shot rehash off rules 1,
and the reads of versions (history, as-of, export, restore points).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
from binascii import hexlify
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Sequence
from itertools import chain, repeat
from operator import itemgetter
from typing import Any

import psycopg
from psycopg.rows import dict_row

from services.platform.counts import ZERO
from services.storage.domain import (
    CANONICAL_RULES,
    CanonicalRecord,
    ChunkOutcome,
    Counts,
    Deleted,
    HeadState,
    JobRef,
    ObjectSchema,
    PreparedColumns,
    RecordCanonicalizer,
    RecordsChunk,
    RecordVersionRow,
    RestorePointRow,
    SchemaRef,
    classify,
    values_hash,
)
from services.storage.erasure import tombstoned_positions, without_positions
from services.storage.ports import UNGUARDED, Deletes, WriteGuards
from services.storage.store_base import S, StoreBase

_FLAG_TEXT = (b"0", b"1", b"2")  # Deleted's values
_ALL_BUT_LAST = itemgetter(slice(None, -1))
_ALL_BUT_FIRST = itemgetter(slice(1, None))


def first_version_rows(head_prefix: bytes, version_middle: bytes, columns: PreparedColumns) -> tuple[bytes, bytes, int]:
    """(head rows, version rows, bytes of the values stored) of first versions, as COPY text with the empty
    string for NULL (no column written here holds an empty string otherwise), in Id order (_upsert_heads').

    Built a column at a time: no object and no Python step per record but the separator of its two JSON
    objects (join_values' rule: a comma unless one of them is empty). A record without a fingerprint (b"")
    gets a NULL raw_hash."""
    ids, cores, others, modstamps, flags, hashes, fps = columns
    if list(ids) != sorted(ids):  # Bulk reads them in Id order: the check costs a comparison per Id
        order = sorted(range(len(ids)), key=ids.__getitem__)
        ids, modstamps, flags = [ids[i] for i in order], [modstamps[i] for i in order], [flags[i] for i in order]
        cores, others = [cores[i] for i in order], [others[i] for i in order]
        hashes, fps = [hashes[i] for i in order], [fps[i] for i in order]
    rids = list(map(str.encode, ids))
    stamps = list(map(str.encode, modstamps))
    deleted = list(map(_FLAG_TEXT.__getitem__, flags))
    hexes = list(map(hexlify, hashes))
    if all(fps):
        raws: Iterable[bytes] = map(b"\t\\\\x".__add__, map(hexlify, fps))
    else:
        raws = [b"\t\\\\x" + hexlify(fp) if fp else b"\t" for fp in fps]
    heads = b"".join(
        chain.from_iterable(
            zip(
                repeat(head_prefix), rids, repeat(b"\t\\\\x"), hexes, repeat(b"\t"), deleted, repeat(b"\t1\t"),
                stamps, raws, repeat(b"\n"),
            )
        )
    )  # fmt: skip
    commas = [b"," if len(c) > 2 and len(o) > 2 else b"" for c, o in zip(cores, others, strict=True)]
    # every backslash doubled at once (COPY text's escape), the values' and the one starting each bytea's hex
    versions = b"".join(
        chain.from_iterable(
            zip(
                repeat(head_prefix), rids, repeat(version_middle), stamps, repeat(b"\t"), deleted, repeat(b"\t\\x"),
                hexes, repeat(b"\t"), map(_ALL_BUT_LAST, cores), commas, map(_ALL_BUT_FIRST, others), repeat(b"\n"),
            )
        )
    ).replace(b"\\", b"\\\\")  # fmt: skip
    written = sum(map(len, cores)) + sum(map(len, others)) - 2 * len(ids) + commas.count(b",")
    return heads, versions, written


def _copy_text(value: bytes) -> bytes:
    # COPY text format: backslash is the escape character; JSON already escapes tabs and newlines
    return value.replace(b"\\", b"\\\\") if b"\\" in value else value


def _sealed_columns(columns: PreparedColumns, seal: Callable[[bytes], bytes]) -> PreparedColumns:
    ids, cores, others, modstamps, flags, hashes, fps = columns
    return ids, list(map(seal, cores)), list(map(seal, others)), modstamps, flags, hashes, fps


async def _sealed(records: list[CanonicalRecord], seal: Callable[[bytes], bytes] | None) -> list[CanonicalRecord]:
    """The records with their sensitive values sealed (CPU-bound: off the event loop)."""
    if seal is None:
        return records
    return await asyncio.to_thread(lambda: [r._replace(data=seal(r.data)) for r in records])


class RecordsStore(StoreBase):
    """Tables record_head and record_versions."""

    async def rehash_rules_1_heads(self, *, count_formula_changes: bool, batch: int = 1000) -> int:
        """The one-shot migration off canonical rules 1 (BLAKE2b): every head still hashed under them takes the
        rules-2 hash (XXH3-128, CANONICAL_RULES) of its last version's hashed values -- the canonical text is the
        same under both rules, so an unchanged record stays unchanged and no version is written. Runs at start-up
        until none is left (found through a partial index: free once done); idempotent, so replicas starting at
        once only repeat each other's work. Returns the heads rehashed."""
        done = 0
        hashed: dict[tuple[int, int], frozenset[str]] = {}
        while True:
            async with self.pool.connection() as conn, conn.transaction():
                cur = await conn.execute(
                    "SELECT h.org_key, h.object_key, h.record_id, last.schema_version, last.data::text"
                    f" FROM {S}.record_head h CROSS JOIN LATERAL ("
                    f"  SELECT v.schema_version, v.data FROM {S}.record_versions v"
                    "   WHERE v.org_key = h.org_key AND v.object_key = h.object_key AND v.record_id = h.record_id"
                    "   ORDER BY v.version_id DESC LIMIT 1) last"
                    " WHERE h.rules = 1 LIMIT %s FOR UPDATE OF h SKIP LOCKED",
                    (batch,),
                )
                rows = await cur.fetchall()
                if not rows:
                    return done
                updates: list[tuple[int, int, str, bytes]] = []
                for org_key, object_key, record_id, version, data in rows:
                    fields = hashed.get((object_key, version))
                    if fields is None:
                        found = await conn.execute(
                            f"SELECT key_prefix, fields FROM {S}.object_schemas"
                            " WHERE object_key = %s AND schema_version = %s",
                            (object_key, version),
                        )
                        schema = await found.fetchone()
                        assert schema is not None  # a version's schema is never deleted
                        canon = RecordCanonicalizer(
                            ObjectSchema.from_json("Object", schema[0], schema[1]),
                            count_formula_changes=count_formula_changes,
                        )
                        fields = hashed[(object_key, version)] = canon.hashed_fields
                    values = json.loads(data)
                    core = {k: v for k, v in values.items() if k in fields}
                    updates.append((org_key, object_key, record_id, values_hash(core)))
                await conn.execute(
                    f"UPDATE {S}.record_head h SET hash = u.hash, rules = {CANONICAL_RULES}"
                    " FROM unnest(%s::int[], %s::int[], %s::text[], %s::bytea[]) AS u(org_key, object_key, id, hash)"
                    " WHERE h.org_key = u.org_key AND h.object_key = u.object_key AND h.record_id = u.id",
                    tuple(map(list, zip(*updates, strict=True))),
                )
                done += len(updates)

    async def put_records(
        self, job: JobRef, target: SchemaRef, seq: int, chunk: RecordsChunk, guards: WriteGuards = UNGUARDED
    ) -> ChunkOutcome:
        """Stores a chunk of canonical records in one transaction.

        1. An initial load -- none of the chunk's records has a head yet, none listed twice -- is written straight
           from its columns (first_version_rows: head rows COPied in a savepoint, then the versions). A concurrent
           chunk that inserted one of those heads meanwhile sends it the general way below.
        2. Records whose fingerprint equals their head's are unchanged: no record object is even built.
        3. The others (chunk.records: built, spot-checked) have their (Id, hash, deleted) COPied into a temporary
           table and the head upserted where the hash or deleted state differs; its RETURNING says which records
           need a version. For an object whose fields changed (chunk.scopes), the records whose hash differs from
           their head's are first compared with it across the change of scope (chunk.rescope): scope-only versions
           are written so and counted unchanged.
        4. Only those versions are COPied into record_versions; a record unchanged in other bytes (only its
           SystemModstamp moved) has its head's fingerprint and modstamp refreshed.

        `guards.tombstones`: the object's erased Ids (erasure.py); one read deleted and without a head is left out
        (counted received and unchanged). Empty, as almost always, it costs nothing.

        `guards.seal` / `unseal` (sensitive.py: the object has sensitive fields): the values are written sealed --
        after everything above compared them in clear by their hashes -- and a head's values read back for a change
        of scope are opened first.
        """
        tombstones, seal, unseal = guards.tombstones, guards.seal, guards.unseal
        received = len(chunk)
        async with self.pool.connection() as conn, conn.transaction():
            stored = await self._claim(conn, job.job_key, seq, "records", chunk.digest, target.object_key)
            if stored is not None:
                return ChunkOutcome(stored, True)
            ids, prints = chunk.ids, chunk.prints
            last: dict[str, int] = dict(zip(ids, range(received), strict=True))
            heads = await self._head_fingerprints(conn, job.org_key, target.object_key, last) if last else {}
            if tombstones and (drop := tombstoned_positions(chunk, tombstones, heads)):
                chunk = without_positions(chunk, drop)
                ids, prints = chunk.ids, chunk.prints
                last = dict(zip(ids, range(len(chunk)), strict=True))
            if last and not heads and len(last) == len(chunk):
                columns = await asyncio.to_thread(chunk.checked_columns)
                if seal is not None:
                    columns = await asyncio.to_thread(_sealed_columns, columns, seal)
                inserted = await self._insert_first_versions(conn, job, target, columns)
                if inserted is not None:
                    # all first versions (a first version counts as new whatever its deleted state)
                    return await self._stored(
                        conn, job.job_key, seq, received, repeat((True, Deleted.LIVE), len(chunk)), inserted
                    )
            # an Id listed twice: its last occurrence counts
            todo = sorted(i for rid, i in last.items() if heads.get(rid) != prints[i])
            records = await asyncio.to_thread(chunk.records, todo) if todo else {}
            transitions: list[tuple[str, bool, int]] = []
            written = 0
            if records:
                scope_only: set[str] = set()
                if chunk.scopes is not None and heads:
                    compared = [r for rid, r in records.items() if rid in heads]
                    states = await self._differing_heads(conn, job, target, compared) if compared else []
                    if unseal is not None:
                        states = [dataclasses.replace(h, data=unseal(h.data)) for h in states]
                    if states:
                        scope_only = await asyncio.to_thread(chunk.rescope, states, records)
                transitions = await self._upsert_heads(conn, job, target, records)
                await self._at("records.after_head")
                if scope_only and transitions:
                    quiet = [records[t[0]] for t in transitions if t[0] in scope_only]
                    transitions = [t for t in transitions if t[0] not in scope_only]
                    quiet = await _sealed(quiet, seal)
                    written += await self._copy_versions(conn, job, target, quiet, scope_only=True)
                if transitions:
                    changed = await _sealed([records[t[0]] for t in transitions], seal)
                    written += await self._copy_versions(conn, job, target, changed)
                # unchanged content in other bytes (e.g. only SystemModstamp moved): remember the new fingerprint
                # and modstamp, so the next identical read takes the fast path again
                versioned = {t[0] for t in transitions} | scope_only
                stale = [r for rid, r in records.items() if rid not in versioned and heads.get(rid) != r.raw_hash]
                if stale:
                    await conn.execute(
                        f"UPDATE {S}.record_head h SET raw_hash = u.raw, system_modstamp = u.modstamp"
                        " FROM unnest(%s::text[], %s::bytea[], %s::timestamptz[]) AS u(id, raw, modstamp)"
                        " WHERE h.org_key = %s AND h.object_key = %s AND h.record_id = u.id",
                        (
                            [r.record_id for r in stale],
                            [r.raw_hash or None for r in stale],
                            [r.system_modstamp for r in stale],
                            job.org_key,
                            target.object_key,
                        ),
                    )
            return await self._stored(
                conn,
                job.job_key,
                seq,
                received,
                ((first, Deleted(state)) for _rid, first, state in transitions),
                written,
            )

    async def _stored(
        self,
        conn: psycopg.AsyncConnection[Any],
        job_key: int,
        seq: int,
        received: int,
        transitions: Iterable[tuple[bool, Deleted]],
        written: int,
    ) -> ChunkOutcome:
        """A records chunk's result, from the head transitions it caused and the bytes of values it wrote."""
        await self._at("records.after_versions")
        counts = dataclasses.replace(classify(received, transitions), bytes=written)
        result = {"counts": counts.to_json()}
        await self._finish(conn, job_key, seq, result)
        return ChunkOutcome(result, False)

    @staticmethod
    async def _head_fingerprints(
        conn: psycopg.AsyncConnection[Any], org_key: int, object_key: int, ids: Collection[str]
    ) -> dict[str, bytes | None]:
        """{record Id: raw_hash} of the Ids that have a head.

        First the heads between the smallest and the largest Id, up to twice as many as there are Ids: an
        initial load sends Ids in ranges no head covers yet (none), a re-read of a whole object sends them in
        dense ranges (those are all the heads there could be, read in Id order). Only a chunk of Ids spread
        further (a window of changes) costs one primary-key probe per Id (a LATERAL lookup, pruned to one
        partition at run time; `record_id = ANY(array)` would scan the object's whole head, and once prepared
        compare every row with every Id)."""
        # the Ids travel as one comma-separated text (they are letters and digits): dumping a list of ten
        # thousand strings as a text[] parameter costs more Python time than the probes cost PostgreSQL
        joined = ",".join(ids)
        cur = await conn.execute(
            "WITH ids AS (SELECT unnest(string_to_array(%s, ',')) AS id)"
            f" SELECT record_id, raw_hash FROM {S}.record_head WHERE org_key = %s AND object_key = %s"
            "  AND record_id BETWEEN (SELECT min(id) FROM ids) AND (SELECT max(id) FROM ids) LIMIT %s",
            (joined, org_key, object_key, 2 * len(ids) + 1),
        )
        rows = await cur.fetchall()
        if len(rows) <= 2 * len(ids):
            wanted = ids if isinstance(ids, set | dict) else set(ids)
            rows = [r for r in rows if r[0] in wanted]
        else:
            cur = await conn.execute(
                f"SELECT u.id, h.raw_hash FROM unnest(string_to_array(%s, ',')) AS u(id) CROSS JOIN LATERAL ("
                f" SELECT raw_hash FROM {S}.record_head h"
                "  WHERE h.org_key = %s AND h.object_key = %s AND h.record_id = u.id LIMIT 1) AS h",
                (joined, org_key, object_key),
            )
            rows = await cur.fetchall()
        return {r[0]: (bytes(r[1]) if r[1] is not None else None) for r in rows}

    async def _insert_first_versions(
        self, conn: psycopg.AsyncConnection[Any], job: JobRef, target: SchemaRef, columns: PreparedColumns
    ) -> int | None:
        """First versions of records none of which had a head when looked up: COPies their head rows (inside a
        savepoint), then their versions (first_version_rows). Returns the bytes of their values, or None, with
        nothing written, when a concurrent chunk created one of those heads meanwhile (the caller upserts)."""
        heads, versions, written = first_version_rows(
            b"%d\t%d\t" % (job.org_key, target.object_key),
            b"\t%d\t%d\t" % (job.job_key, target.schema_version),
            columns,
        )
        try:
            async with conn.transaction():  # a savepoint
                async with conn.cursor().copy(
                    f"COPY {S}.record_head (org_key, object_key, record_id, hash, deleted, versions,"
                    " system_modstamp, raw_hash) FROM STDIN WITH (NULL '')"  # changed_at: now(), its default
                ) as copy:
                    await copy.write(heads)
                await self._at("records.after_copy")
        except psycopg.errors.UniqueViolation:
            return None
        await self._at("records.after_head")
        await self._write_versions(conn, versions)
        return written

    async def _upsert_heads(
        self, conn: psycopg.AsyncConnection[Any], job: JobRef, target: SchemaRef, records: dict[str, CanonicalRecord]
    ) -> list[tuple[str, bool, int]]:
        """Upserts the head of each record whose hash or deleted state differs: [(Id, first version?, deleted)]."""
        lines = [
            b"%s\t\\\\x%s\t%d\t%s\t%s\n"
            % (
                r.record_id.encode(),
                hexlify(r.hash),
                r.deleted,
                r.system_modstamp.encode() if r.system_modstamp else b"\\N",
                b"\\\\x" + hexlify(r.raw_hash) if r.raw_hash else b"\\N",
            )
            for r in records.values()
        ]
        async with conn.cursor().copy(
            "COPY incoming (record_id, hash, deleted, system_modstamp, raw_hash) FROM STDIN"
        ) as copy:
            await copy.write(b"".join(lines))
        await self._at("records.after_copy")
        # ORDER BY record_id: head rows are locked in one order (_insert_fresh's too), so overlapping chunks
        # cannot deadlock
        cur = await conn.execute(
            f"INSERT INTO {S}.record_head AS h (org_key, object_key, record_id, hash, deleted, versions,"
            " system_modstamp, raw_hash, changed_at)"
            " SELECT %s, %s, record_id, hash, deleted, 1, system_modstamp, raw_hash, now() FROM incoming"
            ' ORDER BY record_id COLLATE "C"'
            " ON CONFLICT (org_key, object_key, record_id) DO UPDATE SET hash = EXCLUDED.hash,"
            " deleted = EXCLUDED.deleted, versions = h.versions + 1,"
            " system_modstamp = EXCLUDED.system_modstamp, raw_hash = EXCLUDED.raw_hash,"
            " changed_at = EXCLUDED.changed_at"
            " WHERE h.hash <> EXCLUDED.hash OR h.deleted <> EXCLUDED.deleted"
            " RETURNING h.record_id, h.versions = 1, h.deleted",
            (job.org_key, target.object_key),
        )
        return await cur.fetchall()

    @classmethod
    async def _copy_versions(
        cls,
        conn: psycopg.AsyncConnection[Any],
        job: JobRef,
        target: SchemaRef,
        records: Sequence[CanonicalRecord],
        *,
        scope_only: bool = False,
    ) -> int:
        """COPies a version of each record (marked scope-only, or not); returns the bytes of their values."""
        prefix = b"%d\t%d\t" % (job.org_key, target.object_key)
        middle = b"\t%d\t%d\t" % (job.job_key, target.schema_version)
        end = b"\tt\n" if scope_only else b"\n"
        await cls._write_versions(
            conn,
            b"".join(
                b"%s%s%s%s\t%d\t\\\\x%s\t%s%s"
                % (prefix, r.record_id.encode(), middle, (r.system_modstamp or "").encode(), r.deleted, hexlify(r.hash),
                   _copy_text(r.data), end)
                for r in records
            ),
            scope_only=scope_only,
        )  # fmt: skip
        return sum(len(r.data) for r in records)

    @staticmethod
    async def _write_versions(conn: psycopg.AsyncConnection[Any], rows: bytes, *, scope_only: bool = False) -> None:
        """COPies version rows (COPY text; the empty text is NULL: no column written here holds one otherwise)."""
        async with conn.cursor().copy(
            f"COPY {S}.record_versions (org_key, object_key, record_id, job_key, schema_version,"
            f" system_modstamp, deleted, hash, data{', scope_only' if scope_only else ''}) FROM STDIN WITH (NULL '')"
        ) as copy:
            await copy.write(rows)

    @staticmethod
    async def _differing_heads(
        conn: psycopg.AsyncConnection[Any], job: JobRef, target: SchemaRef, records: Sequence[CanonicalRecord]
    ) -> list[HeadState]:
        """The heads whose hash differs from the records', with their last version's values; one
        probe of each (pruned to its partition), as in _head_fingerprints."""
        cur = await conn.execute(
            "SELECT c.id, h.hash, h.deleted, last.schema_version, last.data::text"
            " FROM unnest(%s::text[], %s::bytea[]) AS c(id, hash)"
            f" CROSS JOIN LATERAL (SELECT hash, deleted FROM {S}.record_head"
            "  WHERE org_key = %s AND object_key = %s AND record_id = c.id) h"
            f" CROSS JOIN LATERAL (SELECT v.schema_version, v.data FROM {S}.record_versions v"
            "  WHERE v.org_key = %s AND v.object_key = %s AND v.record_id = c.id"
            "  ORDER BY v.version_id DESC LIMIT 1) last"
            " WHERE h.hash <> c.hash",
            (
                [r.record_id for r in records],
                [r.hash for r in records],
                job.org_key,
                target.object_key,
                job.org_key,
                target.object_key,
            ),
        )
        return [HeadState(r[0], bytes(r[1]), int(r[2]), int(r[3]), r[4]) for r in await cur.fetchall()]

    async def mark_deleted(
        self, job: JobRef, seq: int, digest: bytes, deletes: Deletes, tombstones: frozenset[str] = frozenset()
    ) -> ChunkOutcome:
        """A deleted version per known Id whose state gets worse (live -> soft -> hard); it carries the last
        version's values, so the record stays restorable. Ids never stored are reported, not invented; erased
        ones (`tombstones`) are neither: ignored."""
        object_key, record_ids, state = deletes.object_key, deletes.record_ids, deletes.state
        ids = sorted(set(record_ids))
        async with self.pool.connection() as conn, conn.transaction():
            stored = await self._claim(conn, job.job_key, seq, "deletes", digest, object_key)
            if stored is not None:
                return ChunkOutcome(stored, True)
            known = set(await self._head_fingerprints(conn, job.org_key, object_key, ids))
            # joined with the Ids (one primary-key probe each), not `record_id = ANY(array)`: see _head_fingerprints
            cur = await conn.execute(
                f"UPDATE {S}.record_head h SET deleted = %s, versions = h.versions + 1, raw_hash = NULL,"
                " changed_at = now() FROM unnest(string_to_array(%s, ',')) AS c(id)"
                " WHERE h.org_key = %s AND h.object_key = %s AND h.record_id = c.id AND h.deleted < %s"
                " RETURNING h.record_id",
                (int(state), ",".join(sorted(known)), job.org_key, object_key, int(state)),
            )
            changed = [r[0] for r in await cur.fetchall()]
            if changed:
                await conn.execute(
                    f"INSERT INTO {S}.record_versions (org_key, object_key, record_id, job_key, schema_version,"
                    " system_modstamp, deleted, hash, data)"
                    " SELECT %s, %s, c.id, %s, last.schema_version, last.system_modstamp, %s, last.hash, last.data"
                    " FROM unnest(%s::text[]) AS c(id) CROSS JOIN LATERAL ("
                    f"  SELECT v.schema_version, v.system_modstamp, v.hash, v.data FROM {S}.record_versions v"
                    "   WHERE v.org_key = %s AND v.object_key = %s AND v.record_id = c.id"
                    "   ORDER BY v.version_id DESC LIMIT 1) AS last",
                    (job.org_key, object_key, job.job_key, int(state), changed, job.org_key, object_key),
                )
            unknown = [i for i in ids if i not in known and i not in tombstones]
            counts = Counts(received=len(record_ids), deleted=len(changed), unchanged=len(record_ids) - len(changed))
            result = {"counts": counts.to_json(), "unknown_ids": unknown}
            await self._finish(conn, job.job_key, seq, result)
            return ChunkOutcome(result, False)

    # --- record reads --------------------------------------------------------------------------------------

    _VERSION_COLUMNS = (
        "v.record_id, v.version_id, j.session_id, j.job_id, v.captured_at, v.system_modstamp, v.deleted, v.hash,"
        " v.data::text, v.schema_version, v.scope_only"
    )

    @staticmethod
    def _version(row: Sequence[Any]) -> RecordVersionRow:
        return RecordVersionRow(
            row[0], row[1], row[2], row[3], row[4], row[5], Deleted(row[6]), bytes(row[7]), row[8], row[9], row[10]
        )

    async def history(self, org_key: int, object_key: int, record_id: str) -> list[RecordVersionRow]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {self._VERSION_COLUMNS} FROM {S}.record_versions v JOIN {S}.jobs j USING (job_key)"
                " WHERE v.org_key = %s AND v.object_key = %s AND v.record_id = %s ORDER BY v.version_id",
                (org_key, object_key, record_id),
            )
            return [self._version(r) for r in await cur.fetchall()]

    async def as_of(self, org_key: int, object_key: int, record_id: str, when: dt.datetime) -> RecordVersionRow | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {self._VERSION_COLUMNS} FROM {S}.record_versions v JOIN {S}.jobs j USING (job_key)"
                " WHERE v.org_key = %s AND v.object_key = %s AND v.record_id = %s AND v.captured_at <= %s"
                " ORDER BY v.version_id DESC LIMIT 1",
                (org_key, object_key, record_id, when),
            )
            row = await cur.fetchone()
            return self._version(row) if row else None

    async def export_as_of(
        self, org_key: int, object_key: int, when: dt.datetime, *, include_deleted: bool, batch: int = 2000
    ) -> AsyncIterator[list[tuple[str, int, str]]]:
        """(record Id, deleted state, values JSON) of every record as of `when`, in Id order, in batches;
        a server-side cursor keeps memory flat whatever the object's size."""
        max_state = int(Deleted.SOFT) if include_deleted else int(Deleted.LIVE)
        async with self.pool.connection() as conn, conn.transaction():
            cur = conn.cursor(name="export")
            await cur.execute(
                "SELECT record_id, deleted, vals FROM ("
                f" SELECT DISTINCT ON (record_id) record_id, deleted, data::text AS vals FROM {S}.record_versions"
                " WHERE org_key = %s AND object_key = %s AND captured_at <= %s"
                " ORDER BY record_id, version_id DESC) latest WHERE deleted <= %s",
                (org_key, object_key, when, max_state),
            )
            while rows := await cur.fetchmany(batch):
                yield [(r[0], int(r[1]), r[2]) for r in rows]
            await cur.close()

    async def restore_points(self, org_key: int, object_key: int | None) -> list[RestorePointRow]:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "SELECT j.session_id, min(c.committed_at) AS first_capture, max(c.committed_at) AS last_capture,"
                " count(DISTINCT j.job_key) AS jobs, array_agg(c.result->'counts') AS counts"
                f" FROM {S}.chunks c JOIN {S}.jobs j USING (job_key)"
                # a restore's chunks (kind restore, registered under the org written to) are no restore point, nor a
                # prune's steps (kind prune: what retention deleted)
                " WHERE j.org_key = %s AND (%s::int IS NULL OR c.object_key = %s)"
                " AND c.kind NOT IN ('restore', 'prune')"
                " GROUP BY j.session_id ORDER BY max(c.committed_at) DESC",
                (org_key, object_key, object_key),
            )
            out = []
            for r in await cur.fetchall():
                totals = sum((Counts.from_json(c) for c in r["counts"] if c), ZERO)
                out.append(RestorePointRow(r["session_id"], r["first_capture"], r["last_capture"], totals, r["jobs"]))
            return out
