"""A synchronous client of the storage service for job threads; retries UNAVAILABLE (writes are idempotent
per chunk_seq)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import grpc
from sfvault.restore.v1 import restore_pb2 as rpb
from sfvault.storage.v1 import storage_pb2 as pb
from sfvault.storage.v1 import storage_pb2_grpc

from services.canonical import CanonicalParts, column_bytes
from services.jobrunner.ports import Chunk
from services.platform.auth import channel as auth_channel

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED)


class StorageError(RuntimeError):
    """Storage refused a write (invalid data or a precondition): the job fails with this message."""


class StorageConflict(StorageError):
    """FAILED_PRECONDITION, e.g. a chunk_seq already stored with other content: another attempt of the same job
    may be running (a redelivery while this one lost its heartbeat). Handed back, never reported as the job's
    end: the retry resumes from what storage holds."""


class StorageUnavailable(RuntimeError):
    """Storage could not be reached after retries: the job is handed back and retried later."""


def fill_columns(columns: pb.CanonicalColumns, records: Sequence[CanonicalParts]) -> None:
    """The records, column by column, each column set as it is joined (one at a time held twice)."""
    for name, column in column_bytes(records):
        setattr(columns, name, column)


def _chunk_fields(chunk: Chunk) -> dict[str, Any]:
    """The fields every chunk request names its chunk by (PutRecords, MarkDeleted, PutMetadata)."""
    return {"org_id": chunk.org_id, "session_id": chunk.session_id, "job_id": chunk.job_id, "chunk_seq": chunk.seq}


class StorageClient:
    def __init__(
        self,
        address: str,
        *,
        max_message_mb: int = 64,
        attempts: int = 6,
        timeout_s: float = 300.0,
        token: str = "",
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        limit = max_message_mb << 20
        self.channel = auth_channel(
            address,
            token,  # this jobrunner's own token (role "service"): storage accepts writes only from services
            credentials,
            options=[("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit)],
        )
        self.stub = storage_pb2_grpc.StorageServiceStub(self.channel)
        self.attempts = attempts
        self.timeout_s = timeout_s

    def close(self) -> None:
        self.channel.close()

    def _call(self, fn: Callable[[], T]) -> T:
        for attempt in range(1, self.attempts + 1):
            try:
                return fn()
            except grpc.RpcError as exc:
                code = exc.code() if hasattr(exc, "code") else None
                if code in RETRYABLE and attempt < self.attempts:
                    time.sleep(min(0.2 * 2**attempt, 5.0))  # back-off before retrying an idempotent write
                    continue
                if code in RETRYABLE:
                    raise StorageUnavailable(f"storage unavailable: {_details(exc)}") from None
                if code == grpc.StatusCode.FAILED_PRECONDITION:
                    raise StorageConflict(f"storage refused the call (FAILED_PRECONDITION): {_details(exc)}") from None
                raise StorageError(
                    f"storage refused the call ({code.name if code else '?'}): "
                    f"{exc.details() if hasattr(exc, 'details') else exc}"
                ) from None
        raise AssertionError("unreachable")

    def begin_job(
        self, org_id: str, session_id: str, job_id: str, job_type: int, object_name: str
    ) -> pb.BeginJobResponse:
        req = pb.BeginJobRequest(
            org_id=org_id,
            session_id=session_id,
            job_id=job_id,
            type=job_type,  # type: ignore[arg-type]
            object_name=object_name,
        )
        return self._call(lambda: self.stub.BeginJob(req, timeout=60))

    def put_schema(self, org_id: str, session_id: str, schema: pb.ObjectSchema) -> pb.PutObjectSchemaResponse:
        req = pb.PutObjectSchemaRequest(org_id=org_id, session_id=session_id, schema=schema)
        try:
            return self._call(lambda: self.stub.PutObjectSchema(req, timeout=60))
        except StorageConflict as exc:
            # a schema storage cannot take (sensitive fields without its key): no retry makes it pass, the job fails
            # with storage's message (which names the setting)
            raise StorageError(str(exc)) from None

    def put_records(
        self, chunk: Chunk, records: list[CanonicalParts], *, rules: int, formula_changes_counted: bool
    ) -> pb.ChunkResult:
        """Canonical records (made under `rules`, BeginJobResponse.canonical_rules), sent column by column. The
        list is emptied once the request holds its records: a chunk is not held twice while it travels (retries
        resend the request)."""
        req = pb.PutRecordsRequest(
            **_chunk_fields(chunk),
            object_name=chunk.object_name,
            canonical_rules=rules,
            formula_changes_counted=formula_changes_counted,
        )
        fill_columns(req.canonical_columns, records)
        records.clear()
        return self._call(lambda: self.stub.PutRecords(req, timeout=self.timeout_s))

    def mark_deleted(self, chunk: Chunk, ids: list[str], state: int) -> pb.ChunkResult:
        req = pb.MarkDeletedRequest(
            **_chunk_fields(chunk),
            object_name=chunk.object_name,
            record_ids=ids,
            state=state,  # type: ignore[arg-type]
        )
        return self._call(lambda: self.stub.MarkDeleted(req, timeout=self.timeout_s))

    def upload_file(self, header: pb.FileHeader, body: Iterable[bytes]) -> pb.UploadFileResponse:
        """Client streaming; the body iterator is consumed once (no retry here: the caller re-downloads)."""

        def parts() -> Iterator[pb.UploadFileRequest]:
            yield pb.UploadFileRequest(header=header)
            for piece in body:
                if piece:
                    yield pb.UploadFileRequest(data=piece)

        try:
            return self.stub.UploadFile(parts(), timeout=3600)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            if code in RETRYABLE:
                raise StorageUnavailable(f"storage unavailable: {_details(exc)}") from None
            raise StorageError(
                f"storage refused the file ({code.name if code else '?'}): "
                f"{exc.details() if hasattr(exc, 'details') else exc}"
            ) from None

    def put_metadata(self, chunk: Chunk, components: list[pb.MetadataComponent]) -> pb.ChunkResult:
        req = pb.PutMetadataRequest(**_chunk_fields(chunk), components=components)
        return self._call(lambda: self.stub.PutMetadata(req, timeout=self.timeout_s))

    def stored_ids(self, org_id: str, object_name: str) -> Iterator[tuple[str, bool]]:
        """(Id, soft-deleted) of every record storage holds as live or soft-deleted now, streamed."""
        req = pb.ExportObjectAsOfRequest(
            org_id=org_id, object_name=object_name, format=pb.EXPORT_FORMAT_JSONL, include_deleted=True
        )
        try:
            pending = b""
            for piece in self.stub.ExportObjectAsOf(req, timeout=self.timeout_s):
                pending += piece.data
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield _id_of(line)
            if pending.strip():
                yield _id_of(pending)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:  # nothing stored for this object yet
                return
            raise StorageUnavailable(f"storage export failed: {exc.details()}") from None

    def count_live(self, org_id: str, object_name: str) -> int:
        """Records of the object live in the backup's latest state (CountLive: neither soft- nor hard-deleted); an
        object storage does not know yet (NOT_FOUND) holds none."""
        req = pb.CountLiveRequest(org_id=org_id, objects=[object_name])

        def call() -> dict[str, int]:
            try:
                return dict(self.stub.CountLive(req, timeout=60).live)
            except grpc.RpcError as exc:
                if hasattr(exc, "code") and exc.code() == grpc.StatusCode.NOT_FOUND:
                    return {}
                raise

        live = self._call(call)
        return next((int(n) for name, n in live.items() if name.lower() == object_name.lower()), 0)

    # ---------------------------------------------------------------- restore

    def read_records_as_of(self, request: pb.ReadRecordsAsOfRequest) -> Iterator[pb.RecordBatch]:
        """The backup's records a restore selected, in batches, streamed. NOT_FOUND (nothing of the object in the
        backup) is an empty stream; a stream cut off is StorageUnavailable (the job is handed back)."""
        try:
            yield from self.stub.ReadRecordsAsOf(request, timeout=self.timeout_s)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            if code == grpc.StatusCode.NOT_FOUND:
                return
            if code in RETRYABLE:
                raise StorageUnavailable(f"storage unavailable: {_details(exc)}") from None
            raise StorageError(f"storage refused the read ({code.name if code else '?'}): {_details(exc)}") from None

    def record_restore_intent(self, request: pb.RecordRestoreIntentRequest) -> bool:
        """Written before a batch of creates is sent; True when it was already recorded."""
        resp = self._call(lambda: self.stub.RecordRestoreIntent(request, timeout=60))
        return bool(resp.already_recorded)

    def list_restore_intents(self, session_id: str, job_id: str) -> list[pb.RestoreIntent]:
        req = pb.ListRestoreIntentsRequest(session_id=session_id, job_id=job_id)
        return list(self._call(lambda: self.stub.ListRestoreIntents(req, timeout=60)).intents)

    def put_restore_outcomes(self, request: pb.PutRestoreOutcomesRequest) -> pb.ChunkResult:
        return self._call(lambda: self.stub.PutRestoreOutcomes(request, timeout=self.timeout_s))

    def get_id_map(self, source_org_id: str, target_org_id: str, source_ids: list[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        step = 1000 if source_ids else 1  # storage's limit of a repeated field
        for i in range(0, max(len(source_ids), 1), step):
            req = pb.GetIdMapRequest(
                source_org_id=source_org_id, target_org_id=target_org_id, source_ids=source_ids[i : i + step]
            )
            out.update(self._call(lambda req=req: self.stub.GetIdMap(req, timeout=60)).ids)  # type: ignore[misc]
        return out

    def list_restore_records(
        self, session_id: str, state: int = 0, object_name: str = ""
    ) -> Iterator[rpb.RecordOutcome]:
        token = ""
        while True:
            req = pb.ListRestoreRecordsRequest(
                session_id=session_id,
                state=state,  # type: ignore[arg-type]
                object_name=object_name,
                page_size=5000,
                page_token=token,
            )
            resp = self._call(lambda req=req: self.stub.ListRestoreRecords(req, timeout=60))  # type: ignore[misc]
            yield from resp.outcomes
            token = resp.next_page_token
            if not token:
                return


def _details(exc: grpc.RpcError) -> str:
    return str(exc.details()) if hasattr(exc, "details") else str(exc)


def _id_of(line: bytes) -> tuple[str, bool]:
    obj: dict[str, Any] = json.loads(line)
    return str(obj.get("Id") or obj.get("id")), obj.get("_deleted") == "soft"


def timestamp(when: dt.datetime) -> Any:
    from google.protobuf.timestamp_pb2 import Timestamp

    ts = Timestamp()
    ts.FromDatetime(when.astimezone(dt.UTC))
    return ts
