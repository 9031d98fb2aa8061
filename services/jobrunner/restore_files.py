"""File restore: the backed-up bodies of restored file records put back into the target org.

    restore_files(run, writer, storage_reads, items, *, dry_run) -> FileRestoreResult

- run: the restore job's JobRun (run.org is the backup's 00D…; run.spec.restore.spec.as_of the point, unset =
  the latest backup; run.spec.restore.target_salesforce_org_id the target, empty = the same org; run.control
  is checked between files).
- writer: the target org's SalesforceWrites (restore_job's OrgWriter): query_in(), create(), user_id(),
  created_since(), and its `client` (JobOrgClient) for the body uploads, which this module makes itself
  (BlobWriter); an object that already has create_with_body() / update_body() / body_sha256() is used as is.
- storage_reads: the job's storage (StorageClient or a fake): read_records_as_of(request) (the backed-up
  ContentVersion, Attachment and ContentDocumentLink rows), get_id_map(source, target, ids), and GetFile (its
  stub, or a get_file(org, object, record_id, as_of) method); record_restore_intent(request) when it has it.
- items: (object_name, source_id, target_id, state) of the records the restore decided, every object: those of
  ContentVersion / ContentDocument / Attachment are the files to restore, state UNSPECIFIED (0); one with a
  target_id and state Created / Updated / Skipped is a file an earlier attempt restored (its outcome stored:
  pass it so, and it is not restored again), a Failed one is left alone; the other objects' items (their
  target Ids) map the files' parents and links, with storage's Id map for the rest.
- dry_run: everything decided (which file becomes a new version, a new document, an Attachment), nothing
  written: not one write call.

Per file (RecordOutcome, object_name the file object, source_id the backup's Id, target_id the target's record:
for a ContentDocument its document, for a ContentVersion the version written or found; so the Id map of a later
restore finds the document again, and a version's document is read from the org through the version it maps to):
- ContentVersion (or ContentDocument: its latest backed-up version): when its ContentDocument still exists in
  the target, the body comes back as a NEW VERSION of it (ContentDocumentId set) - Skipped when the document's
  latest version already has the same body (Checksum, or SHA-256 of its body when the sizes agree) - Updated;
  otherwise a NEW DOCUMENT: ContentVersion insert with FirstPublishLocationId = the first restored record the
  backup's ContentDocumentLink rows name (Id-mapped), then a ContentDocumentLink to each other one - Created.
- Attachment: re-created under its (restored, Id-mapped) parent with the backed-up body - Created; an
  Attachment still in the target with the same body is Skipped, with another body its Body is replaced -
  Updated.
- Bodies are streamed from storage into a spool file (memory up to 4 MiB, then disk) while hashed, and sent
  from it: as base64 JSON up to JSON_MAX bytes, else multipart (entity_content + VersionData), streamed: a
  50 MB file is never held twice in memory.
- Creates are never sent twice: each is preceded by a restore intent ("file:<Object>:<source Id>") when storage
  keeps them; a resumed job finds an intent already recorded and looks for what the lost create made (the
  restoring user's records since then with the same title or name and parent) before creating. The intents a
  result settles are in FileRestoreResult.resolved_intents (for the PutRestoreOutcomes that stores it).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import logging
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

import grpc
import requests
from google.protobuf.timestamp_pb2 import Timestamp
from sfvault.restore.v1 import restore_pb2 as rpb
from sfvault.storage.v1 import storage_pb2 as spb

from services.jobrunner.job_run import JobRun
from services.jobrunner.metadata_restore import tally
from services.jobrunner.salesforce import SalesforceError, _raise_for
from services.jobrunner.salesforce_write import WriteAnswerLost, WriteResult
from services.sfclient import ApiLimitExceeded, OrgClient, error_of

log = logging.getLogger("services.jobrunner.jobs")

FILE_OBJECTS = ("ContentVersion", "ContentDocument", "Attachment")
JSON_MAX = 8 << 20  # bodies up to this size go as base64 JSON (about 11 MB of text), larger ones multipart
SPOOL_MEMORY = 4 << 20
CV_FIELDS = ["ContentDocumentId", "Title", "PathOnClient", "Description", "ReasonForChange", "IsLatest"]
AT_FIELDS = ["ParentId", "Name", "ContentType", "Description", "IsPrivate"]
LINK = "ContentDocumentLink"
USER_PREFIXES = ("005", "00G", "00D")
DONE = (
    rpb.RECORD_STATE_CREATED,
    rpb.RECORD_STATE_UPDATED,
    rpb.RECORD_STATE_SKIPPED,
)  # users, groups, the org: links that are not a restored record's


class FileAnswerLost(WriteAnswerLost):
    """A create carrying a body was sent and its answer lost: whether it created the record is unknown. Never
    re-sent blindly: the job is handed back; its next attempt finds the intent recorded and looks for the
    record before creating."""


@dataclass
class FileRestoreResult:
    outcomes: list[rpb.RecordOutcome] = field(default_factory=list)
    files: int = 0  # bodies written (or, in a dry run, that would be)
    bytes: int = 0
    links: int = 0  # ContentDocumentLinks created
    write_calls: int = 0
    resolved_intents: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def counts(self) -> list[rpb.ObjectRestoreCounts]:
        counts = tally(self.outcomes)
        by = {c.object_name: c for c in counts}
        for o in self.outcomes:
            if o.state == rpb.RECORD_STATE_CREATED or list(o.changed_fields):
                by[o.object_name].files += 1  # a body written
        return counts


# ---------------------------------------------------------------- bodies


@dataclass
class Body:
    """A backed-up body, spooled (memory up to SPOOL_MEMORY, then a temporary file), with its hashes."""

    file: IO[bytes]
    size: int
    sha256: str
    md5: str
    file_name: str = ""
    content_type: str = ""

    def chunks(self, size: int = 1 << 20) -> Iterator[bytes]:
        self.file.seek(0)
        while piece := self.file.read(size):
            yield piece

    def read_all(self) -> bytes:
        self.file.seek(0)
        return self.file.read()

    def close(self) -> None:
        self.file.close()


def spool(parts: Iterable[spb.GetFileResponse]) -> Body | None:
    """GetFile's stream into a Body (None: storage holds no body)."""
    out: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)  # closed by Body.close
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    size, header = 0, spb.FileVersion()
    seen = False
    for part in parts:
        seen = True
        if part.HasField("file"):
            header = part.file
        elif part.data:
            out.write(part.data)
            sha.update(part.data)
            md5.update(part.data)
            size += len(part.data)
    if not seen:
        out.close()
        return None
    return Body(out, size, sha.hexdigest(), md5.hexdigest(), header.file_name, header.content_type)


