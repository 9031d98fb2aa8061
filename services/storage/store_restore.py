"""Restore (issue 17): the backup read as of a point for a restore (ReadRecordsAsOf, keyset-paged), and what a
restore writes down -- its per-record outcomes, the Id map of records that came back under another Id, and the
intents of batches of creates sent to Salesforce.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Any, Literal

from services.storage.domain import (
    ChunkOutcome,
    Deleted,
    JobRef,
    RecordVersionRow,
    RestoreIntentRow,
    RestoreOutcome,
)
from services.storage.ports import AsOfRead, RestoreChunk
from services.storage.store_base import S, StoreBase

# the columns of a version read for a restore (as RecordsStore._VERSION_COLUMNS, over the page `l`)
_PAGE_COLUMNS = (
    "l.record_id, l.version_id, j.session_id, j.job_id, l.captured_at, l.system_modstamp, l.deleted, l.hash,"
    " l.data::text, l.schema_version, l.scope_only"
)
_Out = Literal["versions", "values", "ids"]  # what a page's probe reads out (RestoreStore._as_of_query)
_LATEST_COLUMNS = (
    "v.record_id, v.version_id, v.job_key, v.captured_at, v.system_modstamp, v.deleted, v.hash, v.data,"
    " v.schema_version, v.scope_only"
)


def _version(row: Sequence[Any]) -> RecordVersionRow:
    return RecordVersionRow(
        row[0], row[1], row[2], row[3], row[4], row[5], Deleted(row[6]), bytes(row[7]), row[8], row[9], row[10]
    )


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})
_ARRAY_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"'})
_SPECIAL = re.compile(r'[\\"\t\n\r]')  # what a COPY field or an array element must escape


def _id_list(ids: Sequence[str]) -> str:
    """Record Ids (18 characters, letters and digits: checked, or read from the heads) as one comma-separated text
    parameter, split by string_to_array (psycopg dumps a list element by element, in Python)."""
    return ",".join(ids)


def _copy_field(value: str) -> str:
    """A text value in COPY's text format (backslash, newline, carriage return and tab escaped)."""
    return value.translate(_COPY_ESCAPES) if value else value


def _copy_array(values: Sequence[str]) -> str:
    """A text[] literal of these values, each element quoted, in COPY's text format."""
    if not values:
        return "{}"
    if _SPECIAL.search("".join(values)) is None:  # field names, most often: nothing to escape
        return '{"' + '","'.join(values) + '"}'
    return _copy_field("{" + ",".join(f'"{v.translate(_ARRAY_ESCAPES)}"' for v in values) + "}")


def _copy_text(job_key: int, seq: int, outcomes: Sequence[RestoreOutcome], dry_run: bool) -> bytes:
    """The outcomes as the rows of one COPY in text format (built at once: psycopg's per-row dumping of the
    changed_fields arrays cost more than the rest of the chunk's write)."""
    prefix = f"{job_key}\t{seq}\t"
    flag = "t" if dry_run else "f"
    return "".join(
        [
            f"{prefix}{_copy_field(o.object_name)}\t{_copy_field(o.source_id)}\t{_copy_field(o.target_id)}\t"
            f"{int(o.state)}\t{_copy_field(o.error_code)}\t{_copy_field(o.message)}\t"
            f"{_copy_array(o.changed_fields)}\t{_copy_field(o.note)}\t{flag}\n"
            for o in outcomes
        ]
    ).encode()


