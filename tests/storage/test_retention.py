"""Keep (issue 18) against a real PostgreSQL: the prune step's rules on known versions (the window, the versions
count, the latest kept, pins, legal holds, shared file bodies, bytes freed), its bounded and idempotent steps, the
retention horizon of as-of reads, legal holds and pins themselves."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import os
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import psycopg
import pytest
from sfvault.storage.v1 import storage_pb2 as pb

from services.storage.api_retention import StorageServicer
from services.storage.application import ChunkRef, FileHeaderIn, MetadataComponentIn
from services.storage.domain import Deleted, FailedPrecondition, InvalidArgument, NotFound
from services.storage.retention import JOB_TYPE_PRUNE, Retention, check_rule
from services.storage.store_retention import PruneRule
from tests.storage.conftest import FILE, METADATA, ORG, Harness, account, data_job, put_raw, sf_id

pytestmark = pytest.mark.integration

DAY = dt.timedelta(days=1)
A1, A2, A3 = sf_id("001", 1), sf_id("001", 2), sf_id("001", 3)


async def _age(h: Harness, session: str, days: float) -> None:
    """Every version (record, file, metadata) a session stored, captured `days` ago by the database's clock."""
    async with h.store.pool.connection() as conn:
        for table in ("record_versions", "file_versions", "metadata_versions"):
            await conn.execute(
                f"UPDATE storage.{table} SET captured_at = now() - make_interval(secs => %s)"
                " WHERE job_key IN (SELECT job_key FROM storage.jobs WHERE session_id = %s)",
                (days * 86400, session),
            )
        await conn.execute(
            "UPDATE storage.record_head h SET changed_at = v.captured_at FROM storage.record_versions v"
            " JOIN storage.jobs j USING (job_key) WHERE j.session_id = %s AND h.org_key = v.org_key"
            " AND h.object_key = v.object_key AND h.record_id = v.record_id",
            (session,),
        )


async def _ago(h: Harness, days: float) -> dt.datetime:
    async with h.store.pool.connection() as conn:
        cur = await conn.execute("SELECT now() - make_interval(secs => %s)", (days * 86400,))
        return (await cur.fetchone())[0]  # type: ignore[index,no-any-return]


async def _history(h: Harness) -> dict[str, list[str]]:
    """Record Id -> the Names of its kept versions, oldest first."""
    out: dict[str, list[str]] = {}
    for rid in (A1, A2, A3):
        try:
            versions = await h.storage.record_history(ORG, "Account", rid)
        except NotFound:
            versions = []
        out[rid] = [_name(v.values_json) for v in versions]
    return out


def _name(values_json: str | bytes) -> str:
    return str(json.loads(values_json)["Name"])


async def _three_sessions(h: Harness) -> None:
    """A1: a (30 days ago) -> b (20) -> c (1); A2: a (30) -> b (20); A3: a (30)."""
    s = h.storage
    await data_job(s, session="s1", job="j1")
    await put_raw(s, ORG, "s1", "j1", 1, "Account", [account(1, "a"), account(2, "a"), account(3, "a")])
    await data_job(s, session="s2", job="j1")
    await put_raw(s, ORG, "s2", "j1", 1, "Account", [account(1, "b"), account(2, "b"), account(3, "a")])
    await data_job(s, session="s3", job="j1")
    await put_raw(s, ORG, "s3", "j1", 1, "Account", [account(1, "c"), account(2, "b"), account(3, "a")])
    await _age(h, "s1", 30)
    await _age(h, "s2", 20)
    await _age(h, "s3", 1)


async def _prune(
    h: Harness, rule: PruneRule, *, session: str = "p1", dry_run: bool = False, max_versions: int = 0
) -> list[Any]:
    """Steps 1, 2, ... until done, as the prune job runs them."""
    r = Retention(h.storage)
    await h.storage.begin_job(ORG, session, "prune", JOB_TYPE_PRUNE, "")
    steps = []
    for seq in range(1, 100):
        step = await r.prune_step(
            ChunkRef(ORG, session, "prune", seq), rule, dry_run=dry_run, max_versions=max_versions
        )
        steps.append(step)
        if step.done:
            return steps
    raise AssertionError("the prune never ended")


