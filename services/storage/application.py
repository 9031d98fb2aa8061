"""Storage use cases: validate a request, canonicalise its records, store the chunk in one transaction (with its
ChunkUploaded in the outbox), then announce it. Reads resolve org and object names and shape the stored versions.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import hashlib
import io
import json
import logging
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from services.canonical import (
    CanonicalColumnsIn,
    ComparePiece,
    FieldChange,
    ObjectSummary,
    RecordChange,
    _plain,
    canonical_json,
    changed_fields,
)
from services.platform import telemetry
from services.platform.encryption import Envelope, Keyring
from services.platform.failpoints import failpoint
from services.storage.application_erasure import Erasures, TombstoneCache
from services.storage.application_sensitive import SensitiveValues
from services.storage.audit import ReadAuditLog
from services.storage.compare import (
    CHANGED,
    check_names,
    check_page,
    check_window,
    resolve_fields,
)
from services.storage.domain import (
    CANONICAL_RULES,
    MAX_BATCH_KEY,
    MAX_SELECTED_IDS,
    RECORD_STATES,
    ChunkDigest,
    ChunkOutcome,
    Counts,
    Deleted,
    FailedPrecondition,
    FileVersionIn,
    FileVersionRow,
    InvalidArgument,
    JobRef,
    MetadataComponentIn,
    MetadataVersionRow,
    NotFound,
    ObjectSchema,
    PendingEvent,
    RecordCanonicalizer,
    RecordSelection,
    RecordVersionRow,
    RestoreIntentRow,
    RestoreOutcome,
    RestorePointRow,
    SchemaRef,
    ScopeHistory,
    check_api_name,
    check_chunk_seq,
    check_outcome,
    check_token,
    id_map_entries,
    normalize_id,
    normalize_org_id,
    prepare_chunk,
    restore_counts,
    restore_digest,
    scope_history,
    select_records,
)
from services.storage.outbox import ChunkEventRelay
from services.storage.ports import (
    AsOfRead,
    ChunkPublisher,
    Deletes,
    FileRepository,
    MetadataChunk,
    RestoreChunk,
    Store,
    WriteGuards,
)
from services.storage.sensitive import has_sealed

MAX_CACHED_JOBS = 20_000
JOB_TYPE_DATA = 3  # events.v1.JobType.JOB_TYPE_DATA: its chunks must be of the job's object
JOB_TYPE_RESTORE, JOB_TYPE_METADATA_RESTORE = 4, 5  # their chunks are PutRestoreOutcomes
DEFAULT_RESTORE_BATCH, MAX_RESTORE_BATCH = 2_000, 10_000  # ReadRecordsAsOf's batches
MAX_ID_MAP = 100_000  # GetIdMap's entries at most (more: ask by source_ids)
MAX_MISSING_IDS = 100  # missing_ids of a ReadRecordsAsOf
DEFAULT_RESTORE_PAGE, MAX_RESTORE_PAGE = 500, 5_000  # ListRestoreRecords
_METADATA_OBJECT = re.compile(r"^metadata:[A-Za-z][A-Za-z0-9_]{0,254}$")
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
HASH_AT = 4 << 20  # an uploaded body larger than this is hashed in a worker thread, this many bytes at a time
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChunkRef:
    """The chunk a write is, as its caller names it: chunk `seq` of a job of a session of an org."""

    org_id: str
    session_id: str
    job_id: str
    seq: int


@dataclass(frozen=True)
class FileHeaderIn:
    """UploadFile's header: the chunk the upload is, and the file (its size; its SHA-256 if the sender knows it)."""

    chunk: ChunkRef
    object_name: str
    record_id: str
    size: int
    sha256: str = ""
    file_name: str = ""
    content_type: str = ""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class StorageOptions:
    """Storage's settings (config.py: SFVAULT_STORAGE_<NAME>, the same names) that its use cases apply."""

    max_chunk_records: int = 10_000
    count_formula_changes: bool = False
    canonical_check_every: int = 32  # one record in this many of those compared or stored is canonicalised again
    outbox_interval_s: float = 2.0
    max_concurrent_exports: int = 2


