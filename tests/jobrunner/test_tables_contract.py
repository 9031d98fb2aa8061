"""The jobrunner's tables (ports MarkStore, CheckpointStore, StoredFiles, StoredMetadata): the fake and JobStore
on a real PostgreSQL hold to the same rules."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import pytest

from services.jobrunner import migrations
from services.jobrunner.domain import ObjectMarks
from services.jobrunner.ports import JobTables
from services.jobrunner.store import JobStore
from tests.jobrunner.fakes import FakeTables

T = dt.datetime(2026, 3, 1, 12, 30, 15, 123000, tzinfo=dt.UTC)


@pytest.fixture(params=["fake", "postgres"])
async def tables(request: pytest.FixtureRequest) -> AsyncIterator[JobTables]:
    if request.param == "fake":
        yield FakeTables()
        return
    url = request.getfixturevalue("database_url")
    await migrations.migrate(url, "jobrunner")
    store = JobStore(url, "jobrunner", max_size=2)
    try:
        yield store
    finally:
        await asyncio.to_thread(store.close)


async def test_marks_default_empty_then_saved_per_object_and_id_range(tables: JobTables) -> None:
    assert tables.marks("p1", "Account") == ObjectMarks()
    first = ObjectMarks(mark=T, last_full=T, last_reconcile=None, last_success=T)
    tables.save_marks("p1", "Account", "", "", first)
    tables.save_marks("p1", "Account", "001A", "001M", ObjectMarks(mark=T - dt.timedelta(days=1)))
    assert tables.marks("p1", "Account") == first
    assert tables.marks("p1", "Account", "001A", "001M").mark == T - dt.timedelta(days=1)
    assert tables.marks("p2", "Account") == ObjectMarks()
    later = ObjectMarks(mark=T + dt.timedelta(hours=1), last_full=T, last_reconcile=T, last_success=T)
    tables.save_marks("p1", "Account", "", "", later)
    assert tables.marks("p1", "Account") == later


async def test_a_checkpoint_is_what_was_saved_last_and_a_copy(tables: JobTables) -> None:
    assert tables.checkpoint("s1", "j1") is None
    state = {"seq": 2, "pos": {"phase": "read", "key": [None, "001"]}, "prev": {}, "warnings": ["w"]}
    tables.save_checkpoint("s1", "j1", state)
    state["seq"] = 99  # what the job changes afterwards is not saved
    assert tables.checkpoint("s1", "j1") == {
        "seq": 2,
        "pos": {"phase": "read", "key": [None, "001"]},
        "prev": {},
        "warnings": ["w"],
    }
    tables.save_checkpoint("s1", "j1", {"seq": 3, "phase": "done"})
    assert tables.checkpoint("s1", "j1") == {"seq": 3, "phase": "done"}
    assert tables.checkpoint("s1", "j2") is None


async def test_stored_files_and_metadata_per_org(tables: JobTables) -> None:
    assert tables.stored_files("o1", "Attachment") == {}
    tables.file_stored("o1", "Attachment", "00P1", "2026-01-01T00:00:00.000+0000", "", 10)
    tables.file_stored("o1", "Attachment", "00P1", "2026-01-02T00:00:00.000+0000", "", 12)
    tables.file_stored("o2", "Attachment", "00P2", "x", "", 1)
    assert tables.stored_files("o1", "Attachment") == {"00P1": "2026-01-02T00:00:00.000+0000"}
    assert tables.stored_metadata("o1") == {}
    tables.metadata_stored("o1", [("ApexClass", "A", "m1", False), ("ApexClass", "B", "m2", False)])
    tables.metadata_stored("o1", [("ApexClass", "B", "", True)])
    assert tables.stored_metadata("o1") == {("ApexClass", "A"): ("m1", False), ("ApexClass", "B"): ("", True)}
    assert tables.stored_metadata("o2") == {}
