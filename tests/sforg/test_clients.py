"""simple-salesforce 1.12.10, unchanged, against sforg; every result compared with the org's ground truth."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import zipfile
from typing import Any

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceAuthenticationFailed, SalesforceMalformedRequest

from sforg.testing import Admin


def host(org: dict[str, Any]) -> str:
    return org["login_url"].removeprefix("https://")


def test_oauth_client_credentials(org: dict[str, Any]) -> None:
    sf = Salesforce(consumer_key=org["client_id"], consumer_secret=org["client_secret"], domain=f"{host(org)}/x")
    assert sf.sf_instance == host(org)
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] > 0


def test_oauth_password_and_soap_login(org: dict[str, Any]) -> None:
    by_oauth = Salesforce(
        username=org["username"],
        password=org["password"],
        consumer_key=org["client_id"],
        consumer_secret=org["client_secret"],
        domain=f"{host(org)}/x",
    )
    by_soap = Salesforce(
        username=org["username"],
        password=org["password"],
        security_token=org["security_token"],
        domain=f"{host(org)}/x",
    )
    for sf in (by_oauth, by_soap):
        assert sf.query("SELECT Id FROM User LIMIT 1")["totalSize"] == 1
    with pytest.raises(SalesforceAuthenticationFailed) as err:
        Salesforce(
            username=org["username"],
            password="wrong",
            consumer_key=org["client_id"],
            consumer_secret=org["client_secret"],
            domain=f"{host(org)}/x",
        )
    assert err.value.code == "invalid_grant"
    with pytest.raises(SalesforceAuthenticationFailed) as err:
        Salesforce(username=org["username"], password="wrong", security_token="x", domain=f"{host(org)}/x")
    assert err.value.code == "INVALID_LOGIN"


def test_describe_every_object(sf: Any, admin: Admin) -> None:
    truth = admin.ground_truth()
    listed = sf.describe()["sobjects"]
    names = [o["name"] for o in listed if o["queryable"]]
    # every queryable object is in the truth; change events and platform events are listed, never queried
    assert set(names) == set(truth["objects"])
    assert {o["name"] for o in listed if not o["queryable"]} >= {"AccountChangeEvent", "BatchApexErrorEvent"}
    for name in names:
        d = getattr(sf, name).describe()
        assert d["name"] == name
        fields = {f["name"] for f in d["fields"]}
        sample = next(iter(truth["objects"][name].values()), None)
        if sample is not None:
            assert fields == set(sample)


def _all_fields(sf: Any, name: str) -> list[str]:
    return [f["name"] for f in getattr(sf, name).describe()["fields"]]


def test_query_more_pages_match_truth(sf: Any, admin: Admin) -> None:
    fields = _all_fields(sf, "Contact")
    soql = f"SELECT {', '.join(fields)} FROM Contact"
    first = sf.query(soql, headers={"Sforce-Query-Options": "batchSize=200"})
    pages = [first]
    while not pages[-1]["done"]:
        assert pages[-1]["nextRecordsUrl"].startswith("/services/data/v59.0/query/01g")
        pages.append(sf.query_more(pages[-1]["nextRecordsUrl"], identifier_is_url=True))
    assert len(pages) >= 3
    assert all(p["totalSize"] == first["totalSize"] for p in pages)
    assert "nextRecordsUrl" not in pages[-1]
    records = [r for p in pages for r in p["records"]]
    truth = admin.ground_truth(["Contact"])["objects"]["Contact"]
    assert len(records) == first["totalSize"] == len(truth)
    for rec in records:
        expected = truth[rec["Id"]]
        got = {k: v for k, v in rec.items() if k != "attributes"}
        assert got == expected


def test_query_all_returns_deleted_rows(sf: Any, admin: Admin) -> None:
    deleted = admin.soft_delete("Opportunity", n=3)["ids"]
    live = sf.query_all("SELECT Id FROM Opportunity")["records"]
    everything = sf.query_all("SELECT Id, IsDeleted FROM Opportunity", include_deleted=True)["records"]
    truth = admin.ground_truth(["Opportunity"], values=False)
    assert {r["Id"] for r in live} == set(truth["objects"]["Opportunity"])
    binned = {r["Id"] for r in everything if r["IsDeleted"]}
    assert binned == set(truth["recycle_bin"]["Opportunity"])
    assert set(deleted) <= binned


def test_updated_and_deleted(sf: Any, admin: Admin) -> None:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=2)
    changed = admin.update("Lead", n=5)["ids"]
    removed = admin.soft_delete("Lead", n=2)["ids"]
    # Salesforce covers whole minutes up to now: let the org's clock pass the minute of the changes.
    admin.advance_clock(120)
    end = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    updated = sf.Lead.updated(start, end)
    assert set(changed) - set(removed) <= set(updated["ids"])
    assert updated["latestDateCovered"].endswith("+0000")
    deleted = sf.Lead.deleted(start, end)
    truth = admin.ground_truth(["Lead"], values=False)
    assert set(removed) <= {d["id"] for d in deleted["deletedRecords"]} <= set(truth["recycle_bin"]["Lead"])
    for rid in updated["ids"]:
        assert truth["objects"]["Lead"][rid]["SystemModstamp"] >= start.strftime("%Y-%m-%dT%H:%M")
    assert set(removed) <= set(truth["recycle_bin"]["Lead"])


def test_bulk2_query_pages_match_truth(sf: Any, admin: Admin) -> None:
    fields = [
        "Id",
        "Name",
        "Email",
        "Phone",
        "Birthdate",
        "HasOptedOutOfEmail",
        "SystemModstamp",
        "Account.Name",
    ]
    pages = list(sf.bulk2.Contact.query(f"SELECT {', '.join(fields)} FROM Contact", max_records=200, wait=0.05))
    assert len(pages) >= 3
    rows = [row for page in pages for row in csv.DictReader(io.StringIO(page))]
    truth = admin.ground_truth(["Contact", "Account"])["objects"]
    contacts, accounts = truth["Contact"], truth["Account"]
    assert len(rows) == len(contacts)
    for row in rows:
        exp = contacts[row["Id"]]
        assert row["Name"] == exp["Name"]
        assert row["Email"] == (exp["Email"] or "")
        assert row["Birthdate"] == (exp["Birthdate"] or "")
        assert row["HasOptedOutOfEmail"] == str(exp["HasOptedOutOfEmail"]).lower()
        assert row["SystemModstamp"] == exp["SystemModstamp"].replace("+0000", "Z")
        parent = accounts.get(exp["AccountId"]) if exp["AccountId"] else None
        assert row["Account.Name"] == (parent["Name"] if parent else "")


def test_bulk2_formula_fields_match_truth(sf: Any, admin: Admin) -> None:
    """Formula fields are computed inside the SQL that renders the CSV lines (by the same Python as the ground
    truth's): every cell is the truth's value as csv.writer writes it, an empty cell for a null."""
    admin.update("Invoice__c", n=1, values={"Amount__c": None})
    admin.update("Invoice__c", n=1, values={"Tax_Rate__c": None, "Amount__c": 123.45})
    admin.update("Case", n=1, values={"Subject": "formula"})
    truth = admin.ground_truth(["Invoice__c", "Case"])["objects"]
    for obj, field, other in (("Invoice__c", "Total_With_Tax__c", "Name"), ("Case", "Days_Open__c", "Subject")):
        # the formula between plain columns, so each is placed by SQL's format() among the others
        pages = getattr(sf.bulk2, obj).query(f"SELECT Id, {field}, {other} FROM {obj}", wait=0.05)
        rows = [row for page in pages for row in csv.DictReader(io.StringIO(page))]
        assert len(rows) == len(truth[obj])
        cells = {row["Id"]: row[field] for row in rows}
        expected = {rid: "" if rec[field] is None else str(rec[field]) for rid, rec in truth[obj].items()}
        assert cells == expected
        assert any(v == "" for v in cells.values()) == (obj == "Invoice__c")  # a null Amount__c: no total
        assert all(v == "" or float(v) == round(float(v), 2) for v in cells.values())
        assert {row[other] for row in rows} == {rec[other] or "" for rec in truth[obj].values()}
        # the REST query resource: the same values, as JSON numbers (null for none)
        records = sf.query_all(f"SELECT Id, {field}, {other} FROM {obj}")["records"]
        assert {r["Id"]: r[field] for r in records} == {rid: rec[field] for rid, rec in truth[obj].items()}
        assert {r["Id"]: r[other] for r in records} == {rid: rec[other] for rid, rec in truth[obj].items()}


def test_bulk2_query_all_and_csv_quoting(sf: Any, admin: Admin) -> None:
    admin.update("Account", n=1, values={"Name": 'Quote "this", please\nnow'})
    pages = list(sf.bulk2.Account.query_all("SELECT Id, Name, IsDeleted FROM Account", wait=0.05))
    assert len(pages) == 1  # without paging by maxRecords simple-salesforce still asks 50,000 a page
    assert '"Quote ""this"", please\nnow"' in pages[0]
    rows = list(csv.DictReader(io.StringIO(pages[0])))
    truth = admin.ground_truth(["Account"], values=False)
    assert {r["Id"] for r in rows} == set(truth["objects"]["Account"]) | set(truth["recycle_bin"]["Account"])


def test_get_base64_of_every_file(sf: Any, admin: Admin) -> None:
    files = admin.ground_truth(["ContentVersion", "Attachment", "Document"], values=False)["files"]
    assert files
    fields = {"ContentVersion": "VersionData", "Attachment": "Body", "Document": "Body"}
    for rid, f in files.items():
        body = getattr(sf, f["object"]).get_base64(rid, base64_field=fields[f["object"]])
        assert hashlib.sha256(body).hexdigest() == f["sha256"]
        assert len(body) == f["size"]


def test_limits(sf: Any) -> None:
    limits = sf.limits()
    assert limits["DailyApiRequests"]["Max"] == 100000
    assert sf.api_usage["api-usage"].total == 100000
    assert limits["DailyApiRequests"]["Remaining"] == 100000 - sf.api_usage["api-usage"].used


def test_mdapi_describe_list_retrieve(sf: Any, admin: Admin) -> None:
    truth = [m for m in admin.ground_truth(["none"], values=False)["metadata"]]
    described = {o.xmlName for o in sf.mdapi.describe_metadata().metadataObjects}
    wanted = {
        "ApexClass",
        "ApexTrigger",
        "CustomObject",
        "CustomField",
        "Layout",
        "Flow",
        "PermissionSet",
        "Profile",
    }
    assert wanted - {"CustomField"} <= described
    for mtype in sorted(wanted):
        listed = sf.mdapi.list_metadata([sf.mdapi.ListMetadataQuery(type=mtype)])
        expected = {m["fullName"]: m for m in truth if m["type"] == mtype}
        assert {p.fullName for p in listed} == set(expected)
        for p in listed:
            assert p.lastModifiedDate.strftime("%Y-%m-%dT%H:%M:%S") == expected[p.fullName]["lastModifiedDate"][:19]
    async_id, state = sf.mdapi.retrieve(
        "ignored",
        unpackaged={
            "ApexClass": ["*"],
            "CustomObject": ["Invoice__c"],
            "Profile": ["Admin", "NoSuchProfile"],
        },
    )
    assert state == "Queued"
    status, error_message, messages = sf.mdapi.check_retrieve_status(async_id)
    assert (status, error_message) == ("Succeeded", None)
    # simple-salesforce looks for messages under <details>; RetrieveResult carries them directly.
    assert messages == []
    result = sf.mdapi.retrieve_retrieve_result(async_id, "false")
    problems = [
        m.findtext("mt:problem", None, sf.mdapi._XML_NAMESPACES)
        for m in result.findall("mt:messages", sf.mdapi._XML_NAMESPACES)
    ]
    assert problems == ["Entity of type 'Profile' named 'NoSuchProfile' cannot be found"]
    _, _, _, zipped = sf.mdapi.retrieve_zip(async_id)
    names = set(zipfile.ZipFile(io.BytesIO(zipped)).namelist())
    classes = {m["fileName"] for m in truth if m["type"] == "ApexClass"}
    assert {"package.xml", "objects/Invoice__c.object", "profiles/Admin.profile"} | classes <= names
    assert {c + "-meta.xml" for c in classes} <= names


def test_rest_errors_are_arrays_like_salesforce(sf: Any) -> None:
    cases = [
        ("SELEKT Id FROM Account", "MALFORMED_QUERY"),
        ("SELECT Bacon__c FROM Account", "INVALID_FIELD"),
        ("SELECT Id FROM XYZZY", "INVALID_TYPE"),
    ]
    for soql, code in cases:
        with pytest.raises(SalesforceMalformedRequest) as err:
            sf.query(soql)
        assert err.value.content[0]["errorCode"] == code
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.query("SELECT Bacon__c FROM Account LIMIT 2")
    assert err.value.content[0]["message"] == (
        "\nSELECT Bacon__c FROM Account LIMIT 2\n       ^\nERROR at Row:1:Column:8\n"
        "No such column 'Bacon__c' on entity 'Account'. If you are attempting to use a custom field, be sure "
        "to append the '__c' after the custom field name. Please reference your WSDL or the describe call "
        "for the appropriate names."
    )


def test_single_record_crud_and_collections(sf: Any, admin: Admin) -> None:
    created = sf.Invoice__c.create({"Name": "INV-1", "Amount__c": 100.0, "Tax_Rate__c": 20})
    rid = created["id"]
    rec = sf.Invoice__c.get(rid)
    assert rec["Total_With_Tax__c"] == 120.0
    assert sf.Invoice__c.update(rid, {"Amount__c": 50}) == 204
    assert admin.ground_truth(["Invoice__c"])["objects"]["Invoice__c"][rid]["Amount__c"] == 50.0
    resp = sf.restful(
        "composite/sobjects",
        method="POST",
        json={
            "allOrNone": False,
            "records": [
                {"attributes": {"type": "Invoice__c"}, "Name": "INV-2"},
                {"attributes": {"type": "Invoice__c"}, "Nope__c": 1},
            ],
        },
    )
    assert resp[0]["success"] and not resp[1]["success"]
    assert resp[1]["errors"][0]["statusCode"] == "INVALID_FIELD"
    assert sf.Invoice__c.delete(rid) == 204
    assert rid in admin.ground_truth(["Invoice__c"], values=False)["recycle_bin"]["Invoice__c"]


def test_get_and_upsert_by_external_id(sf: Any, admin: Admin) -> None:
    existing = sf.query("SELECT Id, External_Id__c FROM Account WHERE External_Id__c != null LIMIT 1")["records"][0]
    got = sf.Account.get_by_custom_id("External_Id__c", existing["External_Id__c"])
    assert got["Id"] == existing["Id"]
    assert sf.Account.upsert(f"External_Id__c/{existing['External_Id__c']}", {"Rating": "Hot"}) in (200, 204)
    assert sf.Account.upsert("External_Id__c/EXT-NEW-1", {"Name": "Upserted"}) == 201
    truth = admin.ground_truth(["Account"])["objects"]["Account"]
    assert truth[existing["Id"]]["Rating"] == "Hot"
    assert [v["Name"] for v in truth.values() if v["External_Id__c"] == "EXT-NEW-1"] == ["Upserted"]


def test_content_document_links_need_a_filter(sf: Any, admin: Admin) -> None:
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.query("SELECT Id FROM ContentDocumentLink")
    assert "Implementation restriction: ContentDocumentLink requires a filter" in err.value.content[0]["message"]
    truth = admin.ground_truth(["ContentDocument", "ContentDocumentLink"])["objects"]
    docs = list(truth["ContentDocument"])
    in_list = ", ".join(f"'{d}'" for d in docs)
    got = sf.query_all(
        f"SELECT Id, LinkedEntityId, ContentDocumentId FROM ContentDocumentLink WHERE ContentDocumentId IN ({in_list})"
    )["records"]
    assert {r["Id"]: (r["LinkedEntityId"], r["ContentDocumentId"]) for r in got} == {
        rid: (v["LinkedEntityId"], v["ContentDocumentId"]) for rid, v in truth["ContentDocumentLink"].items()
    }
