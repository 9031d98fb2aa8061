"""PutRecords: records in canonical form, column by column (as the jobrunner sends them), stored with exactly the
hash and values the one canonicaliser (services/canonical.py) gives; idempotent, validated, spot-checked, refused
under other rules; heads of the old rules 1 rehashed once at start-up."""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass, replace
from types import SimpleNamespace

import grpc
import psycopg
import pytest
from sfvault.storage.v1 import storage_pb2 as pb

from services.canonical import CANONICAL_RULES, RecordCanonicalizer, content_hash
from services.storage.api import _status
from services.storage.application import ChunkRef, Storage
from services.storage.domain import FailedPrecondition, InvalidArgument
from tests.storage.conftest import ACCOUNT, ORG, Harness, account, data_job, put_raw, random_org, sf_id

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Canon:  # one record of a chunk, before its columns are joined
    record_id: str
    values: bytes
    other_values: bytes
    system_modstamp: str
    deleted: bool


def canon(raw: bytes, *, formulas: bool = False) -> Canon:
    p = RecordCanonicalizer(ACCOUNT, count_formula_changes=formulas).parts(json.loads(raw))
    return Canon(p.record_id, p.values, p.other_values, p.system_modstamp or "", bool(p.deleted))


def columns(records: list[Canon]) -> pb.CanonicalColumns:
    """The records as PutRecordsRequest.canonical_columns carries them."""
    return pb.CanonicalColumns(
        record_ids="".join(c.record_id + "\n" for c in records).encode(),
        values=b"".join(c.values + b"\n" for c in records),
        other_values=b"".join(c.other_values + b"\n" for c in records),
        system_modstamps="".join(c.system_modstamp + "\n" for c in records).encode(),
        deleted=bytes(c.deleted for c in records),
    )


async def put(s: Storage, seq: int, records: list[Canon], job: str = "j1", rules: int = CANONICAL_RULES) -> object:
    return await s.put_records(ChunkRef(ORG, "s1", job, seq), "Account", columns(records), rules, False)


async def history(h: Harness, rid: str) -> list[tuple[bytes, str]]:
    async with h.store.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT hash, data::text FROM storage.record_versions WHERE record_id = %s ORDER BY version_id", (rid,)
        )
        return [(bytes(r[0]), r[1]) for r in await cur.fetchall()]


async def test_storage_stores_and_compares_exactly_what_the_one_canonicaliser_gives(harness: Harness) -> None:
    # the jobrunner's bytes for a record (RecordCanonicalizer.parts, services/canonical.py) are what storage
    # stores, and their hash (content_hash) is what it compares: the same module's canonicalize() of the raw
    # record gives the stored hash and data, so a record read again in any formatting is unchanged
    s = harness.storage
    s.canonical_check_every = 1
    await data_job(s)
    raw = [account(1, AnnualRevenue=10.5, Score__c=3), account(2, IsDeleted=True)]
    await put(s, 1, [canon(r) for r in raw])
    for r in raw:
        reference = RecordCanonicalizer(ACCOUNT).canonicalize(r)
        [(hash_, data)] = await history(harness, reference.record_id)
        assert hash_ == reference.hash == content_hash(canon(r).values)
        assert json.loads(data) == json.loads(reference.data)
        async with harness.store.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT hash FROM storage.record_head WHERE record_id = %s", (reference.record_id,)
            )
            assert bytes((await cur.fetchone())[0]) == reference.hash  # type: ignore[index]
    # the same records written otherwise (a number as text, keys in another case) are the same bytes
    same = json.dumps({"id": sf_id("001", 1), "Name": "Acme", "AnnualRevenue": "10.50", "Score__c": 3,
                       "SystemModstamp": "2024-01-01T00:00:00.000Z"}).encode()  # fmt: skip
    again = await put(s, 2, [canon(same), canon(raw[1])])
    assert (again.counts.unchanged, again.counts.new_versions) == (2, 0)  # type: ignore[attr-defined]
    changed = await put(
        s,
        3,
        [
            canon(account(1, "Acme 2", AnnualRevenue=10.5, Score__c=3)),  # a real change
            canon(account(2, IsDeleted=True, Score__c=7, SystemModstamp="2025-01-01T00:00:00.000Z")),  # not one
        ],
    )
    assert (changed.counts.changed, changed.counts.unchanged) == (1, 1)  # type: ignore[attr-defined]
    versions = await history(harness, sf_id("001", 1))
    assert len(versions) == 2 and json.loads(versions[1][1])["Name"] == "Acme 2"
    assert len(await history(harness, sf_id("001", 2))) == 1