async def test_a_window_of_7_days_prunes_what_was_superseded_before_it_and_moves_the_horizon(h: Harness) -> None:
    await _three_sessions(h)
    dry = await _prune(h, check_rule(7, 0, False), session="dry", dry_run=True)
    assert len(dry) == 1 and dry[0].record_versions == 2 and dry[0].done
    assert await h.count("record_versions") == 6  # a dry run deletes nothing
    r = Retention(h.storage)
    await r.check_as_of(ORG, ["Account"], await _ago(h, 25))  # nor moves the horizon

    steps = await _prune(h, check_rule(7, 0, False))
    assert sum(s.record_versions for s in steps) == 2  # A1's a and A2's a: superseded 20 days ago
    assert await _history(h) == {A1: ["b", "c"], A2: ["b"], A3: ["a"]}  # every latest kept
    assert steps[-1].horizon is not None
    assert abs((steps[-1].horizon - await _ago(h, 20)).total_seconds()) < 60
    # as of 10 days ago: still exact; 25 days ago: a clear error, never a wrong answer
    v = await h.storage.record_as_of(ORG, "Account", A1, await _ago(h, 10))
    assert _name(v.values_json) == "b"
    await r.check_as_of(ORG, ["Account"], await _ago(h, 10))
    with pytest.raises(FailedPrecondition, match=r"restore points before .* were pruned by retention"):
        await r.check_as_of(ORG, ["Account"], await _ago(h, 25))
    with pytest.raises(FailedPrecondition):
        await r.check_as_of(ORG, [], await _ago(h, 25))  # CompareAsOf of every object
    # the prune's steps are no restore point: the three backups are
    points = await h.storage.restore_points(ORG, "")
    assert sorted(p.session_id for p in points) == ["s1", "s2", "s3"]
    # a second prune finds nothing more
    again = await _prune(h, check_rule(7, 0, False), session="p2")
    assert again[0].record_versions == 0 and again[0].done


async def test_the_versions_count_keeps_the_last_n_of_each_record(h: Harness) -> None:
    await _three_sessions(h)
    await _prune(h, check_rule(0, 1, False))
    assert await _history(h) == {A1: ["c"], A2: ["b"], A3: ["a"]}
    assert await h.count("record_head") == 3


async def test_a_pinned_point_keeps_the_versions_in_force_then_and_stays_readable(h: Harness) -> None:
    await _three_sessions(h)
    r = Retention(h.storage)
    pinned = await _ago(h, 25)
    pin = await r.pin(ORG, pinned, "draft of s2", "s2", ["Account"])
    assert pin == await r.pin(ORG, pinned, "draft of s2", "s2", ["Account"])  # the same pin once
    await _prune(h, check_rule(0, 1, False))
    # A1's a (in force 25 days ago) is kept, its b (20 -> 1 days ago) goes; A2's a kept
    assert await _history(h) == {A1: ["a", "c"], A2: ["a", "b"], A3: ["a"]}
    await r.check_as_of(ORG, ["Account"], pinned)  # the pinned point answers
    assert _name((await h.storage.record_as_of(ORG, "Account", A1, pinned)).values_json) == "a"
    with pytest.raises(FailedPrecondition):
        await r.check_as_of(ORG, ["Account"], await _ago(h, 10))  # A1's b was pruned
    with pytest.raises(InvalidArgument):
        await r.pin(ORG, None, "", "")
    with pytest.raises(NotFound):
        await r.pin(sf_id("00D", 999), pinned, "", "")


async def test_a_legal_hold_keeps_its_org_or_object_until_released(h: Harness) -> None:
    await _three_sessions(h)
    r = Retention(h.storage)
    hold = await r.set_hold(ORG, "", "litigation 42", "pol-1", "alice")
    assert (hold.set_by, hold.policy_id, hold.released_at) == ("alice", "pol-1", None)
    assert (await r.set_hold(ORG, "", "again", "", "bob")).hold_id == hold.hold_id  # one active hold per scope
    step = (await _prune(h, check_rule(0, 1, False)))[0]
    assert step.held and step.done and step.record_versions == 0
    assert await h.count("record_versions") == 6
    with pytest.raises(InvalidArgument):
        await r.set_hold(ORG, "", " ", "", "alice")  # a reason is required

    released = await r.release_hold(str(hold.hold_id), "bob")
    assert released.released_by == "bob" and released.released_at is not None
    assert [x.hold_id for x in await r.holds(ORG, False)] == []
    assert [x.hold_id for x in await r.holds(ORG, True)] == [hold.hold_id]
    with pytest.raises(NotFound):
        await r.release_hold("999999", "bob")
    for bad in ("", "x1", "\u00b2", "1" * 19):  # a superscript two is a digit to str.isdigit, not to int()
        with pytest.raises(InvalidArgument):
            await r.release_hold(bad, "bob")

    await r.set_hold(ORG, "Account", "one object", "", "alice")
    step = (await _prune(h, check_rule(0, 1, False), session="p2"))[0]
    assert step.held and step.record_versions == 0
    await r.release_hold(str((await r.holds(ORG, False))[0].hold_id), "alice")
    step = (await _prune(h, check_rule(0, 1, False), session="p3"))[0]
    assert not step.held and step.record_versions == 3


