"""The file job's transfers, several files in flight at once (on the in-memory fakes): whatever order storage
commits them in and wherever an attempt ends, the job's chunks are 1..N without a gap (the session counts each),
every body is stored once and counted once; a chunk number whose file went away mid-way is given to another file."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import requests
from sfvault.events.v1 import events_pb2 as ev
from sfvault.jobs.v1 import jobs_pb2
from sfvault.storage.v1 import storage_pb2 as spb

from services.jobrunner.application import JobExecutor, Result
from services.jobrunner.job_run import JobControl
from services.jobrunner.service import error_kinds
from sforg.ids import to18
from tests.jobrunner.fakes import FakeBody, FakeOrg, FakeStorage, FakeTables

ORG = to18("00D000000000001")
STAMP = "2026-01-01T00:00:00.000+0000"
FILES = 12


def rid(n: int) -> str:
    return to18(f"00P{n:012d}")


def body_of(n: int) -> bytes:
    return bytes([n]) * (1000 + n)


def file_spec(session: str = "s1") -> jobs_pb2.JobSpec:
    return jobs_pb2.JobSpec(
        session_id=session,
        job_id="files",
        type=ev.JOB_TYPE_FILE,
        policy_id="p1",
        salesforce_org_id=ORG,
        file=jobs_pb2.FileJob(attachments=True),
    )


@dataclass
class BreakingBody(FakeBody):
    """A body cut off mid-way (as a stalled download is), once `ready` is set (other files committed meanwhile)."""

    ready: threading.Event = field(default_factory=threading.Event)

    def iter_content(self, chunk_size: int) -> Iterator[bytes]:
        yield self.data[:10]
        assert self.ready.wait(30), "the other files never committed"
        raise requests.exceptions.ChunkedEncodingError("the body was cut off")


@dataclass
class Org(FakeOrg):
    """A FakeOrg whose body of `breaking` is cut off on every try, and whose `vanishing` file is deleted while its
    first download is being read (its next try finds it gone)."""

    breaking: str = ""
    vanishing: str = ""
    ready: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    asked: list[str] = field(default_factory=list)  # the bodies asked for, in order

    def blob(self, object_name: str, record_id: str, field_name: str) -> FakeBody:
        with self.lock:  # the transfers ask at once
            self.asked.append(record_id)
            if record_id == self.breaking:
                self.api_calls += 1
                return BreakingBody(self.blobs[(object_name, record_id)], ready=self.ready)
            if record_id == self.vanishing and (object_name, record_id) in self.blobs:
                body = BreakingBody(self.blobs.pop((object_name, record_id)), ready=self.ready)
                del self.objects[object_name][record_id]
                self.api_calls += 1
                return body
            return super().blob(object_name, record_id, field_name)


@dataclass
class Storage(FakeStorage):
    """FakeStorage, thread-safe, that sets `ready` once `ready_after` files are committed."""

    ready: threading.Event = field(default_factory=threading.Event)
    ready_after: int = 4
    lock: threading.Lock = field(default_factory=threading.Lock)

    def upload_file(self, header: spb.FileHeader, body: Iterable[bytes]) -> spb.UploadFileResponse:
        data = b"".join(body)  # a broken body raises here, before anything is committed
        with self.lock:
            job = self._job(header.session_id, header.job_id)
            result = super().upload_file(header, [data])
            if len(job.results) >= self.ready_after:
                self.ready.set()
            return result


class World:
    def __init__(self) -> None:
        self.org = Org()
        self.storage = Storage(ready=self.org.ready)
        self.org.put(
            "Attachment",
            *(
                {"Id": rid(n), "SystemModstamp": STAMP, "BodyLength": len(body_of(n)), "Name": f"a{n}.bin"}
                for n in range(FILES)
            ),
        )
        self.org.blobs.update({("Attachment", rid(n)): body_of(n) for n in range(FILES)})
        self.tables = FakeTables()
        self.jobs = JobExecutor(self.storage, self.tables, lambda _spec: self.org, error_kinds())

    def run(self, attempt: int = 1) -> Result:
        return self.jobs.execute(file_spec(), JobControl(), attempt)

    def chunks(self) -> list[int]:
        return sorted(self.storage.jobs[("s1", "files")].results)


def _uploads_counted_once(w: World, result: Result, stored: int) -> None:
    assert w.chunks() == list(range(1, result.chunks + 1))  # no gap: the session counts chunks 1..N
    assert result.chunks == stored and result.tally.received == stored, result
    counted: dict[str, int] = w.storage.jobs[("s1", "files")].counts
    assert counted["received"] == stored


def test_a_file_whose_download_keeps_breaking_while_others_commit_leaves_no_gap_once_resumed() -> None:
    w = World()
    w.org.breaking = rid(2)  # listed third: the files after it commit under later numbers while it breaks
    first = w.run()
    assert first.disposition == "nak", first.message  # the org's transient failure: handed back
    held = w.chunks()
    assert max(held) > len(held), held  # a gap: the broken file's number, below numbers storage committed
    w.org.breaking = ""
    second = w.run(attempt=2)
    assert second.outcome == ev.JOB_OUTCOME_SUCCESS, second.message
    _uploads_counted_once(w, second, FILES)
    assert {rid(n): w.storage.files[("Attachment", rid(n))] for n in range(FILES)} == {
        rid(n): body_of(n) for n in range(FILES)
    }
    assert w.tables.stored_files(ORG, "Attachment") == {rid(n): STAMP for n in range(FILES)}


def test_a_resumed_job_records_the_files_storage_committed_without_reading_them_again() -> None:
    w = World()
    recorded = w.tables.file_stored
    lost: list[str] = []

    def lost_on_the_fifth(*args: Any) -> None:
        if len(lost) == 0 and len(w.tables.stored_files(ORG, "Attachment")) == 4:
            lost.append(args[2])
            raise psycopg.OperationalError("the jobrunner's database went away")
        recorded(*args)

    w.tables.file_stored = lost_on_the_fifth  # type: ignore[method-assign, assignment]
    first = w.run()
    assert first.disposition == "nak" and lost, first.message
    asked = len(w.org.asked)
    second = w.run(attempt=2)
    assert second.outcome == ev.JOB_OUTCOME_SUCCESS, second.message
    _uploads_counted_once(w, second, FILES)
    assert lost[0] not in w.org.asked[asked:]  # committed by storage, recorded now: not downloaded again
    assert w.tables.stored_files(ORG, "Attachment") == {rid(n): STAMP for n in range(FILES)}


def test_a_number_whose_file_went_away_mid_way_goes_to_the_next_file() -> None:
    w = World()
    w.storage.ready_after = 1
    w.org.vanishing = rid(2)  # its first try is cut off, its second finds it deleted
    result = w.run()
    assert result.outcome == ev.JOB_OUTCOME_WARNING, result.message
    assert f"Attachment {rid(2)}" in result.message, result.message
    _uploads_counted_once(w, result, FILES - 1)
    assert ("Attachment", rid(2)) not in w.storage.files
