"""Metadata API components: a version per component whose content changed."""

from __future__ import annotations

import datetime as dt

from services.storage.domain import (
    ChunkOutcome,
    Counts,
    JobRef,
    MetadataVersionRow,
)
from services.storage.ports import MetadataChunk
from services.storage.store_base import S, StoreBase


class MetadataStore(StoreBase):
    """Tables metadata_components and metadata_versions."""

    async def put_metadata(self, job: JobRef, seq: int, digest: bytes, chunk: MetadataChunk) -> ChunkOutcome:
        components, locations, envelopes = chunk.components, chunk.locations, chunk.envelopes
        async with self.pool.connection() as conn, conn.transaction():
            stored = await self._claim(conn, job.job_key, seq, "metadata", digest)
            if stored is not None:
                return ChunkOutcome(stored, True)
            await conn.execute(
                f"INSERT INTO {S}.files (sha256, size, location, kek_id, wrapped_key)"
                " SELECT * FROM unnest(%s::bytea[], %s::bigint[], %s::text[], %s::text[], %s::bytea[])"
                " ON CONFLICT (sha256) DO NOTHING",
                (
                    [c.sha256 for c in components],
                    [c.size for c in components],
                    [locations[c.sha256] for c in components],
                    [e.kek_id if (e := envelopes.get(c.sha256)) else None for c in components],
                    [e.wrapped_key if (e := envelopes.get(c.sha256)) else None for c in components],
                ),
            )
            cur = await conn.execute(
                f"SELECT h.type, h.full_name, h.sha256, h.deleted FROM {S}.metadata_head h"
                " JOIN unnest(%s::text[], %s::text[]) AS c(type, full_name) USING (type, full_name)"
                " WHERE h.org_key = %s ORDER BY 1, 2 FOR UPDATE OF h",
                ([c.type for c in components], [c.full_name for c in components], job.org_key),
            )
            heads = {(r[0], r[1]): (bytes(r[2]), bool(r[3])) for r in await cur.fetchall()}
            tally = dict.fromkeys(("unchanged", "new_versions", "deleted", "changed", "bytes"), 0)
            latest = {(c.type, c.full_name): c for c in components}  # a component listed twice: the last wins
            for key, c in sorted(latest.items()):
                head = heads.get(key)
                if head is None and c.deleted:
                    tally["unchanged"] += 1  # never backed up and already gone: nothing to keep
                    continue
                if head is not None and head == (c.sha256, c.deleted):
                    tally["unchanged"] += 1
                    continue
                if head is None:
                    tally["new_versions"] += 1
                elif c.deleted:
                    tally["deleted"] += 1
                else:
                    tally["changed"] += 1
                tally["bytes"] += c.size
                await conn.execute(
                    f"INSERT INTO {S}.metadata_head AS h (org_key, type, full_name, sha256, deleted, versions)"
                    " VALUES (%s, %s, %s, %s, %s, 1) ON CONFLICT (org_key, type, full_name) DO UPDATE"
                    " SET sha256 = EXCLUDED.sha256, deleted = EXCLUDED.deleted, versions = h.versions + 1",
                    (job.org_key, c.type, c.full_name, c.sha256, c.deleted),
                )
                await conn.execute(
                    f"INSERT INTO {S}.metadata_versions (org_key, type, full_name, sha256, size, deleted,"
                    " last_modified_date, file_name, job_key) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (job.org_key, *key, c.sha256, c.size, c.deleted, c.last_modified_date, c.file_name, job.job_key),
                )
            tally["unchanged"] += len(components) - len(latest)
            counts = Counts(received=len(components), metadata_components=len(components), **tally)
            result = {"counts": counts.to_json()}
            await self._finish(conn, job.job_key, seq, result)
            return ChunkOutcome(result, False)

    async def latest_metadata(
        self, org_key: int, type_: str, full_name: str, as_of: dt.datetime
    ) -> MetadataVersionRow | None:
        rows = await self.metadata_versions(org_key, type_=type_, full_name=full_name, as_of=as_of, newest_only=True)
        return rows[0] if rows else None

    async def metadata_versions(
        self,
        org_key: int,
        *,
        type_: str = "",
        full_name: str = "",
        as_of: dt.datetime | None = None,
        newest_only: bool = False,
        limit: int = 1000,
    ) -> list[MetadataVersionRow]:
        rows = await self._all(
            f"SELECT m.type, m.full_name, m.version_id, j.session_id, m.captured_at, m.last_modified_date,"
            f" m.sha256, m.size, m.deleted, m.file_name, f.location FROM {S}.metadata_versions m"
            f" JOIN {S}.jobs j USING (job_key) JOIN {S}.files f USING (sha256)"
            " WHERE m.org_key = %s AND (%s = '' OR m.type = %s) AND (%s = '' OR m.full_name = %s)"
            " AND (%s::timestamptz IS NULL OR m.captured_at <= %s)"
            f" ORDER BY m.version_id {'DESC' if newest_only else 'ASC'} LIMIT %s",
            (org_key, type_, type_, full_name, full_name, as_of, as_of, 1 if newest_only else limit),
        )
        return [
            MetadataVersionRow(r[0], r[1], r[2], r[3], r[4], r[5], bytes(r[6]), r[7], r[8], r[9], r[10]) for r in rows
        ]
