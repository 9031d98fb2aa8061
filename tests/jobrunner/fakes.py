"""In-memory fakes of the jobrunner's ports (services/jobrunner/ports.py): an org (its clock, the REST, Bulk,
delete-log and blob reads a job makes), storage, and the jobrunner's own tables. The contract suites
(test_*_contract.py) hold each fake and its real adapter (sforg, the storage service, PostgreSQL) to the same
rules, so application tests on the fakes run in milliseconds and still mean something."""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sfvault.events.v1 import events_pb2 as ev
from sfvault.storage.v1 import storage_pb2 as spb

from services.canonical import CANONICAL_RULES, CanonicalParts
from services.jobrunner.domain import ObjectMarks, parse_sf_datetime
from services.jobrunner.ports import Chunk
from services.jobrunner.salesforce import BulkJob, BulkJobGone, LocatorExpired, RestPage
from services.jobrunner.salesforce_write import FEW_FIRST_PAGE, WriteAnswerLost, WriteResult
from services.jobrunner.storage_client import StorageConflict
from services.platform.counts import FIELDS
from services.sfclient import SalesforceError

# ---------------------------------------------------------------- Salesforce


_SOQL = re.compile(
    r"^SELECT (?P<fields>.+?) FROM (?P<object>\w+)(?: WHERE (?P<where>.+?))?(?: ORDER BY (?P<order>.+))?$"
)
_COMPARISON = re.compile(r"^(?P<field>\w+) (?P<op>>=|<=|>|<|=) (?P<value>'[^']*'|\S+)$")


def _value(text: str) -> Any:
    if text.startswith("'"):
        return text[1:-1]
    return parse_sf_datetime(text)


def _field(record: dict[str, Any], name: str) -> Any:
    value = record.get(name)
    if name in ("SystemModstamp", "CreatedDate") and value is not None:
        return parse_sf_datetime(str(value))
    return value


def _holds(record: dict[str, Any], condition: str) -> bool:
    """One condition of what domain.build_soql writes: a comparison, an Id IN list, or the keyset condition."""
    condition = condition.strip()
    if condition.startswith("(") and condition.endswith(")") and " OR " in condition:
        inner = condition[1:-1]
        left, _, right = inner.partition(" OR ")
        return _holds(record, left) or all(_holds(record, c) for c in right.strip("()").split(" AND "))
    if condition.startswith("Id IN ("):
        return str(record["Id"]) in {v.strip("'") for v in condition[len("Id IN (") : -1].split(",")}
    m = _COMPARISON.match(condition)
    if m is None:
        raise ValueError(f"the fake org does not read {condition!r}")
    have, want, op = _field(record, m["field"]), _value(m["value"]), m["op"]
    if have is None:
        return False
    return {
        ">=": have >= want,
        "<=": have <= want,
        ">": have > want,
        "<": have < want,
        "=": have == want,
    }[op]


def _split_where(where: str) -> list[str]:
    """The top-level AND-ed conditions (the keyset condition keeps its inner AND)."""
    parts, depth, current = [], 0, ""
    for token in re.split(r"( AND |\(|\))", where):
        if token == "(":
            depth += 1
        elif token == ")":
            depth -= 1
        if token == " AND " and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += token
    parts.append(current)
    return [p for p in parts if p.strip()]


