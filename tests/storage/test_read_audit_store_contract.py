"""The read audit's store port (services/storage/ports.ReadAuditStore) as one contract, run against the in-memory
fake (tests/storage/fakes.py) and PostgresStore; then the read audit's paging (ReadAuditLog) on the fake alone, in
milliseconds."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from services.storage.audit import ReadAuditLog
from services.storage.domain import InvalidArgument, ReadEntry
from services.storage.ports import ReadAuditStore
from tests.storage.fakes import InMemoryReadAuditStore

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def entry(n: int, actor: str = "alice") -> ReadEntry:
    return ReadEntry(
        T0 + dt.timedelta(minutes=n), actor, "viewer", f"t{n}", "GetRecordAsOf", "OK", "00D", "Account", "001", None, n
    )


@pytest.fixture(params=["fake", "postgres"])
def audit_store(request: pytest.FixtureRequest) -> ReadAuditStore:
    if request.param == "fake":
        return InMemoryReadAuditStore()
    return request.getfixturevalue("harness").store  # type: ignore[no-any-return]


async def test_entries_are_listed_oldest_first_after_a_position_filtered_and_limited(
    audit_store: ReadAuditStore,
) -> None:
    await audit_store.record_reads([entry(1), entry(2, "bob"), entry(3)])
    await audit_store.record_reads([entry(4), entry(5, "bob")])
    everything = await audit_store.read_audit(since=None, actor="", after=0, limit=100)
    assert [e.count for e in everything] == [1, 2, 3, 4, 5]
    ids = [e.entry_id for e in everything]
    assert ids == sorted(ids) and len(set(ids)) == 5 and ids[0] > 0
    assert everything[1] == dataclasses.replace(entry(2, "bob"), entry_id=ids[1])  # every column kept
    after = await audit_store.read_audit(since=None, actor="", after=ids[1], limit=2)
    assert [e.count for e in after] == [3, 4]
    bobs = await audit_store.read_audit(since=None, actor="bob", after=0, limit=100)
    assert [e.count for e in bobs] == [2, 5]
    since = await audit_store.read_audit(since=T0 + dt.timedelta(minutes=4), actor="", after=0, limit=100)
    assert [e.count for e in since] == [4, 5]


async def test_pages_of_the_read_audit_carry_on_where_the_last_one_ended() -> None:
    log = ReadAuditLog(InMemoryReadAuditStore())
    for n in range(1, 6):
        log.record(entry(n))
    first, token = await log.page(since=None, actor="", page_size=2, page_token="")
    second, token2 = await log.page(since=None, actor="", page_size=2, page_token=token)
    third, end = await log.page(since=None, actor="", page_size=2, page_token=token2)
    assert [[e.count for e in p] for p in (first, second, third)] == [[1, 2], [3, 4], [5]] and end == ""
    with pytest.raises(InvalidArgument, match="page_token"):
        await log.page(since=None, actor="", page_size=2, page_token="not-a-token")