class Storage:
    def __init__(
        self,
        store: Store,
        files: FileRepository,
        publisher: ChunkPublisher,
        options: StorageOptions = StorageOptions(),
        *,
        keyring: Keyring | None = None,
    ) -> None:
        self.store = store
        self.files = files
        self.publisher = publisher
        self.relay = ChunkEventRelay(store, publisher, interval_s=options.outbox_interval_s)
        self.read_audit = ReadAuditLog(store)
        # an export holds a database connection while its client reads: fewer at once than the pool has
        # connections, so slow (or stalled) readers never leave the writes without one
        self._exports = asyncio.Semaphore(max(1, options.max_concurrent_exports))
        self.max_chunk_records = options.max_chunk_records
        self.count_formula_changes = options.count_formula_changes
        self.canonical_check_every = max(1, options.canonical_check_every)
        self._jobs: dict[tuple[str, str], JobRef] = {}  # jobs never change once registered
        self._schemas: dict[tuple[int, str, str], tuple[SchemaRef, RecordCanonicalizer]] = {}
        self._scopes: dict[int, ScopeHistory] = {}  # by object_key; reloaded when a chunk's version is new
        # erasure (issue 18): Erase / VerifyErasure, and the erased Ids a backup must not bring back
        self.tombstones = TombstoneCache(store)
        # sensitive fields (issue 18): their values sealed under each org's value key, wrapped by the KEK
        self.sensitive = SensitiveValues(store, keyring)
        self.erasures = Erasures(store, files, self.tombstones, self._org_key, self.sensitive)

    # --- registration --------------------------------------------------------------------------------------

    async def begin_job(
        self, org_id: str, session_id: str, job_id: str, job_type: int, object_name: str
    ) -> tuple[int, int, Counts]:
        org = normalize_org_id(org_id)
        check_token(session_id, "session_id")
        check_token(job_id, "job_id")
        if object_name:
            check_api_name(object_name)
        elif job_type == JOB_TYPE_DATA:
            raise InvalidArgument("a data job needs its object_name")
        job, last, chunks, totals = await self.store.begin_job(org, session_id, job_id, job_type, object_name)
        self._remember(job)
        if chunks:
            # a resumed job: announce again what was committed and never acknowledged by the stream
            await self._relay_job(job)
        return last, chunks, totals

    def _remember(self, job: JobRef) -> None:
        # bounded: a storage that runs for months sees millions of jobs (a forgotten one is read again)
        if len(self._jobs) >= MAX_CACHED_JOBS:
            self._jobs.clear()
        self._jobs[(job.session_id, job.job_id)] = job

    async def _relay_job(self, job: JobRef) -> None:
        try:
            # bounded: with NATS away the call is not held up; the periodic relay goes on trying
            async with asyncio.timeout(self.relay.announce_timeout_s):
                await self.relay.relay(job_key=job.job_key)
        except Exception as exc:  # the periodic relay tries again; the call itself succeeded
            log.warning("outbox relay of job %s failed (%s); retrying later", job.job_id, type(exc).__name__)

    async def put_schema(
        self, org_id: str, session_id: str, schema: ObjectSchema, describe_json: bytes = b""
    ) -> tuple[int, bool]:
        org_key = await self._org_key(org_id)
        check_token(session_id, "session_id")
        schema.validate()
        self.sensitive.check_schema(schema)
        if describe_json:
            try:
                json.loads(describe_json)
            except ValueError:
                raise InvalidArgument(f"describe_json of {schema.object_name} is not JSON") from None
        version, changed = await self.store.put_schema(org_key, session_id, schema, describe_json or None)
        self._schemas.pop((org_key, session_id, schema.object_name.lower()), None)
        if changed and schema.sensitive_fields and version > 1:
            # a field marked sensitive now: the values stored before, sealed too, in the background
            found = await self.store.object_key(org_key, schema.object_name)
            if found is not None and await self.sensitive.newly_marked(found[0], found[1], version):
                self.sensitive.reseal_soon(org_key, found[0], found[1])
        return version, changed

    async def _org_key(self, org_id: str) -> int:
        org = normalize_org_id(org_id)
        key = await self.store.org_key(org)
        if key is None:
            raise NotFound(f"org {org} is not known to storage (nothing was ever backed up for it)")
        return key

    async def _job(self, org_id: str, session_id: str, job_id: str, seq: int) -> JobRef:
        org = normalize_org_id(org_id)
        check_token(session_id, "session_id")
        check_token(job_id, "job_id")
        check_chunk_seq(seq)
        job = self._jobs.get((session_id, job_id))
        if job is None:
            job = await self.store.job(session_id, job_id)
            if job is None:
                raise FailedPrecondition(f"job {job_id} of session {session_id} is unknown: call BeginJob first")
            self._remember(job)
        if job.org_id != org:
            raise InvalidArgument(f"job {job_id} belongs to org {job.org_id}, not {org}")
        return job

    async def _schema(self, job: JobRef, object_name: str) -> tuple[SchemaRef, RecordCanonicalizer]:
        check_api_name(object_name)
        if job.job_type == JOB_TYPE_DATA and job.object_name.lower() != object_name.lower():
            raise InvalidArgument(f"job {job.job_id} backs up {job.object_name}, not {object_name}")
        key = (job.org_key, job.session_id, object_name.lower())
        cached = self._schemas.get(key)
        if cached is None:
            ref = await self.store.session_schema(job.org_key, job.session_id, object_name)
            if ref is None:
                raise FailedPrecondition(
                    f"object {object_name} has no schema for session {job.session_id}: call PutObjectSchema first"
                )
            if len(self._schemas) > 2000:
                self._schemas.clear()
            cached = (ref, RecordCanonicalizer(ref.schema, count_formula_changes=self.count_formula_changes))
            self._schemas[key] = cached
        return cached

    async def _published(self, job: JobRef, seq: int, outcome: ChunkOutcome) -> ChunkOutcome:
        """Announce a committed chunk's ChunkUploaded (its outbox row was written with it); a publish that fails
        is left to the relay and never fails the call."""
        if outcome.replayed:
            # the first delivery may have committed and died before its publish: what is pending, again
            await self._relay_job(job)
            return outcome
        failpoint("storage.chunk_committed")
        committed = PendingEvent(job.job_key, seq, job.session_id, job.job_id, outcome.counts, _now(), outcome.restore)
        await self.relay.announce(committed)
        return outcome

    # --- writes --------------------------------------------------------------------------------------------

    async def put_records(
        self, at: ChunkRef, object_name: str, columns: CanonicalColumnsIn, rules: int, formula_changes_counted: bool
    ) -> ChunkOutcome:
        """A chunk of canonical records, column by column (the one form of PutRecords): validated, hashed and
        stored without parsing, in one transaction; of the records compared with their head or stored, one in
        `canonical_check_every` (and the first) is canonicalised again and must come out identical."""
        count = columns.record_ids.count(b"\n")
        job, seq = await self._job(at.org_id, at.session_id, at.job_id, at.seq), at.seq
        if count > self.max_chunk_records:
            raise InvalidArgument(f"chunk {seq} has {count} records; at most {self.max_chunk_records} per PutRecords")
        ref, canonicalizer = await self._schema(job, object_name)
        if rules != CANONICAL_RULES or formula_changes_counted != self.count_formula_changes:
            raise FailedPrecondition(
                f"chunk {seq} was canonicalised under rules {rules} (formula changes counted: "
                f"{formula_changes_counted}); this storage uses rules {CANONICAL_RULES} (formula changes counted: "
                f"{self.count_formula_changes}): canonicalise the records under these rules"
            )
        history = await self._scope_history(ref)
        # CPU-bound: off the event loop, so health checks and other chunks' SQL keep going meanwhile
        chunk = await asyncio.to_thread(
            prepare_chunk,
            columns,
            ref.object_name,
            canonicalizer,
            check_every=self.canonical_check_every,
            schema_version=ref.schema_version,
            # the object's fields changed at some point: records are compared with heads across the change
            scopes=None if history.uniform else history,
        )
        with telemetry.chunk_transaction(
            "put_records",
            session_id=job.session_id,
            job_id=job.job_id,
            object_name=ref.object_name,
            records=count,
            chunk_seq=seq,
        ) as span:
            erased = await self.tombstones.of(job.org_key, ref.object_key)
            self.sensitive.check_schema(ref.schema)
            sensitive = ref.schema.sensitive_fields
            if chunk.scopes is not None:  # values carried from a head may belong to a field sensitive before
                sensitive = await self.sensitive.fields_ever(ref.object_key, ref.object_name, ref.schema_version)
            seal, unseal = await self.sensitive.sealing(
                job.org_key, ref.object_name, sensitive, rescoped=chunk.scopes is not None
            )
            guards = WriteGuards(erased, seal, unseal)
            outcome = await self.store.put_records(job, ref, seq, chunk, guards)
            span.stored(replayed=outcome.replayed)
        return await self._published(job, seq, outcome)

    async def _scope_history(self, ref: SchemaRef) -> ScopeHistory:
        history = self._scopes.get(ref.object_key)
        if history is None or ref.schema_version not in history.scopes:
            schemas = await self.store.schema_history(ref.object_key, ref.object_name)
            history = scope_history(schemas, count_formula_changes=self.count_formula_changes)
            if len(self._scopes) > 2000:
                self._scopes.clear()
            self._scopes[ref.object_key] = history
        return history

    async def mark_deleted(
        self, at: ChunkRef, object_name: str, record_ids: Sequence[str], state: Deleted
    ) -> ChunkOutcome:
        job, seq = await self._job(at.org_id, at.session_id, at.job_id, at.seq), at.seq
        if state not in (Deleted.SOFT, Deleted.HARD):
            raise InvalidArgument("state must be DELETED_STATE_SOFT or DELETED_STATE_HARD")
        if len(record_ids) > self.max_chunk_records:
            raise InvalidArgument(f"{len(record_ids)} Ids; at most {self.max_chunk_records} per MarkDeleted")
        check_api_name(object_name)
        found = await self.store.object_key(job.org_key, object_name)
        if found is None:
            raise NotFound(f"object {object_name} is not known for org {job.org_id}")
        ids = [normalize_id(i) for i in record_ids]
        digest = ChunkDigest()
        digest.update(found[1].lower(), str(int(state)), *ids)
        with telemetry.chunk_transaction(
            "mark_deleted", session_id=job.session_id, job_id=job.job_id, object_name=object_name, chunk_seq=seq
        ) as chunk:
            erased = await self.tombstones.of(job.org_key, found[0])
            deletes = Deletes(found[0], ids, state)
            outcome = await self.store.mark_deleted(job, seq, digest.digest(), deletes, erased)
            chunk.stored(replayed=outcome.replayed)
        return await self._published(job, seq, outcome)

    async def upload_file(self, header: FileHeaderIn, body: AsyncIterator[bytes]) -> ChunkOutcome:
        at = header.chunk
        job, seq = await self._job(at.org_id, at.session_id, at.job_id, at.seq), at.seq
        check_api_name(header.object_name)
        record_id = normalize_id(header.record_id)
        if header.size < 0:
            raise InvalidArgument(f"size must be 0 or more, got {header.size}")
        expected_sha = header.sha256.lower()
        if expected_sha and not _SHA256_HEX.match(expected_sha):
            raise InvalidArgument(f"sha256 {header.sha256!r} is not 64 hex digits")
        digest = ChunkDigest()
        digest.update(header.object_name, record_id, str(header.size), header.file_name, header.content_type)
        digest_bytes = digest.digest()
        # no look for the chunk before its body (a query a file, for a replay only a resumed job sends): recording
        # it claims the chunk, and answers a committed one as replayed (its body just received is dropped)
        known = await self.store.file_location(bytes.fromhex(expected_sha)) if expected_sha else None
        envelope: Envelope | None = None
        if known is not None and known[1] == header.size:
            location, sha_hex, size = known[0], expected_sha, header.size  # already stored: skip the body
        else:
            location, sha_hex, size, envelope = await self._receive(header, body)
        stored = FileVersionIn(
            header.object_name, record_id, bytes.fromhex(sha_hex), size, location, header.file_name, header.content_type
        )
        outcome = await self.store.record_file(job, seq, digest_bytes, stored, envelope)
        if envelope is not None:
            await self._drop_unused_bodies({bytes.fromhex(sha_hex): location})
        return await self._published(job, seq, outcome)

    async def _drop_unused_bodies(self, uploaded: dict[bytes, str]) -> None:
        """Encrypted bodies are stored at random addresses: when another upload of the same content recorded
        its body first (or the chunk was a replay), the one just uploaded is referenced by nothing."""
        recorded = await self.store.body_locations(list(uploaded))
        for sha, location in uploaded.items():
            if recorded.get(sha) != location:
                await self.files.delete(location)

    async def _receive(self, header: FileHeaderIn, body: AsyncIterator[bytes]) -> tuple[str, str, int, Envelope | None]:
        """Streams the body into the repository with SHA-256 and size computed on the fly."""
        sha = hashlib.sha256()
        size = 0

        def add(pieces: list[bytes]) -> None:  # in a worker thread (hashlib lets the others run meanwhile)
            for piece in pieces:
                sha.update(piece)

        # a body of more than HASH_AT is hashed off the event loop, HASH_AT at a time, while the next pieces arrive
        hashing: asyncio.Future[None] | None = None
        unhashed: list[bytes] = []
        upload = await self.files.begin()
        try:
            async for data in body:
                size += len(data)
                if size > header.size:
                    raise InvalidArgument(f"file of record {header.record_id} is larger than its size {header.size}")
                if header.size <= HASH_AT:
                    sha.update(data)
                else:
                    unhashed.append(data)
                    if size % HASH_AT < len(data) or size == header.size:  # HASH_AT more, or the last
                        if hashing is not None:
                            await hashing
                        hashing = asyncio.ensure_future(asyncio.to_thread(add, unhashed))
                        unhashed = []
                await upload.write(data)
            if hashing is not None:
                await hashing
            if size != header.size:
                raise InvalidArgument(
                    f"file of record {header.record_id} has {size} bytes, its header says {header.size}"
                )
            sha_hex = sha.hexdigest()
            if header.sha256 and header.sha256.lower() != sha_hex:
                raise InvalidArgument(f"file of record {header.record_id} has SHA-256 {sha_hex}, not {header.sha256}")
            return await upload.commit(sha_hex), sha_hex, size, upload.envelope
        except BaseException:
            await upload.abort()
            raise

    async def put_metadata(self, at: ChunkRef, components: Sequence[MetadataComponentIn]) -> ChunkOutcome:
        job, seq = await self._job(at.org_id, at.session_id, at.job_id, at.seq), at.seq
        if len(components) > self.max_chunk_records:
            raise InvalidArgument(f"{len(components)} components; at most {self.max_chunk_records} per PutMetadata")
        digest = ChunkDigest()
        for i, c in enumerate(components):
            if not c.type or not c.full_name or len(c.type) > 255 or len(c.full_name) > 1000:
                raise InvalidArgument(f"component {i} needs a type and a full_name (at most 255 / 1000 characters)")
            check_api_name(c.type, f"component {i} type")
            digest.update(c.type, c.full_name, c.sha256, b"1" if c.deleted else b"0")
        digest_bytes = digest.digest()
        previous = await self.store.chunk_result(job.job_key, seq)
        if previous is None:
            existing = await self.store.existing_files([c.sha256 for c in components])
            locations: dict[bytes, str] = {}
            envelopes: dict[bytes, Envelope] = {}
            for c in components:
                if c.sha256 in locations:
                    continue
                if c.sha256 in existing:
                    found = await self.store.file_location(c.sha256)
                    assert found is not None
                    locations[c.sha256] = found[0]
                else:
                    _hex, locations[c.sha256], envelope = await self.files.put_bytes(c.content)
                    if envelope is not None:
                        envelopes[c.sha256] = envelope
        else:
            locations, envelopes = {}, {}  # the store recognises the replay before it needs any location
        outcome = await self.store.put_metadata(job, seq, digest_bytes, MetadataChunk(components, locations, envelopes))
        if envelopes:
            await self._drop_unused_bodies({sha: locations[sha] for sha in envelopes})
        return await self._published(job, seq, outcome)

    # --- reads ---------------------------------------------------------------------------------------------

    async def _object(self, org_id: str, object_name: str) -> tuple[int, int, str]:
        org_key = await self._org_key(org_id)
        check_api_name(object_name)
        found = await self.store.object_key(org_key, object_name)
        if found is None:
            raise NotFound(f"object {object_name} is not known for org {normalize_org_id(org_id)}")
        return org_key, found[0], found[1]

    async def record_history(self, org_id: str, object_name: str, record_id: str) -> list[RecordVersionRow]:
        org_key, object_key, name = await self._object(org_id, object_name)
        rid = normalize_id(record_id)
        versions = await self.store.history(org_key, object_key, rid)
        if not versions:
            raise NotFound(f"record {rid} of {name} has never been backed up")
        return await self.sensitive.open_versions(org_key, name, versions)

    async def record_as_of(
        self, org_id: str, object_name: str, record_id: str, as_of: dt.datetime | None
    ) -> RecordVersionRow:
        org_key, object_key, name = await self._object(org_id, object_name)
        rid = normalize_id(record_id)
        when = as_of or _now()
        version = await self.store.as_of(org_key, object_key, rid, when)
        if version is None:
            raise NotFound(f"record {rid} of {name} has no backed-up version at or before {when.isoformat()}")
        return (await self.sensitive.open_versions(org_key, name, [version]))[0]

    async def export_as_of(
        self, org_id: str, object_name: str, as_of: dt.datetime | None, *, csv_format: bool, include_deleted: bool
    ) -> AsyncIterator[tuple[bytes, int]]:
        org_key, object_key, name = await self._object(org_id, object_name)
        when = as_of or _now()
        schema = await self.store.schema_as_of(object_key, name, when)
        assert schema is not None
        columns = schema.field_names
        if csv_format:
            header = io.StringIO()
            csv.writer(header, lineterminator="\n").writerow([*columns, *(["_deleted"] if include_deleted else [])])
            yield header.getvalue().encode(), 0
        async with self._exports:
            async for stored in self.store.export_as_of(org_key, object_key, when, include_deleted=include_deleted):
                batch = await self.sensitive.open_batch(org_key, name, stored)
                if csv_format:
                    yield _csv_rows(batch, columns, include_deleted), len(batch)
                else:
                    yield _jsonl_rows(batch), len(batch)

    async def restore_points(self, org_id: str, object_name: str) -> list[RestorePointRow]:
        if object_name:
            org_key, object_key, _ = await self._object(org_id, object_name)
            return await self.store.restore_points(org_key, object_key)
        return await self.store.restore_points(await self._org_key(org_id), None)

    async def file_versions(self, org_id: str, object_name: str, record_id: str) -> list[FileVersionRow]:
        org_key = await self._org_key(org_id)
        check_api_name(object_name)
        return await self.store.file_versions(org_key, object_name, normalize_id(record_id))

    async def open_file(
        self, org_id: str, sha256: str, object_name: str, record_id: str, as_of: dt.datetime | None
    ) -> tuple[FileVersionRow | None, str, int, AsyncIterator[bytes]]:
        """(the file version if asked by record, address, size, body stream)."""
        org_key = await self._org_key(org_id)
        if sha256:
            if not _SHA256_HEX.match(sha256.lower()):
                raise InvalidArgument(f"sha256 {sha256!r} is not 64 hex digits")
            found = await self.store.file_location(bytes.fromhex(sha256.lower()))
            if found is None or not await self.store.org_references(org_key, bytes.fromhex(sha256.lower())):
                raise NotFound(f"no file with SHA-256 {sha256} in org {normalize_org_id(org_id)}")
            return None, found[0], found[1], self.files.read(found[0])
        check_api_name(object_name)
        rid = normalize_id(record_id)
        version = await self.store.latest_file(org_key, object_name, rid, as_of or _now())
        if version is None:
            raise NotFound(f"no file stored for {object_name} {rid}")
        return version, version.location, version.size, self.files.read(version.location)

    async def metadata_versions(self, org_id: str, type_: str, full_name: str, limit: int) -> list[MetadataVersionRow]:
        if limit < 0:
            raise InvalidArgument(f"limit must be 0 (the default, 1000) or more, got {limit}")
        org_key = await self._org_key(org_id)
        limit = min(limit or 1000, 10_000)
        return await self.store.metadata_versions(org_key, type_=type_, full_name=full_name, limit=limit)

    async def metadata_as_of(
        self, org_id: str, type_: str, full_name: str, as_of: dt.datetime | None
    ) -> tuple[MetadataVersionRow, bytes]:
        org_key = await self._org_key(org_id)
        if not type_ or not full_name:
            raise InvalidArgument("type and full_name are required")
        when = as_of or _now()
        row = await self.store.latest_metadata(org_key, type_, full_name, when)
        if row is None:
            raise NotFound(f"no version of {type_} {full_name} at or before {when.isoformat()}")
        content = b"".join([chunk async for chunk in self.files.read(row.location)])
        return row, content

    # --- restore (issue 17) ----------------------------------------------------------------------------------

    async def records_as_of(
        self,
        org_id: str,
        object_name: str,
        as_of: dt.datetime | None,
        asked: RecordSelection,
        *,
        batch_size: int = 0,
        ids_only: bool = False,
        as_stored: bool = False,
    ) -> AsyncIterator[RecordsBatch]:
        """ReadRecordsAsOf: per selected record, its last version at or before `as_of` if that version is live,
        in batches (Id order). The first batch (always sent, empty or not) carries the object's fields at the schema
        version in force at `as_of`, and the requested Ids with no live version then. values_json: every value of
        the version (hashed and other values), canonical JSON; with `ids_only`, the records' Ids alone (`bare`, their
        values neither read nor sent); with `as_stored`, their Ids and values alone (`bare`), the values as
        PostgreSQL's text (its spacing and key order: not canonical, for a reader that parses them)."""
        if batch_size < 0 or batch_size > MAX_RESTORE_BATCH:
            raise InvalidArgument(f"batch_size must be between 0 and {MAX_RESTORE_BATCH} (0: {DEFAULT_RESTORE_BATCH})")
        selection = select_records(asked)
        org_key, object_key, name = await self._object(org_id, object_name)
        when = as_of or _now()
        schema = await self.store.schema_as_of(object_key, name, when)
        assert schema is not None  # an object is stored with its first schema
        if where_field := selection.where_field:
            # the stored values are keyed in the schema's spelling; names are case-insensitive in Salesforce
            spelled = next((f.name for f in schema.fields if f.name.lower() == where_field.lower()), where_field)
            selection = replace(selection, where_field=spelled)
        read = AsOfRead(org_key, object_key, when, selection)
        missing: list[str] = []
        if selection.ids:
            live = await self.store.live_ids_as_of(org_key, object_key, selection.ids, when)
            missing = [i for i in selection.ids if i not in live]
        if not selection.ids and not selection.all:
            # few records match a time or a parent, most often: find them in one pass over the object's versions
            # rather than probing every record (too many of them: every record is probed)
            candidates = await self.store.candidate_ids(read, cap=MAX_SELECTED_IDS)
            if candidates is not None:
                if not candidates:
                    yield RecordsBatch(name, schema=schema)
                    return
                read = replace(read, selection=replace(read.selection, ids=tuple(candidates)))
        limit = batch_size or DEFAULT_RESTORE_BATCH
        bare = ids_only or as_stored

        async def page(after: str) -> tuple[list[Any], str | None]:
            if bare:
                return await self.store.bare_as_of(read, after=after, limit=limit, values=not ids_only)
            return await self.store.records_as_of(read, after=after, limit=limit)

        async def shaped(batch: list[Any]) -> dict[str, Any]:
            if bare:
                return {"bare": tuple(await self.sensitive.open_values(org_key, name, batch))}
            if batch:
                opened = await self.sensitive.open_versions(org_key, name, batch)
                batch = await asyncio.to_thread(_canonical_versions, opened)
            return {"records": batch}

        after: str | None = ""
        pending: list[Any] = []  # short pages (a selection matching few records) gathered into batches
        first = True
        while after is not None:
            rows, after = await page(after)
            pending += rows
            while len(pending) >= limit or (after is None and (pending or first)):
                batch, pending = pending[:limit], pending[limit:]
                kept = await shaped(batch)
                if first:  # the fields, and what was missing
                    kept.update(schema=schema, missing=len(missing), missing_ids=tuple(missing[:MAX_MISSING_IDS]))
                    first = False
                yield RecordsBatch(name, **kept)

    async def _restore_job(self, org_id: str, session_id: str, job_id: str, seq: int) -> JobRef:
        job = await self._job(org_id, session_id, job_id, seq)
        if job.job_type not in (JOB_TYPE_RESTORE, JOB_TYPE_METADATA_RESTORE):
            raise FailedPrecondition(
                f"job {job_id} of session {session_id} is not a restore job (type {job.job_type}): begin it with"
                " JOB_TYPE_RESTORE or JOB_TYPE_METADATA_RESTORE"
            )
        return job

    def _outcome(self, job: JobRef, o: RestoreOutcome, i: int) -> RestoreOutcome:
        if _METADATA_OBJECT.match(o.object_name or ""):
            # a component: "metadata:<Type>", its full name where a record has its Id
            if o.state not in RECORD_STATES:
                raise InvalidArgument(f"outcome {i}: unknown state {o.state} (one of {sorted(RECORD_STATES)})")
            for what, value in (("source_id", o.source_id), ("target_id", o.target_id)):
                if len(value) > 1000 or "\x00" in value:
                    raise InvalidArgument(f"outcome {i} {what} is not a component's full name")
            if not o.source_id:
                raise InvalidArgument(f"outcome {i} source_id (the component's full name) is required")
            return replace(
                o,
                error_code=o.error_code.replace("\x00", "")[:10_000],
                message=o.message.replace("\x00", "")[:10_000],
                note=o.note.replace("\x00", "")[:10_000],
            )
        return check_outcome(o, i)

    async def put_restore_outcomes(
        self,
        source_org_id: str,
        at: ChunkRef,
        outcomes: Sequence[RestoreOutcome],
        *,
        resolved_intents: Sequence[str] = (),
        dry_run: bool = False,
        write_calls: int = 0,
        api_calls: int = 0,
        files: int = 0,
    ) -> ChunkOutcome:
        """One chunk of a restore's outcomes (PutRestoreOutcomes), one transaction: the outcomes, the Id map
        entries of the records now under another Id in the target (none in a dry run), the intents it resolves,
        its ChunkUploaded (counts.api_calls, and counts per object in `restore`) in the outbox (`at`: a chunk of a
        restore job, in the target org)."""
        job, seq = await self._restore_job(at.org_id, at.session_id, at.job_id, at.seq), at.seq
        source_org_key = await self._org_key(source_org_id)
        for what, value in (("write_calls", write_calls), ("api_calls", api_calls), ("files", files)):
            if value < 0:
                raise InvalidArgument(f"{what} must be 0 or more, got {value}")
        if len(outcomes) > self.max_chunk_records:
            raise InvalidArgument(
                f"chunk {seq} has {len(outcomes)} outcomes; at most {self.max_chunk_records} per PutRestoreOutcomes"
            )
        if len(resolved_intents) > self.max_chunk_records:
            raise InvalidArgument(f"{len(resolved_intents)} resolved_intents; at most {self.max_chunk_records}")
        for key in resolved_intents:
            _check_batch_key(key, "resolved_intents entry")
        checked = [self._outcome(job, o, i) for i, o in enumerate(outcomes)]
        resolved = sorted(set(resolved_intents))
        digest = restore_digest(normalize_org_id(source_org_id), job.org_id, checked, resolved, dry_run)
        records = [o for o in checked if not o.object_name.startswith("metadata:")]  # components have no Id map
        with telemetry.chunk_transaction(
            "put_restore_outcomes", session_id=job.session_id, job_id=job.job_id, object_name="", chunk_seq=seq
        ) as span:
            chunk = RestoreChunk(
                source_org_key,
                checked,
                id_map_entries(records, dry_run=dry_run),
                resolved,
                dry_run,
                Counts(api_calls=api_calls),
                restore_counts(checked, write_calls=write_calls, files=files),
            )
            outcome = await self.store.put_restore_outcomes(job, seq, digest, chunk)
            span.stored(replayed=outcome.replayed)
        return await self._published(job, seq, outcome)

    async def record_restore_intent(
        self,
        org_id: str,
        session_id: str,
        job_id: str,
        batch_key: str,
        object_name: str,
        source_ids: Sequence[str],
        sent_at: dt.datetime | None,
    ) -> bool:
        """Records a batch of creates before it is sent (idempotent); False when it was already recorded."""
        job = await self._restore_job(org_id, session_id, job_id, 1)
        _check_batch_key(batch_key, "batch_key")
        check_api_name(object_name)
        if len(source_ids) > MAX_SELECTED_IDS:
            raise InvalidArgument(f"{len(source_ids)} source_ids; at most {MAX_SELECTED_IDS} per intent")
        ids = [normalize_id(i, "source_ids entry") for i in source_ids]
        return await self.store.record_intent(job, batch_key, object_name, ids, sent_at)

    async def restore_intents(self, session_id: str, job_id: str) -> list[RestoreIntentRow]:
        """A job's intents no PutRestoreOutcomes resolved yet, oldest first (an unknown job has none)."""
        check_token(session_id, "session_id")
        check_token(job_id, "job_id")
        job = self._jobs.get((session_id, job_id)) or await self.store.job(session_id, job_id)
        if job is None:
            return []
        return await self.store.open_intents(job.job_key)

    async def id_map(self, source_org_id: str, target_org_id: str, source_ids: Sequence[str]) -> dict[str, str]:
        """The Id map of (source org, target org): of these Ids, else all of it (an unknown org: empty)."""
        source, target = normalize_org_id(source_org_id), normalize_org_id(target_org_id)
        if len(source_ids) > MAX_ID_MAP:
            raise InvalidArgument(f"{len(source_ids)} source_ids; at most {MAX_ID_MAP} per GetIdMap")
        ids = sorted({normalize_id(i, "source_ids entry") for i in source_ids})
        source_key, target_key = await self.store.org_key(source), await self.store.org_key(target)
        if source_key is None or target_key is None:
            return {}
        found = await self.store.id_map(source_key, target_key, ids or None, MAX_ID_MAP + 1)
        if len(found) > MAX_ID_MAP:
            raise FailedPrecondition(
                f"the Id map of {source} -> {target} has more than {MAX_ID_MAP} entries: ask by source_ids"
            )
        return found

    async def restore_records(
        self, session_id: str, *, state: int, object_name: str, page_size: int, page_token: str
    ) -> tuple[list[RestoreOutcome], str]:
        """A page of a restore session's outcomes (every job of it), in the order they were stored, and the token
        of the next page ("" at the end); an unknown session has none."""
        check_token(session_id, "session_id")
        if state != 0 and state not in RECORD_STATES:
            raise InvalidArgument(f"state {state} is not a RecordState (0: every state)")
        if object_name and not _METADATA_OBJECT.match(object_name):
            check_api_name(object_name)
        if page_size < 0 or page_size > MAX_RESTORE_PAGE:
            raise InvalidArgument(
                f"page_size must be between 0 and {MAX_RESTORE_PAGE} (0: {DEFAULT_RESTORE_PAGE}), got {page_size}"
            )
        if page_token and not (page_token.isascii() and page_token.isdigit() and int(page_token) < 2**63):
            raise InvalidArgument("page_token is not one this service gave (use next_page_token as it came)")
        size = page_size or DEFAULT_RESTORE_PAGE
        rows = await self.store.restore_records(
            session_id, state=state, object_name=object_name, after=int(page_token or 0), limit=size + 1
        )
        more = len(rows) > size
        rows = rows[:size]
        return [o for _id, o in rows], str(rows[-1][0]) if more else ""

    # --- compare (issue 18) ----------------------------------------------------------------------------------

    async def compare_as_of(
        self,
        org_id: str,
        since: dt.datetime | None,
        until: dt.datetime | None,
        *,
        objects: Sequence[str] = (),
        fields: Sequence[str] = (),
        values: bool = False,
        batch_size: int = 0,
        limit: int = 0,
    ) -> AsyncIterator[ComparePiece]:
        """CompareAsOf: per object, the records live at `since` and not at `until` (deleted), live at `until` and
        not at `since` (added), live at both with different hashes (changed: the fields that differ, compared
        field by field on the two versions' values; with a fields filter only those fields count). Pieces of
        `batch_size` changes; the last one carries every object's summary, exact even when `limit` cut the list."""
        since, until = check_window(since, until, _now())
        size = check_page(batch_size, limit)
        names = check_names(objects, "object")
        wanted = check_names(fields, "field")
        org_key = await self._org_key(org_id)
        known = await self.store.org_objects(org_key)
        if names:
            by_lower = {name.lower(): (key, name) for key, name in known}
            missing = [n for n in names if n.lower() not in by_lower]
            if missing:
                raise NotFound(f"object {missing[0]} is not known for org {normalize_org_id(org_id)}")
            chosen = sorted((by_lower[n.lower()] for n in names), key=lambda k: k[1].lower())
        else:
            chosen = known
        histories = {key: await self.store.schema_history(key, name) for key, name in chosen}
        only: list[str] | None = None
        if wanted:
            every = {f.name for h in histories.values() for schema in h.values() for f in schema.fields}
            only = resolve_fields(wanted, every)
        hashed: dict[tuple[int, int], frozenset[str]] = {}

        def comparable(object_key: int, a: int, b: int) -> frozenset[str]:
            for version in (a, b):
                if (object_key, version) not in hashed:
                    schema = histories[object_key][version]
                    hashed[(object_key, version)] = RecordCanonicalizer(
                        schema, count_formula_changes=self.count_formula_changes
                    ).hashed_fields
            return hashed[(object_key, a)] & hashed[(object_key, b)]

        piece = ComparePiece()
        summaries: list[ObjectSummary] = []
        sent = 0
        truncated = False
        async with self._exports:
            for object_key, name in chosen:
                summary = ObjectSummary(name)
                summaries.append(summary)
                async for rows in self.store.compare(org_key, object_key, since, until, batch=size):
                    for rid, kind, from_version, old, to_version, new in rows:
                        found: tuple[FieldChange, ...] = ()
                        if kind == CHANGED:
                            assert old is not None and new is not None
                            assert from_version is not None and to_version is not None
                            # sensitive values by their keyed hashes (opened only to be shown, or when one side
                            # was stored before the field became sensitive)
                            shown = values or has_sealed(old) != has_sealed(new)
                            found = changed_fields(
                                await self.sensitive.compared(org_key, name, old, values=shown),
                                await self.sensitive.compared(org_key, name, new, values=shown),
                                comparable(object_key, from_version, to_version),
                                only=only,
                                values=values,
                            )
                            if not found:
                                continue  # a hash that differs in no field that counts (scope, fields filter)
                        summary.count(kind)
                        if limit and sent >= limit:
                            truncated = True
                            continue
                        piece.changes.append(RecordChange(name, rid, kind, found))
                        sent += 1
                        if len(piece.changes) >= size:
                            yield piece
                            piece = ComparePiece()
        piece.summaries = summaries
        piece.truncated = truncated
        yield piece

    async def count_live(self, org_id: str, objects: Sequence[str] = ()) -> dict[str, int]:
        """CountLive: {object: live records in the latest state}; an object never backed up is refused
        (NOT_FOUND), one backed up with no live record counts 0."""
        names = check_names(objects, "object")
        org_key = await self._org_key(org_id)
        # the objects named (a job's count check names its one object), else every object of the org
        known = await self.store.org_objects(org_key, [n.lower() for n in names])
        by_lower = {name.lower(): (key, name) for key, name in known}
        if names:
            missing = [n for n in names if n.lower() not in by_lower]
            if missing:
                raise NotFound(f"object {missing[0]} is not known for org {normalize_org_id(org_id)}")
            chosen = [by_lower[n.lower()] for n in names]
        else:
            chosen = known
        counts = await self.store.count_live(org_key, [key for key, _ in chosen])
        return {name: counts.get(key, 0) for key, name in chosen}


