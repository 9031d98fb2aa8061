"""The small interfaces the jobs and the runner depend on: the Salesforce reads, the storage client, the
jobrunner's own tables (marks, checkpoints, what files and metadata are stored). Adapters: salesforce.py,
storage_client.py, store.py; in-memory fakes: tests/jobrunner/fakes.py."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sfvault.restore.v1 import restore_pb2 as rpb
from sfvault.storage.v1 import storage_pb2 as spb

from services.canonical import CanonicalParts
from services.jobrunner.domain import ObjectMarks
from services.jobrunner.salesforce import BulkJob, FileProperties, RestPage
from services.jobrunner.salesforce_write import WriteResult


class Body(Protocol):
    """A file body being downloaded (requests.Response's streaming part)."""

    def iter_content(self, chunk_size: int) -> Iterator[bytes]: ...

    def close(self) -> None: ...


class OrgClock(Protocol):
    """The org's own time, and the API calls made so far (JobOrgClient)."""

    @property
    def api_calls(self) -> int: ...

    def org_now(self) -> dt.datetime: ...


class SalesforceReads(Protocol):
    """The reads a data or file job makes (OrgReader)."""

    def query_page(self, soql: str, *, query_all: bool = True, batch_size: int = 2000) -> RestPage: ...

    def query_more(self, next_url: str, *, batch_size: int = 2000) -> RestPage: ...

    def deleted(self, object_name: str, start: dt.datetime, end: dt.datetime) -> dict[str, Any]: ...

    def reads_at_once(
        self, queries: Sequence[tuple[str, bool]], deleted: tuple[str, dt.datetime, dt.datetime] | None
    ) -> tuple[list[RestPage | None], dict[str, Any] | None]:
        """First pages of (soql, query_all) queries and a delete log, in one API call (/composite); None for
        any the org refused (asked again alone, where its error is handled)."""
        ...

    def bulk_create(self, soql: str, *, query_all: bool = True) -> str: ...

    def bulk_wait(self, job_id: str, *, max_wait_s: float = ..., should_stop: Any = None) -> BulkJob: ...

    def bulk_page(self, job_id: str, locator: str, max_records: int) -> tuple[int, str, Iterator[list[str]]]: ...

    def blob(self, object_name: str, record_id: str, field: str) -> Body: ...


class MetadataReads(Protocol):
    """The Metadata API calls a metadata job makes (MetadataClient)."""

    def describe(self) -> list[tuple[str, list[str]]]: ...

    def list_components(self, types: list[str]) -> list[FileProperties]: ...

    def retrieve(self, members: dict[str, list[str]], *, should_stop: Any = None) -> bytes: ...


class SalesforceWrites(Protocol):
    """What a restore job asks of its target org (OrgWriter): reads of the target's current state and the
    writes. Every call is counted (`api_calls` on the org, `write_calls` here); a create whose answer was lost
    is never sent again blindly (WriteAnswerLost): the job's intents settle it."""

    @property
    def write_calls(self) -> int: ...

    def user_id(self) -> str: ...

    def describe(self, object_name: str) -> dict[str, Any]: ...

    def object_names(self) -> list[str]: ...

    def query_ids(self, object_name: str, fields: list[str], ids: list[str]) -> list[dict[str, Any]]: ...

    def query_in(self, object_name: str, fields: list[str], field: str, values: list[str]) -> list[dict[str, Any]]: ...

    def query_object(
        self, object_name: str, fields: list[str], types: dict[str, str], *, few_first: bool = False
    ) -> Iterator[dict[str, Any]]: ...

    def created_since(
        self, object_name: str, user_id: str, since: dt.datetime, fields: list[str]
    ) -> list[dict[str, Any]]: ...

    def create(self, object_name: str, records: list[dict[str, Any]]) -> list[WriteResult]: ...

    def update(self, object_name: str, records: list[dict[str, Any]]) -> list[WriteResult]: ...

    def upsert(self, object_name: str, field: str, records: list[dict[str, Any]]) -> list[WriteResult]: ...

    def undelete(self, ids: list[str]) -> list[WriteResult]: ...

    def bulk_ingest(
        self, object_name: str, operation: str, records: list[dict[str, Any]], *, external_id: str = ""
    ) -> list[WriteResult]: ...

    def bulk_start(
        self, object_name: str, operation: str, records: list[dict[str, Any]], *, external_id: str = ""
    ) -> Callable[[], list[WriteResult]]: ...


class Org(OrgClock, Protocol):
    """One job's connection to its org (JobOrgClient): its clock, and its reads keeping `reserve_percent` of
    the org's daily API calls for others."""

    def reads(self, reserve_percent: int) -> SalesforceReads: ...

    def metadata(self, reserve_percent: int) -> MetadataReads: ...

    def writes(self, reserve_percent: int) -> SalesforceWrites: ...


@dataclass(frozen=True)
class Chunk:
    """Where one chunk of a job's writes goes: the org's backup (00D Id), the session and job, the chunk's seq in the
    job (storage applies each seq once: a resent chunk answers as it did) and the object its records are of."""

    org_id: str
    session_id: str
    job_id: str
    seq: int
    object_name: str = ""  # none for metadata


class Storage(Protocol):
    """The storage service as the jobs call it (StorageClient)."""

    def begin_job(
        self, org_id: str, session_id: str, job_id: str, job_type: int, object_name: str
    ) -> spb.BeginJobResponse: ...

    def put_schema(self, org_id: str, session_id: str, schema: spb.ObjectSchema) -> spb.PutObjectSchemaResponse: ...

    def put_records(
        self, chunk: Chunk, records: list[CanonicalParts], *, rules: int, formula_changes_counted: bool
    ) -> spb.ChunkResult: ...

    def mark_deleted(self, chunk: Chunk, ids: list[str], state: int) -> spb.ChunkResult: ...

    def upload_file(self, header: spb.FileHeader, body: Iterable[bytes]) -> spb.UploadFileResponse: ...

    def put_metadata(self, chunk: Chunk, components: list[spb.MetadataComponent]) -> spb.ChunkResult: ...

    def stored_ids(self, org_id: str, object_name: str) -> Iterator[tuple[str, bool]]: ...

    def count_live(self, org_id: str, object_name: str) -> int: ...

    # ---- restore
    def read_records_as_of(self, request: spb.ReadRecordsAsOfRequest) -> Iterator[spb.RecordBatch]: ...

    def record_restore_intent(self, request: spb.RecordRestoreIntentRequest) -> bool: ...

    def list_restore_intents(self, session_id: str, job_id: str) -> list[spb.RestoreIntent]: ...

    def put_restore_outcomes(self, request: spb.PutRestoreOutcomesRequest) -> spb.ChunkResult: ...

    def get_id_map(self, source_org_id: str, target_org_id: str, source_ids: list[str]) -> dict[str, str]: ...

    def list_restore_records(
        self, session_id: str, state: int = 0, object_name: str = ""
    ) -> Iterator[rpb.RecordOutcome]: ...


class CheckpointStore(Protocol):
    """A job's write-ahead checkpoint: where reading continues after its last chunks."""

    def checkpoint(self, session_id: str, job_id: str) -> dict[str, Any] | None: ...

    def save_checkpoint(self, session_id: str, job_id: str, state: dict[str, Any]) -> None: ...


class MarkStore(Protocol):
    """Per object and Id range: up to where every change is stored, and when the last full read, Id
    reconciliation and success were."""

    def marks(self, policy_id: str, object_name: str, id_from: str = "", id_to: str = "") -> ObjectMarks: ...

    def save_marks(self, policy_id: str, object_name: str, id_from: str, id_to: str, marks: ObjectMarks) -> None: ...


# a stored file as the jobrunner remembers it: (object, record Id, SystemModstamp read at, sha256, size)
FileRecord = tuple[str, str, str, str, int]


class StoredFiles(Protocol):
    """Which bodies are stored, per record, and the SystemModstamp each was read at (a later job skips those
    whose record did not change since)."""

    def stored_files(self, org_id: str, object_name: str) -> dict[str, str]: ...

    def file_stored(
        self, org_id: str, object_name: str, record_id: str, modstamp: str, sha256: str, size: int
    ) -> None: ...

    def files_stored(self, org_id: str, files: Sequence[FileRecord]) -> None:
        """Several files recorded at once: all or none (one commit)."""
        ...


class StoredMetadata(Protocol):
    def stored_metadata(self, org_id: str) -> dict[tuple[str, str], tuple[str, bool]]: ...

    def metadata_stored(self, org_id: str, items: list[tuple[str, str, str, bool]]) -> None: ...


class JobTables(CheckpointStore, MarkStore, StoredFiles, StoredMetadata, Protocol):
    """The jobrunner's own tables, as a job uses them (JobStore)."""