async def test_prune_latest_forgets_records_deleted_before_the_window(h: Harness) -> None:
    await _three_sessions(h)
    s = h.storage
    await s.begin_job(ORG, "s4", "d1", 3, "Account")
    await s.mark_deleted(ChunkRef(ORG, "s4", "d1", 1), "Account", [A3], Deleted.HARD)
    await _age(h, "s4", 10)
    await _prune(h, check_rule(7, 0, True))
    hist = await _history(h)
    assert hist[A3] == [] and hist[A2] == ["b"]
    assert await h.count("record_head") == 2
    kept, counted = await h.live_counts()
    assert kept == counted  # the live counts follow the pruned heads
    with pytest.raises(InvalidArgument):
        check_rule(0, 0, True)
    for days, versions in ((-1, 0), (0, -1), (36_501, 0), (0, 1_000_001)):
        with pytest.raises(InvalidArgument):
            check_rule(days, versions, False)


async def test_steps_are_bounded_and_idempotent_by_chunk(h: Harness) -> None:
    await _three_sessions(h)
    r = Retention(h.storage)
    rule = check_rule(0, 1, False)
    await h.storage.begin_job(ORG, "p1", "prune", JOB_TYPE_PRUNE, "")
    first = await r.prune_step(ChunkRef(ORG, "p1", "prune", 1), rule, max_versions=1)
    assert first.record_versions == 1 and not first.done and not first.replayed
    replay = await r.prune_step(ChunkRef(ORG, "p1", "prune", 1), rule, max_versions=1)
    assert replay.replayed and replay.record_versions == 1
    assert await h.count("record_versions") == 5  # the redelivered step deleted nothing more
    rest = [await r.prune_step(ChunkRef(ORG, "p1", "prune", seq), rule, max_versions=1) for seq in (2, 3, 4)]
    assert [x.record_versions for x in rest] == [1, 1, 0] and rest[-1].done
    # each step announced its counts (ChunkUploaded): deleted = record versions
    assert [c.deleted for (sess, _j, _s, c) in h.publisher.published if sess == "p1"] == [1, 1, 1, 0]
    # the job registered as another type is refused
    await h.storage.begin_job(ORG, "p9", "x", 3, "Account")
    with pytest.raises(FailedPrecondition, match="not a prune job"):
        await r.prune_step(ChunkRef(ORG, "p9", "x", 1), rule)


