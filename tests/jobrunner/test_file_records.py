"""The file job records what storage committed RECORD_EVERY files a commit (the checkpoint names them until then),
and reads a body of several pieces ahead of storage (read_ahead): a resumed attempt stays exact, a body is passed on
whole and in order, a download that breaks says why, a consumer that stops ends the download."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import requests
from sfvault.events.v1 import events_pb2 as ev

from services.jobrunner import file_job
from services.jobrunner.file_job import read_ahead
from tests.jobrunner.test_file_transfers import FILES, ORG, STAMP, World, _uploads_counted_once, rid


class Tables:
    """Counts the batches recorded; from the `fail_at`-th on the database is gone (a batch is lost whole)."""

    def __init__(self, w: World, fail_at: int = 0) -> None:
        self.recorded = w.tables.files_stored
        self.batches: list[int] = []
        self.fail_at = fail_at
        w.tables.files_stored = self  # type: ignore[method-assign]

    def __call__(self, org_id: str, files: Any) -> None:
        self.batches.append(len(files))
        if self.fail_at and len(self.batches) >= self.fail_at:
            raise psycopg.OperationalError("the jobrunner's database went away")
        self.recorded(org_id, files)


def test_files_are_recorded_a_batch_a_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(file_job, "RECORD_EVERY", 5)
    w = World()
    tables = Tables(w)
    result = w.run()
    assert result.outcome == ev.JOB_OUTCOME_SUCCESS, result.message
    assert tables.batches == [5, 5, 2]  # 12 files, three commits
    _uploads_counted_once(w, result, FILES)
    assert w.tables.stored_files(ORG, "Attachment") == {rid(n): STAMP for n in range(FILES)}
    checkpoint = w.tables.checkpoint("s1", "files")
    assert checkpoint is not None  # names the files in flight and those not recorded yet, no more
    assert len(checkpoint["pos"]["inflight"]) < file_job.RECORD_EVERY + file_job.TRANSFERS


def test_a_batch_lost_whole_is_recorded_by_the_resumed_attempt_without_reading_its_files_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(file_job, "RECORD_EVERY", 5)
    w = World()
    tables = Tables(w, fail_at=2)
    first = w.run()
    tables.fail_at = 0  # back
    assert first.disposition == "nak", first.message
    recorded = w.tables.stored_files(ORG, "Attachment")
    assert len(recorded) == 5  # the first batch; the second lost whole
    committed = set(w.storage.files)
    assert len(committed) > len(recorded)  # storage holds files the jobrunner has no record of
    asked = len(w.org.asked)

    second = w.run(attempt=2)
    assert second.outcome == ev.JOB_OUTCOME_SUCCESS, second.message
    _uploads_counted_once(w, second, FILES)  # chunks 1..12, each file received and counted once
    again = w.org.asked[asked:]
    assert not {r for _obj, r in committed} & set(again)  # what storage committed is not downloaded again
    assert w.tables.stored_files(ORG, "Attachment") == {rid(n): STAMP for n in range(FILES)}
    assert len(tables.batches) >= 3


def _pieces(n: int, closed: threading.Event, broken: Exception | None = None) -> Iterator[bytes]:
    try:
        for i in range(n):
            yield bytes([i]) * 1000
        if broken is not None:
            raise broken
    finally:
        closed.set()


def test_read_ahead_passes_every_piece_in_order_and_closes_the_download() -> None:
    closed = threading.Event()
    assert list(read_ahead(_pieces(20, closed), depth=3)) == [bytes([i]) * 1000 for i in range(20)]
    assert closed.wait(30)


def test_read_ahead_raises_why_the_download_broke_after_the_pieces_before() -> None:
    closed = threading.Event()
    got: list[bytes] = []
    with pytest.raises(requests.exceptions.ChunkedEncodingError, match="cut off"):
        for piece in read_ahead(_pieces(5, closed, requests.exceptions.ChunkedEncodingError("cut off")), depth=2):
            got.append(piece)
    assert len(got) == 5 and closed.wait(30)


def test_a_consumer_that_stops_early_ends_the_download() -> None:
    closed = threading.Event()
    ahead = read_ahead(_pieces(1000, closed), depth=2)
    assert next(ahead) == bytes([0]) * 1000
    ahead.close()  # storage refused the body: the reader, blocked on a full queue, goes on and ends
    assert closed.wait(30)
