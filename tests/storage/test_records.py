"""Record chunks against a real PostgreSQL: versions only on change, idempotent redelivery, atomic chunks,
deletes, history, as-of reads, exports and restore points."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json

import pytest

from services.storage.application import ChunkRef, MetadataComponentIn
from services.storage.domain import Deleted, FailedPrecondition, InvalidArgument, NotFound, PendingEvent
from tests.storage.conftest import ACCOUNT, DATA, ORG, Harness, account, data_job, put_raw, sf_id

pytestmark = pytest.mark.integration


async def test_only_new_and_changed_records_become_versions(harness: Harness) -> None:
    s = harness.storage
    await data_job(s)
    first = await put_raw(s, ORG, "s1", "j1", 1, "Account", [account(1), account(2), account(3)])
    assert (first.counts.received, first.counts.new_versions, first.counts.unchanged) == (3, 3, 0)
    assert first.counts.bytes > 0
    again = await put_raw(
        s,
        ORG,
        "s1",
        "j1",
        2,
        "Account",
        [
            account(1, SystemModstamp="2024-06-01T00:00:00.000Z"),  # only the audit field moved
            account(2, Score__c=99),  # only a formula field moved
            account(3, "Acme 3"),  # a real change
        ],
    )
    assert (again.counts.new_versions, again.counts.changed, again.counts.unchanged) == (0, 1, 2)
    assert await harness.count("record_versions") == 4
    assert [p[2] for p in harness.publisher.published] == [1, 2]


async def test_a_redelivered_chunk_changes_nothing_and_returns_the_same_counts(harness: Harness) -> None:
    s = harness.storage
    await data_job(s)
    chunk = [account(1), account(2)]
    first = await put_raw(s, ORG, "s1", "j1", 1, "Account", chunk)
    await put_raw(s, ORG, "s1", "j1", 2, "Account", [account(1, "changed later")])
    replay = await put_raw(s, ORG, "s1", "j1", 1, "Account", chunk)
    assert replay.replayed and not first.replayed
    assert replay.counts == first.counts
    assert await harness.count("record_versions") == 3
    # a chunk 1 with other content is refused, never silently dropped
    with pytest.raises(FailedPrecondition, match="other content"):
        await put_raw(s, ORG, "s1", "j1", 1, "Account", [account(7)])
    last, chunks, totals = await s.begin_job(ORG, "s1", "j1", DATA, "Account")
    assert (last, chunks, totals.new_versions, totals.changed) == (2, 2, 2, 1)


@pytest.mark.parametrize("point", ["records.after_copy", "records.after_head", "records.after_versions"])
async def test_a_crash_inside_the_chunk_transaction_leaves_nothing(harness: Harness, point: str) -> None:
    s = harness.storage
    await data_job(s)

    async def crash(at: str) -> None:
        if at == point:
            raise RuntimeError(f"simulated crash at {at}")

    harness.store._fault = crash
    with pytest.raises(RuntimeError, match="simulated crash"):
        await put_raw(s, ORG, "s1", "j1", 1, "Account", [account(1), account(2)])
    for table in ("record_versions", "record_head", "chunks"):
        assert await harness.count(table) == 0, table
    assert harness.publisher.published == []
    harness.store._fault = None
    retried = await put_raw(s, ORG, "s1", "j1", 1, "Account", [account(1), account(2)])
    assert retried.counts.new_versions == 2 and not retried.replayed


@pytest.mark.parametrize("point", ["records.after_copy", "records.after_head", "records.after_versions"])
async def test_a_crash_inside_a_chunk_of_changes_leaves_the_previous_state(harness: Harness, point: str) -> None:
    # the first chunk takes the initial-load path (head rows COPied); this one the upsert path
    s = harness.storage
    await data_job(s)
    await put_raw(s, ORG, "s1", "j1", 1, "Account", [account(1), account(2)])

    async def crash(at: str) -> None:
        if at == point:
            raise RuntimeError(f"simulated crash at {at}")

    harness.store._fault = crash
    changed = [account(1, "changed"), account(3)]
    with pytest.raises(RuntimeError, match="simulated crash"):
        await put_raw(s, ORG, "s1", "j1", 2, "Account", changed)
    assert (await harness.count("record_versions"), await harness.count("record_head")) == (2, 2)
    assert await harness.count("chunks") == 1
    harness.store._fault = None
    retried = await put_raw(s, ORG, "s1", "j1", 2, "Account", changed)
    assert (retried.counts.new_versions, retried.counts.changed) == (1, 1)


async def test_overlapping_chunks_at_once_store_each_record_once(harness: Harness) -> None:
    # two jobs load the same new records concurrently: one chunk's head COPY waits for the other's, finds the
    # rows created, and upserts instead (unchanged or changed), so no record gets two first versions
    s = harness.storage
    await data_job(s, job="j1")
    await data_job(s, job="j2")
    ids = range(1, 41)
    results = await asyncio.gather(
        put_raw(s, ORG, "s1", "j1", 1, "Account", [account(n) for n in ids]),
        put_raw(s, ORG, "s1", "j2", 1, "Account", [account(n, "other" if n % 2 else "Acme") for n in ids]),
    )
    assert sum(r.counts.new_versions for r in results) == len(ids)
    assert sum(r.counts.new_versions + r.counts.changed + r.counts.unchanged for r in results) == 2 * len(ids)
    assert await harness.count("record_head") == len(ids)
    versions = await harness.count("record_versions")
    assert versions == len(ids) + sum(r.counts.changed for r in results)
    async with harness.store.pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM storage.record_head WHERE versions <> 1 + (hash IS NULL)::int")
        assert (await cur.fetchone())[0] == sum(r.counts.changed for r in results)  # type: ignore[index]


async def test_a_record_whose_id_guess_is_another_records_is_not_lost(harness: Harness) -> None:
    # a record whose Id key is spelled otherwise ("ID") and holds a nested "Id": both records must be stored
    s = harness.storage
    await data_job(s)
    x, y = sf_id("001", 1), sf_id("001", 2)
    tricky = json.dumps({"Name": {"Id": y}, "ID": x, "SystemModstamp": "2024-01-01T00:00:00.000Z"}).encode()
    first = await put_raw(s, ORG, "s1", "j1", 1, "Account", [tricky, account(2)])
    assert first.counts.new_versions == 2
    again = await put_raw(s, ORG, "s1", "j1", 2, "Account", [tricky, account(2, "renamed")])
    assert (again.counts.changed, again.counts.unchanged) == (1, 1)
    assert [v.record_id for v in await s.record_history(ORG, "Account", x)] == [x]


async def test_duplicate_ids_in_one_chunk_keep_the_last(harness: Harness) -> None:
    s = harness.storage
    await data_job(s)
    r = await put_raw(s, ORG, "s1", "j1", 1, "Account", [account(1, "old"), account(1, "new")])
    assert (r.counts.received, r.counts.new_versions, r.counts.unchanged) == (2, 1, 1)
    [v] = await s.record_history(ORG, "Account", sf_id("001", 1))
    assert json.loads(v.values_json)["Name"] == "new"


async def test_deletes_keep_the_last_live_values_and_undelete_is_a_change(harness: Harness) -> None:
    s = harness.storage
    await data_job(s)
    rid = sf_id("001", 1)
    await put_raw(s, ORG, "s1", "j1", 1, "Account", [account(1, "Acme")])
    soft = await s.mark_deleted(ChunkRef(ORG, "s1", "j1", 2), "Account", [rid, sf_id("001", 9)], Deleted.SOFT)
    assert soft.counts.deleted == 1 and soft.result["unknown_ids"] == [sf_id("001", 9)]
    again = await s.mark_deleted(ChunkRef(ORG, "s1", "j1", 3), "Account", [rid], Deleted.SOFT)
    assert again.counts.deleted == 0 and again.counts.unchanged == 1
    hard = await s.mark_deleted(ChunkRef(ORG, "s1", "j1", 4), "Account", [rid], Deleted.HARD)
    assert hard.counts.deleted == 1
    history = await s.record_history(ORG, "Account", rid)
    assert [v.deleted for v in history] == [Deleted.LIVE, Deleted.SOFT, Deleted.HARD]
    assert all(json.loads(v.values_json)["Name"] == "Acme" for v in history)
    assert await s.count_live(ORG) == {"Account": 0}
    back = await put_raw(s, ORG, "s1", "j1", 5, "Account", [account(1, "Acme")])
    assert back.counts.changed == 1
    assert await s.count_live(ORG) == {"Account": 1}  # undeleted: live again
    # queryAll's IsDeleted=true is a soft delete with values
    gone = await put_raw(s, ORG, "s1", "j1", 6, "Account", [account(1, "Acme", IsDeleted=True)])
    assert gone.counts.deleted == 1
    assert await s.count_live(ORG) == {"Account": 0}
    kept, counted = await harness.live_counts()
    assert kept == counted == {}


async def test_as_of_reads_and_exports_follow_capture_time(harness: Harness) -> None:
    s = harness.storage
    await data_job(s)
    await put_raw(s, ORG, "s1", "j1", 1, "Account", [account(1, "v1"), account(2, "b", AnnualRevenue="12.50")])
    t1 = dt.datetime.now(dt.UTC)
    await put_raw(s, ORG, "s1", "j1", 2, "Account", [account(1, "v2")])
    await s.mark_deleted(ChunkRef(ORG, "s1", "j1", 3), "Account", [sf_id("001", 2)], Deleted.SOFT)
    t2 = dt.datetime.now(dt.UTC)

    old = await s.record_as_of(ORG, "Account", sf_id("001", 1)[:15], t1)  # a 15-character Id works too
    assert json.loads(old.values_json)["Name"] == "v1"
    assert json.loads((await s.record_as_of(ORG, "Account", sf_id("001", 1), t2)).values_json)["Name"] == "v2"
    with pytest.raises(NotFound, match="no backed-up version"):
        await s.record_as_of(ORG, "Account", sf_id("001", 1), t1 - dt.timedelta(hours=1))

    async def export(when: dt.datetime, csv_format: bool, include_deleted: bool = False) -> bytes:
        parts = [
            d
            async for d, _n in s.export_as_of(
                ORG, "Account", when, csv_format=csv_format, include_deleted=include_deleted
            )
        ]
        return b"".join(parts)

    rows = list(csv.DictReader(io.StringIO((await export(t1, True)).decode())))
    assert [(r["Name"], r["AnnualRevenue"]) for r in rows] == [("v1", ""), ("b", "12.5")]
    assert list(rows[0]) == ACCOUNT.field_names
    lines = [json.loads(x) for x in (await export(t2, False)).decode().splitlines()]
    assert [x["Name"] for x in lines] == ["v2"]
    lines = [json.loads(x) for x in (await export(t2, False, include_deleted=True)).decode().splitlines()]
    assert [(x["Name"], x.get("_deleted")) for x in lines] == [("v2", None), ("b", "soft")]

    [point] = await s.restore_points(ORG, "")
    assert point.session_id == "s1" and point.jobs == 1 and point.counts.new_versions == 2
    assert await s.restore_points(ORG, "Account")


async def test_bad_requests_are_refused_with_a_reason(harness: Harness) -> None:
    s = harness.storage
    with pytest.raises(FailedPrecondition, match="call BeginJob first"):
        await put_raw(s, ORG, "s1", "nojob", 1, "Account", [account(1)])
    await s.begin_job(ORG, "s1", "j1", DATA, "Account")
    with pytest.raises(FailedPrecondition, match="PutObjectSchema first"):
        await put_raw(s, ORG, "s1", "j1", 1, "Account", [account(1)])
    await s.put_schema(ORG, "s1", ACCOUNT)
    with pytest.raises(InvalidArgument, match="at most 50"):
        await put_raw(s, ORG, "s1", "j1", 1, "Account", [account(i) for i in range(51)])
    with pytest.raises(InvalidArgument, match="backs up Account, not Contact"):
        await put_raw(s, ORG, "s1", "j1", 1, "Contact", [account(1)])
    with pytest.raises(InvalidArgument, match="chunk_seq"):
        await put_raw(s, ORG, "s1", "j1", 0, "Account", [account(1)])
    with pytest.raises(InvalidArgument, match="belongs to org"):
        await put_raw(s, sf_id("00D", 5), "s1", "j1", 1, "Account", [account(1)])
    with pytest.raises(InvalidArgument, match="record 1 Id"):
        await put_raw(s, ORG, "s1", "j1", 1, "Account", [account(1), b'{"Id": "001xyz"}'])
    with pytest.raises(NotFound, match="not known to storage"):
        await s.record_history(sf_id("00D", 5), "Account", sf_id("001", 1))
    with pytest.raises(NotFound, match="object Contact is not known"):
        await s.record_history(ORG, "Contact", sf_id("001", 1))
    with pytest.raises(FailedPrecondition, match="already registered"):
        await s.begin_job(ORG, "s1", "j1", DATA, "Contact")
    assert await harness.count("record_versions") == 0


async def test_schema_versions_follow_describe_changes(harness: Harness) -> None:
    s = harness.storage
    await data_job(s)
    assert await s.put_schema(ORG, "s2", ACCOUNT) == (1, False)
    wider = ACCOUNT.__class__(ACCOUNT.object_name, (*ACCOUNT.fields, ACCOUNT.fields[1].__class__("Phone")), "001")
    assert await s.put_schema(ORG, "s3", wider) == (2, True)


async def test_a_failed_publish_never_fails_the_committed_chunk_and_the_outbox_relay_publishes_it(
    harness: Harness,
) -> None:
    s = harness.storage
    await data_job(s)
    harness.publisher.fail = True
    stored = await put_raw(s, ORG, "s1", "j1", 1, "Account", [account(1)])  # committed: no error
    assert stored.counts.new_versions == 1 and harness.publisher.published == []
    assert await harness.count("outbox") == 1  # written in the chunk's transaction
    assert await s.relay.relay() == 0  # NATS still down: the row stays
    assert await harness.count("outbox") == 1
    harness.publisher.fail = False
    assert await s.relay.relay() == 1
    assert await harness.count("outbox") == 0
    replay = await put_raw(s, ORG, "s1", "j1", 1, "Account", [account(1)])
    assert replay.replayed and replay.counts.new_versions == 1
    assert [p[2] for p in harness.publisher.published] == [1]  # acknowledged once: the replay relays nothing


async def test_every_kind_of_chunk_leaves_its_event_in_the_outbox_until_announced(harness: Harness) -> None:
    s = harness.storage
    await data_job(s)
    harness.publisher.fail = True
    await put_raw(s, ORG, "s1", "j1", 1, "Account", [account(1)])
    await s.mark_deleted(ChunkRef(ORG, "s1", "j1", 2), "Account", [sf_id("001", 1)], Deleted.SOFT)
    await s.put_metadata(ChunkRef(ORG, "s1", "j1", 3), [MetadataComponentIn("ApexClass", "A", b"class A {}")])
    assert await harness.count("outbox") == 3
    # a resumed job (BeginJob again) announces what was committed and not acknowledged
    harness.publisher.fail = False
    await s.begin_job(ORG, "s1", "j1", DATA, "Account")
    assert [p[2] for p in harness.publisher.published] == [1, 2, 3]
    assert [p[3].new_versions for p in harness.publisher.published] == [1, 0, 1]
    assert await harness.count("outbox") == 0
    # an announced chunk's row goes once the relay forgets what was acknowledged
    await put_raw(s, ORG, "s1", "j1", 4, "Account", [account(2)])
    assert await harness.count("outbox") == 1
    await s.relay.flush()
    assert await harness.count("outbox") == 0


async def test_identical_bytes_are_unchanged_without_being_parsed(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.storage.domain import RecordCanonicalizer

    s = harness.storage
    await data_job(s)
    await put_raw(s, ORG, "s1", "j1", 1, "Account", [account(1), account(2)])
    parsed: list[int] = []
    original = RecordCanonicalizer.canonicalize

    def spy(self: RecordCanonicalizer, raw: object, position: int = 0, raw_hash: bytes | None = None):  # type: ignore[no-untyped-def]
        parsed.append(position)
        return original(self, raw, position, raw_hash)  # type: ignore[arg-type]

    monkeypatch.setattr(RecordCanonicalizer, "canonicalize", spy)
    moved = account(2, SystemModstamp="2024-09-09T00:00:00.000Z")
    again = await put_raw(s, ORG, "s1", "j1", 2, "Account", [account(1), moved])
    assert again.counts.unchanged == 2 and parsed == [1]  # only the record whose bytes differ was parsed
    parsed.clear()
    third = await put_raw(s, ORG, "s1", "j1", 3, "Account", [account(1), moved])
    assert third.counts.unchanged == 2 and parsed == []  # the moved modstamp's bytes were remembered
    assert await harness.count("record_versions") == 2


async def test_a_publish_that_hangs_holds_up_neither_the_write_nor_the_resumed_begin_job(harness: Harness) -> None:
    s = harness.storage
    await data_job(s)
    never = asyncio.Event()

    async def hang(*_args: object, **_kwargs: object) -> None:
        await never.wait()  # NATS accepts the connection and never answers

    harness.publisher.chunk_uploaded = hang  # type: ignore[method-assign]
    s.relay.announce_timeout_s = 0.05
    stored = await put_raw(s, ORG, "s1", "j1", 1, "Account", [account(1)])
    assert stored.counts.new_versions == 1
    last, chunks, _totals = await s.begin_job(ORG, "s1", "j1", DATA, "Account")  # relays, bounded
    assert (last, chunks) == (1, 1)
    assert await harness.count("outbox") == 1  # still to be announced by the periodic relay


async def test_the_periodic_relay_outlives_errors_and_publishes_what_is_pending(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = harness.storage
    await data_job(s)
    harness.publisher.fail = True
    await put_raw(s, ORG, "s1", "j1", 1, "Account", [account(1)])  # committed, not announced
    harness.publisher.fail = False
    store = harness.store
    calls = {"pending": 0}
    deleted = asyncio.Event()
    pending_events, events_published = store.pending_events, store.events_published

    async def flaky_pending(**kwargs: object) -> object:
        calls["pending"] += 1
        if calls["pending"] == 1:
            raise ConnectionError("database restarting")  # the loop must go on
        return await pending_events(**kwargs)  # type: ignore[arg-type]

    async def published(keys: object) -> None:
        await events_published(keys)  # type: ignore[arg-type]
        deleted.set()

    monkeypatch.setattr(store, "pending_events", flaky_pending)
    monkeypatch.setattr(store, "events_published", published)
    s.relay.interval_s = 0.01
    task = asyncio.create_task(s.relay.run())
    try:
        await asyncio.wait_for(deleted.wait(), 30)
    finally:
        task.cancel()
    assert calls["pending"] >= 2
    assert [p[2] for p in harness.publisher.published] == [1]
    assert await harness.count("outbox") == 0


async def test_the_cache_of_jobs_is_bounded(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    from services.storage import application

    monkeypatch.setattr(application, "MAX_CACHED_JOBS", 3)
    s = harness.storage
    for n in range(10):
        await s.begin_job(ORG, "s1", f"j{n}", DATA, "Account")
        assert len(s._jobs) <= 3
    await s.put_schema(ORG, "s1", ACCOUNT)
    # a job no longer cached is read again from the database
    assert (await put_raw(s, ORG, "s1", "j0", 1, "Account", [account(1)])).counts.new_versions == 1


async def test_stalled_export_readers_never_leave_the_writes_without_a_connection(harness: Harness) -> None:
    s = harness.storage  # its pool has 4 connections; 2 exports stream at once
    await data_job(s)
    await put_raw(s, ORG, "s1", "j1", 1, "Account", [account(1), account(2)])
    exports = [s.export_as_of(ORG, "Account", None, csv_format=False, include_deleted=False) for _ in range(4)]
    # four readers that take their first batch and then stop reading (a client that never reads on)
    firsts = [asyncio.create_task(anext(e)) for e in exports]
    _done, waiting = await asyncio.wait(firsts, return_when=asyncio.FIRST_COMPLETED)
    try:
        stored = await put_raw(s, ORG, "s1", "j1", 2, "Account", [account(3)])
        assert stored.counts.new_versions == 1
        assert len(waiting) >= 2  # the others wait their turn, holding no connection
    finally:
        for task in firsts:
            task.cancel()
        await asyncio.gather(*firsts, return_exceptions=True)
        for e in exports:
            await e.aclose()


def test_exports_must_leave_connections_for_the_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.storage import config

    monkeypatch.setenv("SFVAULT_DATABASE_URL", "postgresql://x/y")
    monkeypatch.setenv("SFVAULT_NATS_URL", "nats://n")
    monkeypatch.setenv("SFVAULT_STORAGE_DB_POOL_SIZE", "4")
    monkeypatch.setenv("SFVAULT_STORAGE_MAX_CONCURRENT_EXPORTS", "4")
    with pytest.raises(config.ConfigError, match="MAX_CONCURRENT_EXPORTS must be below"):
        config.load()


async def test_an_event_that_cannot_be_made_does_not_bar_the_others(harness: Harness) -> None:
    s = harness.storage
    await data_job(s)
    harness.publisher.fail = True
    await put_raw(s, ORG, "s1", "j1", 1, "Account", [account(1)])
    await put_raw(s, ORG, "s1", "j1", 2, "Account", [account(2)])
    harness.publisher.fail = False
    publish = harness.publisher.chunk_uploaded

    async def refuse_the_first(event: PendingEvent) -> None:
        if event.chunk_seq == 1:
            raise ValueError("not a subject token")
        await publish(event)

    harness.publisher.chunk_uploaded = refuse_the_first  # type: ignore[method-assign]
    assert await s.relay.relay() == 1
    assert [p[2] for p in harness.publisher.published] == [2]
    assert await harness.count("outbox") == 1  # the one that failed is kept