class RestoreStore(StoreBase):
    """Tables restore_outcomes, restore_id_map, restore_intents; the restore's reads of record_versions."""

    # --- the backup as of a point ------------------------------------------------------------------------------

    async def live_ids_as_of(self, org_key: int, object_key: int, ids: Sequence[str], when: dt.datetime) -> set[str]:
        """Which of these Ids have a live version (the last one at or before `when`)."""
        if not ids:
            return set()
        rows = await self._all(
            "SELECT u.id FROM unnest(string_to_array(%s, ',')) AS u(id) CROSS JOIN LATERAL ("
            f" SELECT v.deleted FROM {S}.record_versions v"
            "  WHERE v.org_key = %s AND v.object_key = %s AND v.record_id = u.id AND v.captured_at <= %s"
            "  ORDER BY v.version_id DESC LIMIT 1) last WHERE last.deleted = 0",
            (_id_list(ids), org_key, object_key, when),
        )
        return {r[0] for r in rows}

    async def candidate_ids(self, read: AsOfRead, *, cap: int) -> list[str] | None:
        """The Ids that may match a deleted_since / changed_since / where selection, from one sequential pass over
        the object's versions (a version deleted, or any, captured since then; a version referencing one of the
        Ids at or before `when`), or None when there are more than `cap` of them (then every head is probed).
        records_as_of checks each candidate's version at `when` as for any selection."""
        org_key, object_key, when, selection = read.org_key, read.object_key, read.when, read.selection
        where_field = selection.where_field
        if selection.where_in:
            condition, params = (
                "v.captured_at <= %s AND v.data ->> %s = ANY(%s::text[])",
                [
                    when,
                    where_field,
                    list(selection.where_in),
                ],
            )
        elif selection.deleted_since is not None:
            condition, params = "v.captured_at >= %s AND v.deleted > 0", [selection.deleted_since]
        elif selection.changed_since is not None:
            condition, params = "v.captured_at >= %s AND NOT v.scope_only", [selection.changed_since]
        else:
            return None
        rows = await self._all(
            f"SELECT DISTINCT v.record_id FROM {S}.record_versions v WHERE v.org_key = %s AND v.object_key = %s"
            f" AND {condition} LIMIT %s",
            [org_key, object_key, *params, cap + 1],
        )
        return None if len(rows) > cap else [r[0] for r in rows]

    async def records_as_of(
        self, read: AsOfRead, *, after: str, limit: int
    ) -> tuple[list[RecordVersionRow], str | None]:
        """One page of the selected records' last versions at or before `when` that are live, and where the next
        page starts (None: this was the last).

        Keyset over Ids: a page looks at `limit` Ids after `after` -- the requested ones, or the object's heads in
        Id order (one index range: every record with a version has a head) -- and probes each one's last version
        at or before `when` (a primary-key probe, pruned to its partition); the selection's condition filters
        those. Every record is probed once whatever the object's size (no page rescans what earlier pages read),
        each page is one short query on a connection of its own (nothing is held while the caller streams it out),
        and memory stays one page. A page may come back short, or empty, with more to follow."""
        rows, following = await self._probe(read, after, limit, "versions")
        return [_version(r) for r in rows], following

    async def bare_as_of(
        self, read: AsOfRead, *, after: str, limit: int, values: bool
    ) -> tuple[list[tuple[str, str]], str | None]:
        """records_as_of's page as (Id, values) alone: the same probes, each version's values as PostgreSQL's text,
        or "" without `values` (a selection's Ids); no job, times or hash read out (a restore's reads)."""
        return await self._probe(read, after, limit, "values" if values else "ids")

    async def _probe(self, read: AsOfRead, after: str, limit: int, out: _Out) -> tuple[list[Any], str | None]:
        """The rows of a page's probe (`_as_of_query`), and where the next page starts."""
        page_ids, following = await self._page_ids(read, after, limit)
        if not page_ids:
            return [], following
        return await self._all(*self._as_of_query(read, page_ids, out)), following

    async def _page_ids(self, read: AsOfRead, after: str, limit: int) -> tuple[list[str], str | None]:
        """The `limit` Ids after `after` a page probes, and where the next page starts."""
        selection = read.selection
        if selection.ids:
            candidates = sorted(i for i in selection.ids if i > after)
            page_ids = candidates[:limit]
            return page_ids, (page_ids[-1] if len(candidates) > limit else None)
        heads = await self._all(
            f"SELECT record_id FROM {S}.record_head WHERE org_key = %s AND object_key = %s AND record_id > %s"
            " ORDER BY record_id LIMIT %s",
            (read.org_key, read.object_key, after, limit),
        )
        page_ids = [r[0] for r in heads]
        return page_ids, (page_ids[-1] if len(page_ids) == limit else None)

    @staticmethod
    def _as_of_query(read: AsOfRead, page_ids: list[str], out: _Out) -> tuple[str, list[Any]]:
        """The probe of a page's Ids: each one's last version at or before `when`, kept when live and matching the
        selection's condition; `out`: "versions" (every column a RecordVersionRow holds), "values" (the Id and the
        values' text) or "ids" (the Id and "")."""
        org_key, object_key, when, selection = read.org_key, read.object_key, read.when, read.selection
        params: list[Any] = [_id_list(page_ids), org_key, object_key, when]
        since = ""
        condition = ""
        if selection.deleted_since is not None or selection.changed_since is not None:
            # a probe of the record's own versions (a LATERAL with LIMIT 1: never a scan of the object's versions
            # per page, whatever the planner estimates)
            deleted_only = selection.deleted_since is not None
            since = (
                f" CROSS JOIN LATERAL (SELECT 1 FROM {S}.record_versions d WHERE d.org_key = %s AND d.object_key = %s"
                " AND d.record_id = u.id AND d.captured_at >= %s"
                + (" AND d.deleted > 0" if deleted_only else " AND NOT d.scope_only")
                + " LIMIT 1) d"
            )
        elif selection.where_in:
            condition = " AND l.data ->> %s = ANY(%s::text[])"
            params += [selection.where_field, list(selection.where_in)]
        if out == "versions":
            columns, latest, jobs = _PAGE_COLUMNS, _LATEST_COLUMNS, f" JOIN {S}.jobs j ON j.job_key = l.job_key"
        elif out == "values":
            columns, latest, jobs = "l.record_id, l.data::text", "v.record_id, v.deleted, v.data", ""
        else:
            columns, latest, jobs = "l.record_id, ''", "v.record_id, v.deleted" + (", v.data" if condition else ""), ""
        query = (
            f"SELECT {columns} FROM unnest(string_to_array(%s, ',')) AS u(id) CROSS JOIN LATERAL ("
            f" SELECT {latest} FROM {S}.record_versions v WHERE v.org_key = %s AND v.object_key = %s"
            "  AND v.record_id = u.id AND v.captured_at <= %s ORDER BY v.version_id DESC LIMIT 1) l"
            f"{since}{jobs} WHERE l.deleted = 0{condition} ORDER BY l.record_id"
        )
        if since:
            at = selection.deleted_since if selection.deleted_since is not None else selection.changed_since
            params += [org_key, object_key, at]
        return query, params

    # --- what a restore writes down ----------------------------------------------------------------------------

    async def put_restore_outcomes(self, job: JobRef, seq: int, digest: bytes, chunk: RestoreChunk) -> ChunkOutcome:
        """One restore chunk in one transaction: its claim (a redelivery returns the first result), the outcomes,
        the Id map entries, the intents it resolves, and its result with its ChunkUploaded in the outbox."""
        source_org_key, outcomes, id_map, resolved = chunk.source_org_key, chunk.outcomes, chunk.id_map, chunk.resolved
        dry_run, counts, restore = chunk.dry_run, chunk.counts, chunk.restore
        async with self.pool.connection() as conn, conn.transaction():
            stored = await self._claim(conn, job.job_key, seq, "restore", digest)
            if stored is not None:
                return ChunkOutcome(stored, True)
            if outcomes:
                async with conn.cursor().copy(
                    f"COPY {S}.restore_outcomes (job_key, chunk_seq, object_name, source_id, target_id, state,"
                    " error_code, message, changed_fields, note, dry_run) FROM STDIN"
                ) as copy:
                    await copy.write(_copy_text(job.job_key, seq, outcomes, dry_run))
            await self._at("restore.after_outcomes")
            if id_map:
                sources = sorted(id_map)  # one lock order: overlapping chunks cannot deadlock
                targets = [id_map[s] for s in sources]
                # Ids: one text each side, split by string_to_array; anything else (a component's name) as arrays
                plain = all(s.isalnum() for s in sources) and all(t.isalnum() for t in targets)
                split = "string_to_array(%s, ',')" if plain else "%s::text[]"
                await conn.execute(
                    f"INSERT INTO {S}.restore_id_map AS m (source_org_key, target_org_key, source_id, target_id,"
                    " session_id) SELECT %s, %s, u.source_id, u.target_id, %s"
                    f" FROM unnest({split}, {split}) AS u(source_id, target_id)"
                    " ON CONFLICT (source_org_key, target_org_key, source_id) DO UPDATE SET target_id ="
                    " EXCLUDED.target_id WHERE m.target_id <> EXCLUDED.target_id",
                    (
                        source_org_key,
                        job.org_key,
                        job.session_id,
                        _id_list(sources) if plain else sources,
                        _id_list(targets) if plain else targets,
                    ),
                )
            if resolved:
                await conn.execute(
                    f"UPDATE {S}.restore_intents SET resolved_at = now()"
                    " WHERE job_key = %s AND batch_key = ANY(%s::text[]) AND resolved_at IS NULL",
                    (job.job_key, list(resolved)),
                )
            result = {"counts": counts.to_json(), "restore": [r.to_json() for r in restore]}
            await self._finish(conn, job.job_key, seq, result)
            return ChunkOutcome(result, False)

    async def record_intent(
        self, job: JobRef, batch_key: str, object_name: str, source_ids: Sequence[str], sent_at: dt.datetime | None
    ) -> bool:
        """Records a batch of creates before it is sent; False when that batch key was already recorded."""
        row = await self._one_committed(
            f"INSERT INTO {S}.restore_intents (job_key, batch_key, object_name, source_ids, sent_at)"
            " VALUES (%s, %s, %s, %s, coalesce(%s, now())) ON CONFLICT (job_key, batch_key) DO NOTHING RETURNING 1",
            (job.job_key, batch_key, object_name, list(source_ids), sent_at),
        )
        return row is not None

    async def _one_committed(self, query: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(query, params)
            return await cur.fetchone()

    async def open_intents(self, job_key: int) -> list[RestoreIntentRow]:
        rows = await self._all(
            f"SELECT batch_key, object_name, source_ids, sent_at FROM {S}.restore_intents"
            " WHERE job_key = %s AND resolved_at IS NULL ORDER BY sent_at, recorded_at, batch_key",
            (job_key,),
        )
        return [RestoreIntentRow(r[0], r[1], tuple(r[2]), r[3]) for r in rows]

    async def id_map(
        self, source_org_key: int, target_org_key: int, source_ids: Sequence[str] | None, limit: int
    ) -> dict[str, str]:
        """{backup Id: target Id} of the pair (of these Ids, else all), at most `limit` entries."""
        if source_ids is not None:
            rows = await self._all(
                f"SELECT m.source_id, m.target_id FROM unnest(%s::text[]) AS u(id) JOIN {S}.restore_id_map m"
                " ON m.source_org_key = %s AND m.target_org_key = %s AND m.source_id = u.id LIMIT %s",
                (list(source_ids), source_org_key, target_org_key, limit),
            )
        else:
            rows = await self._all(
                f"SELECT source_id, target_id FROM {S}.restore_id_map"
                " WHERE source_org_key = %s AND target_org_key = %s ORDER BY source_id LIMIT %s",
                (source_org_key, target_org_key, limit),
            )
        return {r[0]: r[1] for r in rows}

    async def restore_records(
        self, session_id: str, *, state: int, object_name: str, after: int, limit: int
    ) -> list[tuple[int, RestoreOutcome]]:
        """(outcome_id, outcome) of a session's jobs, by outcome_id after `after`, at most `limit`."""
        params: list[Any] = [session_id, after]
        filters = ""
        if state:
            filters += " AND o.state = %s"
            params.append(state)
        if object_name:
            filters += " AND lower(o.object_name) = lower(%s)"
            params.append(object_name)
        params.append(limit)
        rows = await self._all(
            "SELECT o.outcome_id, o.object_name, o.source_id, o.target_id, o.state, o.error_code, o.message,"
            f" o.changed_fields, o.note FROM {S}.restore_outcomes o"
            f" WHERE o.job_key = ANY(ARRAY(SELECT job_key FROM {S}.jobs WHERE session_id = %s)) AND o.outcome_id > %s"
            f"{filters} ORDER BY o.outcome_id LIMIT %s",
            params,
        )
        return [
            (int(r[0]), RestoreOutcome(r[1], r[2], r[3], int(r[4]), r[5], r[6], tuple(r[7] or ()), r[8])) for r in rows
        ]