async def test_a_redelivered_canonical_chunk_changes_nothing(harness: Harness) -> None:
    s = harness.storage
    await data_job(s)
    chunk = [canon(account(n)) for n in range(1, 4)]
    first = await put(s, 1, chunk)
    replay = await put(s, 1, chunk)
    assert replay.replayed and replay.counts == first.counts  # type: ignore[attr-defined]
    assert await harness.count("record_versions") == 3
    with pytest.raises(FailedPrecondition, match="other content"):
        await put(s, 1, [canon(account(9))])


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (lambda c: replace(c, record_id=c.record_id.lower()), "18-character Id"),
        (lambda c: replace(c, record_id=sf_id("003", 1)), "key prefix"),
        (lambda c: replace(c, values=c.values + b"\n" + c.values), "not a canonical JSON object|line up|lines"),
        (lambda c: replace(c, other_values=b'{"x":"a\tb"}'), "not a canonical JSON object"),
        (lambda c: replace(c, values=b"[1]"), "not a canonical JSON object"),
        (lambda c: replace(c, system_modstamp="2024-01-01 00:00:00"), "system_modstamp"),
        (lambda c: replace(c, values=c.values.replace(b'"Acme"', b'"Acme" ')), "not in canonical form"),
        (lambda c: replace(c, values=b'{"AnnualRevenue":1.0,' + c.values[1:]), "not in canonical form"),
        (lambda c: replace(c, deleted=True), "not in canonical form"),
    ],
)
async def test_records_not_in_canonical_form_are_refused_and_nothing_is_stored(
    harness: Harness, broken: object, message: str
) -> None:
    s = harness.storage
    s.canonical_check_every = 1
    await data_job(s)
    chunk = [canon(account(n)) for n in range(1, 4)]
    chunk[1] = broken(chunk[1])  # type: ignore[operator]
    with pytest.raises(InvalidArgument, match=message):
        await put(s, 1, chunk)
    assert await harness.count("record_versions") == 0
    assert await harness.count("chunks") == 0
    assert harness.publisher.published == []


async def test_the_spot_check_catches_a_sender_that_disagrees_with_storage(harness: Harness) -> None:
    s = harness.storage
    s.canonical_check_every = 2
    await data_job(s)
    # a sender that leaves formula fields among the hashed values: records 0 and 2 are checked
    chunk = [canon(account(n, Score__c=n), formulas=True) for n in range(1, 4)]
    with pytest.raises(InvalidArgument, match=r"record 0 .* not in canonical form"):
        await put(s, 1, chunk)


async def test_other_rules_are_refused_before_anything_is_stored(harness: Harness) -> None:
    s = harness.storage
    await data_job(s)
    with pytest.raises(FailedPrecondition, match="rules"):
        await put(s, 1, [canon(account(1))], rules=CANONICAL_RULES + 1)
    with pytest.raises(FailedPrecondition, match="formula changes counted"):
        await s.put_records(
            ChunkRef(ORG, "s1", "j1", 1), "Account", columns([canon(account(1))]), CANONICAL_RULES, True
        )
    assert await harness.count("chunks") == 0


async def test_canonical_schema_is_the_same_as_storages(harness: Harness) -> None:
    # a sender's canonicaliser built from the schema it sent agrees with the one storage builds from its copy
    assert RecordCanonicalizer(ACCOUNT).parts(json.loads(account(1))).values == canon(account(1)).values


