"""A field leaving or joining the backup's scope (hidden from or shown to the integration user, or created) is a
schema change, not a data change: no restore point for the records whose values did not change."""

from __future__ import annotations

import dataclasses
import json

import pytest

from services.storage.domain import FieldDef, FieldType
from tests.storage.conftest import ACCOUNT, DATA, ORG, Harness, account, put_raw, sf_id

pytestmark = pytest.mark.integration

HIDDEN = dataclasses.replace(ACCOUNT, fields=tuple(f for f in ACCOUNT.fields if f.name != "AnnualRevenue"))
WITH_PHONE = dataclasses.replace(ACCOUNT, fields=(*ACCOUNT.fields, FieldDef("Phone", FieldType.STRING)))


async def _session(harness: Harness, session: str, schema: object) -> None:
    await harness.storage.begin_job(ORG, session, "j", DATA, "Account")
    await harness.storage.put_schema(ORG, session, schema)  # type: ignore[arg-type]


def _stamp(day: int) -> str:
    return f"2024-01-{day:02d}T00:00:00.000Z"


async def _values(harness: Harness, n: int) -> list[tuple[dict[str, object], bool]]:
    history = await harness.storage.record_history(ORG, "Account", sf_id("001", n))
    return [(json.loads(v.values_json), v.scope_only) for v in history]


async def test_hiding_and_showing_a_field_makes_no_restore_point_for_unchanged_records(harness: Harness) -> None:
    s = harness.storage
    await _session(harness, "s1", ACCOUNT)
    first = [account(n, f"A{n}", AnnualRevenue=n * 10, SystemModstamp=_stamp(1)) for n in (1, 2, 3)]
    assert (await put_raw(s, ORG, "s1", "j", 1, "Account", first)).counts.new_versions == 3

    # AnnualRevenue hidden: the re-read lacks it; only record 3 really changed (its value carried along)
    await _session(harness, "s2", HIDDEN)
    hidden = [account(1, "A1", SystemModstamp=_stamp(2)), account(2, "A2"), account(3, "A3 renamed")]
    counts = (await put_raw(s, ORG, "s2", "j", 1, "Account", hidden)).counts
    assert (counts.changed, counts.unchanged, counts.new_versions) == (1, 2, 0)
    assert await harness.count("record_versions") == 4
    [_, (renamed, _)] = await _values(harness, 3)
    assert renamed["Name"] == "A3 renamed" and renamed["AnnualRevenue"] == 30
    again = (await put_raw(s, ORG, "s2", "j", 2, "Account", hidden)).counts
    assert (again.changed, again.unchanged) == (0, 3)

    # shown again: the same values are no change; a value that changed while hidden is one
    await _session(harness, "s3", ACCOUNT)
    shown = [
        account(1, "A1", AnnualRevenue=10),
        account(2, "A2", AnnualRevenue=25),
        account(3, "A3 renamed", AnnualRevenue=30),
    ]
    counts = (await put_raw(s, ORG, "s3", "j", 1, "Account", shown)).counts
    assert (counts.changed, counts.unchanged) == (1, 2)
    assert [v["AnnualRevenue"] for v, _ in await _values(harness, 2)] == [20, 25]
    assert await harness.count("record_versions") == 5


async def test_a_field_joining_the_scope_is_kept_as_a_scope_only_version(harness: Harness) -> None:
    s = harness.storage
    await _session(harness, "s1", ACCOUNT)
    await put_raw(s, ORG, "s1", "j", 1, "Account", [account(n, f"A{n}", SystemModstamp=_stamp(1)) for n in (1, 2, 3)])

    await _session(harness, "s2", WITH_PHONE)  # a new field, visible now
    chunk = [account(1, "A1", Phone="555-1"), account(2, "A2 renamed", Phone="555-2"), account(3, "A3")]
    counts = (await put_raw(s, ORG, "s2", "j", 1, "Account", chunk)).counts
    # record 1: only its new field's value -> kept, no restore point; record 2: a real change; record 3: nothing
    assert (counts.changed, counts.unchanged, counts.new_versions) == (1, 2, 0)
    assert [(v.get("Phone"), quiet) for v, quiet in await _values(harness, 1)] == [(None, False), ("555-1", True)]
    assert [(v.get("Phone"), quiet) for v, quiet in await _values(harness, 2)] == [(None, False), ("555-2", False)]
    assert len(await _values(harness, 3)) == 1
    as_of = await s.record_as_of(ORG, "Account", sf_id("001", 1), None)
    assert json.loads(as_of.values_json)["Phone"] == "555-1"

    # from then on the new field is compared like any other
    assert (await put_raw(s, ORG, "s2", "j", 2, "Account", chunk)).counts.unchanged == 3
    moved = (await put_raw(s, ORG, "s2", "j", 3, "Account", [account(1, "A1", Phone="555-9")])).counts
    assert moved.changed == 1
    assert [(v.get("Phone"), quiet) for v, quiet in await _values(harness, 1)][-1] == ("555-9", False)


async def test_an_object_whose_fields_never_changed_takes_no_extra_step(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    probed: list[int] = []
    original = harness.store._differing_heads

    async def spy(*args: object) -> object:
        probed.append(1)
        return await original(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(harness.store, "_differing_heads", spy)
    s = harness.storage
    await _session(harness, "s1", ACCOUNT)
    await put_raw(s, ORG, "s1", "j", 1, "Account", [account(1, "A1")])
    await _session(harness, "s2", ACCOUNT)
    assert (await put_raw(s, ORG, "s2", "j", 1, "Account", [account(1, "B1")])).counts.changed == 1
    assert probed == []
