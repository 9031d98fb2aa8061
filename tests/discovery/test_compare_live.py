"""CompareLive (issue 18): the backup at a point against the org now. With fakes of both sides (the org's fields and
records, the backup's records), then once with the real Salesforce adapter on sforg."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import pytest

from services.canonical import ComparePiece, FieldDef, FieldType, ObjectSchema, RecordCanonicalizer, changed_fields
from services.discovery import domain as d
from services.discovery.compare import BackupBatch, LiveCompare, SalesforceLive, org_reserve
from services.discovery.salesforce import SalesforceOrg
from services.jobrunner.domain import storage_field_type
from services.platform import errors

ACCOUNT = (
    FieldDef("Id", FieldType.ID),
    FieldDef("Name", FieldType.STRING),
    FieldDef("Rating", FieldType.STRING),
    FieldDef("AnnualRevenue", FieldType.DOUBLE),
    FieldDef("SystemModstamp", FieldType.DATETIME),
    FieldDef("Gone__c", FieldType.STRING),  # in the backup, removed from the org since
)
ORG = d.Org("org-1", "test", d.Connection("https://login.example.com", d.AuthFlow.CLIENT_CREDENTIALS))


def acc(n: int) -> str:
    from services.canonical import id_suffix

    id15 = f"001{n:012d}"
    return id15 + id_suffix(id15)


class FakeLive:
    """The org side: fields as a describe lists them, live records as a REST query returns them."""

    salesforce_org_id = "00D000000000001AAA"

    def __init__(self, records: dict[str, list[dict[str, Any]]], fields: dict[str, list[str]]) -> None:
        self.data, self.field_names = records, fields
        self.api_calls = 0
        self.queried: list[tuple[str, tuple[str, ...]]] = []

    def fields(self, object_name: str) -> dict[str, dict[str, Any]]:
        self.api_calls += 1
        return {n: {"name": n} for n in self.field_names[object_name]}

    def records(self, object_name: str, fields: Sequence[str]) -> Iterator[dict[str, Any]]:
        self.api_calls += 1
        self.queried.append((object_name, tuple(fields)))
        for r in self.data[object_name]:
            yield {"attributes": {"type": object_name}} | {k: v for k, v in r.items() if k in fields}


@dataclasses.dataclass
class FakeBackup:
    """The storage side: {object: [raw records live at the point]} canonicalised under the backup's fields."""

    objects: dict[str, tuple[tuple[FieldDef, ...], list[dict[str, Any]]]]
    reads: list[tuple[str, int]] = dataclasses.field(default_factory=list)

    async def read(
        self, salesforce_org_id: str, object_name: str, as_of: dt.datetime | None, ids: Sequence[str] = ()
    ) -> AsyncIterator[BackupBatch]:
        if object_name not in self.objects:
            raise errors.NotFound(f"{object_name} has no backup")
        fields, raws = self.objects[object_name]
        canon = RecordCanonicalizer(ObjectSchema(object_name, fields))
        records = [canon.canonicalize(r) for r in raws]
        wanted = set(ids)
        rows = [(r.record_id, r.hash, r.values_json) for r in records if not ids or r.record_id in wanted]
        self.reads.append((object_name, len(ids)))
        yield BackupBatch(fields, rows)


def backed_up() -> list[dict[str, Any]]:
    return [
        {"Id": acc(n), "Name": f"A{n}", "Rating": "Hot", "AnnualRevenue": 10.0 * n, "Gone__c": "x",
         "SystemModstamp": "2026-01-01T00:00:00.000Z"}
        for n in range(1, 6)
    ]  # fmt: skip


def org_now() -> list[dict[str, Any]]:
    rows = [dict(r) for r in backed_up() if r["Id"] not in (acc(3),)]  # 3 deleted in the org
    for r in rows:
        r.pop("Gone__c")  # the field is gone from the org: never a change
        r["SystemModstamp"] = "2026-02-01T00:00:00.000Z"  # every record touched: an audit field, no change
    rows[0]["Name"] = "A1 renamed"  # account 1
    rows[1]["AnnualRevenue"] = None  # account 2: a value emptied
    rows[1]["Rating"] = "Cold"
    rows.append({"Id": acc(9), "Name": "new", "SystemModstamp": "2026-02-01T00:00:00.000Z"})
    return rows