def patched(ns: SimpleNamespace, **changes: bytes) -> SimpleNamespace:
    return SimpleNamespace(**{**vars(ns), **changes})


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (lambda c: patched(c, values=c.values[:-1]), "values has 2 lines"),  # a newline missing
        (lambda c: patched(c, system_modstamps=c.system_modstamps + b"\n"), "system_modstamps has 4 lines"),
        (lambda c: patched(c, other_values=c.other_values.rstrip(b"\n")), "other_values has 2 lines"),
        (lambda c: patched(c, deleted=c.deleted[:2]), "deleted must be 3 bytes"),
        (lambda c: patched(c, deleted=b"\x00\x02\x00"), "each 0 or 1"),
        (lambda c: patched(c, record_ids=c.record_ids.replace(b"001", "\u00e9".encode(), 1)), "ASCII"),
    ],
)
async def test_columns_that_do_not_line_up_are_refused_and_nothing_is_stored(
    harness: Harness, broken: object, message: str
) -> None:
    s = harness.storage
    await data_job(s)
    good = columns([canon(account(n)) for n in range(1, 4)])
    fields = {f: getattr(good, f) for f in ("record_ids", "values", "other_values", "system_modstamps", "deleted")}
    chunk = broken(SimpleNamespace(**fields))  # type: ignore[operator]
    with pytest.raises(InvalidArgument, match=message):
        await s.put_records(
            ChunkRef(ORG, "s1", "j1", 1), "Account", pb.CanonicalColumns(**vars(chunk)), CANONICAL_RULES, False
        )
    assert await harness.count("chunks") == 0
    assert harness.publisher.published == []


async def test_empty_columns_are_an_empty_chunk(harness: Harness) -> None:
    s = harness.storage
    await data_job(s)
    result = await put(s, 1, [])
    assert result.counts.received == 0  # type: ignore[attr-defined]
    assert await harness.count("record_versions") == 0


async def test_errors_describe_misplaced_values_and_never_quote_them(harness: Harness) -> None:
    s = harness.storage
    await data_job(s)
    good = columns([canon(account(n, "SECRET-NAME")) for n in range(1, 4)])
    swapped = pb.CanonicalColumns()
    swapped.CopyFrom(good)
    swapped.record_ids = good.values  # a sender that mixed up its columns
    with pytest.raises(InvalidArgument, match="not an 18-character Id") as refused:
        await s.put_records(ChunkRef(ORG, "s1", "j1", 1), "Account", swapped, CANONICAL_RULES, False)
    assert "SECRET" not in str(refused.value)
    swapped.CopyFrom(good)
    swapped.system_modstamps = good.values
    with pytest.raises(InvalidArgument, match="system_modstamp") as refused:
        await s.put_records(ChunkRef(ORG, "s1", "j1", 1), "Account", swapped, CANONICAL_RULES, False)
    assert "SECRET" not in str(refused.value)
    assert await harness.count("chunks") == 0


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (lambda c: replace(c, record_id=c.record_id + "\n" + c.record_id), "record_ids 4: each record is one line"),
        (lambda c: replace(c, values=c.values.replace(b"Acme", b"Ac\xffme")), "not a canonical JSON object"),
        (lambda c: replace(c, system_modstamp="\u0662" + c.system_modstamp[1:]), "system_modstamp"),
        (lambda c: replace(c, values=c.values.replace(b"Acme", b"Ac\\\\\\u0000me")), "not a canonical JSON object"),
    ],
    ids=["newline-in-id", "not-utf8", "arabic-digit", "escaped-nul"],
)
async def test_what_would_break_postgresql_is_refused_at_the_door(
    harness: Harness, broken: object, message: str
) -> None:
    s = harness.storage
    s.canonical_check_every = 1000  # not left to the spot check
    await data_job(s)
    chunk = [canon(account(n, SystemModstamp="2024-01-02T03:04:05.000Z")) for n in range(1, 4)]
    chunk[1] = broken(chunk[1])  # type: ignore[operator]
    with pytest.raises(InvalidArgument, match=message):
        await put(s, 1, chunk)
    assert await harness.count("chunks") == 0