class _Concat(io.RawIOBase):
    """Several byte sources read as one stream of known length (a multipart body sent from its spool file)."""

    def __init__(self, parts: list[bytes | Body], content_type: str = "") -> None:
        self.content_type = content_type
        self._parts = parts
        self._length = sum(p.size if isinstance(p, Body) else len(p) for p in parts)
        self._iter = self._pieces()
        self._left = b""

    def __len__(self) -> int:
        return self._length

    def _pieces(self) -> Iterator[bytes]:
        for p in self._parts:
            if isinstance(p, Body):
                yield from p.chunks(1 << 16)
            else:
                yield p

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._left:
            try:
                self._left = next(self._iter)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._left))
        buffer[:n] = self._left[:n]
        self._left = self._left[n:]
        return n


def multipart(values: dict[str, Any], body: Body, binary_part: str, json_part: str = "entity_content") -> _Concat:
    """The multipart form WRITE.md §8.1 shows: a JSON part, then the binary part, streamed from the spool."""
    boundary = "sfvault-" + uuid.uuid4().hex
    name = (body.file_name or "file").replace('"', "")
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{json_part}"\r\n'
        f"Content-Type: application/json\r\n\r\n{json.dumps(values)}\r\n"
        f"--{boundary}\r\nContent-Type: application/octet-stream\r\n"
        f'Content-Disposition: form-data; name="{binary_part}"; filename="{name}"\r\n\r\n'
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return _Concat([head, body, tail], f"multipart/form-data; boundary={boundary}")


# ---------------------------------------------------------------- writes with a body


class BodyWrites(Protocol):
    def create_with_body(self, object_name: str, values: dict[str, Any], body: Body) -> WriteResult: ...

    def update_body(self, object_name: str, record_id: str, body: Body) -> WriteResult: ...

    def body_sha256(self, object_name: str, record_id: str, field_name: str) -> str: ...


BLOB_FIELD = {"ContentVersion": "VersionData", "Attachment": "Body", "Document": "Body"}


