"""The standard schema as wide as a real org's: describe of the standard fields equals real captures key for key,
and the generated org fills the new fields the way a real org holds them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
# where sforg differs on purpose: the captured org has person accounts (Account.Name a compound of the contact name)
PERSON_ACCOUNTS = {("Account", "Name", "compoundFieldName"), ("Account", "Name", "extraTypeInfo")}


def captured_fields(obj: str) -> dict[str, dict[str, Any]]:
    real = json.loads((FIXTURES / f"cumulusci_{obj.lower()}_describe.json").read_text())
    return {f["name"]: f for f in real["fields"] if not f["name"].endswith("__c")}


@pytest.mark.parametrize("obj", ["Account", "Contact"])
def test_every_captured_standard_field_is_described_as_captured(sf: Any, obj: str) -> None:
    ours = {f["name"]: f for f in getattr(sf, obj).describe()["fields"]}
    real = captured_fields(obj)
    assert set(real) <= set(ours)
    for name, fr in real.items():
        for key, value in fr.items():
            if (obj, name, key) not in PERSON_ACCOUNTS:
                assert ours[name][key] == value, (name, key)


def test_issue_fields_are_there_and_queryable(sf: Any) -> None:
    wanted = {
        "Account": ["RecordTypeId", "MasterRecordId", "ParentId", "Site", "Fax", "AccountSource", "Sic"],
        "Contact": ["MobilePhone", "HomePhone", "OtherAddress", "Department", "AssistantName", "IndividualId"],
    }
    for obj, names in wanted.items():
        extra = ["Ownership", "TickerSymbol", "YearStarted"] if obj == "Account" else ["EmailBouncedReason"]
        for name in [*names, *extra, "LastViewedDate", "LastReferencedDate", "LastActivityDate"]:
            rows = sf.query(f"SELECT Id, {name} FROM {obj} LIMIT 1")["records"]
            assert rows and name in rows[0], (obj, name)


def test_generated_values_look_like_a_real_orgs(sf: Any) -> None:
    rows = sf.query_all(
        "SELECT YearStarted, Sic, Fax, MasterRecordId, IsPartner, AccountSource, Site, LastViewedDate FROM Account"
    )["records"]
    assert all(r["MasterRecordId"] is None and r["IsPartner"] is False for r in rows)
    years = [r["YearStarted"] for r in rows if r["YearStarted"]]
    assert years and all(y.isdigit() and 1900 <= int(y) <= 2024 for y in years)
    assert any(r["Fax"] for r in rows) and any(r["Site"] for r in rows) and any(r["LastViewedDate"] for r in rows)
    sources = {v["value"] for v in captured_fields("Account")["AccountSource"]["picklistValues"]}
    assert {r["AccountSource"] for r in rows} - {None} <= sources
    contacts = sf.query_all("SELECT MobilePhone, OtherCity, Department, IsEmailBounced FROM Contact")["records"]
    assert any(c["MobilePhone"] for c in contacts) and any(c["OtherCity"] for c in contacts)
    assert not any(c["IsEmailBounced"] for c in contacts)