async def test_a_value_postgresql_refuses_is_invalid_argument_without_its_text(harness: Harness) -> None:
    s = harness.storage
    s.canonical_check_every = 1000  # record 1 is not canonicalised again: PostgreSQL reads it first
    await data_job(s)
    chunk = [canon(account(n)) for n in range(1, 4)]
    chunk[1] = replace(chunk[1], values=b'{"Name":SECRET}')
    with pytest.raises(psycopg.DataError) as refused:
        await put(s, 1, chunk)
    code, message = _status(refused.value)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "nothing was stored" in message
    assert "SECRET" not in message
    assert await harness.count("chunks") == 0


async def test_first_versions_from_columns_are_the_rows_the_general_way_writes(harness: Harness) -> None:
    # an initial load is written straight from its columns (first_version_rows); a chunk with an Id listed twice
    # takes the general way (CanonicalRecords, the head upsert, the versions' COPY): the same rows
    s = harness.storage
    s.canonical_check_every = 1
    general_org, canon_org = random_org(), random_org()
    for org, session in ((general_org, "general"), (canon_org, "canon")):
        await data_job(s, org=org, session=session)
    raw = [
        account(5, 'quote " backslash \\ tab-free\nnewline', AnnualRevenue=10.5, Score__c=3),
        account(2, IsDeleted=True),
        json.dumps({"Id": sf_id("001", 9), "Name": "no modstamp"}).encode(),  # no other values: "{}"
        account(7, "ünïcödé ✓", SystemModstamp="2025-01-01T00:00:00.123Z"),
        account(3, "the text \\u0000 is kept, a NUL \x00 is not"),
    ]  # not in Id order
    chunk = [canon(r) for r in raw]
    got = await s.put_records(
        ChunkRef(general_org, "general", "j1", 1), "Account", columns([chunk[1], *chunk]), CANONICAL_RULES, False
    )
    first = await s.put_records(
        ChunkRef(canon_org, "canon", "j1", 1), "Account", columns(chunk), CANONICAL_RULES, False
    )
    assert first.counts.new_versions == got.counts.new_versions == 5  # type: ignore[attr-defined]
    assert got.counts.unchanged == 1  # type: ignore[attr-defined]
    assert first.counts.bytes == got.counts.bytes  # type: ignore[attr-defined]

    async def rows(org: str) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
        async with harness.store.pool.connection() as conn:
            key = "(SELECT org_key FROM storage.orgs WHERE org_id = %s)"
            versions = await conn.execute(
                "SELECT record_id, system_modstamp, deleted, hash, data::text, captured_at IS NOT NULL"
                f" FROM storage.record_versions WHERE org_key = {key} ORDER BY record_id",
                (org,),
            )
            heads = await conn.execute(
                "SELECT record_id, hash, deleted, versions, system_modstamp, raw_hash IS NOT NULL,"
                f" changed_at IS NOT NULL FROM storage.record_head WHERE org_key = {key} ORDER BY record_id",
                (org,),
            )
            return await versions.fetchall(), await heads.fetchall()

    assert await rows(canon_org) == await rows(general_org)
    versions, _heads = await rows(canon_org)
    assert [v[0] for v in versions] == sorted(sf_id("001", n) for n in (2, 3, 5, 7, 9))
    assert versions[0][2] == 1 and versions[4][1] is None  # soft-deleted; NULL modstamp, not the empty text
    assert "backslash \\\\ tab-free\\nnewline" in versions[2][4]
    assert json.loads(versions[1][4])["Name"] == "the text \\u0000 is kept, a NUL  is not"
    # a second read of the same records through the columns changes nothing
    again = await s.put_records(
        ChunkRef(canon_org, "canon", "j1", 2), "Account", columns(chunk), CANONICAL_RULES, False
    )
    assert again.counts.unchanged == 5  # type: ignore[attr-defined]