class BlobWriter:
    """Creates and updates carrying a body, over the target's OrgClient: JSON (base64) for small bodies,
    multipart for large ones, streamed from the spool. A create is sent once: a lost answer is FileAnswerLost."""

    def __init__(self, client: OrgClient, *, reserve_percent: int = 0) -> None:
        self.client = client
        self.reserve_percent = reserve_percent
        self.write_calls = 0

    @property
    def base(self) -> str:
        return f"/services/data/v{self.client.creds.api_version}"

    def _send(self, method: str, path: str, make: Any, *, once: bool) -> requests.Response:
        def do(_: Any) -> requests.Response:
            data, content_type = make()
            url = self.client.token.instance_url.rstrip("/") + path
            headers = {"Authorization": f"Bearer {self.client.token.access_token}", "Content-Type": content_type}
            try:
                response = self.client.http.request(
                    method, url, data=data, headers=headers, timeout=self.client.timeout
                )
                response.content  # noqa: B018 -- the whole answer, or its loss, here
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                if once:
                    raise FileAnswerLost(f"{method} {path.rsplit('/', 1)[-1]}: the answer was lost") from exc
                raise
            if response.status_code == 401:
                from simple_salesforce.exceptions import SalesforceExpiredSession

                raise SalesforceExpiredSession(url, 401, "", response.content)
            if response.status_code == 403 and b"REQUEST_LIMIT_EXCEEDED" in response.content:
                raise ApiLimitExceeded("the org's daily API request limit is exceeded (REQUEST_LIMIT_EXCEEDED)")
            if response.status_code >= 500:
                if once:
                    raise FileAnswerLost(f"{method}: the org answered {response.status_code}; the outcome is unknown")
                raise SalesforceError(response.status_code, *error_of(response))
            return response

        self.client.check_budget(self.reserve_percent)
        response = self.client.call(do, reserve_percent=self.reserve_percent)
        self.write_calls += 1
        return response

    @staticmethod
    def _payload(object_name: str, values: dict[str, Any], body: Body) -> Any:
        field_name = BLOB_FIELD[object_name]
        if body.size <= JSON_MAX or object_name != "ContentVersion":
            encoded = {**values, field_name: base64.b64encode(body.read_all()).decode()}
            return lambda: (json.dumps(encoded).encode(), "application/json")

        def make() -> tuple[Any, str]:
            stream = multipart(values, body, field_name)
            return stream, stream.content_type

        return make

    @staticmethod
    def _written(response: requests.Response) -> WriteResult:
        if response.status_code >= 400:
            code, message = error_of(response)
            return WriteResult(None, False, code, message)
        if response.status_code == 204 or not response.content:
            return WriteResult(None, True)
        payload = response.json()
        return WriteResult(str(payload.get("id") or "") or None, bool(payload.get("success", True)))

    def create_with_body(self, object_name: str, values: dict[str, Any], body: Body) -> WriteResult:
        make = self._payload(object_name, values, body)
        return self._written(self._send("POST", f"{self.base}/sobjects/{object_name}", make, once=True))

    def update_body(self, object_name: str, record_id: str, body: Body) -> WriteResult:
        make = self._payload(object_name, {}, body)
        return self._written(self._send("PATCH", f"{self.base}/sobjects/{object_name}/{record_id}", make, once=False))

    def body_sha256(self, object_name: str, record_id: str, field_name: str) -> str:
        """The SHA-256 of a body in the org, streamed (never held)."""
        self.client.check_budget(self.reserve_percent)
        response = self.client.request(
            "GET", f"{self.base}/sobjects/{object_name}/{record_id}/{field_name}", stream=True
        )
        _raise_for(response)
        sha = hashlib.sha256()
        try:
            for piece in response.iter_content(1 << 20):
                sha.update(piece)
        finally:
            response.close()
        return sha.hexdigest()


def body_writes(writer: Any) -> Any:
    """The writer's body writes: itself when it has them, else a BlobWriter on its client."""
    if hasattr(writer, "create_with_body"):
        return writer
    return BlobWriter(writer.client, reserve_percent=int(getattr(writer, "reserve_percent", 0)))


# ---------------------------------------------------------------- storage reads


