"""Restore (issue 17) on the application over a real PostgreSQL: the backup read as of a point for a restore
(ReadRecordsAsOf's selections, batches, missing Ids, canonical values), a restore's outcomes (idempotent chunks,
the Id map, dry runs, intents, paging) and their ChunkUploaded through the outbox."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from services.storage import application
from services.storage.application import ChunkRef, RecordsBatch, Storage
from services.storage.domain import (
    CREATED,
    FAILED,
    SKIPPED,
    UNDELETED,
    UPDATED,
    Deleted,
    FailedPrecondition,
    FieldDef,
    FieldType,
    InvalidArgument,
    NotFound,
    ObjectSchema,
    RecordSelection,
    RestoreCounts,
    RestoreOutcome,
)
from tests.storage.conftest import ACCOUNT, DATA, ORG, Harness, account, data_job, put_raw, random_org, sf_id

RESTORE = 4  # JobType.JOB_TYPE_RESTORE
CONTACT = ObjectSchema(
    "Contact",
    (
        FieldDef("Id", FieldType.ID, sf_type="id"),
        FieldDef("LastName", FieldType.STRING, sf_type="string"),
        FieldDef("AccountId", FieldType.ID, sf_type="reference"),
        FieldDef("SystemModstamp", FieldType.DATETIME, sf_type="datetime"),
    ),
    key_prefix="003",
)


def contact(n: int, account_n: int) -> bytes:
    return json.dumps(
        {
            "Id": sf_id("003", n),
            "LastName": f"L{n}",
            "AccountId": sf_id("001", account_n)[:15],  # a 15-character reference is stored widened to 18
            "SystemModstamp": "2024-01-01T00:00:00.000Z",
        }
    ).encode()


async def read(
    s: Storage,
    when: dt.datetime | None,
    object_name: str = "Account",
    *,
    batch_size: int = 0,
    ids_only: bool = False,
    as_stored: bool = False,
    **selection: object,
) -> list[RecordsBatch]:
    asked = RecordSelection(**{name.removesuffix("_"): value for name, value in selection.items()})  # type: ignore[arg-type]
    how = {"batch_size": batch_size, "ids_only": ids_only, "as_stored": as_stored}
    return [b async for b in s.records_as_of(ORG, object_name, when, asked, **how)]


def names(batches: list[RecordsBatch]) -> dict[str, str]:
    return {r.record_id: json.loads(r.values_json)["Name"] for b in batches for r in b.records}


@pytest.fixture(params=["candidates", "every record probed"])
async def backed_up(
    harness: Harness, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> tuple[Storage, dt.datetime, dt.datetime]:
    """Accounts 1-5 (t1), then 2 changed, 3 soft-deleted and 4 hard-deleted (t2); contacts of accounts 1 and 2.
    Read both ways: candidates found in one pass over the versions, or (too many of them) every head probed."""
    if request.param == "every record probed":
        monkeypatch.setattr(application, "MAX_SELECTED_IDS", 0)
    s = harness.storage
    await data_job(s)
    await put_raw(s, ORG, "s1", "j1", 1, "Account", [account(n, f"A{n}", Score__c=n) for n in range(1, 6)])
    await s.begin_job(ORG, "s1", "jc", DATA, "Contact")
    await s.put_schema(ORG, "s1", CONTACT)
    await put_raw(s, ORG, "s1", "jc", 1, "Contact", [contact(1, 1), contact(2, 1), contact(3, 2)])
    t1 = dt.datetime.now(dt.UTC)
    await data_job(s, session="s2")
    await put_raw(s, ORG, "s2", "j1", 1, "Account", [account(2, "changed")])
    await s.mark_deleted(ChunkRef(ORG, "s2", "j1", 2), "Account", [sf_id("001", 3)], Deleted.SOFT)
    await s.mark_deleted(ChunkRef(ORG, "s2", "j1", 3), "Account", [sf_id("001", 4)], Deleted.HARD)
    t2 = dt.datetime.now(dt.UTC)
    return s, t1, t2


async def test_as_of_a_point_every_live_record_with_its_values_then(
    backed_up: tuple[Storage, dt.datetime, dt.datetime],
) -> None:
    s, t1, t2 = backed_up
    before = await read(s, t1, all_=True)
    assert names(before) == {sf_id("001", n): f"A{n}" for n in range(1, 6)}  # 2 with its old name
    after = await read(s, t2, all_=True)
    assert names(after) == {sf_id("001", 1): "A1", sf_id("001", 2): "changed", sf_id("001", 5): "A5"}
    assert names(await read(s, None, all_=True)) == names(after)  # unset: now
    with pytest.raises(NotFound):  # nothing backed up of an object: not found
        await read(s, t2, "Opportunity", all_=True)

    # every value of the version, the other values (audit and formula fields) too, as canonical JSON
    [first] = [r for r in before[0].records if r.record_id == sf_id("001", 1)]
    values = json.loads(first.values_json)
    assert values == {"Id": sf_id("001", 1), "Name": "A1", "SystemModstamp": "2024-01-01T00:00:00.000Z", "Score__c": 1}
    assert first.values_json == json.dumps(values, sort_keys=True, separators=(",", ":"))
    assert first.session_id == "s1" and first.deleted == Deleted.LIVE
    # the first batch carries the object's fields at the point, with the describe's own type names
    assert before[0].schema is not None and before[0].schema.field_names == ACCOUNT.field_names


async def test_deleted_since_and_changed_since_select_what_the_damage_touched(
    backed_up: tuple[Storage, dt.datetime, dt.datetime],
) -> None:
    s, t1, t2 = backed_up
    deleted = await read(s, t1, deleted_since=t1)
    assert names(deleted) == {sf_id("001", 3): "A3", sf_id("001", 4): "A4"}  # as they were before
    changed = await read(s, t1, changed_since=t1)
    assert names(changed) == {sf_id("001", n): f"A{n}" for n in (2, 3, 4)}
    assert names(await read(s, t1, changed_since=t2)) == {}  # nothing since t2
    # a record already deleted at as_of is not part of that state, whatever happened since
    assert names(await read(s, t2, deleted_since=t1)) == {}
    assert names(await read(s, t2, changed_since=t1)) == {sf_id("001", 2): "changed"}


async def test_ids_15_or_18_characters_and_the_missing_ones_named(
    backed_up: tuple[Storage, dt.datetime, dt.datetime],
) -> None:
    s, _t1, t2 = backed_up
    wanted = [sf_id("001", 1)[:15], sf_id("001", 2), sf_id("001", 3), sf_id("001", 99), sf_id("001", 1)]
    [batch] = await read(s, t2, ids=wanted)
    assert names([batch]) == {sf_id("001", 1): "A1", sf_id("001", 2): "changed"}
    assert batch.missing == 2 and set(batch.missing_ids) == {sf_id("001", 3), sf_id("001", 99)}
    with pytest.raises(InvalidArgument, match="ids entry"):
        await read(s, t2, ids=["001nope"])


async def test_children_by_a_reference_field_either_id_form(
    backed_up: tuple[Storage, dt.datetime, dt.datetime],
) -> None:
    s, t1, _t2 = backed_up
    batches = await read(s, t1, "Contact", where_field="accountid", where_in=[sf_id("001", 1)[:15]])
    assert sorted(r.record_id for b in batches for r in b.records) == [sf_id("003", 1), sf_id("003", 2)]
    assert [f.sf_type for f in batches[0].schema.fields] == ["id", "string", "reference", "datetime"]  # type: ignore[union-attr]
    batches = await read(s, t1, "Contact", where_field="AccountId", where_in=[sf_id("001", 2), sf_id("001", 5)])
    assert [r.record_id for b in batches for r in b.records] == [sf_id("003", 3)]


async def test_ids_only_selects_the_same_records_by_their_ids_alone(
    backed_up: tuple[Storage, dt.datetime, dt.datetime],
) -> None:
    s, t1, t2 = backed_up
    selections: list[tuple[dt.datetime, str, dict[str, Any]]] = [
        (t1, "Account", {"all_": True}),
        (t2, "Account", {"all_": True, "batch_size": 1}),
        (t1, "Account", {"deleted_since": t1}),
        (t1, "Account", {"changed_since": t1}),
        (t2, "Account", {"ids": [sf_id("001", 1)[:15], sf_id("001", 3), sf_id("001", 99)]}),
        (t1, "Contact", {"where_field": "accountid", "where_in": [sf_id("001", 1)]}),
    ]
    for when, object_name, selection in selections:
        full = await read(s, when, object_name, **selection)
        bare = await read(s, when, object_name, ids_only=True, **selection)
        assert [len(b.bare) for b in bare] == [len(b.records) for b in full]
        assert all(not b.records for b in bare) and all(not b.bare for b in full)
        assert [r.record_id for b in full for r in b.records] == [i for b in bare for i, _v in b.bare]
        assert all(v == "" for b in bare for _i, v in b.bare)  # no values read out
        assert [i for b in bare for i, _v in b.bare], selection  # each selects something
        # the first batch still carries the fields and what was missing
        assert bare[0].schema == full[0].schema and bare[0].schema is not None
        assert (bare[0].missing, bare[0].missing_ids) == (full[0].missing, full[0].missing_ids)


async def test_as_stored_gives_each_records_id_and_values_alone_in_postgresqls_text(
    backed_up: tuple[Storage, dt.datetime, dt.datetime],
) -> None:
    s, t1, t2 = backed_up
    for when, selection in ((t1, {"all_": True}), (t2, {"all_": True, "batch_size": 1}), (t1, {"deleted_since": t1})):
        full = await read(s, when, **selection)  # type: ignore[arg-type]
        lean = await read(s, when, as_stored=True, **selection)  # type: ignore[arg-type]
        assert [len(b.bare) for b in lean] == [len(b.records) for b in full]
        assert all(not b.records for b in lean)
        canonical = [(r.record_id, json.loads(r.values_json)) for b in full for r in b.records]
        stored = [(i, json.loads(text)) for b in lean for i, text in b.bare]
        assert canonical and stored == canonical  # the same records, the same values
        texts = [r.values_json for b in full for r in b.records]
        assert any(a != b for a, (_i, b) in zip(texts, [v for b in lean for v in b.bare], strict=True))  # not canonical
        assert (lean[0].schema, lean[0].missing) == (full[0].schema, full[0].missing)


async def test_batches_page_through_the_object_in_id_order(harness: Harness) -> None:
    s = harness.storage
    await data_job(s)
    for seq in range(1, 4):  # 30 accounts, the even ones deleted
        await put_raw(s, ORG, "s1", "j1", seq, "Account", [account(n) for n in range(seq * 10 - 9, seq * 10 + 1)])
    await s.mark_deleted(
        ChunkRef(ORG, "s1", "j1", 4), "Account", [sf_id("001", n) for n in range(2, 31, 2)], Deleted.SOFT
    )
    batches = await read(s, None, all_=True, batch_size=4)
    assert [len(b.records) for b in batches] == [4, 4, 4, 3]
    assert [r.record_id for b in batches for r in b.records] == [sf_id("001", n) for n in range(1, 31, 2)]
    assert batches[0].schema is not None and all(b.schema is None for b in batches[1:])
    by_ids = await read(s, None, ids=[sf_id("001", n) for n in range(1, 31)], batch_size=4)
    assert [r.record_id for b in by_ids for r in b.records] == [sf_id("001", n) for n in range(1, 31, 2)]
    assert by_ids[0].missing == 15
    nothing = await read(s, None, ids=[sf_id("001", 2)])
    assert len(nothing) == 1 and nothing[0].records == [] and nothing[0].schema is not None  # fields all the same


@pytest.mark.parametrize(
    ("selection", "match"),
    [
        ({}, "got none"),
        ({"all_": True, "ids": [sf_id("001", 1)]}, "got ids, all"),
        ({"where_field": "AccountId"}, "needs where_in"),
        ({"all_": True, "where_in": [sf_id("001", 1)]}, "needs where_field"),
        ({"all_": True, "batch_size": 10_001}, "batch_size"),
        ({"where_field": "Account Id", "where_in": [sf_id("001", 1)]}, "API name"),
    ],
)
async def test_a_selection_must_be_exactly_one(harness: Harness, selection: dict[str, object], match: str) -> None:
    await data_job(harness.storage)
    with pytest.raises(InvalidArgument, match=match):
        await read(harness.storage, None, **selection)  # type: ignore[arg-type]


# --- what a restore writes down ------------------------------------------------------------------------------------

TARGET = random_org()


def outcome(state: int, n: int, target: str = "", **extra: object) -> RestoreOutcome:
    return RestoreOutcome("Account", sf_id("001", n), target, state, **extra)  # type: ignore[arg-type]


async def restore_job(s: Storage, session: str = "r1", job: str = "restore") -> None:
    await data_job(s)  # the source org is known to storage: it was backed up
    await put_raw(s, ORG, "s1", "j1", 1, "Account", [account(n) for n in range(1, 6)])
    await s.begin_job(TARGET, session, job, RESTORE, "")


async def test_outcomes_are_stored_once_with_their_id_map_and_counts(harness: Harness) -> None:
    s = harness.storage
    await restore_job(s)
    new = sf_id("001", 700)
    chunk = [
        outcome(CREATED, 1, new),
        outcome(UPDATED, 2, sf_id("001", 2), changed_fields=("Name",)),
        outcome(UNDELETED, 3, sf_id("001", 3)),
        outcome(SKIPPED, 4, sf_id("001", 4)),
        outcome(FAILED, 5, error_code="REQUIRED_FIELD_MISSING", message="Required fields are missing: [Name]"),
    ]
    first = await s.put_restore_outcomes(
        ORG, ChunkRef(TARGET, "r1", "restore", 1), chunk, write_calls=3, api_calls=5, files=1
    )
    assert not first.replayed and first.counts.api_calls == 5
    assert first.restore == (RestoreCounts("Account", 1, 1, 1, 1, 1, 0, 1, 3),)
    assert harness.publisher.restore[("r1", "restore", 1)] == first.restore
    assert await s.id_map(ORG, TARGET, []) == {sf_id("001", 1): new}  # Created only: the others kept their Id
    assert await s.id_map(ORG, TARGET, [sf_id("001", 1)[:15], sf_id("001", 2)]) == {sf_id("001", 1): new}
    assert await s.id_map(TARGET, ORG, []) == {} and await s.id_map(random_org(), TARGET, []) == {}

    # a redelivery returns the first result and stores nothing more
    again = await s.put_restore_outcomes(
        ORG, ChunkRef(TARGET, "r1", "restore", 1), chunk, write_calls=3, api_calls=5, files=1
    )
    assert again.replayed and again.restore == first.restore and again.counts == first.counts
    assert await harness.count("restore_outcomes") == 5
    with pytest.raises(FailedPrecondition, match="other content"):
        await s.put_restore_outcomes(ORG, ChunkRef(TARGET, "r1", "restore", 1), chunk[:2])
    # a resumed restore job knows where it stopped
    last, chunks, _totals = await s.begin_job(TARGET, "r1", "restore", RESTORE, "")
    assert (last, chunks) == (1, 1)
    assert await s.restore_points(TARGET, "") == []  # a restore is no restore point of the org it wrote to

    # a record matched in another org (not created) under another Id is mapped too; a failed one never
    await s.put_restore_outcomes(
        ORG,
        ChunkRef(TARGET, "r1", "restore", 2),
        [outcome(SKIPPED, 5, sf_id("001", 800)), outcome(FAILED, 2, sf_id("001", 9))],
    )
    assert await s.id_map(ORG, TARGET, []) == {sf_id("001", 1): new, sf_id("001", 5): sf_id("001", 800)}

    failed, token = await s.restore_records("r1", state=FAILED, object_name="", page_size=0, page_token="")
    assert [(o.source_id, o.error_code) for o in failed] == [
        (sf_id("001", 5), "REQUIRED_FIELD_MISSING"),
        (sf_id("001", 2), ""),
    ]
    assert token == "" and failed[0].message == "Required fields are missing: [Name]"


async def test_a_dry_run_stores_its_predictions_and_maps_nothing(harness: Harness) -> None:
    s = harness.storage
    await restore_job(s)
    result = await s.put_restore_outcomes(
        ORG,
        ChunkRef(TARGET, "r1", "restore", 1),
        [outcome(CREATED, 1, sf_id("001", 700)), outcome(CREATED, 2)],
        dry_run=True,
    )
    assert result.restore == (RestoreCounts("Account", created=2),)
    assert await s.id_map(ORG, TARGET, []) == {}
    records, _ = await s.restore_records("r1", state=CREATED, object_name="account", page_size=0, page_token="")
    assert len(records) == 2


async def test_intents_are_recorded_once_and_resolved_by_the_chunk_of_their_outcomes(harness: Harness) -> None:
    s = harness.storage
    await restore_job(s)
    ids = [sf_id("001", 1)[:15], sf_id("001", 2)]
    sent = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert await s.record_restore_intent(TARGET, "r1", "restore", "Account:create:1", "Account", ids, sent)
    assert not await s.record_restore_intent(TARGET, "r1", "restore", "Account:create:1", "Account", ids, sent)
    assert await s.record_restore_intent(TARGET, "r1", "restore", "Account:create:2", "Account", ids[:1], None)
    [one, two] = await s.restore_intents("r1", "restore")
    assert (one.batch_key, one.source_ids, one.sent_at) == (
        "Account:create:1",
        (sf_id("001", 1), sf_id("001", 2)),
        sent,
    )
    assert two.batch_key == "Account:create:2"
    await s.put_restore_outcomes(
        ORG,
        ChunkRef(TARGET, "r1", "restore", 1),
        [outcome(CREATED, 1, sf_id("001", 700))],
        resolved_intents=["Account:create:1"],
    )
    assert [i.batch_key for i in await s.restore_intents("r1", "restore")] == ["Account:create:2"]
    assert await s.restore_intents("r1", "no-such-job") == []
    with pytest.raises(FailedPrecondition, match="BeginJob"):
        await s.record_restore_intent(TARGET, "r1", "other", "k", "Account", ids, None)
    with pytest.raises(InvalidArgument, match="batch_key"):
        await s.record_restore_intent(TARGET, "r1", "restore", "", "Account", ids, None)


async def test_a_sessions_outcomes_page_across_its_jobs(harness: Harness) -> None:
    s = harness.storage
    await restore_job(s)
    await s.begin_job(TARGET, "r1", "restore-2", RESTORE, "")
    await s.put_restore_outcomes(
        ORG, ChunkRef(TARGET, "r1", "restore", 1), [outcome(SKIPPED, n, sf_id("001", n)) for n in (1, 2, 3)]
    )
    await s.put_restore_outcomes(ORG, ChunkRef(TARGET, "r1", "restore-2", 1), [outcome(FAILED, n) for n in (4, 5)])
    seen, token, pages = [], "", 0
    while True:
        page, token = await s.restore_records("r1", state=0, object_name="", page_size=2, page_token=token)
        seen += [o.source_id for o in page]
        pages += 1
        if not token:
            break
    assert seen == [sf_id("001", n) for n in range(1, 6)] and pages == 3
    assert (await s.restore_records("nobody", state=0, object_name="", page_size=0, page_token=""))[0] == []
    assert len((await s.restore_records("r1", state=FAILED, object_name="Account", page_size=0, page_token=""))[0]) == 2
    for bad in ({"state": 9}, {"page_size": 5001}, {"page_token": "x"}):
        kwargs = {"state": 0, "object_name": "", "page_size": 0, "page_token": ""} | bad
        with pytest.raises(InvalidArgument):
            await s.restore_records("r1", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("outcomes", "seq", "match"),
    [
        ([outcome(0, 1)], 1, "unknown state"),
        ([outcome(9, 1)], 1, "unknown state"),
        ([RestoreOutcome("Account", "001bad", "", SKIPPED)], 1, "source_id"),
        ([outcome(CREATED, 1, "not-an-id")], 1, "target_id"),
        ([RestoreOutcome("Not An Object", sf_id("001", 1), "", SKIPPED)], 1, "object_name"),
        ([outcome(SKIPPED, 1)], 0, "chunk_seq"),
    ],
)
async def test_bad_outcomes_are_refused_and_nothing_is_stored(
    harness: Harness, outcomes: list[RestoreOutcome], seq: int, match: str
) -> None:
    s = harness.storage
    await restore_job(s)
    with pytest.raises(InvalidArgument, match=match):
        await s.put_restore_outcomes(ORG, ChunkRef(TARGET, "r1", "restore", seq), outcomes)
    assert await harness.count("restore_outcomes") == 0 and await harness.count("chunks") == 1  # the backup's


async def test_outcomes_of_a_job_never_begun_or_not_a_restore_are_refused(harness: Harness) -> None:
    s = harness.storage
    await restore_job(s)
    with pytest.raises(FailedPrecondition, match="BeginJob"):
        await s.put_restore_outcomes(ORG, ChunkRef(TARGET, "r1", "unknown", 1), [outcome(SKIPPED, 1)])
    with pytest.raises(FailedPrecondition, match="not a restore job"):
        await s.put_restore_outcomes(ORG, ChunkRef(ORG, "s1", "j1", 9), [outcome(SKIPPED, 1)])
    with pytest.raises(NotFound):  # a source org storage never backed up
        await s.put_restore_outcomes(random_org(), ChunkRef(TARGET, "r1", "restore", 1), [outcome(SKIPPED, 1)])
    with pytest.raises(InvalidArgument, match="belongs to org"):
        await s.put_restore_outcomes(ORG, ChunkRef(ORG, "r1", "restore", 1), [outcome(SKIPPED, 1)])


async def test_a_restore_chunks_event_waits_in_the_outbox_with_its_counts(harness: Harness) -> None:
    s = harness.storage
    await restore_job(s)
    harness.publisher.fail = True  # NATS away: committed, announced later by the relay
    result = await s.put_restore_outcomes(
        ORG,
        ChunkRef(TARGET, "r1", "restore", 1),
        [outcome(CREATED, 1, sf_id("001", 700)), RestoreOutcome("Contact", sf_id("003", 1), "", FAILED)],
        write_calls=2,
        api_calls=4,
    )
    expected = (RestoreCounts("Account", created=1, write_calls=2), RestoreCounts("Contact", failed=1))
    assert result.restore == expected
    [pending] = [p for p in await harness.store.pending_events() if p.job_id == "restore"]
    assert pending.restore == expected and pending.counts.api_calls == 4
    harness.publisher.fail = False
    assert await s.relay.relay() >= 1
    assert harness.publisher.restore[("r1", "restore", 1)] == expected


async def test_values_come_back_as_the_canonical_text_whatever_path_writes_it(harness: Harness) -> None:
    s = harness.storage
    await data_job(s)
    await put_raw(
        s,
        ORG,
        "s1",
        "j1",
        1,
        "Account",
        [account(1, 'Zoë 🎉 "q" \\', AnnualRevenue=12.5), account(2, "tiny", AnnualRevenue=0.00001)],
    )
    [batch] = await read(s, None, all_=True)
    for record in batch.records:
        values = json.loads(record.values_json)
        assert record.values_json == json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert '"AnnualRevenue":1e-05' in batch.records[1].values_json  # the json module's text, not orjson's
    assert '"Name":"Zoë 🎉 \\"q\\" \\\\"' in batch.records[0].values_json


async def test_a_metadata_restore_stores_its_components_outcomes_by_full_name(harness: Harness) -> None:
    s = harness.storage
    await restore_job(s)
    await s.begin_job(TARGET, "m1", "metadata-restore", 5, "")  # JOB_TYPE_METADATA_RESTORE
    result = await s.put_restore_outcomes(
        ORG,
        ChunkRef(TARGET, "m1", "metadata-restore", 1),
        [
            RestoreOutcome("metadata:ApexClass", "ApexClass:Invoice", "ApexClass:Invoice", UPDATED),
            RestoreOutcome("metadata:CustomField", "CustomField:Account.Tier__c", "", FAILED, "DEPLOY_FAILED", "no"),
        ],
        write_calls=1,
    )
    assert result.restore == (
        RestoreCounts("metadata:ApexClass", updated=1, write_calls=1),
        RestoreCounts("metadata:CustomField", failed=1),
    )
    assert await s.id_map(ORG, TARGET, []) == {}
    [failed], _ = await s.restore_records(
        "m1", state=FAILED, object_name="metadata:CustomField", page_size=0, page_token=""
    )
    assert (failed.source_id, failed.error_code) == ("CustomField:Account.Tier__c", "DEPLOY_FAILED")
    with pytest.raises(InvalidArgument, match="full name"):
        await s.put_restore_outcomes(
            ORG, ChunkRef(TARGET, "m1", "metadata-restore", 2), [RestoreOutcome("metadata:ApexClass", "", "", SKIPPED)]
        )


async def test_outcomes_text_comes_back_as_sent_whatever_it_holds(harness: Harness) -> None:
    """The outcomes are written as one COPY in text format: tabs, newlines, backslashes, quotes, braces and commas
    in messages, notes and a component's changed fields come back unchanged (NUL is dropped: PostgreSQL holds none)."""
    s = harness.storage
    await restore_job(s)
    await s.begin_job(TARGET, "m2", "metadata-restore", 5, "")
    odd = 'a\tb\nc\r\\N \\ "q" {x,y} , é 🎉'
    await s.put_restore_outcomes(
        ORG,
        ChunkRef(TARGET, "r1", "restore", 1),
        [
            outcome(FAILED, 1, error_code="E\t1", message=odd, note="n\\\x00o"),
            outcome(UPDATED, 2, sf_id("001", 2), changed_fields=("Name", "Score__c")),
            outcome(SKIPPED, 3, sf_id("001", 3)),
        ],
    )
    await s.put_restore_outcomes(
        ORG,
        ChunkRef(TARGET, "m2", "metadata-restore", 1),
        [
            RestoreOutcome(
                "metadata:Layout",
                "Layout:Account-Account \\Layout\t",
                "",
                FAILED,
                message=odd,
                changed_fields=(odd, "", "NULL", "x"),
            )
        ],
    )
    got, _ = await s.restore_records("r1", state=0, object_name="", page_size=0, page_token="")
    assert [(o.error_code, o.message, o.note, o.changed_fields) for o in got] == [
        ("E\t1", odd, "n\\o", ()),
        ("", "", "", ("Name", "Score__c")),
        ("", "", "", ()),
    ]
    [component], _ = await s.restore_records("m2", state=0, object_name="", page_size=0, page_token="")
    assert (component.source_id, component.message, component.changed_fields) == (
        "Layout:Account-Account \\Layout\t",
        odd,
        (odd, "", "NULL", "x"),
    )