async def test_overlapping_canonical_chunks_at_once_store_each_record_once(harness: Harness) -> None:
    # two jobs load the same new records from columns at once: one chunk's head COPY waits for the other's, finds
    # the rows created, and takes the general way (upsert) instead: no record gets two first versions
    s = harness.storage
    await data_job(s, job="j1")
    await data_job(s, job="j2")
    ids = range(1, 41)
    first = columns([canon(account(n)) for n in ids])
    second = columns([canon(account(n, "other" if n % 2 else "Acme")) for n in ids])
    results = await asyncio.gather(
        s.put_records(ChunkRef(ORG, "s1", "j1", 1), "Account", first, CANONICAL_RULES, False),
        s.put_records(ChunkRef(ORG, "s1", "j2", 1), "Account", second, CANONICAL_RULES, False),
    )
    counts = [r.counts for r in results]  # type: ignore[attr-defined]
    assert sorted(c.new_versions for c in counts) == [0, len(ids)]
    assert sum(c.changed for c in counts) == len(ids) // 2  # the odd ones differ, whichever chunk came first
    assert await harness.count("record_head") == len(ids)
    assert await harness.count("record_versions") == len(ids) + len(ids) // 2


async def test_heads_hashed_under_rules_1_are_rehashed_once_at_start_up(harness: Harness) -> None:
    # a database of rules 1 (BLAKE2b hashes): the start-up's migration rehashes every such head under rules 2
    # (XXH3) from its last version; then an unchanged record gets no version, a changed or deleted one its
    # version as always, and nothing on the write path reads the rules
    s = harness.storage
    s.canonical_check_every = 1
    org = random_org()
    await data_job(s, org=org, session="s1")
    raw = [account(n, f"Name {n}", AnnualRevenue=n * 1.5, Score__c=n) for n in range(1, 5)]
    await put_raw(s, org, "s1", "j1", 1, "Account", raw)
    cores = {json.loads(r)["Id"]: RecordCanonicalizer(ACCOUNT).parts(json.loads(r)).values for r in raw}
    async with harness.store.pool.connection() as conn:
        for rid, core in cores.items():  # as rules 1 left them
            await conn.execute(
                "UPDATE storage.record_head SET rules = 1, hash = %s, raw_hash = %s WHERE record_id = %s",
                (hashlib.blake2b(core, digest_size=16).digest(), b"rules-1 print", rid),
            )
    await harness.store.migrate()  # what start-up runs
    assert await harness.store.rehash_rules_1_heads(count_formula_changes=False) == 0  # one shot: none left

    async def heads() -> list[tuple[int, bytes, int]]:
        async with harness.store.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT rules, hash, versions FROM storage.record_head"
                " WHERE org_key = (SELECT org_key FROM storage.orgs WHERE org_id = %s) ORDER BY record_id",
                (org,),
            )
            return [(r[0], bytes(r[1]), r[2]) for r in await cur.fetchall()]

    assert await heads() == [(CANONICAL_RULES, content_hash(core), 1) for core in cores.values()]
    again = [
        raw[0],
        account(2, "Name 2", AnnualRevenue=3.0, Score__c=2),  # the same values, written otherwise
        account(3, "Renamed"),
        account(4, "Name 4", AnnualRevenue=6.0, Score__c=4, IsDeleted=True),
    ]
    await data_job(s, org=org, session="s2")
    result = await put_raw(s, org, "s2", "j1", 1, "Account", again)
    counts = result.counts
    assert (counts.unchanged, counts.changed, counts.deleted, counts.new_versions) == (2, 1, 1, 0)
    new_cores = [RecordCanonicalizer(ACCOUNT).parts(json.loads(r)).values for r in again]
    assert await heads() == [
        (CANONICAL_RULES, content_hash(core), versions) for core, versions in zip(new_cores, (1, 1, 2, 2), strict=True)
    ]


async def test_head_pages_leave_room_for_updates_in_place(harness: Harness) -> None:
    # migration 4: a changed record's head is rewritten on its own page (a HOT update, no new index entry)
    async with harness.store.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT c.relname, c.reloptions FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid"
            " WHERE i.inhparent = 'storage.record_head'::regclass ORDER BY 1"
        )
        partitions = await cur.fetchall()
    assert len(partitions) == 16 and all(options == ["fillfactor=90"] for _name, options in partitions)
