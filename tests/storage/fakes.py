"""In-memory fakes of storage's ports (services/storage/ports.py): the file repository, the read audit's store and
the outbox. Each behaves as its real adapter does, as the contract suites show (test_file_repository_contract.py,
test_read_audit_store_contract.py, test_outbox_store_contract.py run against fake and real alike), so application
tests can use them and run in milliseconds without PostgreSQL, a directory or S3."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import AsyncIterator, Sequence

from services.platform.encryption import Envelope
from services.storage.domain import Counts, PendingEvent, ReadEntry, RestoreCounts
from services.storage.files import content_key
from services.storage.ports import READ_CHUNK, Upload


class InMemoryUpload:
    envelope: Envelope | None = None  # a plain body

    def __init__(self, repo: InMemoryFileRepository) -> None:
        self.repo = repo
        self.parts: list[bytes] = []
        repo.in_flight += 1

    async def write(self, data: bytes) -> None:
        self.parts.append(bytes(data))

    async def commit(self, sha256_hex: str) -> str:
        return await self.commit_at(content_key(sha256_hex))

    async def commit_at(self, key: str) -> str:
        self.repo.bodies.setdefault(key, b"".join(self.parts))  # content-addressed: stored once
        self.repo.in_flight -= 1
        return key

    async def abort(self) -> None:
        self.parts.clear()
        self.repo.in_flight -= 1


class InMemoryFileRepository:
    """Bodies by content address in a dict; an upload is visible only once committed."""

    def __init__(self) -> None:
        self.bodies: dict[str, bytes] = {}
        self.in_flight = 0  # uploads begun and neither committed nor aborted
        self.broken = False  # check() fails, as an unwritable directory or an unreachable bucket does

    async def begin(self) -> Upload:
        return InMemoryUpload(self)

    async def put_bytes(self, data: bytes) -> tuple[str, str, Envelope | None]:
        digest = hashlib.sha256(data).hexdigest()
        up = await self.begin()
        await up.write(data)
        return digest, await up.commit(digest), None

    async def read(self, key: str, chunk_size: int = READ_CHUNK) -> AsyncIterator[bytes]:
        if key not in self.bodies:
            raise FileNotFoundError(key)
        body = self.bodies[key]
        for at in range(0, len(body), chunk_size):
            yield body[at : at + chunk_size]

    async def check(self) -> None:
        if self.broken:
            raise OSError("file repository not writable")

    async def delete(self, key: str) -> None:
        self.bodies.pop(key, None)

    async def sweep_temporary(self, older_than_s: float) -> int:
        return 0  # nothing is left behind in memory: an aborted or killed upload is simply dropped


class InMemoryReadAuditStore:
    """The read audit's table: entries numbered as they are appended."""

    def __init__(self) -> None:
        self.entries: list[ReadEntry] = []

    async def record_reads(self, entries: Sequence[ReadEntry]) -> None:
        start = len(self.entries)
        self.entries += [dataclasses.replace(e, entry_id=start + i + 1) for i, e in enumerate(entries)]

    async def read_audit(self, *, since: dt.datetime | None, actor: str, after: int, limit: int) -> list[ReadEntry]:
        found = [
            e
            for e in self.entries
            if e.entry_id > after and (since is None or e.at >= since) and (not actor or e.actor == actor)
        ]
        return found[:limit]


class InMemoryOutbox:
    """The outbox: a committed chunk's row (`committed`, what a chunk's transaction does) until its event is
    acknowledged (events_published)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[int, int], PendingEvent] = {}

    def committed(
        self,
        job_key: int,
        seq: int,
        session_id: str,
        job_id: str,
        counts: Counts,
        at: dt.datetime,
        restore: tuple[RestoreCounts, ...] = (),
    ) -> None:
        self.rows[(job_key, seq)] = PendingEvent(job_key, seq, session_id, job_id, counts, at, restore)

    async def pending_events(
        self, *, job_key: int | None = None, min_age_s: float | None = None, limit: int = 1000
    ) -> list[PendingEvent]:
        now = dt.datetime.now(dt.UTC)
        found = [
            row
            for key, row in sorted(self.rows.items())
            if (job_key is None or key[0] == job_key)
            and (min_age_s is None or row.committed_at < now - dt.timedelta(seconds=min_age_s))
        ]
        return found[:limit]

    async def events_published(self, keys: Sequence[tuple[int, int]]) -> None:
        for key in keys:
            self.rows.pop(key, None)
