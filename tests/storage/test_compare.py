"""Compare (issue 18): the records added, deleted and changed between two points, decided in SQL on the stored
hashes and read field by field for the changed ones; and the live count per object. Real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from services.canonical import ComparePiece, FieldChange, changed_fields
from services.storage.application import ChunkRef, Storage
from services.storage.domain import Deleted, FieldDef, FieldType, InvalidArgument, NotFound, ObjectSchema
from tests.storage.conftest import ACCOUNT, DATA, ORG, Harness, account, data_job, put_raw, sf_id

CONTACT = ObjectSchema(
    "Contact",
    (FieldDef("Id", FieldType.ID), FieldDef("LastName", FieldType.STRING), FieldDef("Email", FieldType.STRING)),
    key_prefix="003",
)


def contact(n: int, last: str, email: str = "") -> bytes:
    return json.dumps({"Id": sf_id("003", n), "LastName": last, "Email": email or None}).encode()


async def compare(
    s: Storage, since: dt.datetime | None, until: dt.datetime | None = None, **kw: object
) -> list[ComparePiece]:
    return [p async for p in s.compare_as_of(ORG, since, until, **kw)]  # type: ignore[arg-type]


def changes(pieces: list[ComparePiece]) -> dict[tuple[str, str], tuple[str, tuple[str, ...]]]:
    """{(object, Id): (change, changed fields)} of every piece."""
    return {
        (c.object_name, c.record_id): (c.change, tuple(f.field for f in c.fields)) for p in pieces for c in p.changes
    }


def summary(pieces: list[ComparePiece]) -> dict[str, tuple[int, int, int]]:
    assert all(p.summaries is None for p in pieces[:-1]) and pieces[-1].summaries is not None
    return {s.object_name: (s.added, s.deleted, s.changed) for s in pieces[-1].summaries}


@pytest.fixture
async def points(harness: Harness) -> tuple[Storage, dt.datetime, dt.datetime, dt.datetime]:
    """t0 before anything; accounts 1-6 and contacts 1-3 (t1); then account 2 renamed, 3 soft-deleted, 4
    hard-deleted, 5 touched only in its formula and audit fields, 7 added, contact 1's e-mail changed (t2)."""
    s = harness.storage
    t0 = dt.datetime.now(dt.UTC)
    await data_job(s)
    await put_raw(s, ORG, "s1", "j1", 1, "Account", [account(n, f"A{n}", Score__c=n) for n in range(1, 7)])
    await s.begin_job(ORG, "s1", "jc", DATA, "Contact")
    await s.put_schema(ORG, "s1", CONTACT)
    await put_raw(s, ORG, "s1", "jc", 1, "Contact", [contact(1, "One", "a@x.org"), contact(2, "Two"), contact(3, "3")])
    t1 = dt.datetime.now(dt.UTC)
    await data_job(s, session="s2")
    await put_raw(
        s,
        ORG,
        "s2",
        "j1",
        1,
        "Account",
        [
            account(2, "A2 renamed", Score__c=2),
            account(5, "A5", Score__c=50, SystemModstamp="2025-01-01T00:00:00.000Z"),
            account(7, "A7"),
        ],
    )
    await s.mark_deleted(ChunkRef(ORG, "s2", "j1", 2), "Account", [sf_id("001", 3)], Deleted.SOFT)
    await s.mark_deleted(ChunkRef(ORG, "s2", "j1", 3), "Account", [sf_id("001", 4)], Deleted.HARD)
    await s.begin_job(ORG, "s2", "jc", DATA, "Contact")
    await s.put_schema(ORG, "s2", CONTACT)
    await put_raw(s, ORG, "s2", "jc", 1, "Contact", [contact(1, "One", "b@x.org")])
    t2 = dt.datetime.now(dt.UTC)
    return s, t0, t1, t2


