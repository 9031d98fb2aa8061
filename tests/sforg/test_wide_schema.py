"""The standard schema as wide as a real org's: describe of the standard fields equals real captures key for key,
and the generated org fills the new fields the way a real org holds them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
# where sforg differs on purpose: the captured org has person accounts (Account.Name a compound of the contact name)
# the share objects holding owner rows: their real key prefixes (Object Reference, real Ids)
SHARE_PREFIXES = {"AccountShare": "00r", "OpportunityShare": "00t", "CaseShare": "01n", "LeadShare": "01o"}
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
    # (other tests' admin updates write arbitrary text into a few records)
    assert years and sum(y.isdigit() and 1900 <= int(y) <= 2024 for y in years) >= 0.9 * len(years)
    assert any(r["Fax"] for r in rows) and any(r["Site"] for r in rows) and any(r["LastViewedDate"] for r in rows)
    sources = {v["value"] for v in captured_fields("Account")["AccountSource"]["picklistValues"]}
    assert {r["AccountSource"] for r in rows} - {None} <= sources
    contacts = sf.query_all("SELECT MobilePhone, OtherCity, Department, IsEmailBounced FROM Contact")["records"]
    assert any(c["MobilePhone"] for c in contacts) and any(c["OtherCity"] for c in contacts)
    assert not any(c["IsEmailBounced"] for c in contacts)


def test_describe_global_lists_the_associated_objects_with_their_real_flags(sf: Any) -> None:
    real = json.loads((FIXTURES / "cumulusci_global_describe.json").read_text())
    real_by = {o["name"]: o for o in real["sobjects"]}
    ours = {o["name"]: o for o in sf.describe()["sobjects"]}
    assert len(ours) >= 60
    flags = ("queryable", "replicateable", "createable", "updateable", "deletable", "searchable", "layoutable")
    for family in ("History", "Share", "Feed", "ChangeEvent"):
        template = real_by[f"WorkOrder{family}"]
        for name, entry in ours.items():
            if entry["associateEntityType"] == family:
                assert {k: entry[k] for k in flags} == {k: template[k] for k in flags}, name
                assert entry["associateParentEntity"] in ours
                want = real_by[name]["keyPrefix"] if name in real_by else SHARE_PREFIXES.get(name)
                assert entry["keyPrefix"] == want, name
    for name in ("AccountHistory", "ContactHistory", "OpportunityFieldHistory", "AccountShare", "AccountFeed"):
        assert ours[name]["queryable"]
    assert not ours["AccountChangeEvent"]["queryable"] and not ours["BatchApexErrorEvent"]["queryable"]
    for name in ("Organization", "OpportunityContactRole", "UserRole"):
        assert {k: ours[name][k] for k in flags} == {k: real_by[name][k] for k in flags}, name


def test_organization_is_described_retrieved_and_queried(sf: Any, org: dict[str, Any]) -> None:
    captured = json.loads((FIXTURES / "cumulusci_organization.json").read_text())
    fields = {f["name"] for f in sf.Organization.describe()["fields"]}
    assert set(captured) - {"attributes"} <= fields
    record = sf.Organization.get(org["org_id"])
    assert record["Id"] == org["org_id"] and record["DefaultContactAccess"] == "ControlledByParent"
    rows = sf.query("SELECT Id, Name, OrganizationType FROM Organization")["records"]
    assert [r["Id"] for r in rows] == [org["org_id"]]


def test_record_types_users_profiles_roles(sf: Any) -> None:
    infos = sf.Account.describe()["recordTypeInfos"]
    assert [i["master"] for i in infos] == [False, False, True]
    assert [i["defaultRecordTypeMapping"] for i in infos] == [True, False, False]
    types = sf.query("SELECT Id, DeveloperName, SobjectType FROM RecordType ORDER BY Id")["records"]
    by_object = {t["SobjectType"] for t in types}
    assert by_object == {"Account", "Opportunity"}
    rows = sf.query("SELECT RecordTypeId, RecordType.SobjectType FROM Account LIMIT 50")["records"]
    assert rows and all(r["RecordType"]["SobjectType"] == "Account" for r in rows)
    users = sf.query("SELECT Profile.Name FROM User")["records"]
    assert {u["Profile"]["Name"] for u in users} <= {
        "System Administrator",
        "Standard User",
        "Read Only",
        "Integration User",
    }
    assert sf.query("SELECT COUNT() FROM PermissionSet")["totalSize"] >= 2


def test_contact_roles_and_events_are_children_of_their_records(sf: Any) -> None:
    role = sf.query("SELECT OpportunityId, ContactId, Role FROM OpportunityContactRole LIMIT 1")["records"][0]
    where = f"WHERE Id = '{role['OpportunityId']}'"
    opp = sf.query(f"SELECT Id, (SELECT ContactId FROM OpportunityContactRoles) FROM Opportunity {where}")["records"][0]
    assert role["ContactId"] in [r["ContactId"] for r in opp["OpportunityContactRoles"]["records"]]
    event = sf.query("SELECT StartDateTime, EndDateTime, DurationInMinutes FROM Event LIMIT 20")["records"]
    assert any(e["StartDateTime"] for e in event)
    assert all(e["StartDateTime"] < e["EndDateTime"] for e in event if e["StartDateTime"])


def test_field_history_is_written_when_a_tracked_field_changes(sf: Any, admin: Any) -> None:
    acc = sf.query("SELECT Id, Name FROM Account WHERE IsDeleted = false LIMIT 1")["records"][0]
    before = sf.query(f"SELECT COUNT() FROM AccountHistory WHERE AccountId = '{acc['Id']}'")["totalSize"]
    sf.Account.update(acc["Id"], {"Name": "History Co", "Website": "https://h.example.com"})
    rows = sf.query(
        f"SELECT Field, DataType, OldValue, NewValue, CreatedById FROM AccountHistory WHERE AccountId = '{acc['Id']}'"
    )["records"]
    assert len(rows) == before + 1  # Website is not tracked
    assert [(r["Field"], r["OldValue"], r["NewValue"]) for r in rows][-1] == ("Name", acc["Name"], "History Co")
    created = sf.Contact.create({"LastName": "Tracked"})["id"]
    rows = sf.query(f"SELECT Field FROM ContactHistory WHERE ContactId = '{created}'")["records"]
    assert [r["Field"] for r in rows] == ["created"]
    opp = admin.update("Opportunity", n=1, fields=["StageName"])["ids"][0]
    fields = sf.query(f"SELECT Field FROM OpportunityFieldHistory WHERE OpportunityId = '{opp}'")["records"]
    stages = sf.query(f"SELECT StageName FROM OpportunityHistory WHERE OpportunityId = '{opp}'")["records"]
    assert "StageName" in [f["Field"] for f in fields] and stages


def test_child_relationships_carry_the_real_restrictions(sf: Any, admin: Any) -> None:
    real = json.loads((FIXTURES / "cumulusci_contact_describe.json").read_text())["childRelationships"]
    real_by = {(c["childSObject"], c["field"]): c for c in real}
    ours = sf.Contact.describe()["childRelationships"]
    keys = ("relationshipName", "cascadeDelete", "restrictedDelete")
    for c in ours:
        captured = real_by.get((c["childSObject"], c["field"]))
        if captured is not None and c["childSObject"] != "ContentDocumentLink":
            assert {k: c[k] for k in keys} == {k: captured[k] for k in keys}, c
    names = {c["relationshipName"] for c in ours}
    assert {"Tasks", "Events", "Opportunities", "OpportunityContactRoles", "Cases", "Histories", "Users"} <= names
    # a Contact with Cases cannot be deleted through the API (admin deletes stand for what happens behind it)
    case = sf.query("SELECT ContactId, CaseNumber FROM Case WHERE ContactId != null AND IsDeleted = false LIMIT 1")
    contact = case["records"][0]["ContactId"]
    with pytest.raises(Exception) as failed:
        sf.Contact.delete(contact)
    body = failed.value.content[0]  # type: ignore[attr-defined]
    assert body["errorCode"] == "DELETE_FAILED" and case["records"][0]["CaseNumber"] in body["message"]
    assert sf.Contact.get(contact)["Id"] == contact


def test_an_account_with_cases_cannot_be_deleted_as_in_a_real_org(sf: Any) -> None:
    real = json.loads((FIXTURES / "cumulusci_account_describe.json").read_text())["childRelationships"]
    real_by = {(c["childSObject"], c["field"]): c for c in real}
    keys = ("cascadeDelete", "restrictedDelete")
    ours = sf.Account.describe()["childRelationships"]
    compared = [
        c for c in ours if (c["childSObject"], c["field"]) in real_by and c["childSObject"] != "ContentDocumentLink"
    ]
    assert {"Case", "Contact", "Opportunity"} <= {c["childSObject"] for c in compared}
    for c in compared:
        assert {k: c[k] for k in keys} == {k: real_by[(c["childSObject"], c["field"])][k] for k in keys}, c
    acc = sf.Account.create({"Name": "Has Cases"})["id"]
    cases = [sf.Case.create({"AccountId": acc, "Subject": f"Blocking {i}"})["id"] for i in range(2)]
    numbers = [sf.Case.get(c)["CaseNumber"] for c in cases]
    with pytest.raises(Exception) as failed:
        sf.Account.delete(acc)
    body = failed.value.content[0]  # type: ignore[attr-defined]
    assert body["errorCode"] == "DELETE_FAILED" and body["fields"] == []
    assert body["message"] == (
        "Your attempt to delete Has Cases could not be completed because it is associated with the following "
        f"cases.: {', '.join(numbers)}\n"
    )
    assert sf.Account.get(acc)["IsDeleted"] is False
    for c in cases:  # as a user does: the cases first, then the account
        sf.Case.delete(c)
    sf.Account.delete(acc)
    assert sf.query(f"SELECT Id FROM Account WHERE Id = '{acc}'")["records"] == []


def test_merge_moves_related_records_and_bins_the_losers(sf: Any, admin: Any) -> None:
    accounts = sf.query("SELECT Id, (SELECT Id FROM Contacts) FROM Account WHERE IsDeleted = false LIMIT 40")["records"]
    with_contacts = [a for a in accounts if a["Contacts"]]
    master, loser = with_contacts[0]["Id"], with_contacts[1]["Id"]
    moved = {c["Id"] for c in with_contacts[1]["Contacts"]["records"]}
    done = admin.call("merge_records", obj="Account", master=master, losers=[loser])
    assert done["merged"] == [loser] and done["related_moved"] >= len(moved)
    gone = sf.query_all(f"SELECT Id, IsDeleted, MasterRecordId FROM Account WHERE Id = '{loser}'", include_deleted=True)
    assert [(r["IsDeleted"], r["MasterRecordId"]) for r in gone["records"]] == [(True, master)]
    contacts = sf.query(f"SELECT Id FROM Contact WHERE AccountId = '{master}'")["records"]
    assert moved <= {c["Id"] for c in contacts}
    assert loser in admin.ground_truth(["Account"], values=False)["recycle_bin"]["Account"]
    with pytest.raises(Exception, match="INVALID_TYPE"):
        admin.call("merge_records", obj="Opportunity", master=master, losers=[loser])


def test_field_level_security_follows_the_api_users_profile(sf: Any, admin: Any) -> None:
    assert (
        sf.query("SELECT Profile.Name FROM User WHERE Id = '0058d0000000001AAA'")["records"][0]["Profile"]["Name"]
        == "System Administrator"
    )
    try:
        admin.settings(profile_hidden_fields={"Standard User": {"Account": ["Fax"]}})
        assert "Fax" in {f["name"] for f in sf.Account.describe()["fields"]}  # not the API user's profile
        admin.settings(profile_hidden_fields={"System Administrator": {"Account": ["Fax"]}})
        assert "Fax" not in {f["name"] for f in sf.Account.describe()["fields"]}
        with pytest.raises(Exception, match="INVALID_FIELD"):
            sf.query("SELECT Fax FROM Account LIMIT 1")
    finally:
        admin.settings(profile_hidden_fields={})
    assert sf.query("SELECT Fax FROM Account LIMIT 1")["records"]


# Where sforg's describe of a captured field stays its own (standard.KEPT: attributes that steer validation,
# generation and relationships): required-on-create rules sforg enforces without defaults, its picklist values,
# the lookup targets it has (OwnerId: User only, no queues; WhatId: the objects it models), compound names.
KEPT_DIFFERENCES = {
    ("Case", "Status", "defaultedOnCreate"),
    ("Case", "Priority", "defaultedOnCreate"),
    ("Case", "OwnerId", "referenceTo"),
    ("Event", "WhatId", "referenceTo"),
    ("Event", "WhoId", "referenceTo"),
    ("Event", "OwnerId", "referenceTo"),
    ("Event", "Subject", "nameField"),
    ("Event", "ShowAs", "defaultedOnCreate"),
    ("Lead", "LastName", "compoundFieldName"),
    ("Lead", "FirstName", "compoundFieldName"),
    ("Lead", "Salutation", "compoundFieldName"),
    ("Lead", "Name", "calculated"),
    ("Lead", "Name", "nillable"),
    ("Lead", "Status", "defaultedOnCreate"),
    ("Lead", "OwnerId", "referenceTo"),
    ("Lead", "IsConverted", "updateable"),
    ("Lead", "EmailBouncedReason", "createable"),
    ("Lead", "EmailBouncedDate", "createable"),
    ("Opportunity", "Probability", "defaultedOnCreate"),
    ("Opportunity", "ForecastCategoryName", "defaultedOnCreate"),
    ("Opportunity", "Pricebook2Id", "defaultedOnCreate"),
    ("Opportunity", "ForecastCategory", "nillable"),
    ("Opportunity", "FiscalQuarter", "compoundFieldName"),
    ("Opportunity", "FiscalYear", "compoundFieldName"),
    ("Opportunity", "ContactId", "relationshipName"),
    ("Opportunity", "ContactId", "updateable"),
}


@pytest.mark.parametrize("obj", ["Opportunity", "Case", "Lead", "Event", "OpportunityContactRole"])
def test_captured_objects_describe_every_standard_field_as_captured(sf: Any, obj: str) -> None:
    ours = {f["name"]: f for f in getattr(sf, obj).describe()["fields"]}
    real = captured_fields(obj)
    assert set(real) <= set(ours)
    differences = {
        (obj, name, key)
        for name, fr in real.items()
        for key, value in fr.items()
        if ours[name][key] != value and key != "picklistValues"  # the generator's values (PICK), not the capture's
    }
    assert differences <= KEPT_DIFFERENCES
    rows = sf.query(f"SELECT {', '.join(real)} FROM {obj} LIMIT 5")["records"]
    assert rows and set(real) <= set(rows[0])
