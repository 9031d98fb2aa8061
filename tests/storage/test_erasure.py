"""Erasure (issue 18, GDPR Article 17) on a real PostgreSQL and file repository: records erased whole (every
version, head, file version, body only they referenced), by Id or by a value in fields; the audit row without the
value; tombstones keep an erased record deleted in the org from coming back; VerifyErasure scans versions and
bodies; bad requests and legal holds refused."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator

import pytest
from psycopg_pool import AsyncConnectionPool

from services.platform.auth import Principal
from services.storage.application import ChunkRef, FileHeaderIn, Storage
from services.storage.domain import Deleted, FailedPrecondition, InvalidArgument, NotFound
from services.storage.erasure import (
    BodyScanner,
    body_needles,
    erase_request,
    keyed_hash,
    tombstoned_positions,
)
from services.storage.store import PostgresStore, open_store_pool
from tests.storage.conftest import ACCOUNT, FILE, ORG, Harness, RecordingPublisher, account, data_job, put_raw, sf_id

ADMIN = Principal("alice", "admin", "tok-1")
MAIL = "Jane.Doe@Example.com"


async def _body(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _file(seq: int, record_id: str, data: bytes, object_name: str = "Account") -> FileHeaderIn:
    return FileHeaderIn(ChunkRef(ORG, "s1", "f1", seq), object_name, record_id, len(data))


async def _backup(h: Harness) -> None:
    """Account 1 holds the e-mail (its second version only), 2 never did, 3 in its first version; files: Account
    1 has a body of its own and one shared with Account 2."""
    s = h.storage
    await data_job(s)
    await put_raw(s, ORG, "s1", "j1", 1, "Account", [account(1, "Acme"), account(2, "Other"), account(3, MAIL)])
    await put_raw(s, ORG, "s1", "j1", 2, "Account", [account(1, "jane.doe@example.com "), account(3, "Renamed")])
    await s.begin_job(ORG, "s1", "f1", FILE, "")
    own, shared = b"own body " + os.urandom(64), b"shared body " + os.urandom(64)
    await s.upload_file(_file(1, sf_id("001", 1), own), _body(own))
    await s.upload_file(_file(2, sf_id("001", 1), shared), _body(shared))
    await s.upload_file(_file(3, sf_id("001", 2), shared), _body(shared))


def test_requests_are_checked() -> None:
    ok = erase_request("", [], " x@y.z ", ["Contact.Email", "contact.email", "Lead.Email"], "GDPR request 42")
    assert ok.value == "x@y.z" and [f"{f.object_name}.{f.field}" for f in ok.fields] == ["Contact.Email", "Lead.Email"]
    by_id = erase_request("Contact", [sf_id("003", 1)[:15]], "", [], "why")
    assert by_id.ids == (sf_id("003", 1),)
    bad = [
        (("Contact", [sf_id("003", 1)], "", [], " "), "reason"),
        (("", [sf_id("003", 1)], "", [], "r"), "object_name"),
        (("Contact", [], "", [], "r"), "ids"),
        (("", [], "x@y.z", [], "r"), "fields"),
        (("", [], "", ["Contact.Email"], "r"), "blank"),
        (("Contact", [sf_id("003", 1)], "x@y.z", ["Contact.Email"], "r"), "not both"),
        (("", [], "x@y.z", ["ContactEmail"], "r"), "Object.Field"),
        (("", [], "", [], "r"), "nothing to erase"),
        (("Contact", ["nope"], "", [], "r"), "not a Salesforce Id"),
    ]
    for args, words in bad:
        with pytest.raises(InvalidArgument, match=words):
            erase_request(*args)  # type: ignore[arg-type]


def test_value_hash_is_keyed_and_case_blind_and_body_scan_spans_pieces() -> None:
    assert keyed_hash(b"k", MAIL) == keyed_hash(b"k", " jane.doe@example.COM")
    assert keyed_hash(b"k", MAIL) != keyed_hash(b"other", MAIL)
    assert MAIL.lower().encode() not in keyed_hash(b"k", MAIL)
    scanner = BodyScanner(body_needles(MAIL))
    assert not scanner.feed(b"xx JANE.DOE@exam")
    assert scanner.feed(b"ple.com yy")
    utf16 = BodyScanner(body_needles(MAIL))
    assert utf16.feed(("hello " + MAIL).encode("utf-16-le"))


async def test_erase_by_value_removes_every_version_head_file_and_unshared_body(harness: Harness) -> None:
    h, s = harness, harness.storage
    await _backup(h)
    before_bodies = await h.count("files")
    dry = await s.erasures.erase(ORG, "", [], MAIL, ["Account.Name"], "GDPR 17", dry_run=True, eraser=ADMIN)
    assert dry.erasure_id == "" and sorted(r.record_id for r in dry.records) == [sf_id("001", 1), sf_id("001", 3)]
    assert (dry.versions, dry.file_bodies) == (4, 1)
    assert await h.count("record_versions") == 5 and await h.count("files") == before_bodies  # nothing gone

    done = await s.erasures.erase(ORG, "", [], MAIL, ["account.name"], "GDPR 17", dry_run=False, eraser=ADMIN)
    assert done.erasure_id.startswith("er-")
    by_id = {r.record_id: r for r in done.records}
    assert (by_id[sf_id("001", 1)].versions, by_id[sf_id("001", 1)].file_bodies) == (2, 1)
    assert (by_id[sf_id("001", 3)].versions, by_id[sf_id("001", 3)].file_bodies) == (2, 0)
    assert await h.count("record_versions") == 1 and await h.count("record_head") == 1
    kept, counted = await h.live_counts()
    assert kept == counted and sum(kept.values()) == 1  # the live counts follow the erased heads
    # Account 1's own body is gone from the table and the repository; the shared one stays for Account 2
    assert await h.count("files") == before_bodies - 1 and await h.count("file_versions") == 1
    stored = [p for p in h.files_dir.rglob("*") if p.is_file() and ".tmp" not in p.parts]
    assert len(stored) == 1 and stored[0].read_bytes().startswith(b"shared body")
    with pytest.raises(NotFound):
        await s.record_history(ORG, "Account", sf_id("001", 1))
    exported = b"".join(
        [p async for p, _n in s.export_as_of(ORG, "Account", None, csv_format=False, include_deleted=True)]
    )
    assert b"jane" not in exported.lower() and b"Other" in exported

    # the audit keeps who, why, what and a keyed hash: never the value
    async with h.store.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT erased_by, role, reason, value_hash, fields, records::text, versions, file_bodies"
            " FROM storage.erasures"
        )
        [row] = await cur.fetchall()
        cur = await conn.execute("SELECT t::text FROM storage.erasures t")
        [(whole,)] = await cur.fetchall()
    assert row[:3] == ("alice", "admin", "GDPR 17") and row[4] == ["account.name"] and row[6:] == (4, 1)
    assert bytes(row[3]) == keyed_hash(await h.store.erasure_key(), MAIL)
    assert sf_id("001", 1) in row[5] and "jane" not in whole.lower()

    clean = await s.erasures.verify(ORG, MAIL, [], "")
    assert (clean.versions_holding, clean.file_bodies_holding, clean.samples) == (0, 0, [])
    proof = await s.erasures.verify(ORG, "", [], done.erasure_id)
    assert proof.versions_holding == 0 and proof.file_bodies_holding == 0


async def test_verify_finds_values_in_versions_and_bodies_and_erase_by_id(harness: Harness) -> None:
    h, s = harness, harness.storage
    await _backup(h)
    leaked = b"%PDF notes: contact " + MAIL.upper().encode() + b" by phone"
    await s.upload_file(_file(4, sf_id("001", 2), leaked), _body(leaked))
    found = await s.erasures.verify(ORG, MAIL, [], "")
    assert (found.versions_holding, found.file_bodies_holding) == (2, 1)
    # versions of Accounts 1 and 3; the body is Account 2's file
    assert sorted(found.samples) == [f"Account:{sf_id('001', n)}" for n in (1, 2, 3)]
    in_fields = await s.erasures.verify(ORG, MAIL, ["Account.AnnualRevenue"], "")
    assert in_fields.versions_holding == 0 and in_fields.file_bodies_holding == 1
    # by Id: the record's every version and its files; the leaked body is Account 2's, erased with it
    done = await s.erasures.erase(
        ORG, "Account", [sf_id("001", 2), sf_id("001", 9)], "", [], "asked", dry_run=False, eraser=ADMIN
    )
    assert [(r.record_id, r.versions, r.file_bodies) for r in done.records] == [(sf_id("001", 2), 1, 1)]
    after = await s.erasures.verify(ORG, MAIL, [], "")
    assert (after.versions_holding, after.file_bodies_holding) == (2, 0)
    assert hashlib.sha256(leaked).hexdigest() not in {p.name for p in h.files_dir.rglob("*")}
    with pytest.raises(NotFound):
        await s.erasures.verify(ORG, "", [], "er-unknown")
    with pytest.raises(InvalidArgument):
        await s.erasures.verify(ORG, "", [], "")
    with pytest.raises(NotFound):
        await s.erasures.erase(
            sf_id("00D", 999), "Account", [sf_id("001", 1)], "", [], "r", dry_run=False, eraser=ADMIN
        )


async def test_an_erased_record_deleted_in_the_org_does_not_come_back(harness: Harness) -> None:
    h, s = harness, harness.storage
    await _backup(h)
    rid = sf_id("001", 1)
    await s.erasures.erase(ORG, "Account", [rid], "", [], "asked", dry_run=False, eraser=ADMIN)
    # the next backup: the org has it in its recycle bin (queryAll IsDeleted), then getDeleted / reconciliation
    await s.begin_job(ORG, "s2", "j2", 3, "Account")
    await s.put_schema(ORG, "s2", ACCOUNT)
    again = await put_raw(s, ORG, "s2", "j2", 1, "Account", [account(1, "Acme", IsDeleted=True), account(2, "Other")])
    assert (again.counts.received, again.counts.unchanged, again.counts.new_versions) == (2, 2, 0)
    alone = await put_raw(s, ORG, "s2", "j2", 2, "Account", [account(1, "Acme", IsDeleted=True)])
    assert (alone.counts.received, alone.counts.unchanged) == (1, 1)
    gone = await s.mark_deleted(ChunkRef(ORG, "s2", "j2", 3), "Account", [rid], Deleted.HARD)
    assert gone.result["unknown_ids"] == [] and gone.counts.unchanged == 1
    with pytest.raises(NotFound):
        await s.record_history(ORG, "Account", rid)
    # live in the org again: stored again (the org holds it), then its deletion is a version like any other
    back = await put_raw(s, ORG, "s2", "j2", 4, "Account", [account(1, "Acme")])
    assert back.counts.new_versions == 1
    deleted = await put_raw(s, ORG, "s2", "j2", 5, "Account", [account(1, "Acme", IsDeleted=True)])
    assert deleted.counts.deleted == 1
    assert [v.deleted for v in await s.record_history(ORG, "Account", rid)] == [Deleted.LIVE, Deleted.SOFT]
    assert await h.count("erased_records") == 1


async def test_tombstones_seen_by_another_replica_after_its_refresh(harness: Harness) -> None:
    from services.storage.application import Storage
    from tests.storage.conftest import RecordingPublisher

    h = harness
    await _backup(h)
    other = Storage(h.store, h.storage.files, RecordingPublisher())
    other.tombstones.refresh_s = 0.0  # looks at the erasures table at every chunk
    assert await other.tombstones.of(1, 1) == frozenset()
    await h.storage.erasures.erase(ORG, "Account", [sf_id("001", 3)], "", [], "r", dry_run=False, eraser=ADMIN)
    org_key = await h.store.org_key(ORG)
    found = await h.store.object_key(org_key, "Account")  # type: ignore[arg-type]
    assert found is not None
    assert await other.tombstones.of(org_key, found[0]) == frozenset({sf_id("001", 3)})  # type: ignore[arg-type]


def test_tombstoned_positions_only_deleted_rows_without_head() -> None:
    from types import SimpleNamespace

    chunk = SimpleNamespace(columns=(["a", "b", "c", "d"], [], [], [], [1, 0, 1, 1], [], []))
    assert tombstoned_positions(chunk, {"a", "b", "c"}, {"c": None}) == [0]  # type: ignore[arg-type]


async def test_a_legal_hold_on_the_object_or_the_org_refuses_the_erasure(harness: Harness) -> None:
    h, s = harness, harness.storage
    await _backup(h)
    rid = sf_id("001", 1)

    async def erase() -> object:
        return await s.erasures.erase(ORG, "Account", [rid], "", [], "asked", dry_run=False, eraser=ADMIN)

    other = await h.store.set_hold(ORG, "Contact", "another object", "", "lawyer")
    on_object = await h.store.set_hold(ORG, "account", "litigation", "", "lawyer")
    with pytest.raises(FailedPrecondition, match="legal hold"):
        await erase()
    with pytest.raises(FailedPrecondition, match="legal hold"):  # by value too
        await s.erasures.erase(ORG, "", [], MAIL, ["Account.Name"], "asked", dry_run=True, eraser=ADMIN)
    await h.store.release_hold(on_object.hold_id, "lawyer")
    on_org = await h.store.set_hold(ORG, "", "whole org", "", "lawyer")
    with pytest.raises(FailedPrecondition, match="legal hold"):
        await erase()
    assert await h.count("record_versions") == 5 and await h.count("erasures") == 0
    await h.store.release_hold(on_org.hold_id, "lawyer")
    assert other.released_at is None  # a hold on another object does not stop it
    done = await erase()
    assert await h.count("erasures") == 1 and done is not None


async def test_a_chunk_in_flight_on_the_record_commits_first_and_its_version_is_erased_too(
    harness: Harness, database_url: str
) -> None:
    h, s = harness, harness.storage
    await _backup(h)
    rid = sf_id("001", 1)
    reached, go_on = asyncio.Event(), asyncio.Event()

    async def hold_the_head(point: str) -> None:
        if point == "records.after_head":
            reached.set()
            await go_on.wait()

    # another replica erases (its own pool)
    pool = await open_store_pool(database_url, min_size=3, max_size=3)
    try:
        replica = Storage(PostgresStore(pool), s.files, RecordingPublisher())
        h.store._fault = hold_the_head
        chunk = asyncio.create_task(put_raw(s, ORG, "s1", "j1", 9, "Account", [account(1, "A third version")]))
        await reached.wait()  # the chunk holds Account 1's head (a new version on its way)
        erase = asyncio.create_task(
            replica.erasures.erase(ORG, "Account", [rid], "", [], "asked", dry_run=False, eraser=ADMIN)
        )
        await _lock_waiters(pool, 1)  # the erasure waits for the chunk's lock on the head
        assert not erase.done()
        go_on.set()
        assert (await chunk).counts.changed == 1
        done = await erase
    finally:
        await pool.close()
    assert done.records[0].versions == 3  # the chunk's version too
    assert await h.count("record_versions") == 3 and await h.count("record_head") == 2


async def _lock_waiters(pool: AsyncConnectionPool, n: int, timeout_s: float = 20.0) -> None:
    """Until n sessions of the database wait for a lock (polled: PostgreSQL announces no such thing)."""
    async with asyncio.timeout(timeout_s), pool.connection() as conn:
        for _ in iter(int, 1):
            cur = await conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
            row = await cur.fetchone()
            if row is not None and row[0] >= n:
                return
            await asyncio.sleep(0.01)