def get_file(storage: Any, org_id: str, object_name: str, record_id: str, as_of: Timestamp | None) -> Body | None:
    """The record's body as of the point (GetFile by record), spooled; None when storage holds none."""
    own = getattr(storage, "get_file", None)
    if own is not None:
        parts = own(org_id, object_name, record_id, as_of)
        return None if parts is None else spool(parts)
    req = spb.GetFileRequest(org_id=org_id, object_name=object_name, record_id=record_id)
    if as_of is not None:
        req.as_of.CopyFrom(as_of)
    try:
        return spool(storage.stub.GetFile(req, timeout=3600))
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise


def backed_up(
    storage: Any, org_id: str, object_name: str, as_of: Timestamp | None, **selection: Any
) -> list[dict[str, Any]]:
    """The backup's records of a selection at the point, as dicts of their canonical values (with "Id")."""
    req = spb.ReadRecordsAsOfRequest(org_id=org_id, object_name=object_name, **selection)
    if as_of is not None:
        req.as_of.CopyFrom(as_of)
    out = []
    for batch in storage.read_records_as_of(req):
        for r in batch.records:
            values = json.loads(r.values_json or b"{}")
            values["Id"] = r.record_id
            out.append(values)
    return out


# ---------------------------------------------------------------- the restore


def _outcome(obj: str, source: str, target: str, state: int, **kw: Any) -> rpb.RecordOutcome:
    return rpb.RecordOutcome(object_name=obj, source_id=source, target_id=target, state=state, **kw)  # type: ignore[arg-type]


