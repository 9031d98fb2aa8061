"""File restore: a backed-up body comes back as a new version of its document when the document is still in
the target, as a new document published to the restored parent (Id-mapped) and linked to the other restored
records the backup's links name when it is gone, an Attachment re-created under its restored parent; equal
bodies are Skipped; a dry run writes nothing; a create whose answer was lost is found, not made twice. On
in-memory fakes (milliseconds); the body uploads themselves (JSON and streamed multipart) against sforg."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sfvault.events.v1 import events_pb2 as ev
from sfvault.jobs.v1 import jobs_pb2
from sfvault.restore.v1 import restore_pb2 as rpb
from sfvault.storage.v1 import storage_pb2 as spb

from services.jobrunner import restore_files as rf
from services.jobrunner.job_run import JobControl, JobRun, Tuning
from services.jobrunner.restore_files import BlobWriter, Body, multipart, restore_files, spool
from services.jobrunner.salesforce_write import WriteResult
from services.sfclient import SalesforceError
from tests.jobrunner.fakes import FakeStorage, FakeTables

SRC = "00Dxx0000001"
AT = Timestamp(seconds=1_790_000_000)
ACC_OLD, ACC_NEW, ACC2 = "001000000000001AAA", "001000000000009AAA", "001000000000002AAA"
USER = "005000000000001AAA"


@dataclass
class Result:
    id: str | None
    success: bool
    code: str = ""
    message: str = ""


@dataclass
class FakeTargetOrg:
    """The target's files: versions by document, attachments, links; every write logged."""

    versions: dict[str, dict[str, Any]] = field(default_factory=dict)  # 068 -> {ContentDocumentId, body, ...}
    attachments: dict[str, dict[str, Any]] = field(default_factory=dict)
    links: list[dict[str, Any]] = field(default_factory=list)
    records: set[str] = field(default_factory=set)  # Ids of records that exist (link targets)
    writes: list[str] = field(default_factory=list)
    refuse_first_publish: bool = False
    binned: set[str] = field(default_factory=set)  # documents in the recycle bin
    undeletable: bool = True
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(100))

    def new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self.ids):012d}AAA"

    def query_in(self, object_name: str, fields: list[str], field_name: str, values: list[str]) -> list[dict[str, Any]]:
        if object_name == "ContentDocument":
            docs = {v["ContentDocumentId"] for v in self.versions.values()}
            return [{"Id": d, "IsDeleted": d in self.binned} for d in values if d in docs]
        if object_name == "ContentVersion":
            return [
                {"Id": vid, **{k: v for k, v in row.items() if k != "body"}, "ContentSize": len(row["body"])}
                for vid, row in self.versions.items()
                if str(row.get(field_name) if field_name != "Id" else vid) in values
            ]
        if object_name == "ContentDocumentLink":
            return [dict(lnk) for lnk in self.links if lnk["ContentDocumentId"] in values]
        if object_name == "Attachment":
            return [
                {
                    "Id": aid,
                    "ParentId": a["ParentId"],
                    "Name": a["Name"],
                    "BodyLength": len(a["body"]),
                    "IsDeleted": aid in self.binned,
                }
                for aid, a in self.attachments.items()
                if aid in values
            ]
        raise AssertionError(object_name)

    def create(self, object_name: str, records: list[dict[str, Any]]) -> list[Result]:
        assert object_name == "ContentDocumentLink"
        self.writes.append("links")
        out = []
        for r in records:
            if r["LinkedEntityId"] not in self.records:
                out.append(Result(None, False, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id"))
                continue
            self.links.append(r)
            out.append(Result(self.new_id("06A"), True))
        return out

    def user_id(self) -> str:
        return USER

    def undelete(self, ids: list[str]) -> list[Result]:
        self.writes.append("undelete")
        out = []
        for i in ids:
            if self.undeletable and i in self.binned:
                self.binned.discard(i)
                out.append(Result(i, True))
            else:
                out.append(Result(i, False, "UNDELETE_FAILED", "Entity is not in the recycle bin"))
        return out

    def created_since(self, object_name: str, user_id: str, since: Any, fields: list[str]) -> list[dict[str, Any]]:
        rows = self.versions if object_name == "ContentVersion" else self.attachments
        return [{"Id": i, **{k: r.get(k) for k in fields}} for i, r in rows.items() if r.get("mine")]

    def create_with_body(self, object_name: str, values: dict[str, Any], body: Body) -> WriteResult:
        self.writes.append(f"create {object_name}")
        data = body.read_all()
        if object_name == "ContentVersion":
            if "FirstPublishLocationId" in values and self.refuse_first_publish:
                return WriteResult(None, False, "INVALID_FIELD", "No such column 'FirstPublishLocationId'")
            doc = values.get("ContentDocumentId") or self.new_id("069")
            for v in self.versions.values():
                if v["ContentDocumentId"] == doc:
                    v["IsLatest"] = False
            vid = self.new_id("068")
            self.versions[vid] = {**values, "ContentDocumentId": doc, "body": data, "IsLatest": True, "mine": True}
            if values.get("FirstPublishLocationId"):
                self.links.append({"ContentDocumentId": doc, "LinkedEntityId": values["FirstPublishLocationId"]})
            return WriteResult(vid, True)
        if values["ParentId"] not in self.records:
            return WriteResult(None, False, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
        aid = self.new_id("00P")
        self.attachments[aid] = {**values, "body": data, "mine": True}
        return WriteResult(aid, True)

    def update_body(self, object_name: str, record_id: str, body: Body) -> WriteResult:
        self.writes.append(f"update {object_name}")
        self.attachments[record_id]["body"] = body.read_all()
        return WriteResult(None, True)

    def body_sha256(self, object_name: str, record_id: str, field_name: str) -> str:
        if record_id in self.binned:  # as Salesforce: a body in the recycle bin cannot be read
            raise SalesforceError(404, "ENTITY_IS_DELETED", "entity is deleted")
        row = self.versions.get(record_id) or self.attachments[record_id]
        return hashlib.sha256(row["body"]).hexdigest()


@dataclass
class FakeBackup:
    """The backup's records (canonical values) and bodies, by object and Id."""

    records: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    bodies: dict[tuple[str, str], bytes] = field(default_factory=dict)
    id_map: dict[str, str] = field(default_factory=dict)
    intents: set[str] = field(default_factory=set)

    def add(self, obj: str, rid: str, body: bytes | None = None, **values: Any) -> None:
        self.records.setdefault(obj, {})[rid] = values
        if body is not None:
            self.bodies[(obj, rid)] = body

    def read_records_as_of(self, req: spb.ReadRecordsAsOfRequest) -> Iterator[spb.RecordBatch]:
        assert req.org_id == SRC and req.as_of == AT
        rows = self.records.get(req.object_name, {})
        if req.ids:
            chosen = [(i, rows[i]) for i in req.ids if i in rows]
        else:
            chosen = [(i, r) for i, r in rows.items() if r.get(req.where_field) in req.where_in]
        yield spb.RecordBatch(
            records=[spb.RecordVersion(record_id=i, values_json=json.dumps(r).encode()) for i, r in chosen]
        )

    def get_id_map(self, source: str, target: str, ids: list[str]) -> dict[str, str]:
        return {i: self.id_map[i] for i in ids if i in self.id_map}

    def get_file(self, org_id: str, object_name: str, record_id: str, as_of: Timestamp | None) -> Any:
        assert as_of == AT
        data = self.bodies.get((object_name, record_id))
        if data is None:
            return None
        return [
            spb.GetFileResponse(file=spb.FileVersion(record_id=record_id, size=len(data), file_name="f.bin")),
            spb.GetFileResponse(data=data[: len(data) // 2]),
            spb.GetFileResponse(data=data[len(data) // 2 :]),
        ]

    def record_restore_intent(self, req: spb.RecordRestoreIntentRequest) -> bool:
        again = req.batch_key in self.intents
        self.intents.add(req.batch_key)
        return again


def _run(target: str = "", source: str = SRC, as_of: Timestamp | None = AT) -> JobRun:
    spec = jobs_pb2.JobSpec(
        session_id="r1",
        job_id="files",
        type=ev.JOB_TYPE_RESTORE,
        salesforce_org_id=source,
        restore=jobs_pb2.RestoreJob(spec=rpb.RestoreSpec(as_of=as_of), target_salesforce_org_id=target),
    )

    class Clock:
        api_calls = 0

        def org_now(self) -> Any:
            import datetime as dt

            return dt.datetime(2026, 12, 7, tzinfo=dt.UTC)

    return JobRun(spec, FakeStorage(), FakeTables(), JobControl(), Tuning(), Clock())


def _scene() -> tuple[FakeTargetOrg, FakeBackup]:
    """Two files backed up: a document still in the org (its latest version changed since), and one whose
    document is gone (linked to an Account that was re-created with a new Id, another Account and a user)."""
    org, backup = FakeTargetOrg(), FakeBackup()
    backup.add("ContentVersion", "068A", b"kept document, old body", ContentDocumentId="069A", Title="Kept")
    backup.add(
        "ContentVersion",
        "068B",
        b"gone document body" * 100,
        ContentDocumentId="069B",
        Title="Gone",
        PathOnClient="gone.pdf",
    )
    for n, target in enumerate((ACC_OLD, ACC2, USER)):
        backup.add("ContentDocumentLink", f"06A{n}", ContentDocumentId="069B", LinkedEntityId=target, ShareType="I")
    org.versions["068A"] = {"ContentDocumentId": "069A", "Title": "Kept", "body": b"old", "IsLatest": False}
    org.versions["068Z"] = {"ContentDocumentId": "069A", "Title": "Kept", "body": b"changed since", "IsLatest": True}
    org.records |= {ACC_NEW, ACC2, USER}
    return org, backup


ITEMS = [
    ("Account", ACC_OLD, ACC_NEW, rpb.RECORD_STATE_CREATED),  # re-created: its files follow its new Id
    ("ContentVersion", "068A", "", rpb.RECORD_STATE_UPDATED),
    ("ContentVersion", "068B", "", rpb.RECORD_STATE_CREATED),
]


def _states(result: rf.FileRestoreResult) -> dict[str, int]:
    return {o.source_id: o.state for o in result.outcomes}


def test_a_new_version_of_a_kept_document_and_a_new_linked_document_for_a_gone_one() -> None:
    org, backup = _scene()
    result = restore_files(_run(), org, backup, ITEMS, dry_run=False)

    assert _states(result) == {"068A": rpb.RECORD_STATE_UPDATED, "068B": rpb.RECORD_STATE_CREATED}
    kept = [v for v in org.versions.values() if v["ContentDocumentId"] == "069A" and v["IsLatest"]]
    assert [v["body"] for v in kept] == [b"kept document, old body"]
    new = next(v for v in org.versions.values() if v.get("Title") == "Gone")
    assert new["body"] == b"gone document body" * 100 and new["PathOnClient"] == "gone.pdf"
    assert new["FirstPublishLocationId"] == ACC_NEW  # the restored parent, Id-mapped
    linked = {
        (lnk["LinkedEntityId"], lnk.get("ShareType"))
        for lnk in org.links
        if lnk["ContentDocumentId"] == new["ContentDocumentId"]
    }
    assert linked == {(ACC_NEW, None), (ACC2, "I")}  # the user's link is not a record's
    by = {o.source_id: o for o in result.outcomes}
    assert by["068B"].target_id in org.versions and by["068A"].target_id in org.versions
    assert (result.files, result.links) == (2, 1)
    assert result.bytes == len(b"kept document, old body") + len(b"gone document body" * 100)
    assert result.resolved_intents == ["file:ContentVersion:068A", "file:ContentVersion:068B"]
    counts = {c.object_name: (c.created, c.updated, c.files) for c in result.counts()}
    assert counts == {"ContentVersion": (1, 1, 2)}
    assert not result.warnings

    # again, a later session: the kept document's latest version is the backed-up body, and the gone one's new
    # document is found through the Id map the first restore persisted (version -> new version): all Skipped
    backup.id_map = {o.source_id: o.target_id for o in result.outcomes}
    org.writes.clear()
    again = restore_files(_run(), org, backup, ITEMS, dry_run=False)
    assert _states(again) == {"068A": rpb.RECORD_STATE_SKIPPED, "068B": rpb.RECORD_STATE_SKIPPED}
    assert org.writes == []


def test_a_restored_document_is_mapped_to_a_document_and_found_by_the_next_restore() -> None:
    org, backup = _scene()
    items = [ITEMS[0], ("ContentDocument", "069B", "", 0), ("ContentDocument", "069A", "", 0)]
    result = restore_files(_run(), org, backup, items, dry_run=False)
    assert _states(result) == {"069B": rpb.RECORD_STATE_CREATED, "069A": rpb.RECORD_STATE_UPDATED}
    by = {o.source_id: o.target_id for o in result.outcomes}
    new_doc = next(v["ContentDocumentId"] for v in org.versions.values() if v.get("Title") == "Gone")
    assert by == {"069B": new_doc, "069A": "069A"}  # documents, never the versions written
    backup.id_map = {s: t for s, t in by.items() if s != t}
    org.writes.clear()
    again = restore_files(_run(), org, backup, items, dry_run=False)
    assert _states(again) == {"069B": rpb.RECORD_STATE_SKIPPED, "069A": rpb.RECORD_STATE_SKIPPED}
    assert {o.source_id: o.target_id for o in again.outcomes} == by
    assert org.writes == []


def test_files_an_earlier_attempt_restored_are_not_restored_again() -> None:
    org, backup = _scene()
    done = [ITEMS[0], ("ContentVersion", "068A", "068Q", rpb.RECORD_STATE_UPDATED), ITEMS[2]]
    result = restore_files(_run(), org, backup, done, dry_run=False)
    assert _states(result) == {"068B": rpb.RECORD_STATE_CREATED}
    assert org.writes.count("create ContentVersion") == 1


def test_a_dry_run_decides_everything_and_writes_nothing() -> None:
    org, backup = _scene()
    before = json.dumps({k: {**v, "body": v["body"].hex()} for k, v in org.versions.items()}, sort_keys=True)
    result = restore_files(_run(), org, backup, ITEMS, dry_run=True)
    assert _states(result) == {"068A": rpb.RECORD_STATE_UPDATED, "068B": rpb.RECORD_STATE_CREATED}
    assert org.writes == [] and not backup.intents
    assert json.dumps({k: {**v, "body": v["body"].hex()} for k, v in org.versions.items()}, sort_keys=True) == before
    assert result.write_calls == 0 and result.files == 2


def test_an_attachment_is_recreated_under_its_restored_parent_or_skipped_when_equal() -> None:
    org, backup = _scene()
    backup.add("Attachment", "00PA", b"attached", ParentId=ACC_OLD, Name="a.txt", ContentType="text/plain")
    backup.add("Attachment", "00PB", b"same", ParentId=ACC2, Name="b.txt")
    backup.add("Attachment", "00PC", b"orphan", ParentId="001000000000077AAA", Name="c.txt")
    backup.add("Attachment", "00PD", b"the backup's body", ParentId=ACC2, Name="d.txt")
    org.attachments["00PB"] = {"ParentId": ACC2, "Name": "b.txt", "body": b"same"}
    org.attachments["00PD"] = {"ParentId": ACC2, "Name": "d.txt", "body": b"another body"}
    items = [ITEMS[0], *(("Attachment", a, "", rpb.RECORD_STATE_CREATED) for a in ("00PA", "00PB", "00PC", "00PD"))]
    result = restore_files(_run(), org, backup, items, dry_run=False)
    assert _states(result) == {
        "00PA": rpb.RECORD_STATE_CREATED,
        "00PB": rpb.RECORD_STATE_SKIPPED,
        "00PC": rpb.RECORD_STATE_FAILED,
        "00PD": rpb.RECORD_STATE_UPDATED,
    }
    made = next(a for a in org.attachments.values() if a.get("Name") == "a.txt")
    assert (made["ParentId"], made["body"], made["ContentType"]) == (ACC_NEW, b"attached", "text/plain")
    assert org.attachments["00PD"]["body"] == b"the backup's body"
    failed = next(o for o in result.outcomes if o.source_id == "00PC")
    assert failed.error_code == "INVALID_CROSS_REFERENCE_KEY"  # the org's word: its parent is not there
    assert result.warnings == ["1 files were not restored"]

    # into another org, a parent the restore did not map is not guessed
    other = restore_files(_run(target="00Dother000001"), org, backup, [("Attachment", "00PC", "", 4)], dry_run=False)
    assert [(o.state, o.error_code) for o in other.outcomes] == [(rpb.RECORD_STATE_FAILED, "PARENT_NOT_RESTORED")]


def test_a_document_in_the_recycle_bin_is_undeleted_then_versioned_or_else_made_anew() -> None:
    org, backup = _scene()
    org.binned.add("069A")
    result = restore_files(_run(), org, backup, ITEMS[:2], dry_run=False)
    assert _states(result) == {"068A": rpb.RECORD_STATE_UNDELETED}
    assert org.binned == set()
    assert [v["body"] for v in org.versions.values() if v["ContentDocumentId"] == "069A" and v["IsLatest"]] == [
        b"kept document, old body"
    ]
    assert result.counts()[0].undeleted == 1 and result.counts()[0].files == 1

    org, backup = _scene()
    org.binned.add("069A")
    org.undeletable = False  # purged meanwhile: the org will not undelete it
    result = restore_files(_run(), org, backup, ITEMS[:2], dry_run=False)
    assert _states(result) == {"068A": rpb.RECORD_STATE_CREATED}
    assert [v["body"] for v in org.versions.values() if v["ContentDocumentId"] == "069A"] == [b"old", b"changed since"]

    org, backup = _scene()
    org.binned.add("069A")
    result = restore_files(_run(), org, backup, ITEMS[:2], dry_run=True)
    assert _states(result) == {"068A": rpb.RECORD_STATE_UNDELETED}
    assert org.binned == {"069A"} and org.writes == []


def test_an_attachment_in_the_recycle_bin_is_previewed_and_restored_undeleted() -> None:
    def scene() -> tuple[FakeTargetOrg, FakeBackup, list[tuple[str, str, str, int]]]:
        org, backup = _scene()
        backup.add("Attachment", "00PB", b"same", ParentId=ACC2, Name="b.txt")
        org.attachments["00PB"] = {"ParentId": ACC2, "Name": "b.txt", "body": b"same"}
        org.binned.add("00PB")
        return org, backup, [ITEMS[0], ("Attachment", "00PB", "", 0)]

    # the preview cannot read a binned body (the fake refuses as Salesforce does): its size decides
    org, backup, items = scene()
    preview = restore_files(_run(), org, backup, items, dry_run=True)
    assert _states(preview) == {"00PB": rpb.RECORD_STATE_UNDELETED} and org.writes == []
    # the restore undeletes it, then reads its body: the same, nothing more written
    restored = restore_files(_run(), org, backup, items, dry_run=False)
    assert _states(restored) == {"00PB": rpb.RECORD_STATE_UNDELETED}
    assert org.writes == ["undelete"] and not org.binned

    # brought back since the restore started by its parent's undelete: Undeleted still, as the preview said
    org, backup, items = scene()
    org.binned.clear()
    again = restore_files(_run(), org, backup, items, dry_run=False, binned_at_start={"00PB"})
    assert _states(again) == {"00PB": rpb.RECORD_STATE_UNDELETED} and org.writes == []
    assert _states(restore_files(_run(), org, backup, items, dry_run=False)) == {"00PB": rpb.RECORD_STATE_SKIPPED}


def test_a_version_whose_record_the_backup_lacks_is_placed_by_the_org() -> None:
    org, backup = _scene()
    del backup.records["ContentVersion"]["068A"]  # bodies backed up, ContentVersion records not in scope
    result = restore_files(_run(), org, backup, ITEMS[:2], dry_run=False)
    assert _states(result) == {"068A": rpb.RECORD_STATE_UPDATED}
    latest = [v for v in org.versions.values() if v["ContentDocumentId"] == "069A" and v["IsLatest"]]
    assert [(v["body"], v["Title"]) for v in latest] == [(b"kept document, old body", "Kept")]


def test_a_file_missing_from_the_backup_fails_alone() -> None:
    org, backup = _scene()
    result = restore_files(_run(), org, backup, [*ITEMS, ("ContentVersion", "068Q", "", 2)], dry_run=False)
    assert _states(result)["068Q"] == rpb.RECORD_STATE_FAILED
    assert _states(result)["068B"] == rpb.RECORD_STATE_CREATED


def test_a_document_is_restored_by_its_latest_backed_up_version() -> None:
    org, backup = _scene()
    backup.add("ContentVersion", "068B0", b"older", ContentDocumentId="069B", Title="Gone", IsLatest=False)
    backup.records["ContentVersion"]["068B"]["IsLatest"] = True
    result = restore_files(_run(), org, backup, [ITEMS[0], ("ContentDocument", "069B", "", 4)], dry_run=False)
    assert _states(result) == {"069B": rpb.RECORD_STATE_CREATED}
    assert any(v["body"] == b"gone document body" * 100 for v in org.versions.values())


def test_a_create_whose_answer_was_lost_is_found_not_made_again() -> None:
    org, backup = _scene()
    backup.intents.add("file:ContentVersion:068B")  # an earlier attempt sent it...
    made = org.new_id("068")
    org.versions[made] = {"ContentDocumentId": "069N", "Title": "Gone", "body": b"x", "IsLatest": True, "mine": True}
    result = restore_files(_run(), org, backup, ITEMS, dry_run=False)
    assert {o.source_id: o.target_id for o in result.outcomes}["068B"] == made
    assert sum(1 for v in org.versions.values() if v.get("Title") == "Gone") == 1


def test_an_org_refusing_first_publish_location_gets_the_document_then_its_links() -> None:
    org, backup = _scene()
    org.refuse_first_publish = True
    result = restore_files(_run(), org, backup, ITEMS, dry_run=False)
    assert _states(result)["068B"] == rpb.RECORD_STATE_CREATED
    new = next(v for v in org.versions.values() if v.get("Title") == "Gone")
    assert {lnk["LinkedEntityId"] for lnk in org.links if lnk["ContentDocumentId"] == new["ContentDocumentId"]} == {
        ACC_NEW,
        ACC2,
    }


def test_a_body_is_spooled_hashed_and_sent_multipart_as_a_stream() -> None:
    data = bytes(range(256)) * 5000
    body = spool([spb.GetFileResponse(file=spb.FileVersion(file_name='r"x.pdf')), spb.GetFileResponse(data=data)])
    assert body is not None
    assert (body.size, body.sha256, body.md5) == (
        len(data),
        hashlib.sha256(data).hexdigest(),
        hashlib.md5(data).hexdigest(),
    )
    stream = multipart({"Title": "r"}, body, "VersionData")
    raw = stream.read()
    assert len(raw) == len(stream)
    boundary = stream.content_type.split("boundary=")[1]
    parts = raw.split(f"--{boundary}".encode())
    assert parts[-1] == b"--\r\n"
    head, _, payload = parts[2].partition(b"\r\n\r\n")
    assert b'name="VersionData"; filename="rx.pdf"' in head
    assert payload == data + b"\r\n"
    assert json.loads(parts[1].partition(b"\r\n\r\n")[2]) == {"Title": "r"}
    assert spool([]) is None


@pytest.mark.integration
def test_bodies_uploaded_to_sforg_as_json_and_multipart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sforg.testing import running_org
    from tests.jobrunner.conftest import SECRET_ENV, org_client

    with running_org(tmp_path, scale="tiny", seed=5) as info:
        monkeypatch.setenv(SECRET_ENV, info["client_secret"])
        client = org_client(info)
        writer = BlobWriter(client)
        small = spool([spb.GetFileResponse(data=b"small body")])
        monkeypatch.setattr(rf, "JSON_MAX", 1000)
        large_data = b"0123456789" * 20_000
        large = spool([spb.GetFileResponse(data=large_data)])
        assert small is not None and large is not None
        first = writer.create_with_body("ContentVersion", {"Title": "S", "PathOnClient": "s.txt"}, small)
        assert first.success and first.id, first
        second = writer.create_with_body("ContentVersion", {"Title": "L", "PathOnClient": "l.bin"}, large)
        assert second.success and second.id, second
        assert writer.body_sha256("ContentVersion", second.id, "VersionData") == hashlib.sha256(large_data).hexdigest()
        assert (
            writer.body_sha256("ContentVersion", first.id, "VersionData") == hashlib.sha256(b"small body").hexdigest()
        )
        assert writer.write_calls == 2
        doc = client.call(lambda sf: sf.query(f"SELECT ContentDocumentId FROM ContentVersion WHERE Id = '{first.id}'"))
        doc_id = doc["records"][0]["ContentDocumentId"]
        assert doc_id, "a REST ContentVersion insert makes its ContentDocument"
        third = writer.create_with_body(
            "ContentVersion", {"Title": "S2", "PathOnClient": "s.txt", "ContentDocumentId": doc_id}, large
        )
        assert third.success, third
        rows = client.call(
            lambda sf: sf.query(f"SELECT Id, IsLatest FROM ContentVersion WHERE ContentDocumentId = '{doc_id}'")
        )
        assert {r["Id"]: r["IsLatest"] for r in rows["records"]} == {first.id: False, third.id: True}


@pytest.mark.integration
async def test_bodies_read_back_from_storage_as_of_a_point(stack: Any, org: Any, admin: Any) -> None:
    """GetFile by record through the job's StorageClient (its stub): each body the file job stored comes back
    whole, spooled, with its SHA-256; a record storage never saw is None."""
    import asyncio

    from services.jobrunner.restore_files import get_file
    from services.jobrunner.storage_client import StorageClient
    from tests.jobrunner.conftest import file_spec

    await stack.start_jobrunner()
    done = await stack.run(file_spec(org, "s1", "files"))
    assert done.outcome == ev.JOB_OUTCOME_SUCCESS, done.message
    truth = admin.ground_truth(values=False)["files"]
    client = StorageClient(f"127.0.0.1:{stack.storage.port}")

    def read() -> tuple[dict[str, tuple[str, int]], Body | None]:
        out = {}
        for rid, f in list(truth.items())[:5]:
            body = get_file(client, org["org_id"], f["object"], rid, None)
            assert body is not None
            out[rid] = (body.sha256, body.size)
            body.close()
        return out, get_file(client, org["org_id"], "ContentVersion", "068000000000000AAA", None)

    try:
        got, missing = await asyncio.to_thread(read)
    finally:
        client.close()
    assert got == {rid: (f["sha256"], f["size"]) for rid, f in list(truth.items())[:5]}
    assert missing is None


@pytest.mark.integration
async def test_on_sforg_and_storage_a_version_comes_back_and_a_deleted_document_is_made_and_linked(
    stack: Any, org: Any, admin: Any
) -> None:
    """The real path: ContentVersion records and the file job's bodies and links backed up; then one document
    gets a newer version and another is hard-deleted with its links; restore_files through the restore's
    OrgWriter and the StorageClient: the first document's latest version is the backed-up body again, the second
    is a new document with the backed-up body, linked to the records the backup's links named; a second run
    Skips the first."""
    import asyncio

    from services.jobrunner.salesforce import JobOrgClient
    from services.jobrunner.salesforce_write import OrgWriter
    from services.jobrunner.storage_client import StorageClient
    from tests.jobrunner.conftest import data_spec, file_spec, org_client

    def linked_records() -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for lnk in admin.ground_truth(objects=["ContentDocumentLink"])["objects"]["ContentDocumentLink"].values():
            if not str(lnk["LinkedEntityId"]).startswith("005"):
                out.setdefault(lnk["ContentDocumentId"], set()).add(lnk["LinkedEntityId"])
        return out

    sf = org_client(org)
    before = admin.ground_truth(objects=["ContentVersion"])
    latest = {
        v["ContentDocumentId"]: vid
        for vid, v in before["objects"]["ContentVersion"].items()
        if v.get("IsLatest") and vid in before["files"]
    }
    linked = linked_records()
    kept_doc = next(d for d in latest if linked.get(d))
    gone_doc = next(d for d in latest if d != kept_doc and linked.get(d))
    # a second record linked to the document to delete: a first publish location and a link made after it
    other = sf.call(lambda s: s.query("SELECT Id FROM Account ORDER BY Id LIMIT 5"))["records"]
    extra = next(r["Id"] for r in other if r["Id"] not in linked[gone_doc])
    sf.call(
        lambda s: s.ContentDocumentLink.create(
            {"ContentDocumentId": gone_doc, "LinkedEntityId": extra, "ShareType": "V"}
        )
    )
    linked = linked_records()
    assert len(linked[gone_doc]) >= 2

    await stack.start_jobrunner()
    for spec in (data_spec(org, "ContentVersion", "s1", "cv", full=True), file_spec(org, "s1", "files")):
        done = await stack.run(spec)
        assert done.outcome in (ev.JOB_OUTCOME_SUCCESS, ev.JOB_OUTCOME_WARNING), done.message
    files = admin.ground_truth(objects=["ContentVersion"])["files"]
    kept_v, gone_v = latest[kept_doc], latest[gone_doc]
    admin.add_file_version(b"a newer body, after the backup", content_document_id=kept_doc)
    admin.hard_delete("ContentDocument", ids=[gone_doc])

    client = StorageClient(f"127.0.0.1:{stack.storage.port}")
    items = [("ContentVersion", kept_v, "", 0), ("ContentDocument", gone_doc, "", 0)]

    def restore(chosen: list[tuple[str, str, str, int]]) -> rf.FileRestoreResult:
        client.begin_job(org["org_id"], "r1", "files", ev.JOB_TYPE_RESTORE, "")  # as the restore job begins
        writer = OrgWriter(JobOrgClient(sf.creds, token=sf.token))
        return restore_files(_run(source=org["org_id"], as_of=None), writer, client, chosen, dry_run=False)

    try:
        result = await asyncio.to_thread(restore, items)
        again = await asyncio.to_thread(restore, items[:1])
        # an attempt resumed after the new document's create was sent and its answer lost (the intent stays
        # recorded in storage): the document it made is found, not made a second time
        admin.reset_accounting()
        resumed = await asyncio.to_thread(restore, items[1:])
        resumed_writes = admin.accounting()["writes"]
    finally:
        client.close()
    states = {o.source_id: o for o in result.outcomes}
    assert (states[kept_v].state, states[gone_doc].state) == (rpb.RECORD_STATE_UPDATED, rpb.RECORD_STATE_CREATED), (
        result
    )
    now = admin.ground_truth(objects=["ContentVersion", "ContentDocumentLink"])
    new_versions = now["objects"]["ContentVersion"]
    kept_latest = next(
        vid for vid, v in new_versions.items() if v["ContentDocumentId"] == kept_doc and v.get("IsLatest")
    )
    assert now["files"][kept_latest]["sha256"] == files[kept_v]["sha256"]
    new_doc = made = states[gone_doc].target_id  # a ContentDocument's outcome names the new document
    assert made.startswith("069"), made
    new_v = next(vid for vid, v in new_versions.items() if v["ContentDocumentId"] == new_doc)
    assert now["files"][new_v]["sha256"] == files[gone_v]["sha256"]
    relinked = {
        lnk["LinkedEntityId"]
        for lnk in now["objects"]["ContentDocumentLink"].values()
        if lnk["ContentDocumentId"] == new_doc and not str(lnk["LinkedEntityId"]).startswith("005")
    }
    assert relinked == linked[gone_doc]
    assert [o.state for o in again.outcomes] == [rpb.RECORD_STATE_SKIPPED]
    assert [(o.state, o.target_id) for o in resumed.outcomes] == [(rpb.RECORD_STATE_CREATED, made)]
    assert resumed_writes == 0


@pytest.mark.integration
async def test_on_sforg_and_storage_a_deleted_attachment_is_recreated_under_its_parent(
    stack: Any, org: Any, admin: Any
) -> None:
    """An Attachment hard-deleted after the backup is re-created under its parent with the backed-up body, name and
    content type; one still there with its body is Skipped; a dry run writes nothing (sforg's write accounting)."""
    import asyncio

    from services.jobrunner.salesforce import JobOrgClient
    from services.jobrunner.salesforce_write import OrgWriter
    from services.jobrunner.storage_client import StorageClient
    from tests.jobrunner.conftest import data_spec, file_spec, org_client

    await stack.start_jobrunner()
    for spec in (data_spec(org, "Attachment", "s1", "at", full=True), file_spec(org, "s1", "files")):
        done = await stack.run(spec)
        assert done.outcome in (ev.JOB_OUTCOME_SUCCESS, ev.JOB_OUTCOME_WARNING), done.message
    truth = admin.ground_truth(objects=["Attachment"])
    attachments = {rid: a for rid, a in truth["objects"]["Attachment"].items() if rid in truth["files"]}
    gone, kept = sorted(attachments)[:2]
    admin.hard_delete("Attachment", ids=[gone])
    sf = org_client(org)
    client = StorageClient(f"127.0.0.1:{stack.storage.port}")
    items = [("Attachment", gone, "", 0), ("Attachment", kept, "", 0)]

    def restore(dry_run: bool) -> rf.FileRestoreResult:
        client.begin_job(org["org_id"], "r1", "files", ev.JOB_TYPE_RESTORE, "")
        writer = OrgWriter(JobOrgClient(sf.creds, token=sf.token))
        return restore_files(_run(source=org["org_id"], as_of=None), writer, client, items, dry_run=dry_run)

    try:
        admin.reset_accounting()
        preview = await asyncio.to_thread(restore, True)
        writes = admin.accounting()
        result = await asyncio.to_thread(restore, False)
        written = admin.accounting()
    finally:
        client.close()
    assert {o.source_id: o.state for o in preview.outcomes} == {
        gone: rpb.RECORD_STATE_CREATED,
        kept: rpb.RECORD_STATE_SKIPPED,
    }
    assert writes["writes"] == 0, writes
    assert written["writes"] == 1, written  # the real run: one Attachment insert
    states = {o.source_id: o for o in result.outcomes}
    assert (states[gone].state, states[kept].state) == (rpb.RECORD_STATE_CREATED, rpb.RECORD_STATE_SKIPPED)
    now = admin.ground_truth(objects=["Attachment"])
    made = now["objects"]["Attachment"][states[gone].target_id]
    before = attachments[gone]
    assert (made["ParentId"], made["Name"], made.get("ContentType")) == (
        before["ParentId"],
        before["Name"],
        before.get("ContentType"),
    )
    assert now["files"][states[gone].target_id]["sha256"] == truth["files"][gone]["sha256"]
