"""File bodies (content-addressed, shared by every record and org) and the file versions of each record."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from services.platform.encryption import Envelope
from services.storage.domain import (
    ChunkOutcome,
    Counts,
    FileVersionIn,
    FileVersionRow,
    JobRef,
)
from services.storage.store_base import S, StoreBase


def _envelope_columns(envelope: Envelope | None) -> tuple[str | None, bytes | None]:
    return (envelope.kek_id, envelope.wrapped_key) if envelope is not None else (None, None)


class FilesStore(StoreBase):
    """Tables files and file_versions."""

    async def body_envelope(self, location: str) -> Envelope | None:
        """The wrapped data key of the encrypted body at this address (None: a plain body, or none there)."""
        row = await self._one(f"SELECT kek_id, wrapped_key FROM {S}.files WHERE location = %s", (location,))
        return Envelope(str(row[0]), bytes(row[1])) if row and row[0] is not None else None

    async def kek_ids_in_use(self) -> set[str]:
        """The KEKs that wrapped the data keys of the stored bodies (a partial index holds the encrypted rows)."""
        rows = await self._all(f"SELECT DISTINCT kek_id FROM {S}.files WHERE kek_id IS NOT NULL")
        return {str(r[0]) for r in rows}

    async def body_locations(self, digests: Sequence[bytes]) -> dict[bytes, str]:
        rows = await self._all(f"SELECT sha256, location FROM {S}.files WHERE sha256 = ANY(%s)", (list(digests),))
        return {bytes(r[0]): str(r[1]) for r in rows}

    async def envelopes_not_under(self, kek_id: str, after: str, limit: int) -> list[tuple[str, Envelope]]:
        """(address, envelope) of encrypted bodies wrapped by another KEK than `kek_id`, by address after
        `after` (the rewrap's cursor)."""
        rows = await self._all(
            f"SELECT location, kek_id, wrapped_key FROM {S}.files"
            " WHERE kek_id IS NOT NULL AND kek_id <> %s AND location > %s ORDER BY location LIMIT %s",
            (kek_id, after, limit),
        )
        return [(str(r[0]), Envelope(str(r[1]), bytes(r[2]))) for r in rows]

    async def replace_envelope(self, location: str, old: Envelope, new: Envelope) -> bool:
        """Re-wraps one body's data key (only if its row still holds `old`: a concurrent rewrap wins)."""
        return await self._rewrap("files", "location", location, old, new)

    async def file_location(self, sha256: bytes) -> tuple[str, int] | None:
        row = await self._one(f"SELECT location, size FROM {S}.files WHERE sha256 = %s", (sha256,))
        return (str(row[0]), int(row[1])) if row else None

    async def org_references(self, org_key: int, sha256: bytes) -> bool:
        """Whether the org owns a version with this body: content addresses are shared across orgs, reads
        are not."""
        row = await self._one(
            f"SELECT EXISTS (SELECT 1 FROM {S}.file_versions WHERE org_key = %s AND sha256 = %s)"
            f" OR EXISTS (SELECT 1 FROM {S}.metadata_versions WHERE org_key = %s AND sha256 = %s)",
            (org_key, sha256, org_key, sha256),
        )
        return bool(row[0])  # type: ignore[index]

    async def existing_files(self, digests: Sequence[bytes]) -> set[bytes]:
        rows = await self._all(f"SELECT sha256 FROM {S}.files WHERE sha256 = ANY(%s)", (list(digests),))
        return {bytes(r[0]) for r in rows}

    async def record_file(
        self, job: JobRef, seq: int, digest: bytes, file: FileVersionIn, envelope: Envelope | None = None
    ) -> ChunkOutcome:
        async with self.pool.connection() as conn, conn.transaction():
            stored = await self._claim(conn, job.job_key, seq, "file", digest)
            if stored is not None:
                return ChunkOutcome(stored, True)
            cur = await conn.execute(
                f"INSERT INTO {S}.files (sha256, size, location, kek_id, wrapped_key) VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (sha256) DO NOTHING RETURNING 1",
                (file.sha256, file.size, file.location, *_envelope_columns(envelope)),
            )
            body_new = (await cur.fetchone()) is not None
            cur = await conn.execute(
                f"SELECT sha256 FROM {S}.file_versions WHERE org_key = %s AND object_name = %s AND record_id = %s"
                " ORDER BY version_id DESC LIMIT 1 FOR UPDATE",
                (job.org_key, file.object_name, file.record_id),
            )
            previous = await cur.fetchone()
            new_versions = changed = unchanged = 0
            new_version = previous is None or bytes(previous[0]) != file.sha256
            if new_version:
                await conn.execute(
                    f"INSERT INTO {S}.file_versions"
                    " (org_key, object_name, record_id, sha256, size, file_name, content_type, job_key)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    (
                        job.org_key,
                        file.object_name,
                        file.record_id,
                        file.sha256,
                        file.size,
                        file.file_name,
                        file.content_type,
                        job.job_key,
                    ),
                )
                if previous is None:
                    new_versions = 1
                else:
                    changed = 1
            else:
                unchanged = 1
            counts = Counts(
                received=1,
                new_versions=new_versions,
                changed=changed,
                unchanged=unchanged,
                files=1 if body_new else 0,
                bytes=file.size if body_new else 0,
            )
            result = {
                "counts": counts.to_json(),
                "sha256": file.sha256.hex(),
                "size": file.size,
                "deduplicated": not body_new,
                "new_version": new_version,
            }
            await self._finish(conn, job.job_key, seq, result)
            return ChunkOutcome(result, False)

    async def latest_file(
        self, org_key: int, object_name: str, record_id: str, as_of: dt.datetime
    ) -> FileVersionRow | None:
        rows = await self.file_versions(org_key, object_name, record_id, as_of=as_of, newest_only=True)
        return rows[0] if rows else None

    async def file_versions(
        self,
        org_key: int,
        object_name: str,
        record_id: str,
        *,
        as_of: dt.datetime | None = None,
        newest_only: bool = False,
    ) -> list[FileVersionRow]:
        rows = await self._all(
            f"SELECT fv.object_name, fv.record_id, fv.sha256, fv.size, fv.file_name, fv.content_type,"
            f" j.session_id, fv.captured_at, f.location FROM {S}.file_versions fv"
            f" JOIN {S}.jobs j USING (job_key) JOIN {S}.files f USING (sha256)"
            " WHERE fv.org_key = %s AND lower(fv.object_name) = lower(%s) AND fv.record_id = %s"
            " AND (%s::timestamptz IS NULL OR fv.captured_at <= %s)"
            f" ORDER BY fv.version_id {'DESC LIMIT 1' if newest_only else 'ASC'}",
            (org_key, object_name, record_id, as_of, as_of),
        )
        return [FileVersionRow(r[0], r[1], bytes(r[2]), *r[3:]) for r in rows]
