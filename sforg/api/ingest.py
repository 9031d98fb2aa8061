"""Bulk API 2.0 ingest jobs (`/services/data/vXX.X/jobs/ingest`): create (insert, update, upsert, delete,
hardDelete; JSON or multipart with the data), PUT CSV batches (201, no body), PATCH `UploadComplete` / `Aborted`,
poll, `successfulResults` / `failedResults` / `unprocessedrecords`, list, delete.

Rows are validated and written by the same code as REST writes, 200 rows a transaction (as Salesforce's chunks;
a savepoint, 10 of them a commit); a failed row never stops the others. An insert's rows are checked one by one as
REST creates are (the same errors) and written together, one INSERT per chunk (`Records.create_batch`); an
update's likewise (`Records.update_batch`: the chunk's rows read at once). Empty cells are left out (unchanged on
update), `#N/A` sets null, and a `Relationship.ExternalIdField` column names a parent by its external Id. A header
naming no field fails the whole job (`InvalidBatch : Field name not found : X`). Jobs live in memory (a restart
forgets them)."""

from __future__ import annotations

import asyncio
import csv
import io
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web

from sforg import schema
from sforg.api.http import Api, error, json_response
from sforg.clock import stamp
from sforg.ids import is_valid, make_id, to18
from sforg.org import OrgError
from sforg.org.records import CreateBatch, UpdateBatch
from sforg.org.validation import id18
from sforg.query import DELIMITERS

OPERATIONS = ("insert", "update", "upsert", "delete", "hardDelete")
CHUNK = 200
CHUNKS_A_COMMIT = 50  # 10,000 rows a commit: a commit rewrites the pages (indexes) its rows touched


@dataclass
class IngestJob:
    id: str
    info: dict[str, Any]
    uploads: list[bytes] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    ok: list[list[str]] = field(default_factory=list)  # sf__Id, sf__Created, columns...
    failed: list[list[str]] = field(default_factory=list)  # sf__Id, sf__Error, columns...
    unprocessed: list[list[str]] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    aborted: bool = False


def sf_error(exc: OrgError) -> str:
    """`CODE:message:fields --` (or `CODE:message:--` without fields), as sf__Error carries it."""
    return f"{exc.code}:{exc.message}:{','.join(exc.fields)} --" if exc.fields else f"{exc.code}:{exc.message}:--"


