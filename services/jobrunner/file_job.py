"""The file job: every body not stored yet (or whose record changed since), streamed from Salesforce to
storage, one chunk per file; what is stored is remembered per record, so a resumed or later job skips it. Then
the links of every ContentDocument it saw (ContentDocumentLink, which cannot be read as a table: it needs a
filter by document), stored as records like a data job's, so a restore can link a file to its records again."""

from __future__ import annotations

import contextlib
import contextvars
import heapq
import logging
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import astuple, dataclass
from typing import Any

from sfvault.storage.v1 import storage_pb2 as spb

from services.canonical import CanonicalParts, RecordCanonicalizer
from services.jobrunner import domain, translate
from services.jobrunner.domain import CountMismatch
from services.jobrunner.job_run import JobRun
from services.jobrunner.ports import Body, SalesforceReads, StoredFiles
from services.jobrunner.salesforce import SalesforceError
from services.jobrunner.streams import read_ahead

log = logging.getLogger("services.jobrunner.jobs")

FILE_OBJECTS = {
    # object: (body field, size field, name field, content-type field)
    "ContentVersion": ("VersionData", "ContentSize", "PathOnClient", "FileType"),
    "Attachment": ("Body", "BodyLength", "Name", "ContentType"),
    "Document": ("Body", "BodyLength", "Name", "ContentType"),
}


# files in flight at once: while storage makes one durable (its body fsync'd, its version committed) the next ones
# download, so a backup of many small files is not one disk flush after another
TRANSFERS = 4
# a body goes to storage in pieces of this size, one piece a gRPC message (a transfer holds one at a time): 4 MiB
# pieces were measured to cost storage more CPU per MB (5.7 s against 4.3 s a GB) for no faster transfer
PIECE = 1 << 20
# files storage committed are recorded here this many at a time, in one commit (the checkpoint names them until
# then: a resumed attempt records those storage holds, as it does the files in flight)
RECORD_EVERY = 16
# pieces of a body read ahead of what storage has taken (a body of more than one piece): the download goes on while
# the previous pieces are on their way to storage, instead of one waiting on the other
READ_AHEAD = 4

LINK_OBJECT = "ContentDocumentLink"
# (name, describe type); SystemModstamp is left out in an org whose ContentDocumentLink lacks it
LINK_FIELDS = (
    ("Id", "id"),
    ("ContentDocumentId", "reference"),
    ("LinkedEntityId", "reference"),
    ("ShareType", "picklist"),
    ("Visibility", "picklist"),
    ("SystemModstamp", "datetime"),
)
LINK_DOCUMENTS_PER_QUERY = 200  # Ids in one `ContentDocumentId IN (...)`: the query stays far below 16 KB


@dataclass(frozen=True)
class FileRef:
    """A file to store: its record, the SystemModstamp it was listed at, and the header storage is sent."""

    obj: str
    rid: str
    modstamp: str
    size: int
    name: str
    content_type: str