class _FileRestore:
    def __init__(self, run: JobRun, writer: Any, storage: Any, items: list[tuple[str, str, str, int]], dry: bool):
        self.run = run
        self.writer = writer
        self.storage = storage
        self.bodies: BodyWrites = body_writes(writer)
        self.dry = dry
        spec = run.spec.restore.spec
        self.as_of: Timestamp | None = spec.as_of if spec.HasField("as_of") else None
        self.source = run.org
        self.target = run.spec.restore.target_salesforce_org_id or run.org
        self.result = FileRestoreResult()
        self.items = items
        self.id_map: dict[str, str] = {s: t for _o, s, t, st in items if t and st != rpb.RECORD_STATE_FAILED and s}
        self.link_writes = 0
        self.undelete_writes = 0
        self.undeleted: set[str] = set()  # target Ids brought back from the recycle bin
        self.binned_at_start: set[str] = set()  # target Ids in the recycle bin when the restore started

    def _failed(self, obj: str, source: str, target: str, code: str, message: str) -> None:
        """A file not restored: Salesforce's error code and message (or ours), as the outcome of its record."""
        self.result.outcomes.append(
            _outcome(obj, source, target, rpb.RECORD_STATE_FAILED, error_code=code, message=message)
        )

    # -------------------------------------------------------------- Ids
    def map_ids(self, ids: Iterable[str]) -> dict[str, str]:
        """Backup Id -> target Id for these: the restore's own items, storage's Id map, else the same Id when the
        target is the backed-up org."""
        wanted = [i for i in dict.fromkeys(ids) if i and i not in self.id_map]
        if wanted and hasattr(self.storage, "get_id_map"):
            self.id_map.update(self.storage.get_id_map(self.source, self.target, wanted))
        same = self.target == self.source
        return {i: self.id_map.get(i) or (i if same else "") for i in ids if i}

    # -------------------------------------------------------------- intents
    def _intent(self, key: str, obj: str, source_id: str) -> bool:
        """Records the intent of a create; True when an earlier attempt already recorded it (its answer lost)."""
        if self.dry or not hasattr(self.storage, "record_restore_intent"):
            return False
        sent = Timestamp()
        sent.FromDatetime(self.now())
        req = spb.RecordRestoreIntentRequest(
            org_id=self.target,
            session_id=self.run.spec.session_id,
            job_id=self.run.spec.job_id,
            batch_key=key,
            object_name=obj,
            source_ids=[source_id],
            sent_at=sent,
        )
        again = bool(self.storage.record_restore_intent(req))
        self.result.resolved_intents.append(key)
        return again

    def now(self) -> dt.datetime:
        try:
            return self.run.client.org_now()
        except Exception:
            return dt.datetime.now(dt.UTC)

    def _made_before(self, obj: str, match: dict[str, str]) -> str | None:
        """What a create whose answer was lost made: the restoring user's record of the last day matching."""
        if not hasattr(self.writer, "created_since"):
            return None
        since = self.now() - dt.timedelta(days=1)
        rows = self.writer.created_since(obj, self.writer.user_id(), since, list(match))
        for r in rows:
            if all(str(r.get(k) or "") == v for k, v in match.items()):
                return str(r["Id"])
        return None

    # -------------------------------------------------------------- the recycle bin
    def _live(self, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """The target's records of these rows that are live or back from the recycle bin: those in the bin are
        undeleted (their Ids kept, Veeam's rule; a dry run counts them as they would be), remembered in
        self.undeleted; one the org will not undelete is left out (gone: re-created)."""
        live = {str(r["Id"]): r for r in rows if not r.get("IsDeleted")}
        binned = [str(r["Id"]) for r in rows if r.get("IsDeleted")]
        if not binned or not hasattr(self.writer, "undelete"):
            return live
        if self.dry:
            back = set(binned)
        else:
            results = self.writer.undelete(binned)
            self.undelete_writes += (len(binned) + 199) // 200
            back = {i for i, r in zip(binned, results, strict=False) if getattr(r, "success", False)}
        self.undeleted |= back
        live.update({r["Id"]: r for r in rows if r["Id"] in back})
        return live

    def _back(self, target: str, state: int, note: str) -> tuple[int, str]:
        """Undeleted (then its body written when it differed) for a record back from the recycle bin: undeleted
        here, or in the bin when the restore started and brought back since by its parent's undelete (the state a
        record had at the start decides, as for every other object, so the preview's counts are the restore's)."""
        if target in self.undeleted or target in self.binned_at_start:
            return rpb.RECORD_STATE_UNDELETED, f"undeleted from the recycle bin; {note}"
        return state, note

    # -------------------------------------------------------------- ContentVersion
    def content(self, wanted: list[tuple[str, str]]) -> None:
        """(object, source Id) of ContentVersion / ContentDocument items."""
        cv_ids = [s for o, s in wanted if o == "ContentVersion"]
        doc_ids = [s for o, s in wanted if o == "ContentDocument"]
        versions = backed_up(self.storage, self.source, "ContentVersion", self.as_of, ids=cv_ids) if cv_ids else []
        by_id = {v["Id"]: v for v in versions}
        unknown = [i for i in cv_ids if i not in by_id]
        if unknown and self.target == self.source:
            # versions whose record the backup does not hold (ContentVersion not in the data scope): the org
            # still knows which document each belongs to, unless it is gone with its document
            for r in self.writer.query_in(
                "ContentVersion", ["ContentDocumentId", "Title", "PathOnClient"], "Id", unknown
            ):
                by_id[str(r["Id"])] = {
                    k: v for k, v in r.items() if k in ("Id", "ContentDocumentId", "Title", "PathOnClient")
                }
        if doc_ids:  # a document: its latest version at the point
            for v in backed_up(
                self.storage,
                self.source,
                "ContentVersion",
                self.as_of,
                where_field="ContentDocumentId",
                where_in=doc_ids,
            ):
                doc = str(v.get("ContentDocumentId") or "")
                held = by_id.get(f"doc:{doc}")
                if (
                    held is None
                    or v.get("IsLatest")
                    or str(v.get("CreatedDate", "")) > str(held.get("CreatedDate", ""))
                ):
                    by_id[f"doc:{doc}"] = v
        docs = {str(v.get("ContentDocumentId") or "") for v in by_id.values()} - {""}
        links = (
            backed_up(
                self.storage,
                self.source,
                "ContentDocumentLink",
                self.as_of,
                where_field="ContentDocumentId",
                where_in=sorted(docs),
            )
            if docs
            else []
        )
        links_of: dict[str, list[dict[str, Any]]] = {}
        for link in links:
            links_of.setdefault(str(link.get("ContentDocumentId") or ""), []).append(link)
        mapped_docs = self.map_ids(docs)
        for doc, target_doc in self._documents_of_restored_versions(cv_ids, by_id).items():
            if target_doc and not self.id_map.get(doc):
                mapped_docs[doc] = target_doc
        targets = sorted({t for t in mapped_docs.values() if t})
        existing = self._live(self.writer.query_in("ContentDocument", ["IsDeleted"], "Id", targets) if targets else [])
        latest: dict[str, dict[str, Any]] = {}
        if existing:
            for r in self.writer.query_in(
                "ContentVersion",
                ["ContentDocumentId", "ContentSize", "Checksum", "IsLatest"],
                "ContentDocumentId",
                sorted(existing),
            ):
                if r.get("IsLatest", True):
                    latest[str(r.get("ContentDocumentId"))] = r
        for obj, source in wanted:
            self.run.control.check()
            version = by_id.get(source if obj == "ContentVersion" else f"doc:{source}")
            try:
                self._one_version(obj, source, version, mapped_docs, existing, latest, links_of)
            except SalesforceError as exc:
                self._failed(obj, source, "", exc.code, str(exc)[:500])

    def _documents_of_restored_versions(self, cv_ids: list[str], by_id: dict[str, dict[str, Any]]) -> dict[str, str]:
        """Backed-up document -> the target's document now holding a restored version of it: a version an earlier
        restore made as a new document is in the Id map (version -> new version), its document is read from the
        org (the Id map of a ContentVersion names a version, not its document)."""
        self.map_ids(cv_ids)
        moved = {s: self.id_map[s] for s in cv_ids if self.id_map.get(s) and self.id_map[s] != s}
        if not moved:
            return {}
        rows = self.writer.query_in("ContentVersion", ["ContentDocumentId"], "Id", sorted(set(moved.values())))
        doc_of = {str(r["Id"]): str(r.get("ContentDocumentId") or "") for r in rows}
        return {
            str(by_id[s].get("ContentDocumentId") or ""): doc_of.get(t, "")
            for s, t in moved.items()
            if s in by_id and by_id[s].get("ContentDocumentId")
        }

    def _document_of(self, version_id: str) -> str:
        """The ContentDocument a new version belongs to, read back from the org ("" when it cannot be read)."""
        rows = self.writer.query_in("ContentVersion", ["ContentDocumentId"], "Id", [version_id])
        return str(rows[0].get("ContentDocumentId") or "") if rows else ""

    def _one_version(
        self,
        obj: str,
        source: str,
        version: dict[str, Any] | None,
        mapped_docs: dict[str, str],
        existing: dict[str, Any],
        latest: dict[str, dict[str, Any]],
        links_of: dict[str, list[dict[str, Any]]],
    ) -> None:
        out = self.result.outcomes
        body_id = str(version["Id"]) if version else (source if obj == "ContentVersion" else "")
        body = get_file(self.storage, self.source, "ContentVersion", body_id, self.as_of) if body_id else None
        if body is None:
            self._failed(obj, source, "", "NOT_IN_BACKUP", "no body in the backup at the point")
            return
        try:
            version = version or {}
            doc = str(version.get("ContentDocumentId") or "")
            target_doc = mapped_docs.get(doc, "")
            title = str(version.get("Title") or body.file_name or "restored file")
            values: dict[str, Any] = {
                "Title": title,
                "PathOnClient": str(version.get("PathOnClient") or body.file_name or title),
                "ReasonForChange": "restored by sfvault",
            }
            if version.get("Description"):
                values["Description"] = version["Description"]
            if target_doc and target_doc in existing:
                now = latest.get(target_doc)
                # a ContentDocument's outcome names the target's document, a ContentVersion's the version
                is_doc = obj == "ContentDocument"
                if now is not None and self._same(now, body):
                    state, note = self._back(target_doc, rpb.RECORD_STATE_SKIPPED, "its latest version has this body")
                    out.append(_outcome(obj, source, target_doc if is_doc else str(now["Id"]), state, note=note))
                    return
                values["ContentDocumentId"] = target_doc
                new_id = self._create("ContentVersion", source, values, body, note_key="new version")
                if new_id is not None:
                    state, note = self._back(target_doc, rpb.RECORD_STATE_UPDATED, "a new version of the document")
                    made = target_doc if is_doc and new_id else new_id
                    out.append(_outcome(obj, source, made, state, note=note, changed_fields=["VersionData"]))
                return
            # a new document, published to the first restored record the backup's links name, linked to the others
            linked = [str(lnk.get("LinkedEntityId") or "") for lnk in links_of.get(doc, [])]
            records = [i for i in linked if i and not i.startswith(USER_PREFIXES)]
            mapped = self.map_ids(records)
            targets = [mapped[i] for i in records if mapped.get(i)]
            missing = [i for i in records if not mapped.get(i)]
            if targets:
                values["FirstPublishLocationId"] = targets[0]
            new_id = self._create("ContentVersion", source, values, body, note_key="new document")
            if new_id is None:
                return
            note = (
                f"a new document, published to {targets[0]}"
                if targets
                else "a new document (no restored record to link)"
            )
            if missing:
                note += f"; {len(missing)} linked records not in the target"
            new_doc = self._document_of(new_id) if new_id and (len(targets) > 1 or obj == "ContentDocument") else ""
            if len(targets) > 1:
                note += self._links(
                    new_doc, targets[1:], {str(lnk.get("LinkedEntityId")): lnk for lnk in links_of.get(doc, [])}
                )
            made = new_doc if obj == "ContentDocument" else new_id
            out.append(_outcome(obj, source, made, rpb.RECORD_STATE_CREATED, note=note))
        finally:
            body.close()

    def _same(self, current: dict[str, Any], body: Body) -> bool:
        checksum = str(current.get("Checksum") or "")
        if checksum:
            return checksum.lower() == body.md5
        size = current.get("ContentSize")
        if size is not None and int(size) != body.size:
            return False
        return bool(self.bodies.body_sha256("ContentVersion", str(current["Id"]), "VersionData") == body.sha256)

    def _create(self, obj: str, source: str, values: dict[str, Any], body: Body, *, note_key: str) -> str | None:
        """A create carrying the body; its new Id (a dry run: "" ); None when refused (outcome recorded)."""
        self.result.files += 1
        self.result.bytes += body.size
        if self.dry:
            return ""
        key = f"file:{obj}:{source}"
        if self._intent(key, obj, source):
            match = (
                {"Title": str(values.get("Title", ""))}
                if obj == "ContentVersion"
                else {
                    "ParentId": str(values.get("ParentId", "")),
                    "Name": str(values.get("Name", "")),
                }
            )
            found = self._made_before(obj, match)
            if found:
                log.info("%s %s: the create of an earlier attempt found (%s)", obj, source, note_key)
                return found
        written = self._with_fallback(obj, values, body)
        if not written.success or not written.id:
            self.result.files -= 1
            self.result.bytes -= body.size
            self._failed(obj, source, "", written.code, written.message[:500])
            return None
        return written.id

    def _with_fallback(self, obj: str, values: dict[str, Any], body: Body) -> WriteResult:
        written = self.bodies.create_with_body(obj, values, body)
        if (
            not written.success
            and "FirstPublishLocationId" in values
            and ("FirstPublishLocationId" in written.message or written.code == "INVALID_FIELD")
        ):
            # an org that refuses the field: the document is created, then linked
            target = values.pop("FirstPublishLocationId")
            written = self.bodies.create_with_body(obj, values, body)
            if written.success and written.id:
                self._links(self._document_of(written.id), [target], {})
        return written

    def _links(self, doc: str, targets: list[str], backed: dict[str, dict[str, Any]]) -> str:
        """ContentDocumentLinks of a new document (its id read back from the new version) to these records."""
        if not doc:
            return "; its document could not be read back to link it"
        # links already there (a resumed attempt's, or FirstPublishLocationId's) are not made twice
        there = {
            str(r.get("LinkedEntityId"))
            for r in self.writer.query_in(LINK, ["LinkedEntityId"], "ContentDocumentId", [doc])
        }
        targets = [t for t in targets if t not in there]
        if not targets:
            return ""
        records = []
        for t in targets:
            lnk = next((v for k, v in backed.items() if self.id_map.get(k) == t or k == t), {})
            records.append(
                {
                    "ContentDocumentId": doc,
                    "LinkedEntityId": t,
                    "ShareType": str(lnk.get("ShareType") or "V"),
                    "Visibility": str(lnk.get("Visibility") or "AllUsers"),
                }
            )
        results = self.writer.create("ContentDocumentLink", records)
        self.link_writes += (len(records) + 199) // 200
        made = sum(1 for r in results if getattr(r, "success", False))
        self.result.links += made
        failed = [f"{getattr(r, 'code', '')}" for r in results if not getattr(r, "success", False)]
        return f"; linked to {made} more records" + (f" ({len(failed)} links refused: {failed[0]})" if failed else "")

    # -------------------------------------------------------------- Attachment
    def attachments(self, sources: list[str]) -> None:
        rows = {r["Id"]: r for r in backed_up(self.storage, self.source, "Attachment", self.as_of, ids=sources)}
        mapped_self = self.map_ids(sources)
        mine = [t for t in mapped_self.values() if t]
        fields = ["ParentId", "Name", "BodyLength", "IsDeleted"]
        present = self._live(self.writer.query_in("Attachment", fields, "Id", mine) if mine else [])
        parents = self.map_ids([str(r.get("ParentId") or "") for r in rows.values()])
        for source in sources:
            self.run.control.check()
            try:
                self._one_attachment(source, rows.get(source), mapped_self.get(source, ""), present, parents)
            except SalesforceError as exc:
                self._failed("Attachment", source, "", exc.code, str(exc)[:500])

    def _one_attachment(
        self, source: str, row: dict[str, Any] | None, target: str, present: dict[str, Any], parents: dict[str, str]
    ) -> None:
        out = self.result.outcomes
        body = get_file(self.storage, self.source, "Attachment", source, self.as_of)
        if row is None or body is None:
            if body is not None:
                body.close()
            self._failed("Attachment", source, "", "NOT_IN_BACKUP", "no record or body in the backup at the point")
            return
        try:
            if target and target in present:
                now = present[target]
                # a preview cannot read the body of a record in the recycle bin (ENTITY_IS_DELETED): its size
                # decides; the restore reads it once undeleted (its state is Undeleted either way)
                unreadable = self.dry and target in self.undeleted
                if (
                    now.get("BodyLength") is not None
                    and int(now["BodyLength"]) == body.size
                    and (unreadable or self.bodies.body_sha256("Attachment", target, "Body") == body.sha256)
                ):
                    state, note = self._back(target, rpb.RECORD_STATE_SKIPPED, "the same body")
                    out.append(_outcome("Attachment", source, target, state, note=note))
                    return
                self.result.files += 1
                self.result.bytes += body.size
                if not self.dry:
                    written = self.bodies.update_body("Attachment", target, body)
                    if not written.success:
                        self._failed("Attachment", source, target, written.code, written.message[:500])
                        return
                state, note = self._back(target, rpb.RECORD_STATE_UPDATED, "its body replaced")
                out.append(_outcome("Attachment", source, target, state, note=note, changed_fields=["Body"]))
                return
            parent = parents.get(str(row.get("ParentId") or ""), "")
            if not parent:
                self._failed(
                    "Attachment",
                    source,
                    "",
                    "PARENT_NOT_RESTORED",
                    f"its parent {row.get('ParentId')} is not in the target",
                )
                return
            values = {k: row[k] for k in ("Name", "ContentType", "Description", "IsPrivate") if row.get(k) is not None}
            values.setdefault("Name", body.file_name or "attachment")
            values["ParentId"] = parent
            new_id = self._create("Attachment", source, values, body, note_key="re-created")
            if new_id is not None:
                out.append(
                    _outcome("Attachment", source, new_id, rpb.RECORD_STATE_CREATED, note=f"re-created under {parent}")
                )
        finally:
            body.close()


def restore_files(
    run: JobRun,
    writer: Any,
    storage_reads: Any,
    items: Iterable[tuple[str, str, str, int]],
    *,
    dry_run: bool,
    binned_at_start: Iterable[str] = (),
) -> FileRestoreResult:
    """The bodies of the restored file records back in the target org (module docstring). binned_at_start: the
    target Ids the restore found in the recycle bin when it started (a file its parent's undelete brought back
    since is Undeleted, as the preview, which undeletes nothing, predicts)."""
    listed = list(items)
    job = _FileRestore(run, writer, storage_reads, listed, dry_run)
    job.binned_at_start = set(binned_at_start)
    seen: set[tuple[str, str]] = set()
    content: list[tuple[str, str]] = []
    attachments: list[str] = []
    for obj, source, _target, state in listed:
        if obj not in FILE_OBJECTS or state == rpb.RECORD_STATE_FAILED or (obj, source) in seen:
            continue
        if _target and state in DONE:
            continue  # restored by an earlier attempt of the job (its outcome stored): not again
        seen.add((obj, source))
        if obj == "Attachment":
            attachments.append(source)
        else:
            content.append((obj, source))
    if content:
        job.content(content)
    if attachments:
        job.attachments(attachments)
    bodies = job.bodies
    job.result.write_calls = (
        (0 if dry_run else int(getattr(bodies, "write_calls", 0))) + job.link_writes + job.undelete_writes
    )
    failed = sum(1 for o in job.result.outcomes if o.state == rpb.RECORD_STATE_FAILED)
    if failed:
        job.result.warnings.append(f"{failed} files were not restored")
    return job.result


__all__ = ["BlobWriter", "Body", "FileAnswerLost", "FileRestoreResult", "restore_files", "spool"]