async def _body(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_file_versions_and_bodies_go_by_reference_count_across_orgs(h: Harness) -> None:
    s = h.storage
    other = sf_id("00D", 77)
    shared, old, new = os.urandom(1000), os.urandom(2000), os.urandom(3000)

    async def upload(org: str, session: str, seq: int, rec: int, body: bytes) -> None:
        header = FileHeaderIn(ChunkRef(org, session, "f1", seq), "ContentVersion", sf_id("068", rec), len(body))
        await s.upload_file(header, _body(body))

    await s.begin_job(ORG, "s1", "f1", FILE, "")
    await upload(ORG, "s1", 1, 1, old)  # record 1: old -> new
    await upload(ORG, "s1", 2, 2, shared)  # record 2: shared -> new
    await s.begin_job(other, "o1", "f1", FILE, "")
    await upload(other, "o1", 1, 9, shared)  # another org holds the shared body too
    await s.begin_job(ORG, "s2", "f1", FILE, "")
    await upload(ORG, "s2", 1, 1, new)
    await upload(ORG, "s2", 2, 2, new)
    await s.begin_job(ORG, "m1", "m1", METADATA, "")
    await s.put_metadata(ChunkRef(ORG, "m1", "m1", 1), [MetadataComponentIn("ApexClass", "A", b"v1 body")])
    await s.begin_job(ORG, "m2", "m1", METADATA, "")
    await s.put_metadata(ChunkRef(ORG, "m2", "m1", 1), [MetadataComponentIn("ApexClass", "A", b"v2 body!")])
    for session in ("s1", "m1"):
        await _age(h, session, 30)
    for session in ("s2", "m2"):
        await _age(h, session, 20)
    files_before = {p.name for p in h.files_dir.rglob("*") if p.is_file()}

    dry = (await _prune(h, check_rule(7, 0, False), session="dry", dry_run=True))[0]
    assert (dry.file_versions, dry.metadata_versions, dry.file_bodies) == (2, 1, 2)
    steps = await _prune(h, check_rule(7, 0, False))
    assert sum(x.file_versions for x in steps) == 2 and sum(x.metadata_versions for x in steps) == 1
    # bodies: `old` and metadata v1 go; `shared` stays (the other org's record 9 references it)
    assert sum(x.file_bodies for x in steps) == 2
    assert sum(x.bytes_freed for x in steps) == len(old) + len(b"v1 body") == dry.bytes_freed
    files_after = {p.name for p in h.files_dir.rglob("*") if p.is_file()}
    gone = {hashlib.sha256(old).hexdigest(), hashlib.sha256(b"v1 body").hexdigest()}
    assert files_before - files_after == gone
    assert hashlib.sha256(shared).hexdigest() in files_after
    assert await h.count("files") == 3  # shared, new, metadata v2
    with pytest.raises(FailedPrecondition, match="pruned by retention"):
        await Retention(s).check_as_of(ORG, ["#metadata"], await _ago(h, 25))


class _Context:
    def __init__(self) -> None:
        self.code: grpc.StatusCode | None = None

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.code = code
        raise grpc.aio.AbortError(code, details)  # type: ignore[call-arg]


async def test_an_as_of_read_before_the_horizon_is_failed_precondition_through_the_servicer(h: Harness) -> None:
    await _three_sessions(h)
    await _prune(h, check_rule(7, 0, False))
    servicer = StorageServicer(h.storage)  # type: ignore[abstract]
    request = pb.GetRecordAsOfRequest(org_id=ORG, object_name="Account", record_id=A1)
    request.as_of.FromDatetime(await _ago(h, 25))
    ctx = _Context()
    with pytest.raises(grpc.aio.AbortError):
        await servicer.GetRecordAsOf(request, ctx)
    assert ctx.code == grpc.StatusCode.FAILED_PRECONDITION
    request.as_of.FromDatetime(await _ago(h, 10))
    assert _name((await servicer.GetRecordAsOf(request, _Context())).values_json) == "b"


# --- the acceptance (issue 18): 30 daily incrementals at 1 % change, then a retention of 7 days -------------------
# Day d's backup is placed AGES[d] days before now (29.5 ... 0.5). Each incremental stores what changed that day,
# as a jobrunner's would: 1 % of the Accounts (29 renamed, 1 deleted), 1 % of the files (2 bodies replaced, plus
# the special cases below), a metadata component every third day. The test predicts what a 7-day prune removes
# from its own model of the versions (not from storage's answers), with a pin 15 days ago on Account and
# ContentVersion, then measures it: rows, bodies, bytes on disk, database size before and after.
# File bodies by reference count: S is shared by ContentVersions 1 and 2 (1 replaced: S stays); T by ORG's 3 and
# another org (3 replaced: T stays); 4 goes Z -> W -> Z (W goes, Z stays: the latest references it); 5's body M is
# also a metadata component's body (5 replaced: M stays); 6 is replaced 4.5 days ago (its old body stays: its
# version was superseded inside the window); 7's body of day 10 is in force at the pin (kept), its next one not
# (pruned): a file read between them must be refused, not answered with the pinned body; 8's first body A is also
# an Attachment's (another object: 8 replaced, A stays).

DAYS, KEEP_DAYS, PIN_AGE = 30, 7, 15.0
AGES = [DAYS - 0.5 - d for d in range(DAYS)]
N_ACCOUNTS, N_FILES, N_COMPONENTS = 3000, 200, 10
Item = tuple[str, object]  # ("Account", n), ("ContentVersion", n), ("ApexClass", name)


@dataclass
class _Day:
    accounts: dict[int, str] = field(default_factory=dict)  # n -> Name
    deleted: list[int] = field(default_factory=list)
    files: dict[int, bytes] = field(default_factory=dict)  # ContentVersion n -> its body
    metadata: dict[str, bytes] = field(default_factory=dict)  # ApexClass name -> its body


def _thirty_days() -> list[_Day]:
    rng = random.Random(18)

    def body() -> bytes:
        return rng.randbytes(rng.randint(2_000, 20_000))

    shared_s, shared_t, z, w, m, a = body(), body(), body(), body(), body(), body()
    first = _Day(
        accounts={n: f"Account {n} as created, with a name long enough to weigh" for n in range(1, N_ACCOUNTS + 1)},
        files={n: body() for n in range(1, N_FILES + 1)} | {1: shared_s, 2: shared_s, 3: shared_t, 4: z, 5: m, 8: a},
        metadata={f"C{i}": f"public class C{i} {{ /* day 0 */ }}".encode() for i in range(N_COMPONENTS)}
        | {"Shared": m},
    )
    days = [first]
    live = list(range(1, N_ACCOUNTS + 1))
    special: dict[int, dict[int, bytes]] = {3: {1: body()}, 4: {3: body()}, 5: {4: w}, 6: {5: body()}, 10: {4: z}}
    special[25], special[2] = {6: body()}, {8: body()}
    for d in (10, 18, 20):  # 7: its day-10 body is in force at the pin (kept), its day-18 body is not (pruned)
        special.setdefault(d, {})[7] = body()
    for d in range(1, DAYS):
        picked = rng.sample(live, 30)
        live.remove(picked[-1])
        day = _Day(accounts={n: f"Account {n} renamed on day {d}" for n in picked[:-1]}, deleted=[picked[-1]])
        day.files = {n: body() for n in rng.sample(range(9, N_FILES + 1), 2)} | special.get(d, {})
        if d % 3 == 0:
            day.metadata = {f"C{d % N_COMPONENTS}": f"public class C{d % N_COMPONENTS} {{ /* day {d} */ }}".encode()}
        days.append(day)
    return days


def _versions(days: list[_Day]) -> dict[Item, list[tuple[int, object]]]:
    """Every item's versions as (day, content), oldest first: a Name or None (deleted), a body."""
    out: dict[Item, list[tuple[int, object]]] = {}
    for d, day in enumerate(days):
        for n, name in day.accounts.items():
            out.setdefault(("Account", n), []).append((d, name))
        for n in day.deleted:
            out[("Account", n)].append((d, None))
        for n, data in day.files.items():
            out.setdefault(("ContentVersion", n), []).append((d, data))
        for name, data in day.metadata.items():
            out.setdefault(("ApexClass", name), []).append((d, data))
    return out


def _predicted_pruned(item: Item, versions: list[tuple[int, object]]) -> list[int]:
    """Indexes of the versions a 7-day prune removes: superseded more than 7 days ago, except the one in force at
    the pin (Account and ContentVersion only: metadata is pinned only by a pin of every object)."""
    pinned = item[0] in ("Account", "ContentVersion")
    out = []
    for i, ((day, _), (next_day, _)) in enumerate(itertools.pairwise(versions)):
        if AGES[next_day] <= KEEP_DAYS:
            continue
        if pinned and AGES[day] >= PIN_AGE > AGES[next_day]:
            continue
        out.append(i)
    return out


async def _store_days(h: Harness, days: list[_Day]) -> None:
    s = h.storage
    s.max_chunk_records = 1000
    for d, day in enumerate(days):
        session = f"day{d:02d}"
        await data_job(s, session=session, job="accounts")
        names = sorted(day.accounts.items())
        seq = 0
        for start in range(0, len(names), 1000):
            seq += 1
            raws = [account(n, name, AnnualRevenue=n * 10.5) for n, name in names[start : start + 1000]]
            await put_raw(s, ORG, session, "accounts", seq, "Account", raws)
        if day.deleted:
            ids = [sf_id("001", n) for n in day.deleted]
            await s.mark_deleted(ChunkRef(ORG, session, "accounts", seq + 1), "Account", ids, Deleted.SOFT)
        await s.begin_job(ORG, session, "files", FILE, "")
        for seq, (n, data) in enumerate(sorted(day.files.items()), 1):
            header = FileHeaderIn(ChunkRef(ORG, session, "files", seq), "ContentVersion", sf_id("068", n), len(data))
            await s.upload_file(header, _body(data))
        if day.metadata:
            await s.begin_job(ORG, session, "metadata", METADATA, "")
            components = [MetadataComponentIn("ApexClass", name, data) for name, data in sorted(day.metadata.items())]
            await s.put_metadata(ChunkRef(ORG, session, "metadata", 1), components)
    for d in range(DAYS):  # in order: a record's head is changed at its latest day
        await _age(h, f"day{d:02d}", AGES[d])


async def _reads(
    h: Harness, when: dt.datetime, file_ids: list[int], *, metadata_too: bool = True
) -> tuple[bytes, dict[int, str], dict[str, str]]:
    """What an as-of read answers at `when`: the Accounts' export (deleted ones too), the files' bodies' SHA-256,
    the metadata components' bodies' SHA-256 (unless not asked: the pin does not cover metadata)."""
    s = h.storage
    export = b"".join(
        [d async for d, _ in s.export_as_of(ORG, "Account", when, csv_format=False, include_deleted=True)]
    )
    files = {}
    for n in file_ids:
        _v, _loc, _size, stream = await s.open_file(ORG, "", "ContentVersion", sf_id("068", n), when)
        files[n] = hashlib.sha256(b"".join([c async for c in stream])).hexdigest()
    metadata = {}
    for name in [f"C{i}" for i in range(N_COMPONENTS)] + ["Shared"] if metadata_too else []:
        _row, content = await s.metadata_as_of(ORG, "ApexClass", name, when)
        metadata[name] = hashlib.sha256(content).hexdigest()
    return export, files, metadata


def _disk(h: Harness) -> dict[str, int]:
    """The file repository's bodies on disk: name -> bytes."""
    return {p.name: p.stat().st_size for p in h.files_dir.rglob("*") if p.is_file() and ".tmp" not in p.parts}


async def _space(h: Harness, *, full: bool) -> dict[str, tuple[int, int]]:
    """Each version and body table's (heap bytes, pg_total_relation_size: heap, indexes, TOAST) after a VACUUM --
    plain: dead rows' space free for new rows; FULL: given back to the file system."""
    out = {}
    async with await psycopg.AsyncConnection.connect(h.store.pool.conninfo, autocommit=True) as conn:
        for table in ("record_versions", "file_versions", "metadata_versions", "files"):
            cur = await conn.execute(
                "SELECT c.oid::regclass::text FROM pg_class c WHERE c.relnamespace = 'storage'::regnamespace"
                " AND c.relkind = 'r' AND (c.relname = %s OR c.relname LIKE %s)",
                (table, f"{table}\\_p%"),
            )
            parts = [r[0] for r in await cur.fetchall()]
            for part in parts:
                await conn.execute(f"VACUUM {'FULL ' if full else ''}{part}")
            cur = await conn.execute(
                "SELECT coalesce(sum(pg_relation_size(r::regclass)), 0),"
                " coalesce(sum(pg_total_relation_size(r::regclass)), 0) FROM unnest(%s::text[]) AS r",
                (parts,),
            )
            heap, total = await cur.fetchone()  # type: ignore[misc]
            out[table] = (int(heap), int(total))
    return out


async def test_thirty_daily_incrementals_then_seven_days_of_retention_free_what_was_predicted(h: Harness) -> None:
    days = _thirty_days()
    model = _versions(days)
    s = h.storage
    t_body, a_body = days[0].files[3], days[0].files[8]
    held_elsewhere = (  # T by another org's ContentVersion, A by an Attachment of this org: kept by the prune
        FileHeaderIn(ChunkRef(sf_id("00D", 78), "other", "files", 1), "ContentVersion", sf_id("068", 900), len(t_body)),
        FileHeaderIn(ChunkRef(ORG, "attachments", "files", 1), "Attachment", sf_id("00P", 1), len(a_body)),
    )
    for header, data in zip(held_elsewhere, (t_body, a_body), strict=True):
        await s.begin_job(header.chunk.org_id, header.chunk.session_id, "files", FILE, "")
        await s.upload_file(header, _body(data))
    await _store_days(h, days)
    await _age(h, "other", 40)
    await _age(h, "attachments", 40)

    # the prediction, from the model alone
    pruned = {item: _predicted_pruned(item, v) for item, v in model.items()}
    kept = {item: [c for i, (_d, c) in enumerate(v) if i not in pruned[item]] for item, v in model.items()}
    count = {
        kind: sum(len(p) for (k, _), p in pruned.items() if k == kind)
        for kind in ("Account", "ContentVersion", "ApexClass")
    }
    bodies_before = {c for (k, _), v in model.items() if k != "Account" for _d, c in v} | {t_body, a_body}
    bodies_after = {c for (k, _), v in kept.items() if k != "Account" for c in v} | {t_body, a_body}
    bodies_gone = {hashlib.sha256(b).hexdigest(): len(b) for b in bodies_before - bodies_after}  # type: ignore[arg-type]
    horizon_day = max(v[i + 1][0] for (k, _), v in model.items() if k == "Account" for i in pruned[(k, _)])
    # storage holds exactly the model before the prune
    assert await h.count("record_versions") == sum(len(v) for (k, _), v in model.items() if k == "Account")
    assert await h.count("file_versions") == sum(len(v) for (k, _), v in model.items() if k == "ContentVersion") + 2
    assert await h.count("files") == len(bodies_before)

    pinned = await _ago(h, PIN_AGE)
    await Retention(s).pin(ORG, pinned, "a restore draft's point", "", ["Account", "ContentVersion"])
    changed_files = sorted({n for (k, n), v in model.items() if k == "ContentVersion" and len(v) > 1})  # type: ignore[misc]
    inside = [await _ago(h, age) for age in (AGES[horizon_day], 7.25, 6.9, 5.25, 3.0, 0.25)]
    before = {when: await _reads(h, when, changed_files, metadata_too=when != pinned) for when in [pinned, *inside]}
    disk_before, db_before = _disk(h), await _space(h, full=True)
    rows_before = {t: await h.count(t) for t in ("record_versions", "file_versions", "metadata_versions", "files")}

    dry = (await _prune(h, check_rule(KEEP_DAYS, 0, False), session="dry", dry_run=True))[0]
    steps = await _prune(h, check_rule(KEEP_DAYS, 0, False), max_versions=250)
    disk_after, db_vacuumed = _disk(h), await _space(h, full=False)
    rows_after = {t: await h.count(t) for t in rows_before}
    freed = sum(x.bytes_freed for x in steps)
    print(
        f"\n30 days x 1 %: {rows_before['record_versions']:,} record versions, {rows_before['file_versions']:,} file"
        f" versions, {rows_before['metadata_versions']} metadata versions, {rows_before['files']} bodies"
        f" ({sum(disk_before.values()):,} bytes on disk); a 7-day prune in {len(steps)} steps removed"
        f" {count['Account']} record, {count['ContentVersion']} file and {count['ApexClass']} metadata versions and"
        f" {len(bodies_gone)} bodies: {sum(disk_before.values()) - sum(disk_after.values()):,} bytes freed on disk"
        f" (reported {freed:,})"
    )

    # versions and bodies: exactly the prediction, in the dry run, the steps' counts and the tables
    expected = (
        count["Account"],
        count["ApexClass"],
        count["ContentVersion"],
        len(bodies_gone),
        sum(bodies_gone.values()),
    )
    assert (dry.record_versions, dry.metadata_versions, dry.file_versions, dry.file_bodies, dry.bytes_freed) == expected
    assert (
        sum(x.record_versions for x in steps),
        sum(x.metadata_versions for x in steps),
        sum(x.file_versions for x in steps),
        sum(x.file_bodies for x in steps),
        freed,
    ) == expected
    assert len(steps) > 1 and steps[-1].done
    assert rows_before["record_versions"] - rows_after["record_versions"] == count["Account"]
    assert rows_before["metadata_versions"] - rows_after["metadata_versions"] == count["ApexClass"]
    assert rows_before["file_versions"] - rows_after["file_versions"] == count["ContentVersion"]
    assert rows_before["files"] - rows_after["files"] == len(bodies_gone)
    # the repository: exactly those bodies' files went, and their bytes
    assert set(disk_before) - set(disk_after) == set(bodies_gone) and set(disk_after) <= set(disk_before)
    assert sum(disk_before.values()) - sum(disk_after.values()) == sum(bodies_gone.values())
    for special in (days[0].files[1], t_body, days[0].files[4], days[0].files[5], a_body):  # S, T, Z, M, A stay
        assert hashlib.sha256(special).hexdigest() in disk_after
    assert hashlib.sha256(days[5].files[4]).hexdigest() in bodies_gone  # W: no version references it any more
    # every record keeps exactly the predicted versions (its latest always, live or deleted)
    async with h.store.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT record_id, deleted, data->>'Name' FROM storage.record_versions ORDER BY version_id"
        )
        stored: dict[str, list[object]] = {}
        for rid, deleted, name in await cur.fetchall():
            stored.setdefault(rid, []).append(None if deleted else name)
    assert stored == {sf_id("001", n): kept[(k, n)] for (k, n) in kept if k == "Account"}  # type: ignore[arg-type]

    # the horizon: the latest time a pruned Account version was still in force
    assert steps[-1].horizon is not None
    assert abs((steps[-1].horizon - await _ago(h, AGES[horizon_day])).total_seconds()) < 60
    # inside the window and at the pin: every read as it was before the prune
    for when, reads in before.items():
        assert await _reads(h, when, changed_files, metadata_too=when != pinned) == reads, when
    r = Retention(s)
    for when in [pinned, *inside]:
        await r.check_as_of(ORG, ["Account"], when)
    # before the horizon: a clear FAILED_PRECONDITION naming the horizon, never a wrong answer
    servicer = StorageServicer(s)  # type: ignore[abstract]
    request = pb.GetRecordAsOfRequest(org_id=ORG, object_name="Account", record_id=sf_id("001", 1))
    request.as_of.FromDatetime(await _ago(h, 10))
    ctx = _Context()
    with pytest.raises(grpc.aio.AbortError) as refused:
        await servicer.GetRecordAsOf(request, ctx)
    assert ctx.code == grpc.StatusCode.FAILED_PRECONDITION
    assert f"restore points before {steps[-1].horizon.isoformat()} were pruned by retention" in str(refused.value)
    with pytest.raises(FailedPrecondition, match="pruned by retention"):
        await r.check_as_of(ORG, ["#metadata"], await _ago(h, 10))
    # files too: ContentVersion 7's pinned day-10 body is kept and its day-18 one pruned, so a read 10 days ago
    # (day 19.5) would find the day-10 body -- the file scope's horizon refuses it; the pinned point is served
    with pytest.raises(FailedPrecondition, match="pruned by retention"):
        await r.check_as_of(ORG, ["file:ContentVersion"], await _ago(h, 10))
    await r.check_as_of(ORG, ["file:ContentVersion"], pinned)
    # and GetFile, a record's body as of a point, asks it first (the restore's file reads go through it)
    file_request = pb.GetFileRequest(org_id=ORG, object_name="ContentVersion", record_id=sf_id("068", 7))
    file_request.as_of.FromDatetime(await _ago(h, 10))
    ctx = _Context()
    with pytest.raises(grpc.aio.AbortError):
        async for _piece in servicer.GetFile(file_request, ctx):
            pass
    assert ctx.code == grpc.StatusCode.FAILED_PRECONDITION
    file_request.as_of.FromDatetime(pinned)
    served = b"".join([piece.data async for piece in servicer.GetFile(file_request, _Context())])
    assert hashlib.sha256(served).hexdigest() == before[pinned][1][7], "the pinned point's body"
    # a second prune finds nothing more
    again = await _prune(h, check_rule(KEEP_DAYS, 0, False), session="again")
    assert (again[0].record_versions, again[0].file_versions, again[0].file_bodies) == (0, 0, 0)

    # the database's space: the pruned rows' space is free for new rows once (auto)vacuumed -- a new version of
    # each record that lost some (far shorter than any pruned one; more bytes than a partition's last pages could
    # hold) fits in it, the table does not grow -- and given back to the file system by VACUUM FULL (which storage
    # leaves to the operator: it locks the table)
    thinned = sorted({n for (k, n), p in pruned.items() if k == "Account" and p})  # type: ignore[type-var]
    await data_job(s, session="day30", job="accounts")
    for start in range(0, len(thinned), 1000):
        raws = [account(n, "d31") for n in thinned[start : start + 1000]]
        await put_raw(s, ORG, "day30", "accounts", start // 1000 + 1, "Account", raws)
    db_reused = await _space(h, full=False)
    db_after = await _space(h, full=True)
    print(
        f"  database, heap bytes: record_versions {db_before['record_versions'][0]:,} before the prune (compact),"
        f" {db_vacuumed['record_versions'][0]:,} after it and VACUUM, {db_reused['record_versions'][0]:,} after"
        f" {len(thinned)} new versions; after VACUUM FULL, all bytes (with indexes) before -> after: "
        + ", ".join(f"{t} {db_before[t][1]:,} -> {db_after[t][1]:,}" for t in db_before)
    )
    assert db_reused["record_versions"][0] == db_vacuumed["record_versions"][0] <= db_before["record_versions"][0]
    assert db_after["record_versions"][1] < db_before["record_versions"][1]
    assert db_after["files"][1] < db_before["files"][1]


@pytest.fixture
def h(harness: Harness) -> Harness:
    return harness