def fixture(
    fields_in_org: Sequence[str] = ("Id", "Name", "Rating", "AnnualRevenue", "SystemModstamp"),
) -> tuple[LiveCompare, FakeLive, FakeBackup]:
    live = FakeLive({"Account": org_now()}, {"Account": list(fields_in_org)})
    backup = FakeBackup({"Account": (ACCOUNT, backed_up())})

    async def get_org(org_id: str) -> d.Org:
        if org_id != ORG.org_id:
            raise errors.NotFound(f"org {org_id!r} does not exist")
        return ORG

    return LiveCompare(get_org, lambda _c, _reserve: live, backup), live, backup


async def run(c: LiveCompare, objects: Sequence[str] = ("Account",), **kw: Any) -> list[ComparePiece]:
    return [p async for p in c.compare(ORG.org_id, None, objects, **kw)]


def found(pieces: list[ComparePiece]) -> dict[str, tuple[str, tuple[str, ...]]]:
    return {c.record_id: (c.change, tuple(f.field for f in c.fields)) for p in pieces for c in p.changes}


async def test_added_deleted_and_changed_fields_against_the_org_now() -> None:
    c, live, backup = fixture()
    pieces = await run(c)
    assert found(pieces) == {
        acc(1): ("changed", ("Name",)),
        acc(2): ("changed", ("AnnualRevenue", "Rating")),
        acc(3): ("deleted", ()),
        acc(9): ("added", ()),
    }
    summaries = pieces[-1].summaries
    assert summaries is not None and [(s.object_name, s.added, s.deleted, s.changed) for s in summaries] == [
        ("Account", 1, 1, 2)
    ]
    # the org is asked for the backup's fields it still has (Id first), never Gone__c
    assert live.queried == [("Account", ("Id", "AnnualRevenue", "Name", "Rating", "SystemModstamp"))]
    # the backup: its fields (a probe of one Id), once whole (hashes), once for the candidates' values (accounts
    # 1, 2 and 4, 5: only the records whose hash differs -- 4 and 5 differ by Gone__c alone, then found unchanged
    # field by field)
    assert backup.reads == [("Account", 1), ("Account", 0), ("Account", 4)]
    assert [c.record_id for p in pieces for c in p.changes] == sorted(found(pieces))  # Id order


async def test_values_fields_filter_limit_and_batches() -> None:
    c, _live, _backup = fixture()
    pieces = await run(c, values=True)
    by_id = {ch.record_id: ch for p in pieces for ch in p.changes}
    assert [(f.field, f.old_json, f.new_json) for f in by_id[acc(2)].fields] == [
        ("AnnualRevenue", b"20", b""),  # canonical: a whole double as an integer
        ("Rating", b'"Hot"', b'"Cold"'),
    ]
    only = await run(c, fields=["rating"])
    assert found(only) == {acc(2): ("changed", ("Rating",)), acc(3): ("deleted", ()), acc(9): ("added", ())}
    cut = await run(c, limit=1, batch_size=1)
    assert [len(p.changes) for p in cut] == [1, 0] and cut[-1].truncated
    assert cut[-1].summaries is not None and cut[-1].summaries[0].changed == 2


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        ({"objects": []}, errors.InvalidArgument, "at least one object"),
        ({"objects": ["not a name"]}, errors.InvalidArgument, "API name"),
        ({"objects": ["Lead"]}, errors.NotFound, "Lead"),
        ({"fields": ["Nope__c"]}, errors.InvalidArgument, "Nope__c"),
        ({"batch_size": 10_001}, errors.InvalidArgument, "batch_size"),
        ({"limit": -1}, errors.InvalidArgument, "limit"),
    ],
)
async def test_bad_requests_are_refused_before_the_org_is_read(
    kw: dict[str, Any], error: type[Exception], match: str
) -> None:
    c, live, _backup = fixture()
    objects = kw.pop("objects", ["Account"])
    with pytest.raises(error, match=match):
        await run(c, objects, **kw)
    assert not live.queried
    with pytest.raises(errors.NotFound):
        _ = [p async for p in c.compare("org-unknown", None, ["Account"])]


