"""The StorageService gRPC servicer: protobuf <-> application calls, and storage errors -> status codes."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import grpc
import psycopg
from sfvault.restore.v1 import restore_pb2
from sfvault.storage.v1 import storage_pb2, storage_pb2_grpc

from services.platform import events, metrics
from services.platform.auth import current_principal, note_for_audit
from services.platform.compare import compare_piece_to_pb
from services.platform.translate import from_message, to_message
from services.storage.application import ChunkRef, FileHeaderIn, MetadataComponentIn, Storage
from services.storage.domain import (
    CANONICAL_RULES,
    ChunkOutcome,
    Deleted,
    FailedPrecondition,
    FieldDef,
    FieldType,
    FileVersionRow,
    InvalidArgument,
    MetadataVersionRow,
    NotFound,
    ObjectSchema,
    ReadEntry,
    RecordSelection,
    RecordVersionRow,
    RestoreOutcome,
)

log = logging.getLogger(__name__)

_CODES: list[tuple[type[BaseException], grpc.StatusCode]] = [
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    # the database went away: the caller retries (every write is idempotent)
    (psycopg.OperationalError, grpc.StatusCode.UNAVAILABLE),
]


def _code(exc: BaseException) -> grpc.StatusCode:
    """The status an exception becomes (without logging it)."""
    if isinstance(exc, grpc.aio.AbortError):
        return grpc.StatusCode.UNKNOWN  # the context carries it; not raised by storage's own code
    if isinstance(exc, psycopg.DataError):
        return grpc.StatusCode.INVALID_ARGUMENT
    for kind, code in _CODES:
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.INTERNAL


class _Read:
    """What a read sent, for its audit entry."""

    count = 0


def _status(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    if isinstance(exc, psycopg.DataError):
        # a value PostgreSQL refused (JSON, text, timestamp) that the chunk checks let through; its message and
        # context quote the data, so neither is logged nor returned
        log.warning("PostgreSQL refused a value of a request (%s); nothing was stored", type(exc).__name__)
        return grpc.StatusCode.INVALID_ARGUMENT, (
            f"PostgreSQL refused a value of this request ({type(exc).__name__}: invalid JSON, text or timestamp);"
            " nothing was stored"
        )
    for kind, code in _CODES:
        if isinstance(exc, kind):
            return code, str(exc) if not isinstance(exc, psycopg.Error) else "database unavailable, retry"
    # never the exception text: it could quote record contents
    log.exception("unexpected error in storage")
    return grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); see the storage log"


async def _abort(context: grpc.aio.ServicerContext, exc: Exception) -> None:
    """Ends the call with the status the exception maps to; an abort already under way goes on as it was."""
    if isinstance(exc, grpc.aio.AbortError):
        raise exc
    code, message = _status(exc)
    await context.abort(code, message)


def _unary(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def wrapper(self: StorageServicer, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await fn(self, request, context)
        except Exception as exc:
            await _abort(context, exc)

    return wrapper


def _streaming(fn: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    @functools.wraps(fn)
    async def wrapper(self: StorageServicer, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            async for item in fn(self, request, context):
                yield item
        except Exception as exc:
            await _abort(context, exc)

    return wrapper


def _when(msg: Any, field: str = "as_of") -> dt.datetime | None:
    if not msg.HasField(field):
        return None
    try:
        return getattr(msg, field).ToDatetime(tzinfo=dt.UTC)  # type: ignore[no-any-return]
    except (ValueError, OverflowError):  # beyond years 1-9999: never INTERNAL, even past the door's check
        raise InvalidArgument(f"{field} is not a time between the years 1 and 9999") from None


def _chunk_ref(request: Any) -> ChunkRef:
    """The chunk a write request (PutRecords, MarkDeleted, PutMetadata) or an UploadFile's header names."""
    return ChunkRef(request.org_id, request.session_id, request.job_id, request.chunk_seq)


def _chunk_result(outcome: ChunkOutcome) -> storage_pb2.ChunkResult:
    return storage_pb2.ChunkResult(
        counts=events.counts_to_pb(outcome.counts),
        restore=[events.restore_counts_to_pb(r) for r in outcome.restore],
        replayed=outcome.replayed,
        unknown_ids=outcome.result.get("unknown_ids", []),
    )


