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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sfvault.events.v1 import events_pb2 as ev
from sfvault.storage.v1 import storage_pb2 as spb

from services.canonical import CANONICAL_RULES, CanonicalParts
from services.jobrunner.domain import ObjectMarks, parse_sf_datetime
from services.jobrunner.salesforce import BulkJob, BulkJobGone, LocatorExpired, RestPage
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
    if name == "SystemModstamp" and value is not None:
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
    refuse_bulk: str = ""  # an error code: every Bulk job is refused with it
    expire_locators: bool = False  # every query_more finds its locator expired
    refuse_query: str = ""  # an error code: every REST query fails with it (as after OrgClient's retries)
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
        _fields, rows = self._select(soql, query_all)
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
        self,
        org_id: str,
        session_id: str,
        job_id: str,
        seq: int,
        object_name: str,
        records: list[CanonicalParts],
        *,
        rules: int,
        formula_changes_counted: bool,
    ) -> spb.ChunkResult:
        if seq == self.fail_chunk and self.failure is not None:
            failure, self.failure = self.failure, None
            raise failure
        held = self.records.setdefault((org_id, object_name), {})
        soft = self.soft.setdefault((org_id, object_name), set())
        chunk = list(records)
        records.clear()  # as the client: the list is emptied once the request holds its records

        def store(counts: dict[str, int]) -> None:
            for p in chunk:
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

        return self._chunk(session_id, job_id, seq, chunk, store)  # type: ignore[no-any-return]

    def mark_deleted(
        self, org_id: str, session_id: str, job_id: str, seq: int, object_name: str, ids: list[str], state: int
    ) -> spb.ChunkResult:
        held = self.records.setdefault((org_id, object_name), {})
        soft = self.soft.setdefault((org_id, object_name), set())

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

        return self._chunk(session_id, job_id, seq, (list(ids), state), store)  # type: ignore[no-any-return]

    def upload_file(self, header: spb.FileHeader, body: Iterable[bytes]) -> spb.UploadFileResponse:
        data = b"".join(body)
        job = self._job(header.session_id, header.job_id)
        if header.chunk_seq in job.results:
            return job.results[header.chunk_seq]  # type: ignore[no-any-return]
        new = (header.object_name, header.record_id) not in self.files
        self.files[(header.object_name, header.record_id)] = data
        counts = {"received": 1, "files": int(new), "bytes": len(data)}
        for name, n in counts.items():
            job.counts[name] += n
        job.seq = max(job.seq, header.chunk_seq)
        job.results[header.chunk_seq] = spb.UploadFileResponse(size=len(data), counts=ev.Counts(**counts))
        return job.results[header.chunk_seq]  # type: ignore[no-any-return]

    def put_metadata(
        self, org_id: str, session_id: str, job_id: str, seq: int, components: list[spb.MetadataComponent]
    ) -> spb.ChunkResult:
        def store(counts: dict[str, int]) -> None:
            for c in components:
                counts["received"] += 1
                counts["metadata_components"] += 1
                self.metadata[(org_id, c.type, c.full_name)] = c

        content = [c.SerializeToString() for c in components]
        return self._chunk(session_id, job_id, seq, content, store)  # type: ignore[no-any-return]

    def stored_ids(self, org_id: str, object_name: str) -> Iterator[tuple[str, bool]]:
        soft = self.soft.get((org_id, object_name), set())
        for rid in list(self.records.get((org_id, object_name), {})):
            yield rid, rid in soft


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

    def stored_metadata(self, org_id: str) -> dict[tuple[str, str], tuple[str, bool]]:
        return dict(self._metadata.get(org_id, {}))

    def metadata_stored(self, org_id: str, items: list[tuple[str, str, str, bool]]) -> None:
        held = self._metadata.setdefault(org_id, {})
        for mtype, full_name, modified, deleted in items:
            held[(mtype, full_name)] = (modified, deleted)
