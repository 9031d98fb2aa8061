"""Keep (issue 18) against a real PostgreSQL: the prune step's rules on known versions (the window, the versions
count, the latest kept, pins, legal holds, shared file bodies, bytes freed), its bounded and idempotent steps, the
retention horizon of as-of reads, legal holds and pins themselves."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from sfvault.storage.v1 import storage_pb2 as pb

from services.storage.api_retention import StorageServicer
from services.storage.application import FileHeaderIn, MetadataComponentIn
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
        step = await r.prune_step(ORG, session, "prune", seq, rule, dry_run=dry_run, max_versions=max_versions)
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
    await s.mark_deleted(ORG, "s4", "d1", 1, "Account", [A3], Deleted.HARD)
    await _age(h, "s4", 10)
    await _prune(h, check_rule(7, 0, True))
    hist = await _history(h)
    assert hist[A3] == [] and hist[A2] == ["b"]
    assert await h.count("record_head") == 2
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
    first = await r.prune_step(ORG, "p1", "prune", 1, rule, max_versions=1)
    assert first.record_versions == 1 and not first.done and not first.replayed
    replay = await r.prune_step(ORG, "p1", "prune", 1, rule, max_versions=1)
    assert replay.replayed and replay.record_versions == 1
    assert await h.count("record_versions") == 5  # the redelivered step deleted nothing more
    rest = [await r.prune_step(ORG, "p1", "prune", seq, rule, max_versions=1) for seq in (2, 3, 4)]
    assert [x.record_versions for x in rest] == [1, 1, 0] and rest[-1].done
    # each step announced its counts (ChunkUploaded): deleted = record versions
    assert [c.deleted for (sess, _j, _s, c) in h.publisher.published if sess == "p1"] == [1, 1, 1, 0]
    # the job registered as another type is refused
    await h.storage.begin_job(ORG, "p9", "x", 3, "Account")
    with pytest.raises(FailedPrecondition, match="not a prune job"):
        await r.prune_step(ORG, "p9", "x", 1, rule)


async def _body(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_file_versions_and_bodies_go_by_reference_count_across_orgs(h: Harness) -> None:
    s = h.storage
    other = sf_id("00D", 77)
    shared, old, new = os.urandom(1000), os.urandom(2000), os.urandom(3000)

    async def upload(org: str, session: str, seq: int, rec: int, body: bytes) -> None:
        header = FileHeaderIn(org, session, "f1", seq, "ContentVersion", sf_id("068", rec), len(body))
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
    await s.put_metadata(ORG, "m1", "m1", 1, [MetadataComponentIn("ApexClass", "A", b"v1 body")])
    await s.begin_job(ORG, "m2", "m1", METADATA, "")
    await s.put_metadata(ORG, "m2", "m1", 1, [MetadataComponentIn("ApexClass", "A", b"v2 body!")])
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


@pytest.fixture
def h(harness: Harness) -> Harness:
    return harness
