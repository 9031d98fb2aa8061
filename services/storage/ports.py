"""The small interfaces storage's application depends on (cosmicpython's ports): its tables, split by concern
(store_*.py implement them, PostgresStore all of them; tests/storage/fakes.py has in-memory fakes), the file
repository (files.py: a local directory or S3), and the publisher of ChunkUploaded (consumers.py). Nothing else.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from services.platform.encryption import Envelope
from services.storage.domain import (
    ChunkOutcome,
    Counts,
    Deleted,
    FileVersionIn,
    FileVersionRow,
    JobRef,
    MetadataComponentIn,
    MetadataVersionRow,
    ObjectSchema,
    PendingEvent,
    ReadEntry,
    RecordsChunk,
    RecordSelection,
    RecordVersionRow,
    RestoreCounts,
    RestoreIntentRow,
    RestoreOutcome,
    RestorePointRow,
    SchemaRef,
)
from services.storage.erasure import DeleteBodies, Erasure, ErasureResult, ValueSought, VerificationResult

READ_CHUNK = 1 << 20  # 1 MiB pieces when streaming a body out

# --- what the table ports take: a write's chunk as stored, a restore's read -----------------------------------


@dataclass(frozen=True)
class MetadataChunk:
    """A PutMetadata chunk as MetadataStore.put_metadata stores it: its components, where each body is (by
    SHA-256: a replay is recognised before any is needed), and the envelope of each body it encrypted."""

    components: Sequence[MetadataComponentIn]
    locations: Mapping[bytes, str]
    envelopes: Mapping[bytes, Envelope] = field(default_factory=dict)


@dataclass(frozen=True)
class Deletes:
    """A MarkDeleted chunk as RecordStore.mark_deleted stores it: these records of the object (Ids checked), deleted
    so."""

    object_key: int
    record_ids: Sequence[str]
    state: Deleted


@dataclass(frozen=True)
class WriteGuards:
    """What the write of a chunk of records keeps besides its records (issue 18): the object's erased Ids, never
    brought back (erasure.py), and the sealing of sensitive values (sensitive.py: `seal` each value written,
    `unseal` a head's values read back for a change of scope). The default guards nothing."""

    tombstones: frozenset[str] = frozenset()
    seal: Callable[[bytes], bytes] | None = None
    unseal: Callable[[str], str] | None = None


UNGUARDED = WriteGuards()


@dataclass(frozen=True)
class RestoreChunk:
    """A PutRestoreOutcomes chunk as RestoreStore.put_restore_outcomes stores it: the outcomes (checked), the Id map
    entries of the records now under another Id in the target (none in a dry run), the intents it resolves, and
    its ChunkUploaded's counts (api_calls) and counts per object."""

    source_org_key: int
    outcomes: Sequence[RestoreOutcome]
    id_map: Mapping[str, str]
    resolved: Sequence[str]
    dry_run: bool
    counts: Counts
    restore: Sequence[RestoreCounts]


@dataclass(frozen=True)
class AsOfRead:
    """What a restore reads of the backup (RestoreStore.candidate_ids, records_as_of): the records of an object
    that `selection` picks (its where_field in the schema's spelling), each as its last version at or before
    `when`."""

    org_key: int
    object_key: int
    when: dt.datetime
    selection: RecordSelection


# --- the file repository (files.py) ------------------------------------------------------------------------


class Upload(Protocol):
    # the wrapped data key of an encrypted body (kept in its row of `files`); None: a plain body
    envelope: Envelope | None

    async def write(self, data: bytes) -> None: ...

    async def commit(self, sha256_hex: str) -> str:
        """Makes the body visible at its address (a plain body: its content address, deduplicated; an encrypted
        one: a random address); returns the address."""
        ...

    async def commit_at(self, key: str) -> str:
        """Makes the body visible at `key` (an existing body there is kept); returns it."""
        ...

    async def abort(self) -> None: ...


class FileRepository(Protocol):
    async def begin(self) -> Upload: ...

    async def put_bytes(self, data: bytes) -> tuple[str, str, Envelope | None]:
        """Stores a small body in one go; returns (sha256 hex, address, envelope if encrypted)."""
        ...

    def read(self, key: str, chunk_size: int = READ_CHUNK) -> AsyncIterator[bytes]: ...

    async def check(self) -> None:
        """Raises when the repository is not usable (start-up and readiness)."""
        ...

    async def delete(self, key: str) -> None:
        """Removes a body no version references any more (retention); a missing body is already gone."""
        ...

    async def sweep_temporary(self, older_than_s: float) -> int:
        """Removes temporary bodies (of uploads killed midway) untouched for `older_than_s`; returns how many.
        Safe with several replicas: an upload in flight keeps its body younger than the grace period."""
        ...


# --- the bus (consumers.py) ------------------------------------------------------------------------------------


class ChunkPublisher(Protocol):
    async def chunk_uploaded(self, event: PendingEvent) -> None:
        """Publishes the committed chunk's ChunkUploaded (occurred at its commit), with its deterministic id."""
        ...


# --- the tables (store_*.py, PostgresStore) -------------------------------------------------------------------


class OutboxStore(Protocol):
    async def pending_events(
        self, *, job_key: int | None = None, min_age_s: float | None = None, limit: int = 1000
    ) -> list[PendingEvent]: ...

    async def events_published(self, keys: Sequence[tuple[int, int]]) -> None: ...


class ReadAuditStore(Protocol):
    async def record_reads(self, entries: Sequence[ReadEntry]) -> None: ...

    async def read_audit(self, *, since: dt.datetime | None, actor: str, after: int, limit: int) -> list[ReadEntry]: ...


class JobStore(OutboxStore, Protocol):
    """Orgs, jobs (BeginJob) and the outbox of committed chunks."""

    async def org_key(self, org_id: str) -> int | None: ...

    async def begin_job(
        self, org_id: str, session_id: str, job_id: str, job_type: int, object_name: str
    ) -> tuple[JobRef, int, int, Counts]: ...

    async def job(self, session_id: str, job_id: str) -> JobRef | None: ...

    async def chunk_result(self, job_key: int, seq: int) -> tuple[str, bytes, dict[str, Any]] | None: ...


class SchemaStore(Protocol):
    """Objects and their describes, versioned."""

    async def object_key(self, org_key: int, object_name: str) -> tuple[int, str] | None: ...

    async def put_schema(
        self, org_key: int, session_id: str, schema: ObjectSchema, describe_json: bytes | None
    ) -> tuple[int, bool]: ...

    async def session_schema(self, org_key: int, session_id: str, object_name: str) -> SchemaRef | None: ...

    async def schema_history(self, object_key: int, object_name: str) -> dict[int, ObjectSchema]: ...

    async def schema_as_of(self, object_key: int, object_name: str, as_of: dt.datetime) -> ObjectSchema | None: ...


class RecordStore(Protocol):
    """Record heads and versions: a chunk's write, deletes, and the reads of versions."""

    async def put_records(
        self, job: JobRef, target: SchemaRef, seq: int, chunk: RecordsChunk, guards: WriteGuards = UNGUARDED
    ) -> ChunkOutcome:
        """Stores a chunk of canonical records in one transaction (a version for each new or changed record; a
        redelivered chunk returns its first result), its ChunkUploaded in the outbox."""
        ...

    async def mark_deleted(
        self, job: JobRef, seq: int, digest: bytes, deletes: Deletes, tombstones: frozenset[str] = frozenset()
    ) -> ChunkOutcome:
        """A deleted version per known record whose state gets worse; unknown Ids reported, erased ones
        (`tombstones`) ignored."""
        ...

    async def history(self, org_key: int, object_key: int, record_id: str) -> list[RecordVersionRow]: ...

    async def as_of(
        self, org_key: int, object_key: int, record_id: str, when: dt.datetime
    ) -> RecordVersionRow | None: ...

    def export_as_of(
        self, org_key: int, object_key: int, when: dt.datetime, *, include_deleted: bool, batch: int = 2000
    ) -> AsyncIterator[list[tuple[str, int, str]]]: ...

    async def restore_points(self, org_key: int, object_key: int | None) -> list[RestorePointRow]: ...


class FileStore(Protocol):
    """File bodies' addresses and each record's file versions."""

    async def file_location(self, sha256: bytes) -> tuple[str, int] | None: ...

    async def org_references(self, org_key: int, sha256: bytes) -> bool: ...

    async def existing_files(self, digests: Sequence[bytes]) -> set[bytes]: ...

    async def record_file(
        self, job: JobRef, seq: int, digest: bytes, file: FileVersionIn, envelope: Envelope | None = None
    ) -> ChunkOutcome: ...

    async def body_envelope(self, location: str) -> Envelope | None: ...

    async def body_locations(self, digests: Sequence[bytes]) -> dict[bytes, str]: ...

    async def kek_ids_in_use(self) -> set[str]: ...

    async def envelopes_not_under(self, kek_id: str, after: str, limit: int) -> list[tuple[str, Envelope]]: ...

    async def replace_envelope(self, location: str, old: Envelope, new: Envelope) -> bool: ...

    async def latest_file(
        self, org_key: int, object_name: str, record_id: str, as_of: dt.datetime
    ) -> FileVersionRow | None: ...

    async def file_versions(self, org_key: int, object_name: str, record_id: str) -> list[FileVersionRow]:
        """Every file version of the record, oldest first."""
        ...


class MetadataStore(Protocol):
    """Metadata API components, versioned."""

    async def put_metadata(self, job: JobRef, seq: int, digest: bytes, chunk: MetadataChunk) -> ChunkOutcome:
        """A version per component whose content or deleted state changed, in one transaction."""
        ...

    async def metadata_versions(
        self, org_key: int, *, type_: str, full_name: str, limit: int
    ) -> list[MetadataVersionRow]:
        """The versions of the org's components (of this type, of this full name: '' for any), oldest first, at
        most `limit`."""
        ...

    async def latest_metadata(
        self, org_key: int, type_: str, full_name: str, as_of: dt.datetime
    ) -> MetadataVersionRow | None:
        """The component's last version captured at or before `as_of`."""
        ...


class RestoreStore(Protocol):
    """Restore: the backup's records as of a point, page by page; outcomes, the Id map and intents."""

    async def live_ids_as_of(
        self, org_key: int, object_key: int, ids: Sequence[str], when: dt.datetime
    ) -> set[str]: ...

    async def candidate_ids(self, read: AsOfRead, *, cap: int) -> list[str] | None:
        """The Ids that may match a deleted_since / changed_since / where selection (one pass over the object's
        versions), or None when there are more than `cap` of them."""
        ...

    async def records_as_of(
        self, read: AsOfRead, *, after: str, limit: int
    ) -> tuple[list[RecordVersionRow], str | None]:
        """One page of the selected records' live versions as of `read.when` (Id order, after `after`), and where
        the next page starts (None: this was the last)."""
        ...

    async def bare_as_of(
        self, read: AsOfRead, *, after: str, limit: int, values: bool
    ) -> tuple[list[tuple[str, str]], str | None]:
        """records_as_of's page as (Id, values as PostgreSQL's text, or "" without `values`) only."""
        ...

    async def put_restore_outcomes(self, job: JobRef, seq: int, digest: bytes, chunk: RestoreChunk) -> ChunkOutcome:
        """One restore chunk in one transaction: outcomes, Id map entries, resolved intents, its result."""
        ...

    async def record_intent(
        self, job: JobRef, batch_key: str, object_name: str, source_ids: Sequence[str], sent_at: dt.datetime | None
    ) -> bool: ...

    async def open_intents(self, job_key: int) -> list[RestoreIntentRow]: ...

    async def id_map(
        self, source_org_key: int, target_org_key: int, source_ids: Sequence[str] | None, limit: int
    ) -> dict[str, str]: ...

    async def restore_records(
        self, session_id: str, *, state: int, object_name: str, after: int, limit: int
    ) -> list[tuple[int, RestoreOutcome]]: ...


class CompareStore(Protocol):
    """Compare (issue 18): the records whose state differs between two points; the live count."""

    async def org_objects(self, org_key: int, lowered: Sequence[str] = ()) -> list[tuple[int, str]]: ...

    def compare(
        self, org_key: int, object_key: int, since: dt.datetime, until: dt.datetime, *, batch: int = 1000
    ) -> AsyncIterator[list[tuple[str, str, int | None, str | None, int | None, str | None]]]: ...

    async def count_live(self, org_key: int, object_keys: Sequence[int]) -> dict[int, int]: ...


class ErasureStore(Protocol):
    """Erasure (issue 18, store_erasure.py): the tombstones, the erase itself, the verification's scans."""

    async def erasure_generation(self) -> int: ...

    async def tombstones(self) -> dict[tuple[int, int], frozenset[str]]: ...

    async def erasure_key(self) -> bytes: ...

    async def erase(self, org_key: int, erasure: Erasure, delete_bodies: DeleteBodies) -> ErasureResult:
        """Finds the records and, unless a dry run, deletes them whole (their bodies through `delete_bodies`),
        in one transaction; FailedPrecondition under a legal hold. What was (or would be) erased."""
        ...

    async def versions_holding(self, org_key: int, sought: ValueSought, result: VerificationResult) -> None:
        """Counts the org's versions holding the value into `result`, with samples."""
        ...

    async def erasure_leftovers(self, org_key: int, erasure_id: str, result: VerificationResult) -> bool: ...

    async def org_bodies(self, org_key: int) -> dict[str, list[str]]: ...


class ValueKeyStore(Protocol):
    """Sensitive field values (issue 18, sensitive.py): each org's value key, wrapped by the KEK."""

    async def value_key(self, org_key: int, make: Callable[[], Envelope] | None) -> Envelope | None: ...

    async def value_keys_not_under(self, kek_id: str) -> list[tuple[int, Envelope]]: ...

    async def replace_value_key(self, org_key: int, old: Envelope, new: Envelope) -> bool: ...

    async def versions_in_clear(
        self, org_key: int, object_key: int, fields: Sequence[str], after: tuple[str, int], limit: int
    ) -> list[tuple[str, int, str]]: ...

    async def replace_values(self, org_key: int, object_key: int, rows: Sequence[tuple[str, int, str]]) -> int: ...

    async def every_object(self) -> list[tuple[int, int, str]]: ...


class Store(
    JobStore,
    SchemaStore,
    RecordStore,
    FileStore,
    MetadataStore,
    ReadAuditStore,
    RestoreStore,
    CompareStore,
    ErasureStore,
    ValueKeyStore,
    Protocol,
):
    """Every table port at once: what the application is given (PostgresStore, or the fakes)."""