def _record_outcome(o: RestoreOutcome) -> restore_pb2.RecordOutcome:
    return to_message(restore_pb2.RecordOutcome, o)


def _selection_target(request: storage_pb2.ReadRecordsAsOfRequest) -> str:
    """What a ReadRecordsAsOf selected, for its audit entry (names and counts, never a value)."""
    if request.ids:
        return f"ids:{len(request.ids)}"
    if request.where_field:
        return f"where:{request.where_field[:200]}:{len(request.where_in)}"
    for name in ("deleted_since", "changed_since"):
        if request.HasField(name):
            return name
    return "all" if request.all else ""


def _version(org_id: str, object_name: str, v: RecordVersionRow) -> storage_pb2.RecordVersion:
    return to_message(
        storage_pb2.RecordVersion,
        v,
        org_id=org_id,
        object_name=object_name,
        deleted=int(v.deleted),
        hash=v.hash.hex(),
        values_json=v.values_json.encode(),
    )


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _add_versions(
    batch: storage_pb2.RecordBatch, org_id: str, object_name: str, rows: Sequence[RecordVersionRow]
) -> None:
    """_version of each of a ReadRecordsAsOf batch's versions, added to the batch field by field (a restore reads
    every record it writes: the keyword constructor and timestamps.to_pb cost five times as much per record)."""
    add = batch.records.add
    epoch = _EPOCH
    for v in rows:
        m = add()
        m.org_id = org_id
        m.object_name = object_name
        m.record_id = v.record_id
        m.version_id = v.version_id
        m.session_id = v.session_id
        m.job_id = v.job_id
        delta = v.captured_at - epoch
        stamp = m.captured_at
        stamp.seconds = delta.days * 86_400 + delta.seconds
        stamp.nanos = delta.microseconds * 1000
        if v.system_modstamp is not None:
            delta = v.system_modstamp - epoch
            stamp = m.system_modstamp
            stamp.seconds = delta.days * 86_400 + delta.seconds
            stamp.nanos = delta.microseconds * 1000
        m.deleted = int(v.deleted)  # type: ignore[assignment]
        m.hash = v.hash.hex()
        m.values_json = v.values_json.encode()
        m.schema_version = v.schema_version
        m.scope_only = v.scope_only


def _add_bare(batch: storage_pb2.RecordBatch, org_id: str, object_name: str, bare: Sequence[tuple[str, str]]) -> None:
    """The records of an `ids_only` or `as_stored` batch: each its Id and values alone (no values: ids_only)."""
    add = batch.records.add
    for record_id, values_json in bare:
        m = add()
        m.org_id = org_id
        m.object_name = object_name
        m.record_id = record_id
        if values_json:
            m.values_json = values_json.encode()


def _file_version(org_id: str, f: FileVersionRow) -> storage_pb2.FileVersion:
    return to_message(storage_pb2.FileVersion, f, org_id=org_id, sha256=f.sha256.hex())


def _metadata_version(org_id: str, m: MetadataVersionRow, content: bytes = b"") -> storage_pb2.MetadataVersion:
    return to_message(storage_pb2.MetadataVersion, m, org_id=org_id, sha256=m.sha256.hex(), content=content)