async def test_added_deleted_and_changed_between_two_points(
    points: tuple[Storage, dt.datetime, dt.datetime, dt.datetime],
) -> None:
    s, _t0, t1, t2 = points
    pieces = await compare(s, t1, t2)
    assert changes(pieces) == {
        ("Account", sf_id("001", 2)): ("changed", ("Name",)),
        ("Account", sf_id("001", 3)): ("deleted", ()),  # soft-deleted (recycle bin) counts as deleted
        ("Account", sf_id("001", 4)): ("deleted", ()),
        ("Account", sf_id("001", 7)): ("added", ()),
        ("Contact", sf_id("003", 1)): ("changed", ("Email",)),
    }  # account 5: only its formula field and SystemModstamp moved -- no change
    assert summary(pieces) == {"Account": (1, 2, 1), "Contact": (0, 0, 1)}
    assert pieces[-1].truncated is False
    # `to` unset: now; the same
    assert changes(await compare(s, t1)) == changes(pieces)
    # the other way round is refused, an empty window is empty
    with pytest.raises(InvalidArgument, match="before from"):
        await compare(s, t2, t1)
    assert summary(await compare(s, t2, t2)) == {"Account": (0, 0, 0), "Contact": (0, 0, 0)}


async def test_values_are_the_canonical_json_of_each_side(
    points: tuple[Storage, dt.datetime, dt.datetime, dt.datetime],
) -> None:
    s, _t0, t1, t2 = points
    pieces = await compare(s, t1, t2, values=True, objects=["account", "Contact"])
    found = {c.record_id: c.fields for p in pieces for c in p.changes if c.change == "changed"}
    assert found[sf_id("001", 2)] == (FieldChange("Name", b'"A2"', b'"A2 renamed"'),)
    assert found[sf_id("003", 1)] == (FieldChange("Email", b'"a@x.org"', b'"b@x.org"'),)
    # without values: the names only
    plain = await compare(s, t1, t2, objects=["Contact"])
    assert [c.fields for p in plain for c in p.changes] == [(FieldChange("Email"),)]


async def test_the_fields_filter_counts_only_changes_to_those_fields(
    points: tuple[Storage, dt.datetime, dt.datetime, dt.datetime],
) -> None:
    s, _t0, t1, t2 = points
    pieces = await compare(s, t1, t2, fields=["email"])  # the schema's spelling, found case-insensitively
    # account 2's hash differs only in Name: not changed; added and deleted records are listed whatever the filter
    assert changes(pieces) == {
        ("Account", sf_id("001", 3)): ("deleted", ()),
        ("Account", sf_id("001", 4)): ("deleted", ()),
        ("Account", sf_id("001", 7)): ("added", ()),
        ("Contact", sf_id("003", 1)): ("changed", ("Email",)),
    }
    assert summary(pieces) == {"Account": (1, 2, 0), "Contact": (0, 0, 1)}
    name_only = await compare(s, t1, t2, fields=["Name"], objects=["Account"])
    assert summary(name_only) == {"Account": (1, 2, 1)}
    with pytest.raises(InvalidArgument, match="Nope__c"):
        await compare(s, t1, t2, fields=["Nope__c"])
    with pytest.raises(InvalidArgument):
        await compare(s, t1, t2, fields=["not a name"])


async def test_a_limit_truncates_the_list_not_the_summary_and_pieces_have_batch_size(
    points: tuple[Storage, dt.datetime, dt.datetime, dt.datetime],
) -> None:
    s, t0, t1, t2 = points
    pieces = await compare(s, t1, t2, limit=2, batch_size=1)
    assert [len(p.changes) for p in pieces] == [1, 1, 0]
    assert pieces[-1].truncated is True
    assert summary(pieces) == {"Account": (1, 2, 1), "Contact": (0, 0, 1)}  # exact
    # from before the first backup: everything live at t2 is added
    everything = await compare(s, t0, t2, batch_size=3)
    assert summary(everything) == {"Account": (5, 0, 0), "Contact": (3, 0, 0)}
    assert [len(p.changes) for p in everything] == [3, 3, 2]
    for bad in ({"batch_size": -1}, {"batch_size": 10_001}, {"limit": -1}):
        with pytest.raises(InvalidArgument):
            await compare(s, t1, t2, **bad)