def test_changed_fields_rule() -> None:
    assert changed_fields({"A": 1, "B": "x"}, {"A": 1.0, "B": "x"}, {"A", "B"}) == changed_fields(
        {"A": 1}, {"A": 2}, {"A"}
    )
    assert changed_fields({"A": True}, {"A": True}, {"A"}) == ()


# ---- the real adapter on sforg ---------------------------------------------------------------------------


def _schema(live: SalesforceLive, name: str) -> tuple[FieldDef, ...]:
    describe = live.fields(name)
    return tuple(
        FieldDef(f["name"], FieldType(storage_field_type(f.get("type", "string"))), bool(f.get("calculated")))
        for f in describe.values()
        if f.get("type") != "base64"
    )


async def test_on_sforg_exactly_the_changes_made_since_the_backup(
    org: dict[str, Any], admin: Any, connection: Any
) -> None:
    from services.discovery import translate

    conn = translate.connection_from_pb(connection)
    live = SalesforceLive(SalesforceOrg(conn))
    fields = _schema(live, "Contact")
    selected = [f.name for f in fields]
    snapshot = [
        {k: v for k, v in r.items() if k != "attributes"} for r in live.records("Contact", selected)
    ]  # "the backup": the org as it is now
    backup = FakeBackup({"Contact": (fields, snapshot)})
    ids = sorted(r["Id"] for r in snapshot)
    changed = admin.update("Contact", ids=ids[:2], values={"Title": "Compared"})["ids"]
    deleted = ids[5:7]
    admin.soft_delete("Contact", ids=deleted)
    created = admin.create("Contact", n=250, values={"LastName": "Brandnew"})["ids"]  # more than a page

    async def get_org(_org_id: str) -> d.Org:
        return d.Org("sforg", "sforg", conn)

    orgs: list[SalesforceLive] = []

    def connect(c: d.Connection, _reserve: int) -> SalesforceLive:
        orgs.append(SalesforceLive(SalesforceOrg(c), page_size=200))  # several pages: nextRecordsUrl followed
        return orgs[-1]

    compare = LiveCompare(get_org, connect, backup)
    pieces = [p async for p in compare.compare("sforg", None, ["Contact"], values=True)]
    pages = -(-(len(snapshot) - len(deleted) + len(created)) // 200)
    assert pages >= 2 and orgs[0].api_calls >= pages + 1  # the pages and the describe (and the login)
    got = found(pieces)
    assert {rid for rid, (kind, _f) in got.items() if kind == "added"} == set(created)
    assert {rid for rid, (kind, _f) in got.items() if kind == "deleted"} == set(deleted)
    changes = {rid: f for rid, (kind, f) in got.items() if kind == "changed"}
    assert set(changes) == set(changed), changes
    # the update's own trace (LastModifiedById: who saved) is a change of the record too; nothing else moved
    assert all("Title" in f and set(f) <= {"Title", "LastModifiedById"} for f in changes.values()), changes
    title = next(f for p in pieces for ch in p.changes for f in ch.fields if f.field == "Title")
    assert json.loads(title.new_json) == "Compared"
    # the org's API budget: a compare leaves the reserve alone (here all of it: nothing may be read)
    starved = SalesforceLive(SalesforceOrg(conn), reserve_percent=100)
    with pytest.raises(errors.FailedPrecondition, match="API budget"):
        starved.fields("Contact")  # checked on the usage the org's last answer told
        list(starved.records("Contact", ["Id"]))


async def test_the_reserve_is_what_the_orgs_policies_leave_alone() -> None:
    async def policies(org_id: str) -> list[d.Policy]:
        return {"a": [d.Policy("p1", "a", daily_share_percent=30), d.Policy("p2", "a", daily_share_percent=60)],
                "b": [d.Policy("p3", "b")]}.get(org_id, [])  # fmt: skip

    assert await org_reserve(policies, "a") == 40
    assert await org_reserve(policies, "b") == 50 and await org_reserve(policies, "none") == 50
    given: list[int] = []
    c, live, backup = fixture()

    def connect(_c: d.Connection, reserve: int) -> FakeLive:
        given.append(reserve)
        return live

    c = LiveCompare(c.get_org, connect, backup, functools.partial(org_reserve, policies))
    await run(c)
    assert given == [50]