class StorageServicer(storage_pb2_grpc.StorageServiceServicer):
    def __init__(self, storage: Storage) -> None:
        from services.storage.retention import Retention  # keep (issue 18): the horizon of as-of reads

        self.storage = storage
        self.retention = Retention(storage)

    @contextlib.contextmanager
    def _reading(
        self, method: str, org_id: str, object_name: str, target: str, as_of: dt.datetime | None = None
    ) -> Iterator[_Read]:
        """Records the read in the read audit when it ends, however it ends (a refused or cut-short read
        too, with what it had sent)."""
        read = _Read()
        outcome = "OK"
        try:
            yield read
        except (GeneratorExit, asyncio.CancelledError):
            outcome = grpc.StatusCode.CANCELLED.name
            raise
        except BaseException as exc:
            outcome = _code(exc).name
            raise
        finally:
            who = current_principal.get()
            self.storage.read_audit.record(
                ReadEntry(
                    dt.datetime.now(dt.UTC),
                    who.name,
                    who.role,
                    who.token_id,
                    method,
                    outcome,
                    org_id[:100],
                    object_name[:255],
                    target[:1000],
                    as_of,
                    read.count,
                )
            )

    @_unary
    async def BeginJob(self, request: storage_pb2.BeginJobRequest, context: Any) -> storage_pb2.BeginJobResponse:
        last, chunks, totals = await self.storage.begin_job(
            request.org_id, request.session_id, request.job_id, int(request.type), request.object_name
        )
        return storage_pb2.BeginJobResponse(
            last_chunk_seq=last,
            counts=events.counts_to_pb(totals),
            chunks=chunks,
            canonical_rules=CANONICAL_RULES,
            formula_changes_counted=self.storage.count_formula_changes,
        )

    @_unary
    async def PutObjectSchema(
        self, request: storage_pb2.PutObjectSchemaRequest, context: Any
    ) -> storage_pb2.PutObjectSchemaResponse:
        s = request.schema
        try:
            fields = tuple(
                FieldDef(f.name, FieldType(int(f.type)), f.calculated, f.sf_type, f.label, f.sensitive)
                for f in s.fields
            )
        except ValueError as exc:
            raise InvalidArgument(f"schema of {s.object_name}: unknown field type ({exc})") from None
        schema = ObjectSchema(s.object_name, fields, s.key_prefix)
        version, changed = await self.storage.put_schema(request.org_id, request.session_id, schema, s.describe_json)
        return storage_pb2.PutObjectSchemaResponse(schema_version=version, changed=changed)

    @_unary
    async def PutRecords(self, request: storage_pb2.PutRecordsRequest, context: Any) -> storage_pb2.ChunkResult:
        outcome = await self.storage.put_records(
            _chunk_ref(request),
            request.object_name,
            request.canonical_columns,
            request.canonical_rules,
            request.formula_changes_counted,
        )
        if not outcome.replayed:
            metrics.bytes_stored("records", request.ByteSize())
        return _chunk_result(outcome)

    @_unary
    async def MarkDeleted(self, request: storage_pb2.MarkDeletedRequest, context: Any) -> storage_pb2.ChunkResult:
        if request.state not in (storage_pb2.DELETED_STATE_SOFT, storage_pb2.DELETED_STATE_HARD):
            raise InvalidArgument(f"state must be SOFT or HARD, not {int(request.state)}")
        outcome = await self.storage.mark_deleted(
            _chunk_ref(request), request.object_name, list(request.record_ids), Deleted(int(request.state))
        )
        return _chunk_result(outcome)

    @_unary
    async def UploadFile(
        self, request_iterator: AsyncIterator[storage_pb2.UploadFileRequest], context: Any
    ) -> storage_pb2.UploadFileResponse:
        stream = aiter(request_iterator)
        first = await anext(stream, None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidArgument("UploadFile must start with a header message")

        async def body() -> AsyncIterator[bytes]:
            async for msg in stream:
                if msg.WhichOneof("part") != "data":
                    raise InvalidArgument("UploadFile: only data messages may follow the header")
                yield msg.data

        header = from_message(FileHeaderIn, first.header, chunk=_chunk_ref(first.header))
        outcome = await self.storage.upload_file(header, body())
        r = outcome.result
        if not outcome.replayed:
            metrics.bytes_stored("files", r["size"])
        return storage_pb2.UploadFileResponse(
            sha256=r["sha256"],
            size=r["size"],
            deduplicated=r["deduplicated"],
            new_version=r["new_version"],
            counts=events.counts_to_pb(outcome.counts),
            replayed=outcome.replayed,
        )

    @_unary
    async def PutMetadata(self, request: storage_pb2.PutMetadataRequest, context: Any) -> storage_pb2.ChunkResult:
        components = [
            from_message(MetadataComponentIn, c, last_modified_date=_when(c, "last_modified_date"))
            for c in request.components
        ]
        outcome = await self.storage.put_metadata(_chunk_ref(request), components)
        return _chunk_result(outcome)

    @_unary
    async def GetRecordHistory(
        self, request: storage_pb2.GetRecordHistoryRequest, context: Any
    ) -> storage_pb2.GetRecordHistoryResponse:
        with self._reading("GetRecordHistory", request.org_id, request.object_name, request.record_id) as read:
            versions = await self.storage.record_history(request.org_id, request.object_name, request.record_id)
            read.count = len(versions)
        return storage_pb2.GetRecordHistoryResponse(
            versions=[_version(request.org_id, request.object_name, v) for v in versions]
        )

    @_unary
    async def GetRecordAsOf(self, request: storage_pb2.GetRecordAsOfRequest, context: Any) -> storage_pb2.RecordVersion:
        when = _when(request)
        with self._reading("GetRecordAsOf", request.org_id, request.object_name, request.record_id, when) as read:
            await self.retention.check_as_of(request.org_id, [request.object_name], when)
            v = await self.storage.record_as_of(request.org_id, request.object_name, request.record_id, when)
            read.count = 1
        return _version(request.org_id, request.object_name, v)

    @_streaming
    async def ExportObjectAsOf(
        self, request: storage_pb2.ExportObjectAsOfRequest, context: Any
    ) -> AsyncIterator[storage_pb2.ExportChunk]:
        when = _when(request)
        with self._reading("ExportObjectAsOf", request.org_id, request.object_name, "", when) as read:
            await self.retention.check_as_of(request.org_id, [request.object_name], when)
            async for data, records in self.storage.export_as_of(
                request.org_id,
                request.object_name,
                when,
                csv_format=request.format == storage_pb2.EXPORT_FORMAT_CSV,
                include_deleted=request.include_deleted,
            ):
                yield storage_pb2.ExportChunk(data=data, records=records)
                read.count += records

    @_unary
    async def ListRestorePoints(
        self, request: storage_pb2.ListRestorePointsRequest, context: Any
    ) -> storage_pb2.ListRestorePointsResponse:
        points = await self.storage.restore_points(request.org_id, request.object_name)
        return storage_pb2.ListRestorePointsResponse(
            restore_points=[
                to_message(storage_pb2.RestorePoint, p, counts=events.counts_to_pb(p.counts)) for p in points
            ]
        )

    @_streaming
    async def GetFile(
        self, request: storage_pb2.GetFileRequest, context: Any
    ) -> AsyncIterator[storage_pb2.GetFileResponse]:
        when = _when(request)
        target = request.sha256.lower() or request.record_id
        with self._reading("GetFile", request.org_id, request.object_name, target, when) as read:
            if not request.sha256:  # a record's body as of a point: not before its file scope's horizon
                await self.retention.check_as_of(request.org_id, ["file:" + request.object_name], when)
            version, _location, size, body = await self.storage.open_file(
                request.org_id, request.sha256, request.object_name, request.record_id, when
            )
            if version is not None:
                yield storage_pb2.GetFileResponse(file=_file_version(request.org_id, version))
            else:
                yield storage_pb2.GetFileResponse(
                    file=storage_pb2.FileVersion(sha256=request.sha256.lower(), size=size)
                )
            async for data in body:
                yield storage_pb2.GetFileResponse(data=data)
                read.count += len(data)

    @_unary
    async def ListFileVersions(
        self, request: storage_pb2.ListFileVersionsRequest, context: Any
    ) -> storage_pb2.ListFileVersionsResponse:
        rows = await self.storage.file_versions(request.org_id, request.object_name, request.record_id)
        return storage_pb2.ListFileVersionsResponse(versions=[_file_version(request.org_id, f) for f in rows])

    @_unary
    async def ListMetadataVersions(
        self, request: storage_pb2.ListMetadataVersionsRequest, context: Any
    ) -> storage_pb2.ListMetadataVersionsResponse:
        rows = await self.storage.metadata_versions(request.org_id, request.type, request.full_name, request.limit)
        return storage_pb2.ListMetadataVersionsResponse(versions=[_metadata_version(request.org_id, m) for m in rows])

    @_unary
    async def GetMetadataAsOf(
        self, request: storage_pb2.GetMetadataAsOfRequest, context: Any
    ) -> storage_pb2.MetadataVersion:
        when = _when(request)
        with self._reading("GetMetadataAsOf", request.org_id, request.type, request.full_name, when) as read:
            await self.retention.check_as_of(request.org_id, ["#metadata"], when)
            row, content = await self.storage.metadata_as_of(request.org_id, request.type, request.full_name, when)
            read.count = len(content)
        return _metadata_version(request.org_id, row, content)

    @_unary
    async def ListReadAudit(
        self, request: storage_pb2.ListReadAuditRequest, context: Any
    ) -> storage_pb2.ListReadAuditResponse:
        entries, next_token = await self.storage.read_audit.page(
            since=_when(request, "since"),
            actor=request.actor,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return storage_pb2.ListReadAuditResponse(
            entries=[to_message(storage_pb2.ReadAuditEntry, e) for e in entries], next_page_token=next_token
        )

    # --- restore (issue 17) --------------------------------------------------------------------------------

    @_streaming
    async def ReadRecordsAsOf(
        self, request: storage_pb2.ReadRecordsAsOfRequest, context: Any
    ) -> AsyncIterator[storage_pb2.RecordBatch]:
        when = _when(request)
        target = _selection_target(request)
        with self._reading("ReadRecordsAsOf", request.org_id, request.object_name, target, when) as read:
            await self.retention.check_as_of(request.org_id, [request.object_name], when)
            asked = from_message(
                RecordSelection,
                request,
                ids=tuple(request.ids),
                deleted_since=_when(request, "deleted_since"),
                changed_since=_when(request, "changed_since"),
                where_in=tuple(request.where_in),
            )
            async for batch in self.storage.records_as_of(
                request.org_id,
                request.object_name,
                when,
                asked,
                batch_size=request.batch_size,
                ids_only=request.ids_only,
                as_stored=request.as_stored,
            ):
                fields = (
                    [
                        storage_pb2.FieldSchema(
                            name=f.name,
                            type=int(f.type),  # type: ignore[arg-type]
                            calculated=f.calculated,
                            sf_type=f.sf_type,
                            label=f.label,
                            sensitive=f.sensitive,
                        )
                        for f in batch.schema.fields
                    ]
                    if batch.schema is not None
                    else []
                )
                out = storage_pb2.RecordBatch(fields=fields, missing=batch.missing, missing_ids=list(batch.missing_ids))
                _add_versions(out, request.org_id, batch.object_name, batch.records)
                _add_bare(out, request.org_id, batch.object_name, batch.bare)
                yield out
                read.count += len(batch.records) + len(batch.bare)

    @_unary
    async def RecordRestoreIntent(
        self, request: storage_pb2.RecordRestoreIntentRequest, context: Any
    ) -> storage_pb2.RecordRestoreIntentResponse:
        recorded = await self.storage.record_restore_intent(
            request.org_id,
            request.session_id,
            request.job_id,
            request.batch_key,
            request.object_name,
            list(request.source_ids),
            _when(request, "sent_at"),
        )
        return storage_pb2.RecordRestoreIntentResponse(already_recorded=not recorded)

    @_unary
    async def ListRestoreIntents(
        self, request: storage_pb2.ListRestoreIntentsRequest, context: Any
    ) -> storage_pb2.ListRestoreIntentsResponse:
        rows = await self.storage.restore_intents(request.session_id, request.job_id)
        return storage_pb2.ListRestoreIntentsResponse(intents=[to_message(storage_pb2.RestoreIntent, r) for r in rows])

    @_unary
    async def PutRestoreOutcomes(
        self, request: storage_pb2.PutRestoreOutcomesRequest, context: Any
    ) -> storage_pb2.ChunkResult:
        outcomes = [
            from_message(RestoreOutcome, o, state=int(o.state), changed_fields=tuple(o.changed_fields))
            for o in request.outcomes
        ]
        outcome = await self.storage.put_restore_outcomes(
            request.source_org_id,
            ChunkRef(request.target_org_id, request.session_id, request.job_id, request.chunk_seq),
            outcomes,
            resolved_intents=list(request.resolved_intents),
            dry_run=request.dry_run,
            write_calls=request.write_calls,
            api_calls=request.api_calls,
            files=request.files,
        )
        return _chunk_result(outcome)

    @_unary
    async def GetIdMap(self, request: storage_pb2.GetIdMapRequest, context: Any) -> storage_pb2.GetIdMapResponse:
        ids = await self.storage.id_map(request.source_org_id, request.target_org_id, list(request.source_ids))
        return storage_pb2.GetIdMapResponse(ids=ids)

    @_unary
    async def ListRestoreRecords(
        self, request: storage_pb2.ListRestoreRecordsRequest, context: Any
    ) -> storage_pb2.ListRestoreRecordsResponse:
        outcomes, next_token = await self.storage.restore_records(
            request.session_id,
            state=int(request.state),
            object_name=request.object_name,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return storage_pb2.ListRestoreRecordsResponse(
            outcomes=[_record_outcome(o) for o in outcomes], next_page_token=next_token
        )

    # --- compare (issue 18) --------------------------------------------------------------------------------

    @_streaming
    async def CompareAsOf(
        self, request: storage_pb2.CompareAsOfRequest, context: Any
    ) -> AsyncIterator[storage_pb2.CompareChunk]:
        since, until = _when(request, "from"), _when(request, "to")
        target = ",".join(request.objects)[:500] or "*"
        if request.fields:
            target += f" fields:{len(request.fields)}"
        if request.values:
            target += " values"
        with self._reading("CompareAsOf", request.org_id, "", target, until) as read:
            for point in (since, until):
                await self.retention.check_as_of(request.org_id, list(request.objects), point)
            async for piece in self.storage.compare_as_of(
                request.org_id,
                since,
                until,
                objects=list(request.objects),
                fields=list(request.fields),
                values=request.values,
                batch_size=request.batch_size,
                limit=request.limit,
            ):
                yield compare_piece_to_pb(piece)
                read.count += len(piece.changes)

    @_unary
    async def CountLive(self, request: storage_pb2.CountLiveRequest, context: Any) -> storage_pb2.CountLiveResponse:
        return storage_pb2.CountLiveResponse(live=await self.storage.count_live(request.org_id, list(request.objects)))

    # --- erasure (issue 18) ------------------------------------------------------------------------------------

    @_unary
    async def Erase(self, request: storage_pb2.EraseRequest, context: Any) -> storage_pb2.EraseResponse:
        who = current_principal.get()
        result = await self.storage.erasures.erase(
            request.org_id,
            request.object_name,
            list(request.ids),
            request.value,
            list(request.fields),
            request.reason,
            dry_run=request.dry_run,
            eraser=who,
        )
        if not request.dry_run:
            # the audit of changes: which erasure and how much, never the value
            note_for_audit(
                f"erasure {result.erasure_id}: {len(result.records)} records, {result.versions} versions,"
                f" {result.file_bodies} file bodies"
            )
        return storage_pb2.EraseResponse(
            erasure_id=result.erasure_id,
            records=[
                storage_pb2.ErasedRecord(
                    object_name=r.object_name, record_id=r.record_id, versions=r.versions, file_bodies=r.file_bodies
                )
                for r in result.records
            ],
            versions=result.versions,
            file_bodies=result.file_bodies,
            dry_run=request.dry_run,
        )

    @_unary
    async def VerifyErasure(
        self, request: storage_pb2.VerifyErasureRequest, context: Any
    ) -> storage_pb2.VerifyErasureResponse:
        result = await self.storage.erasures.verify(
            request.org_id, request.value, list(request.fields), request.erasure_id
        )
        return storage_pb2.VerifyErasureResponse(
            clean=result.versions_holding == 0 and result.file_bodies_holding == 0,
            versions_holding=result.versions_holding,
            file_bodies_holding=result.file_bodies_holding,
            samples=result.samples,
        )