@dataclass(frozen=True)
class RecordsBatch:
    """One batch of ReadRecordsAsOf; the first carries the schema and what was missing."""

    object_name: str
    records: list[RecordVersionRow] = field(default_factory=list)
    schema: ObjectSchema | None = None
    missing: int = 0
    missing_ids: tuple[str, ...] = ()
    # ids_only / as_stored: the records as (Id, values as PostgreSQL's text; "" with ids_only), `records` empty
    bare: tuple[tuple[str, str], ...] = ()


def _canonical_text(jsonb_text: str) -> str:
    """Stored values (PostgreSQL's jsonb text: its own spacing and key order) as canonical JSON: orjson's text when
    it is the json module's (services/canonical.py's rule, `_plain`), else the json module's, the reference."""
    try:
        values = orjson.loads(jsonb_text)
    except orjson.JSONDecodeError:
        values = None
    if type(values) is dict and _plain_values(values):
        return orjson.dumps(values, option=orjson.OPT_SORT_KEYS).decode()
    return canonical_json(json.loads(jsonb_text)).decode()


def _plain_values(values: dict[str, Any]) -> bool:
    """`_plain` of a record's values, its common values (text, whole numbers, booleans, nulls) checked inline."""
    for value in values.values():
        kind = type(value)
        if kind is str or value is None or kind is int or kind is bool:
            continue
        if not _plain(value):
            return False
    return True


