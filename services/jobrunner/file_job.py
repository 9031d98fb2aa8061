"""The file job: every body not stored yet (or whose record changed since), streamed from Salesforce to
storage, one chunk per file; what is stored is remembered per record, so a resumed or later job skips it. Then
the links of every ContentDocument it saw (ContentDocumentLink, which cannot be read as a table: it needs a
filter by document), stored as records like a data job's, so a restore can link a file to its records again."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

from sfvault.storage.v1 import storage_pb2 as spb

from services.canonical import CanonicalParts, RecordCanonicalizer
from services.jobrunner import domain, translate
from services.jobrunner.domain import CountMismatch
from services.jobrunner.job_run import JobRun
from services.jobrunner.ports import Body, SalesforceReads, StoredFiles
from services.jobrunner.salesforce import SalesforceError

log = logging.getLogger("services.jobrunner.jobs")

FILE_OBJECTS = {
    # object: (body field, size field, name field, content-type field)
    "ContentVersion": ("VersionData", "ContentSize", "PathOnClient", "FileType"),
    "Attachment": ("Body", "BodyLength", "Name", "ContentType"),
    "Document": ("Body", "BodyLength", "Name", "ContentType"),
}


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


class FileJob:
    """Every body not stored yet (or whose record changed since), streamed from Salesforce to storage; one chunk
    per file. What is stored is remembered per record, so a resumed or later job skips it."""

    def __init__(self, run: JobRun, reader: SalesforceReads, files: StoredFiles) -> None:
        self.run = run
        self.reader = reader
        self.files = files
        self.gone: list[str] = []  # "Object Id" of records deleted between the listing and their download
        self.warnings: list[str] = []
        self.documents: set[str] = set()  # the ContentDocuments of the versions listed: their links are read

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
        self._record_committed()
        if run.seq > 0:  # resumed: the files the earlier attempts found gone
            self.gone = list(run.checkpoint.get("gone") or [])
        stored_total = skipped = 0
        for obj in objects:
            s, k = self._object(obj)
            stored_total += s
            skipped += k
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
        (a second download would be counted as one more file received)."""
        run = self.run
        pos = run.checkpoint.get("pos") or {}
        if run.seq and run.checkpoint.get("seq") == run.seq and pos.get("file"):
            obj, rid, modstamp, size = pos["file"]
            self.files.file_stored(run.org, obj, rid, modstamp, "", int(size))

    def _object(self, obj: str) -> tuple[int, int]:
        run = self.run
        body_field, size_field, name_field, type_field = FILE_OBJECTS[obj]
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
        stored = skipped = 0
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
            try:
                self._download(
                    obj,
                    rid,
                    modstamp,
                    body_field,
                    int(size),
                    str(rec.get(name_field) or ""),
                    str(rec.get(type_field) or ""),
                )
            except SalesforceError as exc:
                if exc.status != 404:
                    raise
                # deleted since the listing (NOT_FOUND, ENTITY_IS_DELETED): nothing to store, the job goes on;
                # not recorded as stored, so a record that is back is read again by the next session
                log.info("%s %s is gone from the org (%s); skipped", obj, rid, exc.code)
                self.gone.append(f"{obj} {rid}")
                run.save_state(gone=self.gone)  # a resumed attempt still tells
                continue
            self.files.file_stored(run.org, obj, rid, modstamp, "", int(size))
            stored += 1
        return stored, skipped

    def _download(
        self, obj: str, rid: str, modstamp: str, field_name: str, size: int, name: str, content_type: str
    ) -> None:
        run = self.run
        for attempt in range(3):
            seq = run.announce({"phase": "files", "file": [obj, rid, modstamp, size]}, {})
            response = self.reader.blob(obj, rid, field_name)
            broken: list[Exception] = []  # why the body stopped, when it did: gRPC only says the stream was cut

            def body(response: Body = response, broken: list[Exception] = broken) -> Iterator[bytes]:
                try:
                    for piece in response.iter_content(1 << 20):
                        run.control.check()
                        yield piece
                except Exception as exc:
                    broken.append(exc)
                    raise
                finally:
                    response.close()

            header = spb.FileHeader(
                **run.chunk_of(seq, obj), record_id=rid, size=size, file_name=name, content_type=content_type
            )
            try:
                result = run.storage.upload_file(header, body())
            except Exception as exc:
                if run.control.why is not None or attempt == 2:
                    # a download that kept breaking is the org's transient failure (the job is handed back and
                    # resumes at this file), not storage refusing the file
                    raise (broken[0] if broken else exc) from None
                log.warning("download of %s %s failed; retrying", obj, rid)
                continue
            # storage's counts of the chunk, as on a resume (BeginJob's totals): `files` counts the bodies stored
            # (a body already held, e.g. a version identical to another, is a new version and no new file)
            run.committed(seq, result, received=1)
            if int(result.size) != size:
                raise CountMismatch(f"{obj} {rid}: Salesforce said {size} bytes, storage stored {result.size}")
            return

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
