"""The file job: every body not stored yet (or whose record changed since), streamed from Salesforce to
storage, one chunk per file; what is stored is remembered per record, so a resumed or later job skips it."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from sfvault.storage.v1 import storage_pb2 as spb

from services.jobrunner import domain
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


class FileJob:
    """Every body not stored yet (or whose record changed since), streamed from Salesforce to storage; one chunk
    per file. What is stored is remembered per record, so a resumed or later job skips it."""

    def __init__(self, run: JobRun, reader: SalesforceReads, files: StoredFiles) -> None:
        self.run = run
        self.reader = reader
        self.files = files
        self.gone: list[str] = []  # "Object Id" of records deleted between the listing and their download
        self.warnings: list[str] = []

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
        self._record_committed()
        if run.seq > 0:  # resumed: the files the earlier attempts found gone
            self.gone = list(run.checkpoint.get("gone") or [])
        stored_total = skipped = 0
        for obj in objects:
            s, k = self._object(obj)
            stored_total += s
            skipped += k
        run.save_state(phase="done")
        if self.gone:
            self.warnings.append(
                f"{len(self.gone)} files were gone from the org when their body was read"
                f" ({', '.join(self.gone[:5])}); the next session reads them again if they are back"
            )
        return "; ".join(
            [f"{stored_total} file bodies stored, {skipped} already stored", *(f"warning: {w}" for w in self.warnings)]
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
        soql = domain.build_soql(obj, fields, ordered="id")
        page = self.reader.query_page(soql, query_all=False, batch_size=2000)
        expected, rows = page.total_size, list(page.records)
        while page.next_url:
            page = self.reader.query_more(page.next_url)
            rows.extend(page.records)
        domain.check_counts(f"file listing of {obj}", expected, len(rows))
        stored = skipped = 0
        for rec in rows:
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