async def test_as_of_boundaries_a_version_captured_at_the_point_is_in_force_then(
    harness: Harness, points: tuple[Storage, dt.datetime, dt.datetime, dt.datetime]
) -> None:
    s, _t0, t1, _t2 = points
    history = await s.record_history(ORG, "Account", sf_id("001", 2))
    first, second = history[0].captured_at, history[1].captured_at
    # from exactly at the second version's capture: it is in force at both points, nothing changed
    assert (("Account", sf_id("001", 2))) not in changes(await compare(s, second, second + dt.timedelta(hours=1)))
    # from a microsecond before it: changed
    just_before = second - dt.timedelta(microseconds=1)
    assert changes(await compare(s, just_before, second))[("Account", sf_id("001", 2))] == ("changed", ("Name",))
    # to a microsecond before the first version: nothing existed at either point
    empty = await compare(s, first - dt.timedelta(seconds=1), first - dt.timedelta(microseconds=1))
    assert not changes(empty)
    assert t1 < second


async def test_bad_input_and_unknown_names(points: tuple[Storage, dt.datetime, dt.datetime, dt.datetime]) -> None:
    s, _t0, t1, t2 = points
    with pytest.raises(InvalidArgument, match="from is required"):
        await compare(s, None, t2)
    with pytest.raises(NotFound, match="Opportunity"):
        await compare(s, t1, t2, objects=["Opportunity"])
    with pytest.raises(NotFound):
        _ = [p async for p in s.compare_as_of(sf_id("00D", 99), t1, t2)]
    with pytest.raises(InvalidArgument):
        _ = [p async for p in s.compare_as_of("not an org", t1, t2)]


async def test_a_field_that_joined_the_scope_is_no_change(harness: Harness) -> None:
    s = harness.storage
    await data_job(s)
    await put_raw(s, ORG, "s1", "j1", 1, "Account", [account(1, "A1"), account(2, "A2")])
    t1 = dt.datetime.now(dt.UTC)
    wider = ObjectSchema("Account", (*ACCOUNT.fields, FieldDef("Region__c", FieldType.STRING)), key_prefix="001")
    await s.begin_job(ORG, "s2", "j1", DATA, "Account")
    await s.put_schema(ORG, "s2", wider)
    # account 1 gains a value in the new field only; account 2 is renamed too
    await put_raw(
        s, ORG, "s2", "j1", 1, "Account", [account(1, "A1", Region__c="EU"), account(2, "B2", Region__c="EU")]
    )
    pieces = await compare(s, t1)
    assert changes(pieces) == {("Account", sf_id("001", 2)): ("changed", ("Name",))}


async def test_count_live_is_the_latest_states_live_records(
    points: tuple[Storage, dt.datetime, dt.datetime, dt.datetime],
) -> None:
    s, *_ = points
    assert await s.count_live(ORG) == {"Account": 5, "Contact": 3}  # 1-7 but 3 and 4
    assert await s.count_live(ORG, ["contact"]) == {"Contact": 3}
    with pytest.raises(NotFound):
        await s.count_live(ORG, ["Opportunity"])
    with pytest.raises(NotFound):
        await s.count_live(sf_id("00D", 99))


def test_changed_fields_compares_values_and_types_in_name_order() -> None:
    old = {"Id": "x", "B": 1, "A": "a", "C": True, "Gone": "g"}
    new = {"Id": "x", "B": 1.5, "A": "a", "C": 1, "New": "n"}
    comparable = {"Id", "A", "B", "C", "Gone", "New"}
    assert [f.field for f in changed_fields(old, new, comparable)] == ["B", "C", "Gone", "New"]
    assert changed_fields(old, new, comparable, only=["Gone"], values=True) == (FieldChange("Gone", b'"g"', b""),)
    assert changed_fields(old, new, {"Id", "A"}) == ()