def _canonical_versions(rows: list[RecordVersionRow]) -> list[RecordVersionRow]:
    """The versions with their values as canonical JSON (each a copy of the frozen row with its values replaced,
    made without the dataclass's __init__: eleven frozen attribute sets cost as much as the canonical text)."""
    out = []
    new = object.__new__
    for r in rows:
        row = new(RecordVersionRow)
        attrs = row.__dict__
        attrs.update(r.__dict__)
        attrs["values_json"] = _canonical_text(r.values_json)
        out.append(row)
    return out


def _check_batch_key(key: str, what: str) -> str:
    if not key or len(key) > MAX_BATCH_KEY or not key.isprintable():
        raise InvalidArgument(f"{what} must be 1-{MAX_BATCH_KEY} printable characters")
    return key


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return value


def _csv_rows(batch: list[tuple[str, int, str]], columns: list[str], include_deleted: bool) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for _rid, state, values_json in batch:
        values = json.loads(values_json)
        row = [_csv_value(values.get(c)) for c in columns]
        if include_deleted:
            row.append(Deleted(state).name.lower() if state else "")
        writer.writerow(row)
    return out.getvalue().encode()


def _jsonl_rows(batch: list[tuple[str, int, str]]) -> bytes:
    lines = []
    for _rid, state, values_json in batch:
        if state:
            # the stored JSON is an object; splice the marker in rather than parse and re-encode it
            values_json = f'{{"_deleted":"{Deleted(state).name.lower()}",' + values_json[1:]
        lines.append(values_json)
    return ("\n".join(lines) + "\n").encode()