class IngestApi(Api):
    @property
    def ingest_jobs(self) -> dict[str, IngestJob]:
        jobs: dict[str, IngestJob] = self.org.__dict__.setdefault("ingest_jobs", {})
        return jobs

    def info(self, job: IngestJob, full: bool = True) -> dict[str, Any]:
        info = dict(job.info)
        if info["state"] == "InProgress" and job.done.is_set():
            info["state"] = job.info["state"] = "Failed" if job.info.get("errorMessage") else "JobComplete"
        if full:
            info.update(
                {
                    "numberRecordsProcessed": len(job.ok) + len(job.failed),
                    "numberRecordsFailed": len(job.failed),
                    "retries": 0,
                    "totalProcessingTime": job.info.get("_ms", 0),
                    "apiActiveProcessingTime": job.info.get("_ms", 0),
                    "apexProcessingTime": 0,
                }
            )
        return {k: v for k, v in info.items() if not k.startswith("_") and v is not None}

    async def jobs(self, request: web.Request, version: str, parts: list[str]) -> web.StreamResponse:
        method = request.method
        if not parts:
            if method == "POST":
                return await self.create(request, version)
            if method == "GET":
                records = [self.info(j, full=False) for j in self.ingest_jobs.values()]
                return json_response({"done": True, "records": records, "nextRecordsUrl": None})
            return error(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. Allowed are GET,POST")
        job = self.ingest_jobs.get(parts[0])
        if job is None:
            return error(404, "NOT_FOUND", "The requested resource does not exist")
        if len(parts) == 1:
            if method == "GET":
                return json_response(self.info(job))
            if method == "PATCH":
                body = await self.json_body(request)
                return self.set_state(job, str(body.get("state", "")), body)
            if method == "DELETE":
                if job.info["state"] in ("Open", "UploadComplete", "InProgress") and not job.done.is_set():
                    return error(400, "INVALIDJOBSTATE", "Cannot delete a job that is not closed or aborted")
                self.ingest_jobs.pop(job.id, None)
                return web.Response(status=204)
            return error(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. Allowed are GET,PATCH,DELETE")
        sub = parts[1]
        if sub == "batches" and method == "PUT":
            if job.info["state"] != "Open":
                return error(400, "INVALIDJOBSTATE", f"Job {job.id} is not open for data upload: {job.info['state']}")
            data = await request.read()
            if not data.strip():
                return error(400, "INVALIDJOB", "No content found in the request body")
            job.uploads.append(data)
            return web.Response(status=201)
        if sub in ("successfulResults", "failedResults", "unprocessedrecords") and method == "GET":
            info = self.info(job)
            if info["state"] not in ("JobComplete", "Failed", "Aborted"):
                return error(400, "INVALIDJOBSTATE", f"Job {job.id} is not complete: {info['state']}")
            return self.result_csv(job, sub)
        return error(404, "NOT_FOUND", "The requested resource does not exist")

    async def create(self, request: web.Request, version: str) -> web.StreamResponse:
        org = self.org
        data: bytes | None = None
        if request.content_type.startswith("multipart/"):
            body: dict[str, Any] = {}
            reader = await request.multipart()
            async for part in reader:
                if not isinstance(part, BodyPartReader):
                    continue
                if part.name == "job":
                    body = dict(await part.json() or {})
                elif part.name == "content":
                    data = bytes(await part.read())
        else:
            body = await self.json_body(request)
        operation = body.get("operation")
        if operation not in OPERATIONS:
            return error(400, "INVALIDJOB", f"Invalid operation: {operation}")
        try:
            o = org.obj(str(body.get("object") or ""))
        except OrgError:
            return error(400, "INVALIDJOB", f"Unable to find object: {body.get('object')}")
        if not o.bulk_supported:
            return error(400, "INVALIDENTITY", f"Entity '{o.name}' is not supported by the Bulk API.")
        ext = body.get("externalIdFieldName")
        if operation == "upsert":
            f = o.field(str(ext or ""))
            if not ext:
                return error(400, "INVALIDJOB", "External ID was blank for upsert")
            if f is None or not (f.external_id or f.id_lookup):
                return error(400, "INVALIDJOB", f"Field {ext} is not an external id field of {o.name}")
            ext = f.name
        elif ext:
            return error(400, "INVALIDJOB", "External ID is only supported for upsert operations")
        delim = body.get("columnDelimiter", "COMMA")
        ending = body.get("lineEnding", "LF")
        if delim not in DELIMITERS or ending not in ("LF", "CRLF"):
            return error(400, "INVALIDJOB", "Invalid columnDelimiter or lineEnding")
        if body.get("contentType", "CSV") != "CSV":
            return error(400, "INVALIDJOB", "Only CSV is supported for contentType")
        now = stamp(org.now())[:-1] + "+0000"
        jid = make_id("750", secrets.randbelow(62**9), pod="Dx")
        job = IngestJob(
            jid,
            {
                "id": jid,
                "operation": operation,
                "object": o.name,
                "createdById": org.identity["user_id"],
                "createdDate": now,
                "systemModstamp": now,
                "state": "Open",
                "externalIdFieldName": ext,
                "concurrencyMode": "Parallel",
                "contentType": "CSV",
                "apiVersion": float(version),
                "jobType": "V2Ingest",
                "contentUrl": f"services/data/v{version}/jobs/ingest/{jid}/batches",
                "lineEnding": ending,
                "columnDelimiter": delim,
                "_job_failed": bool(request.get("job_failed")),
            },
        )
        self.ingest_jobs[jid] = job
        if data is not None:
            job.uploads.append(data)
            self.set_state(job, "UploadComplete", {})
        return json_response(self.info(job, full=False))

    def set_state(self, job: IngestJob, state: str, body: dict[str, Any]) -> web.Response:
        if set(body) - {"state"}:
            return error(400, "INVALIDJOB", "Only the state can be changed")
        current = self.info(job)["state"]
        if state == "Aborted":
            if current in ("JobComplete", "Failed", "Aborted"):
                return error(400, "INVALIDJOBSTATE", f"Job {job.id} is already {current}")
            job.aborted = True
            if current == "Open":  # nothing was processed: every uploaded row is unprocessed
                for upload in job.uploads:
                    reader = csv.reader(
                        io.StringIO(upload.decode("utf-8-sig"), newline=""),
                        delimiter=DELIMITERS[job.info["columnDelimiter"]],
                    )
                    header = next(reader, None) or []
                    job.header = job.header or header
                    job.unprocessed.extend(row for row in reader if any(row))
            job.info["state"] = "Aborted"
            job.done.set()
            return json_response(self.info(job, full=False))
        if state != "UploadComplete":
            return error(400, "INVALIDJOBSTATE", f"Invalid state: {state}")
        if current != "Open":
            return error(400, "INVALIDJOBSTATE", f"Job {job.id} is not open: {current}")
        job.info["state"] = "UploadComplete"
        reply = json_response(self.info(job, full=False))
        job.info["state"] = "InProgress"
        asyncio.get_running_loop().run_in_executor(self.processor, self.process, job)
        return reply

    @property
    def processor(self) -> ThreadPoolExecutor:
        """The org's ingest jobs processed one after another, in the order they were closed (as a queue of the
        org's own): jobs run side by side in one process only take turns on its lock, each ending later. Made by
        the event loop's thread, the one that closes jobs."""
        executor: ThreadPoolExecutor | None = self.org.__dict__.get("ingest_processor")
        if executor is None:
            executor = self.org.__dict__["ingest_processor"] = ThreadPoolExecutor(1, "sforg-ingest")
        return executor

    # ------------------------------------------------------------ processing
    def process(self, job: IngestJob) -> None:
        started = time.perf_counter()
        try:
            if job.info["_job_failed"]:
                raise _JobFailed("InternalServerError : Retried more than 15 times")
            for upload in job.uploads:
                self.process_upload(job, upload)
                if job.aborted:
                    break
        except _JobFailed as exc:
            job.info["errorMessage"] = str(exc)
        finally:
            job.info["_ms"] = int((time.perf_counter() - started) * 1000)
            job.done.set()

    def process_upload(self, job: IngestJob, upload: bytes) -> None:
        org = self.org
        o = org.obj(job.info["object"])
        text = upload.decode("utf-8-sig")
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=DELIMITERS[job.info["columnDelimiter"]])
        header = next(reader, None)
        if not header:
            raise _JobFailed("InvalidBatch : no header row")
        columns = [self.column(o, h, job.info["operation"]) for h in header]
        if not job.header:
            job.header = header
        rows = list(reader)
        # plain inserts are checked row by row as any create is, and written 200 rows at once
        batched = (
            job.info["operation"] == "insert"
            and o.name not in ("ContentVersion", "ContentDocumentLink")
            and not o.blob_field
            and not org.settings["late_commit_delay"] > 0
        )
        # plain updates likewise: the chunk's rows read at once, written together
        updating = (
            job.info["operation"] == "update"
            and o.name != "User"
            and not o.blob_field
            and not org.settings["late_commit_delay"] > 0
        )
        id_at = next((n for n, h in enumerate(header) if h.lower() == "id"), None)
        for start in range(0, len(rows), CHUNK * CHUNKS_A_COMMIT):
            # several chunks a commit (each chunk its own savepoint): a commit costs the store more than a chunk
            with org.store.transaction():
                for i in range(start, min(len(rows), start + CHUNK * CHUNKS_A_COMMIT), CHUNK):
                    if job.aborted:
                        job.unprocessed.extend(rows[i:])
                        return
                    self._chunk(job, o, columns, header, rows[i : i + CHUNK], batched, updating, id_at)

    def _chunk(
        self,
        job: IngestJob,
        o: schema.ObjectDef,
        columns: list[tuple[str, schema.FieldDef, str | None]],
        header: list[str],
        rows: list[list[str]],
        batched: bool,
        updating: bool,
        id_at: int | None,
    ) -> None:
        """One chunk of 200 rows, one transaction (a savepoint inside the commit's): each row applied alone (a
        failed row never stops the others), creates and updates written together at the chunk's end."""
        org = self.org
        with org.store.transaction():
            batch: CreateBatch | UpdateBatch | None = None
            if batched:
                batch = org.create_batch(o.name)
            elif updating and id_at is not None:
                batch = org.update_batch(o.name)
                batch.load([row[id_at] for row in rows if len(row) > id_at])
            if batch is not None:  # the records the chunk's lookups name, read at once
                at = [n for n, (kind, f, _ext) in enumerate(columns) if kind == "field" and f.type == "reference"]
                batch.prefetch(org, (row[n] for row in rows for n in at if n < len(row) and row[n]))
            # a plain insert (fields only, no Id, no parent by external Id): each row's values taken at once
            names = [f.name for _kind, f, _ext in columns]
            create = batch.create if isinstance(batch, CreateBatch) else None
            plain = create is not None and id_at is None and all(k == "field" for k, _f, _e in columns)
            for row in rows:
                if not any(cell for cell in row):
                    continue
                try:
                    if plain and create is not None:
                        values = {n: (None if c == "#N/A" else c) for n, c in zip(names, row, strict=False) if c != ""}
                        rid, created = create(values), True
                    else:
                        rid, created = self.apply(job, o, columns, header, row, batch)
                    job.ok.append([rid, "true" if created else "false", *row])
                except OrgError as exc:
                    given = next((c for h, c in zip(header, row, strict=False) if h.lower() == "id"), "")
                    job.failed.append([to18(given) if is_valid(given) else given, sf_error(exc), *row])
            if batch is not None:
                batch.flush()

    def column(self, o: schema.ObjectDef, name: str, operation: str) -> tuple[str, schema.FieldDef, str | None]:
        """(kind, field, parent external-Id field) of a header cell; a bad one fails the job."""
        if "." in name:
            rel, ext = name.split(".", 1)
            for f in o.fields:
                if f.type == "reference" and (f.relationship_name or "").lower() == rel.lower():
                    parent = self.org.obj(f.reference_to[0])
                    pf = parent.field(ext)
                    if len(f.reference_to) > 1:
                        raise _JobFailed(f"InvalidBatch : Polymorphic foreign key references are not supported: {name}")
                    if pf is None or not (pf.external_id or pf.id_lookup):
                        raise _JobFailed(f"InvalidBatch : Field name not found : {name}")
                    return "ref", f, pf.name
            raise _JobFailed(f"InvalidBatch : Field name not found : {name}")
        plain = o.field(name)
        if plain is None or plain.name.lower() in self.org.hidden().get(o.name, set()):
            raise _JobFailed(f"InvalidBatch : Field name not found : {name}")
        if operation in ("delete", "hardDelete") and plain.name != "Id":
            raise _JobFailed(f"InvalidBatch : The '{operation}' batch must contain only 'Id': {name}")
        return "field", plain, None

    def apply(
        self,
        job: IngestJob,
        o: schema.ObjectDef,
        columns: list[tuple[str, schema.FieldDef, str | None]],
        header: list[str],
        row: list[str],
        batch: CreateBatch | UpdateBatch | None = None,
    ) -> tuple[str, bool]:
        org = self.org
        op = job.info["operation"]
        values: dict[str, Any] = {}
        rid = ""
        for (kind, f, parent_ext), cell in zip(columns, row, strict=False):
            if f.name == "Id" and kind == "field":
                rid = cell
                continue
            if cell == "":
                continue
            value: Any = None if cell == "#N/A" else cell
            if kind == "ref" and value is not None:
                assert parent_ext is not None
                parent = org.obj(f.reference_to[0])
                if batch is not None and parent is o:  # this batch's records are read as stored
                    batch.flush()
                where = f'WHERE "{parent_ext}"=?' + (' AND "IsDeleted"=0' if parent.field("IsDeleted") else "")
                hits = [r[0] for r in org.store.scan(parent.name, ["Id"], where, (value,))][:2]
                if not hits:
                    raise OrgError(
                        400,
                        "INVALID_FIELD",
                        f"Foreign key external ID: {value} not found for field {parent_ext} in entity {parent.name}",
                        [],
                    )
                value = hits[0]
            values[f.name] = value
        if op == "insert":
            if rid:
                raise OrgError(400, "INVALID_FIELD_FOR_INSERT_UPDATE", "cannot specify Id in an insert call", ["Id"])
            if isinstance(batch, CreateBatch):
                return batch.create(values), True
            return org.api_create(o.name, values), True
        if op == "upsert":
            ext = job.info["externalIdFieldName"]
            if ext == "Id":
                return org.upsert_record(o.name, "Id", rid or None, values)
            value = values.pop(ext, None)
            return org.upsert_record(o.name, ext, value, values)
        if not rid:
            raise OrgError(400, "MISSING_ARGUMENT", "Id not specified in an update call", ["Id"])
        rid18 = id18(rid)
        if rid18 is None or org.object_of_id(rid) is not o:
            raise OrgError(400, "MALFORMED_ID", f"malformed id {rid}", ["Id"])
        try:
            if op == "update" and isinstance(batch, UpdateBatch):
                batch.update(rid, values)
            elif op == "update":
                org.update_record(o.name, rid, values)
            else:
                org.delete_record(o.name, rid, api=True, hard=op == "hardDelete")
        except OrgError as exc:
            if exc.code == "NOT_FOUND":
                raise OrgError(400, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", []) from exc
            raise
        return rid18, False

    def result_csv(self, job: IngestJob, kind: str) -> web.Response:
        out = io.StringIO()
        w = csv.writer(
            out,
            delimiter=DELIMITERS[job.info["columnDelimiter"]],
            quoting=csv.QUOTE_ALL,
            lineterminator="\r\n" if job.info["lineEnding"] == "CRLF" else "\n",
        )
        if kind == "successfulResults":
            w.writerow(["sf__Id", "sf__Created", *job.header])
            w.writerows(job.ok)
        elif kind == "failedResults":
            w.writerow(["sf__Id", "sf__Error", *job.header])
            w.writerows(job.failed)
        else:
            w.writerow(job.header)
            w.writerows(job.unprocessed)
        return web.Response(body=out.getvalue().encode(), headers={"Content-Type": "text/csv"})


class _JobFailed(Exception):
    """The whole job fails (a bad header, an injected JOB_FAILED): errorMessage says why."""