class FileJob:
    """Every body not stored yet (or whose record changed since), streamed from Salesforce to storage; one chunk
    per file, TRANSFERS files at once. What is stored is remembered per record, so a resumed or later job skips
    it.

    Files in flight commit in any order, yet the job's chunks stay 1..N without a gap (the session counts each):
    a file gets its chunk number only once its body is coming (a file gone from the org before takes none), and
    the write-ahead checkpoint names every file in flight with its number. A resumed attempt records those storage
    committed and sends the others again under their own numbers (storage answers a committed one as a replay,
    already in BeginJob's totals); a number whose file went away mid-way is given to the next file."""

    def __init__(self, run: JobRun, reader: SalesforceReads, files: StoredFiles, transfers: int = TRANSFERS) -> None:
        self.run = run
        self.reader = reader
        self.files = files
        self.transfers = transfers
        self.gone: list[str] = []  # "Object Id" of records deleted between the listing and their download
        self.warnings: list[str] = []
        self.documents: set[str] = set()  # the ContentDocuments of the versions listed: their links are read
        self.lock = threading.Lock()  # the chunk numbers and the checkpoint, shared by the transfers
        self.next_seq = 1
        self.free: list[int] = []  # numbers taken by a file that went away before storage committed it
        self.inflight: dict[int, FileRef] = {}  # chunk number -> its file, from its checkpoint to its record
        self.unrecorded: list[tuple[int, FileRef]] = []  # committed by storage, not recorded here yet
        self.begun = 0  # storage's last chunk when this attempt began: a replay up to it is in BeginJob's totals
        self.last_stored: FileRef | None = None

    def execute(self) -> str:
        run = self.run
        f = run.spec.file
        objects = [
            name
            for name, on in (
                ("ContentVersion", f.content_versions),
                ("Attachment", f.attachments),
                ("Document", f.documents),
            )
            if on
        ]
        run.begin("")
        resumed_at = run.resume_position() or {}
        self.begun = run.seq
        self.next_seq = run.seq + 1
        self._record_committed()
        if run.seq > 0:  # resumed: the files the earlier attempts found gone
            self.gone = list(run.checkpoint.get("gone") or [])
        stored_total = skipped = 0
        again = self._in_flight_before()
        if again:
            stored_total += self._transfer_all([(ref, seq) for seq, ref in again])
        for obj in objects:
            s, k = self._object(obj)
            stored_total += s
            skipped += k
        stored_total += self._fill_holes()
        links = ""
        if f.content_versions and resumed_at.get("phase") != "links-deleted":
            links = self._links(sorted(self.documents), resumed_at)
        run.save_state(phase="done")
        if self.gone:
            self.warnings.append(
                f"{len(self.gone)} files were gone from the org when their body was read"
                f" ({', '.join(self.gone[:5])}); the next session reads them again if they are back"
            )
        return "; ".join(
            [
                f"{stored_total} file bodies stored, {skipped} already stored",
                *([links] if links else []),
                *(f"warning: {w}" for w in self.warnings),
            ]
        )

    def _record_committed(self) -> None:
        """A resumed job: the file of the last chunk storage committed may never have been recorded here (the
        attempt ended between the two). Its checkpoint names it, so it is recorded now and not downloaded again
        (a second download would be counted as one more file received). (A checkpoint of one file at a time, as
        jobrunners before TRANSFERS wrote it.)"""
        run = self.run
        pos = run.checkpoint.get("pos") or {}
        if run.seq and run.checkpoint.get("seq") == run.seq and pos.get("file"):
            obj, rid, modstamp, size = pos["file"]
            self.files.file_stored(run.org, obj, rid, modstamp, "", int(size))

    def _in_flight_before(self) -> list[tuple[int, FileRef]]:
        """A resumed job: the files the last attempt had in flight. Those numbered beyond storage's last chunk were
        never committed (the listing reads them again, under new numbers). When storage holds every chunk up to its
        last, the others were committed, perhaps never recorded here: recorded now, neither downloaded nor counted
        again. Otherwise some are missing in between: those are sent again under their own numbers."""
        run = self.run
        pos = run.checkpoint.get("pos") or {}
        if pos.get("phase") != "files" or not pos.get("inflight") or not run.seq:
            return []
        earlier = [(int(e[0]), FileRef(*e[1:])) for e in pos["inflight"] if int(e[0]) <= run.seq]
        if not earlier:
            return []
        if run.chunks == run.seq:  # 1..last all committed (BeginJob's count)
            self.files.files_stored(run.org, [(f.obj, f.rid, f.modstamp, "", f.size) for _seq, f in earlier])
            return []
        return earlier

    def _object(self, obj: str) -> tuple[int, int]:
        run = self.run
        _body_field, size_field, name_field, type_field = FILE_OBJECTS[obj]
        known = self.files.stored_files(run.org, obj)
        fields = ["Id", "SystemModstamp", size_field, name_field, type_field]
        if obj == "ContentVersion":
            fields.append("ContentDocumentId")
        soql = domain.build_soql(obj, fields, ordered="id")
        page = self.reader.query_page(soql, query_all=False, batch_size=2000)
        expected, rows = page.total_size, list(page.records)
        while page.next_url:
            page = self.reader.query_more(page.next_url)
            rows.extend(page.records)
        domain.check_counts(f"file listing of {obj}", expected, len(rows))
        todo: list[tuple[FileRef, int | None]] = []
        skipped = 0
        for rec in rows:
            if rec.get("ContentDocumentId"):
                self.documents.add(str(rec["ContentDocumentId"]))
            rid, modstamp = str(rec["Id"]), str(rec.get("SystemModstamp") or "")
            if known.get(rid) == modstamp:
                skipped += 1
                continue
            size = rec.get(size_field)
            if size is None:
                continue  # a record without a body (e.g. a link-only ContentVersion)
            name, content_type = str(rec.get(name_field) or ""), str(rec.get(type_field) or "")
            todo.append((FileRef(obj, rid, modstamp, int(size), name, content_type), None))
        return self._transfer_all(todo), skipped

    def _transfer_all(self, todo: Sequence[tuple[FileRef, int | None]]) -> int:
        """Each file stored (under the chunk number given, or a new one), `transfers` at once; how many were. A
        failed transfer ends the attempt once those in flight have ended."""
        run = self.run
        stored = 0
        failure: BaseException | None = None
        with ThreadPoolExecutor(self.transfers, thread_name_prefix="file") as pool:
            pending: dict[Future[tuple[int, spb.UploadFileResponse] | None], FileRef] = {}
            queue = iter(todo)
            while True:
                # one file at a time until one went through in this attempt: an org that stalls every body is found
                # out on one file (its three tries), not on several at once
                window = self.transfers if self.last_stored is not None else 1
                while failure is None and len(pending) < window and (item := next(queue, None)):
                    run.control.check()
                    context = contextvars.copy_context()  # the transfer's calls stay in the session's trace
                    pending[pool.submit(context.run, self._transfer, item[0], item[1])] = item[0]
                if not pending:
                    break
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    f = pending.pop(future)
                    try:
                        stored += self._committed(f, future.result())
                    except BaseException as exc:  # the others in flight end first: their commits are counted
                        failure = failure or exc
        if failure is not None:
            with contextlib.suppress(Exception):  # what storage committed recorded, if the database lets it
                self._record()
            raise failure
        self._record()
        return stored

    def _record(self) -> None:
        """The files storage committed, recorded in one commit, then dropped from the checkpoint's files in flight
        (the next checkpoint written leaves them out; until then a resumed attempt records them again, harmless)."""
        if not self.unrecorded:
            return
        batch, self.unrecorded = self.unrecorded, []
        try:
            self.files.files_stored(self.run.org, [(f.obj, f.rid, f.modstamp, "", f.size) for _seq, f in batch])
        except BaseException:
            self.unrecorded = batch + self.unrecorded
            raise
        with self.lock:
            for seq, _f in batch:
                self.inflight.pop(seq, None)

    def _committed(self, f: FileRef, outcome: tuple[int, spb.UploadFileResponse] | None) -> int:
        """Storage's answer to one file taken into the job's counts (in the job's thread: one writer of them)."""
        run = self.run
        if outcome is None:
            self.gone.append(f"{f.obj} {f.rid}")
            with self.lock:
                self._save_checkpoint()  # a resumed attempt still tells
            return 0
        seq, result = outcome
        if result.replayed and seq <= self.begun:
            run.seq = max(run.seq, seq)  # committed by an earlier attempt: in BeginJob's totals already
        else:
            # storage's counts of the chunk, as on a resume (BeginJob's totals): `files` counts the bodies stored
            # (a body already held, e.g. a version identical to another, is a new version and no new file)
            run.committed(max(run.seq, seq), result, received=1)
        if int(result.size) != f.size:
            raise CountMismatch(f"{f.obj} {f.rid}: Salesforce said {f.size} bytes, storage stored {result.size}")
        self.last_stored = f
        self.unrecorded.append((seq, f))
        if len(self.unrecorded) >= RECORD_EVERY:
            self._record()
        return 1

    def _transfer(self, f: FileRef, seq: int | None) -> tuple[int, spb.UploadFileResponse] | None:
        """One body streamed from the org into storage under chunk `seq` (a new number once the body is coming);
        None: the file is gone from the org (deleted since the listing). The job's thread records it."""
        run = self.run
        for attempt in range(3):
            try:
                response = self.reader.blob(f.obj, f.rid, FILE_OBJECTS[f.obj][0])
            except SalesforceError as exc:
                if exc.status != 404:
                    raise
                # deleted since the listing (NOT_FOUND, ENTITY_IS_DELETED): nothing to store, the job goes on;
                # not recorded as stored, so a record that is back is read again by the next session
                log.info("%s %s is gone from the org (%s); skipped", f.obj, f.rid, exc.code)
                if seq is not None:
                    self._release(seq)
                return None
            if seq is None:
                seq = self._number(f)
            broken: list[Exception] = []  # why the body stopped, when it did: gRPC only says the stream was cut

            def body(response: Body = response, broken: list[Exception] = broken) -> Iterator[bytes]:
                try:
                    for piece in response.iter_content(PIECE):
                        run.control.check()
                        yield piece
                except Exception as exc:
                    broken.append(exc)
                    raise
                finally:
                    response.close()

            header = spb.FileHeader(
                **run.chunk_of(seq, f.obj), record_id=f.rid, size=f.size, file_name=f.name, content_type=f.content_type
            )
            try:
                pieces = body()
                result = run.storage.upload_file(header, read_ahead(pieces, READ_AHEAD) if f.size > PIECE else pieces)
            except Exception as exc:
                if run.control.why is not None or attempt == 2:
                    # a download that kept breaking is the org's transient failure (the job is handed back and
                    # resumes at this file), not storage refusing the file
                    raise (broken[0] if broken else exc) from None
                log.warning("download of %s %s failed; retrying", f.obj, f.rid)
                continue
            return seq, result
        raise AssertionError("unreachable")

    def _number(self, f: FileRef) -> int:
        """The next chunk number, given to `f` in the write-ahead checkpoint before its body is sent."""
        with self.lock:
            if self.free:
                seq = heapq.heappop(self.free)
            else:
                seq, self.next_seq = self.next_seq, self.next_seq + 1
            self.inflight[seq] = f
            self._save_checkpoint()
            return seq

    def _release(self, seq: int) -> None:
        """A number whose file went away before storage committed it: the next file takes it (no gap)."""
        with self.lock:
            self.inflight.pop(seq, None)
            heapq.heappush(self.free, seq)

    def _save_checkpoint(self) -> None:
        """Under the lock: the files in flight with their numbers, and those found gone."""
        run = self.run
        inflight = [[seq, *astuple(f)] for seq, f in sorted(self.inflight.items())]
        run.checkpoint = {
            **run.checkpoint,
            "seq": self.next_seq - 1,
            "pos": {"phase": "files", "inflight": inflight},
            "prev": {},
            "gone": self.gone,
        }
        run.store.save_checkpoint(run.spec.session_id, run.spec.job_id, run.checkpoint)

    def _fill_holes(self) -> int:
        """Numbers left free once every file is stored: the last ones are given back; one below a number storage
        committed is filled with the last file stored, sent again (storage finds its version unchanged: it counts
        one more reception), so the job's chunks stay 1..N."""
        while self.free and max(self.free) == self.next_seq - 1:
            self.free.remove(self.next_seq - 1)
            self.next_seq -= 1
        holes, self.free = sorted(self.free), []
        if not holes:
            return 0
        last = self.last_stored
        if last is None:
            raise CountMismatch(f"chunks {holes} were given to files gone from the org, and no file can fill them")
        log.warning("chunks %s of files gone mid-way filled with %s %s again", holes, last.obj, last.rid)
        return self._transfer_all([(last, seq) for seq in holes])

    # ---- the links of the documents seen -------------------------------------------------------------------

    def _links(self, documents: list[str], resumed_at: dict[str, object]) -> str:
        """The links of `documents`, 200 documents a query, stored as records of ContentDocumentLink in chunks
        that end on a query's last document (the checkpoint names it: a resumed attempt goes on after it).
        Links storage holds that no document has any more are marked hard-deleted (a link has no recycle bin),
        but only by an attempt that read every link itself."""
        run = self.run
        after = str(resumed_at.get("after") or "") if resumed_at.get("phase") == "links" else ""
        batches = list(domain.batched([doc for doc in documents if doc > after], LINK_DOCUMENTS_PER_QUERY))
        fields = list(LINK_FIELDS)
        canonicalizer: RecordCanonicalizer | None = None
        seen: set[str] = set()
        buffer: list[CanonicalParts] = []
        read = 0
        for n, batch in enumerate(batches, 1):
            run.control.check()
            rows, fields = self._links_of(batch, fields)
            if canonicalizer is None:  # the schema of the fields read (SystemModstamp may be missing in the org)
                schema = _link_schema(fields)
                run.storage.put_schema(run.org, run.spec.session_id, schema)
                canonicalizer = RecordCanonicalizer(
                    translate.canonical_schema(schema), count_formula_changes=run.formula_changes_counted
                )
            for rec in rows:
                seen.add(str(rec["Id"]))
                buffer.append(canonicalizer.parts(rec, read))
                read += 1
            if buffer and (len(buffer) >= run.tuning.chunk_records or n == len(batches)):
                run.count_read(len(buffer))
                run.put_records(LINK_OBJECT, buffer, {"phase": "links", "after": batch[-1]})
                buffer = []
        run.wait_stored()
        gone: list[str] = []
        if not after:
            gone = [rid for rid, _soft in run.storage.stored_ids(run.org, LINK_OBJECT) if rid not in seen]
            for ids in domain.batched(gone, run.tuning.chunk_records):
                run.mark_deleted(LINK_OBJECT, list(ids), spb.DELETED_STATE_HARD, {"phase": "links-deleted"})
        return f"{read} file links read ({len(documents)} documents), {len(gone)} gone"

    def _links_of(
        self, documents: Sequence[str], fields: list[tuple[str, str]]
    ) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
        """The links of up to 200 documents (every page), and the fields they were read with."""
        while True:
            where = "ContentDocumentId IN (" + ",".join(domain.soql_string(d) for d in documents) + ")"
            soql = f"SELECT {', '.join(n for n, _ in fields)} FROM {LINK_OBJECT} WHERE {where} ORDER BY Id"
            try:
                page = self.reader.query_page(soql, query_all=False, batch_size=2000)
            except SalesforceError as exc:
                if exc.code != "INVALID_FIELD" or not any(n == "SystemModstamp" for n, _ in fields):
                    raise
                log.info("ContentDocumentLink has no SystemModstamp in this org; its links are read without it")
                fields = [(n, t) for n, t in fields if n != "SystemModstamp"]
                continue
            rows = list(page.records)
            expected = page.total_size
            while page.next_url:
                self.run.control.check()
                page = self.reader.query_more(page.next_url)
                rows.extend(page.records)
            domain.check_counts(f"links of {len(documents)} documents", expected, len(rows))
            return rows, fields


def _link_schema(fields: Sequence[tuple[str, str]]) -> spb.ObjectSchema:
    return spb.ObjectSchema(
        object_name=LINK_OBJECT,
        key_prefix="06A",
        fields=[
            spb.FieldSchema(name=name, type=domain.storage_field_type(sf_type), sf_type=sf_type)  # type: ignore[arg-type]
            for name, sf_type in fields
        ],
    )