@dataclass
class FakeBody:
    data: bytes
    closed: bool = False

    def iter_content(self, chunk_size: int) -> Iterator[bytes]:
        for i in range(0, len(self.data), chunk_size):
            yield self.data[i : i + chunk_size]

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeOrg:
    """An org's records in memory, answering the SOQL domain.build_soql writes (field comparisons, an Id range, an
    Id list, the keyset condition, ORDER BY Id or SystemModstamp, Id) as Salesforce does: queryAll includes the
    recycle bin, a REST page holds batchSize records (200 to 2,000), Bulk returns CSV pages in no promised order."""

    objects: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # object -> Id -> record
    delete_log: dict[str, list[tuple[str, dt.datetime]]] = field(default_factory=dict)  # object -> (Id, when)
    blobs: dict[tuple[str, str], bytes] = field(default_factory=dict)
    now: dt.datetime = field(default_factory=lambda: dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    api_calls: int = 0
    composite_calls: int = 0
    refuse_bulk: str = ""  # an error code: every Bulk job is refused with it
    expire_locators: bool = False  # every query_more finds its locator expired
    refuse_query: str = ""  # an error code: every REST query fails with it (as after OrgClient's retries)
    refuse_count: str = ""  # an error code: every SELECT COUNT() query fails with it
    queries: list[str] = field(default_factory=list)  # every SOQL text asked, REST or Bulk, in order
    _cursors: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    _jobs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    _ids: Iterator[int] = field(default_factory=itertools.count)

    # ---- Org: the clock and the reads
    def org_now(self) -> dt.datetime:
        return self.now

    def reads(self, reserve_percent: int) -> FakeOrg:
        return self

    def metadata(self, reserve_percent: int) -> Any:
        raise NotImplementedError("the fake org has no Metadata API")

    # ---- the org's content
    def put(self, object_name: str, *records: dict[str, Any]) -> None:
        table = self.objects.setdefault(object_name, {})
        for record in records:
            table[str(record["Id"])] = {"IsDeleted": False, **record}

    def delete(self, object_name: str, record_id: str, *, purge: bool = False) -> None:
        """Into the recycle bin, or gone for good with `purge` (the delete log still names it)."""
        table = self.objects[object_name]
        if purge:
            del table[record_id]
        else:
            table[record_id]["IsDeleted"] = True
        self.delete_log.setdefault(object_name, []).append((record_id, self.now))

    # ---- REST
    def _select(self, soql: str, query_all: bool) -> tuple[list[str], list[dict[str, Any]]]:
        self.api_calls += 1
        self.queries.append(soql)
        m = _SOQL.match(soql)
        if m is None:
            raise SalesforceError(400, "MALFORMED_QUERY", soql[:100])
        fields = [f.strip() for f in m["fields"].split(",")]
        conditions = _split_where(m["where"]) if m["where"] else []
        rows = [
            r
            for r in self.objects.get(m["object"], {}).values()
            if (query_all or not r.get("IsDeleted")) and all(_holds(r, c) for c in conditions)
        ]
        if m["order"] == "Id":
            rows.sort(key=lambda r: str(r["Id"]))
        elif m["order"] == "SystemModstamp, Id":
            rows.sort(key=lambda r: (_field(r, "SystemModstamp"), str(r["Id"])))
        return fields, [{"attributes": {"type": m["object"]}, **{f: r.get(f) for f in fields}} for r in rows]

    def _rest_page(self, rows: list[dict[str, Any]], total: int, batch_size: int) -> RestPage:
        batch_size = max(200, min(2000, batch_size))  # Salesforce's bounds of Sforce-Query-Options batchSize
        page, rest = rows[:batch_size], rows[batch_size:]
        next_url = None
        if rest:
            next_url = f"/query/{next(self._ids)}"
            self._cursors[next_url] = rest
        return RestPage(total, copy.deepcopy(page), next_url)

    def query_page(self, soql: str, *, query_all: bool = True, batch_size: int = 2000) -> RestPage:
        if self.refuse_query:
            self.api_calls += 1
            raise SalesforceError(400, self.refuse_query, "query refused")
        if self.refuse_count and soql.startswith("SELECT COUNT() "):
            self.api_calls += 1
            raise SalesforceError(400, self.refuse_count, "count refused")
        fields, rows = self._select(soql, query_all)
        if fields == ["COUNT()"]:  # as Salesforce: the count in totalSize, no records
            return RestPage(len(rows), [], None)
        return self._rest_page(rows, len(rows), batch_size)

    def query_more(self, next_url: str, *, batch_size: int = 2000) -> RestPage:
        self.api_calls += 1
        rows = self._cursors.pop(next_url, None)
        if rows is None or self.expire_locators:
            raise LocatorExpired(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return self._rest_page(rows, -1, batch_size)

    def deleted(self, object_name: str, start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
        self.api_calls += 1
        return {
            "deletedRecords": [
                {"id": rid, "deletedDate": when.isoformat()}
                for rid, when in self.delete_log.get(object_name, [])
                if start <= when <= end
            ]
        }

    def reads_at_once(
        self, queries: Sequence[tuple[str, bool]], deleted: tuple[str, dt.datetime, dt.datetime] | None
    ) -> tuple[list[RestPage | None], dict[str, Any] | None]:
        """/composite: each read as alone, a refused one None; one API call for all."""
        calls = self.api_calls
        self.composite_calls += 1
        pages: list[RestPage | None] = []
        for soql, query_all in queries:
            try:
                pages.append(self.query_page(soql, query_all=query_all))
            except SalesforceError:
                pages.append(None)
        body = self.deleted(*deleted) if deleted is not None else None
        self.api_calls = calls + 1
        return pages, body

    # ---- Bulk API 2.0
    def bulk_create(self, soql: str, *, query_all: bool = True) -> str:
        if self.refuse_bulk:
            self.api_calls += 1
            raise SalesforceError(400, self.refuse_bulk, "Bulk API refused")
        fields, rows = self._select(soql, query_all)
        job_id = f"750{next(self._ids):015d}"
        self._jobs[job_id] = [{"_fields": fields}, *rows]
        return job_id

    def bulk_wait(self, job_id: str, *, max_wait_s: float = 0.0, should_stop: Any = None) -> BulkJob:
        self.api_calls += 1
        if job_id not in self._jobs:
            raise BulkJobGone(404, "NOT_FOUND", job_id)
        return BulkJob(job_id, "JobComplete", len(self._jobs[job_id]) - 1)

    def bulk_page(self, job_id: str, locator: str, max_records: int) -> tuple[int, str, Iterator[list[str]]]:
        self.api_calls += 1
        if job_id not in self._jobs:
            raise BulkJobGone(404, "NOT_FOUND", job_id)
        head, *rows = self._jobs[job_id]
        start = int(locator or 0)
        page = rows[start : start + max_records]
        nxt = str(start + max_records) if start + max_records < len(rows) else ""
        fields = head["_fields"]
        lines = [list(fields), *([_cell(r.get(f)) for f in fields] for r in page)]
        return len(page), nxt, iter(lines)

    # ---- blobs
    def blob(self, object_name: str, record_id: str, field_name: str) -> FakeBody:
        self.api_calls += 1
        if (object_name, record_id) not in self.blobs:
            raise SalesforceError(404, "NOT_FOUND", f"{object_name} {record_id}")
        return FakeBody(self.blobs[(object_name, record_id)])


def _cell(value: Any) -> str:
    """A value as Bulk API 2.0 writes it in a CSV cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


# ---------------------------------------------------------------- storage


@dataclass
class _Job:
    seq: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FIELDS, 0))
    results: dict[int, Any] = field(default_factory=dict)  # chunk_seq -> its first result
    contents: dict[int, Any] = field(default_factory=dict)  # chunk_seq -> what it held


@dataclass
class FakeStorage:
    """Storage's write path as the jobrunner sees it: a chunk is stored once per (session, job, chunk_seq) (a
    redelivered one returns its first result, replayed; one with other content is refused); a record seen first
    is a new version, one whose hashed values changed is `changed`, one that became deleted `deleted`, the rest
    `unchanged`; deletes are soft (kept, flagged) or hard (gone from what is held)."""

    formula_changes_counted: bool = False
    records: dict[tuple[str, str], dict[str, CanonicalParts]] = field(default_factory=dict)  # (org, object)
    soft: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    schemas: dict[tuple[str, str], spb.ObjectSchema] = field(default_factory=dict)
    files: dict[tuple[str, str], bytes] = field(default_factory=dict)
    metadata: dict[tuple[str, str, str], spb.MetadataComponent] = field(default_factory=dict)
    jobs: dict[tuple[str, str], _Job] = field(default_factory=dict)
    counted: list[str] = field(default_factory=list)  # the objects count_live was asked about, in order
    fail_chunk: int = 0  # a PutRecords of this chunk_seq raises `failure` once
    failure: Exception | None = None

    def _job(self, session_id: str, job_id: str) -> _Job:
        return self.jobs.setdefault((session_id, job_id), _Job())

    def begin_job(
        self, org_id: str, session_id: str, job_id: str, job_type: int, object_name: str
    ) -> spb.BeginJobResponse:
        job = self._job(session_id, job_id)
        return spb.BeginJobResponse(
            last_chunk_seq=job.seq,
            counts=ev.Counts(**job.counts),
            chunks=len(job.results),
            canonical_rules=CANONICAL_RULES,
            formula_changes_counted=self.formula_changes_counted,
        )

    def put_schema(self, org_id: str, session_id: str, schema: spb.ObjectSchema) -> spb.PutObjectSchemaResponse:
        self.schemas[(org_id, schema.object_name)] = schema
        return spb.PutObjectSchemaResponse()

    def _chunk(self, session_id: str, job_id: str, seq: int, content: Any, store: Any) -> Any:
        job = self._job(session_id, job_id)
        if seq in job.results:
            if job.contents[seq] != content:
                raise StorageConflict(f"chunk {seq} of this job was already stored with other content")
            result = copy.deepcopy(job.results[seq])
            result.replayed = True
            return result
        counts = dict.fromkeys(FIELDS, 0)
        store(counts)
        for name, n in counts.items():
            job.counts[name] += n
        job.seq = max(job.seq, seq)
        job.results[seq] = spb.ChunkResult(counts=ev.Counts(**counts))
        job.contents[seq] = content
        return job.results[seq]

    def put_records(
        self, chunk: Chunk, records: list[CanonicalParts], *, rules: int, formula_changes_counted: bool
    ) -> spb.ChunkResult:
        if chunk.seq == self.fail_chunk and self.failure is not None:
            failure, self.failure = self.failure, None
            raise failure
        held = self.records.setdefault((chunk.org_id, chunk.object_name), {})
        soft = self.soft.setdefault((chunk.org_id, chunk.object_name), set())
        parts = list(records)
        records.clear()  # as the client: the list is emptied once the request holds its records

        def store(counts: dict[str, int]) -> None:
            for p in parts:
                counts["received"] += 1
                old = held.get(p.record_id)
                was_deleted = p.record_id in soft
                if old is None:
                    counts["new_versions"] += 1
                elif bool(p.deleted) and not was_deleted:
                    counts["deleted"] += 1
                elif old.values != p.values or bool(p.deleted) != was_deleted:
                    counts["changed"] += 1
                else:
                    counts["unchanged"] += 1
                held[p.record_id] = p
                if p.deleted:
                    soft.add(p.record_id)
                else:
                    soft.discard(p.record_id)

        return self._chunk(chunk.session_id, chunk.job_id, chunk.seq, parts, store)  # type: ignore[no-any-return]

    def mark_deleted(self, chunk: Chunk, ids: list[str], state: int) -> spb.ChunkResult:
        held = self.records.setdefault((chunk.org_id, chunk.object_name), {})
        soft = self.soft.setdefault((chunk.org_id, chunk.object_name), set())

        def store(counts: dict[str, int]) -> None:
            for rid in ids:
                counts["received"] += 1
                if rid not in held:
                    continue
                if state == spb.DELETED_STATE_HARD:
                    del held[rid]
                    soft.discard(rid)
                    counts["deleted"] += 1
                elif rid not in soft:
                    soft.add(rid)
                    counts["deleted"] += 1

        return self._chunk(chunk.session_id, chunk.job_id, chunk.seq, (list(ids), state), store)  # type: ignore[no-any-return]

    def upload_file(self, header: spb.FileHeader, body: Iterable[bytes]) -> spb.UploadFileResponse:
        data = b"".join(body)
        job = self._job(header.session_id, header.job_id)
        if header.chunk_seq in job.results:  # a committed chunk sent again: answered as stored, replayed
            replay = spb.UploadFileResponse()
            replay.CopyFrom(job.results[header.chunk_seq])
            replay.replayed = True
            return replay
        new = (header.object_name, header.record_id) not in self.files
        self.files[(header.object_name, header.record_id)] = data
        counts = {"received": 1, "files": int(new), "bytes": len(data)}
        for name, n in counts.items():
            job.counts[name] += n
        job.seq = max(job.seq, header.chunk_seq)
        job.results[header.chunk_seq] = spb.UploadFileResponse(size=len(data), counts=ev.Counts(**counts))
        return job.results[header.chunk_seq]  # type: ignore[no-any-return]

    def put_metadata(self, chunk: Chunk, components: list[spb.MetadataComponent]) -> spb.ChunkResult:
        def store(counts: dict[str, int]) -> None:
            for c in components:
                counts["received"] += 1
                counts["metadata_components"] += 1
                self.metadata[(chunk.org_id, c.type, c.full_name)] = c

        content = [c.SerializeToString() for c in components]
        return self._chunk(chunk.session_id, chunk.job_id, chunk.seq, content, store)  # type: ignore[no-any-return]

    def stored_ids(self, org_id: str, object_name: str) -> Iterator[tuple[str, bool]]:
        soft = self.soft.get((org_id, object_name), set())
        for rid in list(self.records.get((org_id, object_name), {})):
            yield rid, rid in soft

    def count_live(self, org_id: str, object_name: str) -> int:
        """As CountLive: the records held neither soft- nor hard-deleted (an object never stored: 0)."""
        self.counted.append(object_name)
        soft = self.soft.get((org_id, object_name), set())
        return sum(1 for rid in self.records.get((org_id, object_name), {}) if rid not in soft)


# ---------------------------------------------------------------- the jobrunner's tables


@dataclass
class FakeTables:
    """Marks, checkpoints, stored files and metadata as JobStore keeps them (a checkpoint is a copy: what a
    job changes after saving it is not saved)."""

    _marks: dict[tuple[str, str, str, str], ObjectMarks] = field(default_factory=dict)
    _checkpoints: dict[tuple[str, str], str] = field(default_factory=dict)  # JSON, as jsonb holds it
    _files: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    _metadata: dict[str, dict[tuple[str, str], tuple[str, bool]]] = field(default_factory=dict)

    def marks(self, policy_id: str, object_name: str, id_from: str = "", id_to: str = "") -> ObjectMarks:
        return self._marks.get((policy_id, object_name, id_from, id_to), ObjectMarks())

    def save_marks(self, policy_id: str, object_name: str, id_from: str, id_to: str, marks: ObjectMarks) -> None:
        self._marks[(policy_id, object_name, id_from, id_to)] = marks

    def checkpoint(self, session_id: str, job_id: str) -> dict[str, Any] | None:
        saved = self._checkpoints.get((session_id, job_id))
        return dict(json.loads(saved)) if saved is not None else None

    def save_checkpoint(self, session_id: str, job_id: str, state: dict[str, Any]) -> None:
        self._checkpoints[(session_id, job_id)] = json.dumps(state)

    def stored_files(self, org_id: str, object_name: str) -> dict[str, str]:
        return dict(self._files.get((org_id, object_name), {}))

    def file_stored(self, org_id: str, object_name: str, record_id: str, modstamp: str, sha256: str, size: int) -> None:
        self._files.setdefault((org_id, object_name), {})[record_id] = modstamp

    def files_stored(self, org_id: str, files: Sequence[tuple[str, str, str, str, int]]) -> None:
        for f in files:  # one by one, as JobStore does in its transaction (a test may stand in for file_stored)
            self.file_stored(org_id, *f)

    def stored_metadata(self, org_id: str) -> dict[tuple[str, str], tuple[str, bool]]:
        return dict(self._metadata.get(org_id, {}))

    def metadata_stored(self, org_id: str, items: list[tuple[str, str, str, bool]]) -> None:
        held = self._metadata.setdefault(org_id, {})
        for mtype, full_name, modified, deleted in items:
            held[(mtype, full_name)] = (modified, deleted)


# ---------------------------------------------------------------- restore: the backup as storage reads it back


@dataclass
class BackupRecord:
    values: dict[str, Any]
    changed_at: dt.datetime | None = None  # a version (changed or deleted) captured then
    deleted_at: dt.datetime | None = None  # a deleted version captured then


@dataclass
class FakeRestoreStorage(FakeStorage):
    """FakeStorage plus storage's restore side: the backup's records as of the point (the latest version here),
    intents, per-record outcomes committed once per (session, job, chunk_seq) with the Id map of their Created
    records, and the outcomes listed back. `fail_outcomes`: that many PutRestoreOutcomes calls fail (unavailable)
    before doing anything."""

    backup: dict[tuple[str, str], dict[str, BackupRecord]] = field(default_factory=dict)  # (00D, object)
    intents: dict[tuple[str, str], dict[str, spb.RestoreIntent]] = field(default_factory=dict)
    resolved: set[tuple[str, str, str]] = field(default_factory=set)
    outcomes: dict[str, dict[str, Any]] = field(default_factory=dict)  # session -> source Id -> RecordOutcome
    id_maps: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    restore_chunks: dict[tuple[str, str], dict[int, bytes]] = field(default_factory=dict)
    fail_outcomes: int = 0

    def back_up(self, org_id: str, object_name: str, *records: dict[str, Any], **when: dt.datetime) -> None:
        held = self.backup.setdefault((org_id, object_name), {})
        for r in records:
            held[str(r["Id"])] = BackupRecord(dict(r), when.get("changed_at"), when.get("deleted_at"))

    @staticmethod
    def _bounded(**repeated: Any) -> None:
        """Storage's validation: at most 1,000 items of a repeated field per call (INVALID_ARGUMENT)."""
        from services.jobrunner.storage_client import StorageError

        for name, values in repeated.items():
            if len(values) > 1000:
                raise StorageError(f"storage refused the call (INVALID_ARGUMENT): {name} has more than 1000 items")

    def read_records_as_of(self, request: spb.ReadRecordsAsOfRequest) -> Iterator[spb.RecordBatch]:
        self._bounded(ids=request.ids, where_in=request.where_in)
        held = self.backup.get((request.org_id, request.object_name))
        if held is None:
            return
        ids = {i for i in request.ids}
        chosen: list[tuple[str, BackupRecord]] = []
        for rid, rec in held.items():
            if request.ids and rid not in ids:
                continue
            if request.HasField("deleted_since"):
                since = request.deleted_since.ToDatetime(dt.UTC)
                if rec.deleted_at is None or rec.deleted_at < since:
                    continue
            if request.HasField("changed_since"):
                since = request.changed_since.ToDatetime(dt.UTC)
                stamps = [t for t in (rec.changed_at, rec.deleted_at) if t is not None]
                if not stamps or max(stamps) < since:
                    continue
            if request.where_field and rec.values.get(request.where_field) not in set(request.where_in):
                continue
            chosen.append((rid, rec))
        size = request.batch_size or 2000
        for i in range(0, max(len(chosen), 1), size):
            part = chosen[i : i + size]
            yield spb.RecordBatch(
                records=[
                    spb.RecordVersion(
                        org_id=request.org_id,
                        object_name=request.object_name,
                        record_id=rid,
                        values_json=json.dumps(rec.values).encode(),
                    )
                    for rid, rec in part
                ]
            )

    def record_restore_intent(self, request: spb.RecordRestoreIntentRequest) -> bool:
        self._bounded(source_ids=request.source_ids)
        held = self.intents.setdefault((request.session_id, request.job_id), {})
        if request.batch_key in held:
            return True
        held[request.batch_key] = spb.RestoreIntent(
            batch_key=request.batch_key,
            object_name=request.object_name,
            source_ids=request.source_ids,
            sent_at=request.sent_at,
        )
        return False

    def list_restore_intents(self, session_id: str, job_id: str) -> list[spb.RestoreIntent]:
        held = self.intents.get((session_id, job_id), {})
        return [i for key, i in held.items() if (session_id, job_id, key) not in self.resolved]

    def put_restore_outcomes(self, request: spb.PutRestoreOutcomesRequest) -> spb.ChunkResult:
        self._bounded(outcomes=request.outcomes)
        if self.fail_outcomes:
            self.fail_outcomes -= 1
            from services.jobrunner.storage_client import StorageUnavailable

            raise StorageUnavailable("storage unavailable: the fake says so")
        job = self._job(request.session_id, request.job_id)
        chunks = self.restore_chunks.setdefault((request.session_id, request.job_id), {})
        content = request.SerializeToString()
        if request.chunk_seq in chunks:
            if chunks[request.chunk_seq] != content:
                raise StorageConflict(f"chunk {request.chunk_seq} was already stored with other content")
            result = copy.deepcopy(job.results[request.chunk_seq])
            result.replayed = True
            return result  # type: ignore[no-any-return]
        chunks[request.chunk_seq] = content
        held = self.outcomes.setdefault(request.session_id, {})
        id_map = self.id_maps.setdefault((request.source_org_id[:15], request.target_org_id[:15]), {})
        per_object: dict[str, Any] = {}
        names = {1: "skipped", 2: "updated", 3: "undeleted", 4: "created", 5: "failed"}
        for o in request.outcomes:
            held[o.source_id] = o
            counts = per_object.setdefault(o.object_name, {"object_name": o.object_name})
            counts[names[o.state]] = counts.get(names[o.state], 0) + 1
            if o.state == 4 and o.target_id and not request.dry_run:
                id_map[o.source_id] = o.target_id
        for key in request.resolved_intents:
            self.resolved.add((request.session_id, request.job_id, key))
        job.seq = max(job.seq, request.chunk_seq)
        job.counts["received"] += len(request.outcomes)
        from sfvault.restore.v1 import restore_pb2 as rpb

        result = spb.ChunkResult(
            counts=ev.Counts(received=len(request.outcomes)),
            restore=[rpb.ObjectRestoreCounts(**c) for c in per_object.values()],
        )
        job.results[request.chunk_seq] = result
        return result

    def get_id_map(self, source_org_id: str, target_org_id: str, source_ids: list[str]) -> dict[str, str]:
        held = self.id_maps.get((source_org_id[:15], target_org_id[:15]), {})
        if not source_ids:
            return dict(held)
        return {i: held[i] for i in source_ids if i in held}

    def list_restore_records(self, session_id: str, state: int = 0, object_name: str = "") -> Iterator[Any]:
        for o in list(self.outcomes.get(session_id, {}).values()):
            if (not state or o.state == state) and (not object_name or o.object_name == object_name):
                yield o


# ---------------------------------------------------------------- restore: a target org that writes


def describe_field(name: str, sf_type: str = "string", **kw: Any) -> dict[str, Any]:
    system = name in ("Id", "IsDeleted", "CreatedDate", "CreatedById", "SystemModstamp", "LastModifiedDate")
    return {
        "name": name,
        "type": sf_type,
        "label": name,
        "createable": kw.get("createable", not system),
        "updateable": kw.get("updateable", not system),
        "nillable": kw.get("nillable", True),
        "calculated": kw.get("calculated", False),
        "referenceTo": kw.get("reference_to", []),
        "relationshipName": kw.get("relationship_name"),
        "externalId": kw.get("external_id", False),
        "unique": False,
        "defaultedOnCreate": kw.get("defaulted", False),
        "cascadeDelete": kw.get("cascade", False),
        "autoNumber": False,
    }


def _system_fields() -> list[dict[str, Any]]:
    return [
        describe_field("Id", "id", nillable=False),
        describe_field("IsDeleted", "boolean", nillable=False),
        describe_field("CreatedDate", "datetime", nillable=False),
        describe_field("CreatedById", "reference", nillable=False, reference_to=["User"]),
        describe_field("SystemModstamp", "datetime", nillable=False),
    ]


def account_contact_describes() -> dict[str, dict[str, Any]]:
    """Account (Name required, a self-lookup, an owner, an external Id) and Contact (LastName required, its Account
    cascade-deleted with it): the shapes the restore's rules care about."""
    return {
        "Account": {
            "name": "Account",
            "keyPrefix": "001",
            "createable": True,
            "queryable": True,
            "fields": [
                *_system_fields(),
                describe_field("Name", nillable=False),
                describe_field("Phone", "phone"),
                describe_field("AnnualRevenue", "currency"),
                describe_field("Ext__c", external_id=True),
                describe_field("ParentId", "reference", reference_to=["Account"], relationship_name="Parent"),
                describe_field("OwnerId", "reference", nillable=False, defaulted=True, reference_to=["User"]),
            ],
            "childRelationships": [{"childSObject": "Contact", "field": "AccountId", "cascadeDelete": True}],
        },
        "Contact": {
            "name": "Contact",
            "keyPrefix": "003",
            "createable": True,
            "queryable": True,
            "fields": [
                *_system_fields(),
                describe_field("LastName", nillable=False),
                describe_field("Email", "email"),
                describe_field("AccountId", "reference", reference_to=["Account"], relationship_name="Account"),
            ],
            "childRelationships": [],
        },
    }


@dataclass
class FakeWriteOrg:
    """A target org as a restore job sees it (ports.SalesforceWrites, and Org for the executor): records with a
    recycle bin and cascade undelete, required fields, inactive owners refused (INACTIVE_OWNER_OR_USER), every call
    counted (api_calls, write_calls). `lose_create_answer`: the n-th create call (1-based) creates its records,
    then its answer is lost (WriteAnswerLost); `lose_ingest_results`: the Bulk jobs started (`bulk_start`) of these
    numbers are done, then their results are lost when they are taken."""

    describes: dict[str, dict[str, Any]] = field(default_factory=account_contact_describes)
    records: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    user: str = "005000000000001AAA"
    inactive_users: set[str] = field(default_factory=set)
    now: dt.datetime = field(default_factory=lambda: dt.datetime(2026, 3, 1, tzinfo=dt.UTC))
    api_calls: int = 0
    write_calls: int = 0
    creates: int = 0
    lose_create_answer: int = 0
    lose_ingest_results: frozenset[int] = frozenset()
    ingests: int = 0
    triggers: dict[str, dict[str, Any]] = field(default_factory=dict)  # object -> values a trigger sets on create
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(900))

    # ---- Org
    def org_now(self) -> dt.datetime:
        return self.now

    def writes(self, reserve_percent: int) -> FakeWriteOrg:
        return self

    def reads(self, reserve_percent: int) -> Any:
        raise NotImplementedError("a restore's target org is read through its writer")

    def metadata(self, reserve_percent: int) -> Any:
        raise NotImplementedError

    # ---- content
    def put(self, object_name: str, *records: dict[str, Any]) -> None:
        table = self.records.setdefault(object_name, {})
        for r in records:
            table[str(r["Id"])] = {"IsDeleted": False, "CreatedById": "005000000000009AAA", **r}

    def delete(self, object_name: str, record_id: str, *, purge: bool = False) -> None:
        """Into the recycle bin with its cascade children (or gone for good with `purge`)."""
        for rel in self.describes[object_name].get("childRelationships", []):
            if rel.get("cascadeDelete"):
                for child in list(self.records.get(rel["childSObject"], {}).values()):
                    if child.get(rel["field"]) == record_id:
                        self.delete(rel["childSObject"], str(child["Id"]), purge=purge)
        if purge:
            del self.records[object_name][record_id]
        else:
            self.records[object_name][record_id]["IsDeleted"] = True

    def live(self, object_name: str) -> list[dict[str, Any]]:
        return [r for r in self.records.get(object_name, {}).values() if not r.get("IsDeleted")]

    def _fields(self, object_name: str) -> dict[str, dict[str, Any]]:
        return {f["name"]: f for f in self.describes[object_name]["fields"]}

    # ---- SalesforceWrites: reads
    def user_id(self) -> str:
        return self.user

    def describe(self, object_name: str) -> dict[str, Any]:
        self.api_calls += 1
        if object_name not in self.describes:
            raise SalesforceError(404, "NOT_FOUND", f"{object_name} is not in this org")
        return copy.deepcopy(self.describes[object_name])

    def object_names(self) -> list[str]:
        self.api_calls += 1
        return list(self.describes)

    def _rows(self, object_name: str, fields: list[str], keep: Any) -> list[dict[str, Any]]:
        names = list(dict.fromkeys(["Id", *fields]))
        return [
            {f: copy.deepcopy(r.get(f)) for f in names} for r in self.records.get(object_name, {}).values() if keep(r)
        ]

    def query_ids(self, object_name: str, fields: list[str], ids: list[str]) -> list[dict[str, Any]]:
        return self.query_in(object_name, fields, "Id", ids)

    def query_in(self, object_name: str, fields: list[str], field_name: str, values: list[str]) -> list[dict[str, Any]]:
        self.api_calls += max(1, -(-len(values) // 200))
        wanted = set(values)
        return self._rows(object_name, fields, lambda r: r.get(field_name) in wanted)

    def query_object(
        self, object_name: str, fields: list[str], types: dict[str, str], *, few_first: bool = False
    ) -> Iterator[dict[str, Any]]:
        rows = self._rows(object_name, fields, lambda r: True)
        self.api_calls += (1 if len(rows) <= FEW_FIRST_PAGE else 4) if few_first else 3  # a REST page, then Bulk
        yield from rows

    def created_since(
        self, object_name: str, user_id: str, since: dt.datetime, fields: list[str]
    ) -> list[dict[str, Any]]:
        self.api_calls += 1
        return self._rows(
            object_name,
            fields,
            lambda r: r.get("CreatedById") == user_id and r.get("CreatedDate") >= since and not r.get("IsDeleted"),
        )

    # ---- SalesforceWrites: writes
    def _refuse(self, object_name: str, values: dict[str, Any], *, create: bool) -> Any:
        fields = self._fields(object_name)
        for name in values:
            f = fields.get(name)
            if f is None or not (f["createable"] if create else f["updateable"]):
                return WriteResult(
                    None, False, "INVALID_FIELD_FOR_INSERT_UPDATE", f"Unable to create/update fields: {name}"
                )
        if create:
            for f in fields.values():
                required = not f["nillable"] and f["createable"] and not f["defaultedOnCreate"]
                if required and values.get(f["name"]) in (None, ""):
                    return WriteResult(
                        None, False, "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{f['name']}]"
                    )
        if values.get("OwnerId") in self.inactive_users:
            return WriteResult(None, False, "INACTIVE_OWNER_OR_USER", "operation performed with inactive user as owner")
        return None

    def _create_one(self, object_name: str, values: dict[str, Any]) -> Any:
        refused = self._refuse(object_name, values, create=True)
        if refused is not None:
            return refused
        prefix = self.describes[object_name]["keyPrefix"]
        rid = f"{prefix}{next(self._ids):012d}AAA"
        self.records.setdefault(object_name, {})[rid] = {
            "OwnerId": self.user,
            **values,
            "Id": rid,
            "IsDeleted": False,
            "CreatedById": self.user,
            "CreatedDate": self.now,
            **self.triggers.get(object_name, {}),
        }
        return WriteResult(rid, True, created=True)

    def create(self, object_name: str, records: list[dict[str, Any]]) -> list[Any]:
        out = []
        for i in range(0, len(records), 200):
            self.api_calls += 1
            self.write_calls += 1
            self.creates += 1
            out.extend(self._create_one(object_name, dict(r)) for r in records[i : i + 200])
            if self.creates == self.lose_create_answer:
                raise WriteAnswerLost("POST: the answer was lost (the fake says so)")
        return out

    def _update_one(self, object_name: str, values: dict[str, Any]) -> Any:
        rid = str(values.pop("Id"))
        row = self.records.get(object_name, {}).get(rid)
        if row is None:
            return WriteResult(None, False, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
        if row.get("IsDeleted"):
            return WriteResult(None, False, "ENTITY_IS_DELETED", "entity is deleted")
        refused = self._refuse(object_name, values, create=False)
        if refused is not None:
            return refused
        row.update(values)
        return WriteResult(rid, True)

    def update(self, object_name: str, records: list[dict[str, Any]]) -> list[Any]:
        out = []
        for i in range(0, len(records), 200):
            self.api_calls += 1
            self.write_calls += 1
            out.extend(self._update_one(object_name, dict(r)) for r in records[i : i + 200])
        return out

    def upsert(self, object_name: str, field_name: str, records: list[dict[str, Any]]) -> list[Any]:
        out = []
        for i in range(0, len(records), 200):
            self.api_calls += 1
            self.write_calls += 1
            for r in records[i : i + 200]:
                key = r.get(field_name)
                match = [x for x in self.live(object_name) if key is not None and x.get(field_name) == key]
                if match:
                    res = self._update_one(object_name, {**r, "Id": match[0]["Id"]})
                    out.append(WriteResult(res.id, res.success, res.code, res.message, created=False))
                else:
                    out.append(self._create_one(object_name, dict(r)))
        return out

    def undelete(self, ids: list[str]) -> list[Any]:
        out = []
        for i in range(0, len(ids), 200):
            self.api_calls += 1
            self.write_calls += 1
            for rid in ids[i : i + 200]:
                found = [(o, t[rid]) for o, t in self.records.items() if rid in t]
                if not found or not found[0][1].get("IsDeleted"):
                    out.append(WriteResult(rid, False, "UNDELETE_FAILED", "Entity is not in the recycle bin"))
                    continue
                object_name, row = found[0]
                row["IsDeleted"] = False
                for rel in self.describes[object_name].get("childRelationships", []):
                    if rel.get("cascadeDelete"):
                        for child in self.records.get(rel["childSObject"], {}).values():
                            if child.get(rel["field"]) == rid:
                                child["IsDeleted"] = False
                out.append(WriteResult(rid, True))
        return out

    def bulk_start(
        self, object_name: str, operation: str, records: list[dict[str, Any]], *, external_id: str = ""
    ) -> Callable[[], list[Any]]:
        """The job done at once (through bulk_ingest, which a test may replace), its results given later."""
        results = self.bulk_ingest(object_name, operation, records, external_id=external_id)
        self.ingests += 1
        if self.ingests in self.lose_ingest_results:

            def lost() -> list[Any]:
                raise WriteAnswerLost("the Bulk job's results were lost (the fake says so)")

            return lost
        return lambda: results

    def bulk_ingest(
        self, object_name: str, operation: str, records: list[dict[str, Any]], *, external_id: str = ""
    ) -> list[Any]:
        self.api_calls += 6  # create, upload, close, poll, successful and failed results
        self.write_calls += 3
        if operation == "insert":
            self.creates += 1
            out = [self._create_one(object_name, dict(r)) for r in records]
            if self.creates == self.lose_create_answer:
                raise WriteAnswerLost("the Bulk job's answer was lost (the fake says so)")
            return out
        if operation == "update":
            return [self._update_one(object_name, dict(r)) for r in records]
        raise NotImplementedError(operation)
