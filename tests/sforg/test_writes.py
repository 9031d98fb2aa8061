"""The write side of sforg: write accounting, REST record writes validated as Salesforce does (errors with
their real codes), upserts, allOrNone, and cascade delete / undelete / purge. One org for the module."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import time
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest

from sforg.ids import make_id
from sforg.testing import Admin, ca_bundle, running_org, simple_salesforce
from tests.sforg.writes_helpers import Rest


@pytest.fixture(scope="module")
def worg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with running_org(tmp_path_factory.mktemp("sforg-writes"), scale=2000, seed=5) as info:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("REQUESTS_CA_BUNDLE", ca_bundle(info))
            yield info


@pytest.fixture(scope="module")
def wadmin(worg: dict[str, Any]) -> Admin:
    return Admin(worg)


@pytest.fixture(scope="module")
def rest(worg: dict[str, Any]) -> Rest:
    return Rest(worg)


def family_of(rest: Rest) -> tuple[str, dict[str, list[str]]]:
    """An Account that has Contacts and Opportunities (its cascade family), and their Ids; its Cases, which would
    block its delete as in a real org (restrictedDelete), deleted first, as a user does."""
    accounts = {r["AccountId"] for r in rest.query("SELECT AccountId FROM Opportunity WHERE AccountId != null")}
    for acc in sorted(accounts):
        fam = {
            obj: [r["Id"] for r in rest.query(f"SELECT Id FROM {obj} WHERE AccountId = '{acc}'")]
            for obj in ("Contact", "Opportunity")
        }
        if all(fam.values()):
            for case in rest.query(f"SELECT Id FROM Case WHERE AccountId = '{acc}'"):
                assert rest.call("DELETE", f"/sobjects/Case/{case['Id']}").status_code == 204
            return acc, fam
    raise AssertionError("no Account with Contacts and Opportunities")


# ---------------------------------------------------------------- 1. write accounting


def test_reads_count_no_writes_and_each_write_call_is_counted(rest: Rest, wadmin: Admin) -> None:
    wadmin.reset_accounting()
    acc = rest.query("SELECT Id FROM Account LIMIT 2")
    rest.ok("GET", "/sobjects/Account/describe")
    rest.ok("GET", f"/sobjects/Account/{acc[0]['Id']}")
    rest.ok("GET", "/composite/sobjects/Account", params={"ids": acc[0]["Id"], "fields": "Name"})
    rest.ok("POST", "/composite/sobjects/Account", {"ids": [acc[1]["Id"]], "fields": ["Name"]})
    a = wadmin.accounting()
    assert a["writes"] == 0 and a["write_calls"] == {}
    assert a["calls"]["composite_sobjects"] == 2
    rid = rest.ok("POST", "/sobjects/Account", {"Name": "Counted"})["id"]
    rest.ok("PATCH", f"/sobjects/Account/{rid}", {"Name": "Counted 2"})
    rest.ok("POST", "/composite/sobjects", {"records": [{"attributes": {"type": "Account"}, "Name": "C"}]})
    rest.call("POST", "/sobjects/Account", {})  # refused, still a write call made
    a = wadmin.accounting()
    assert a["writes"] == 4
    assert a["write_calls"] == {"sobject_write": 3, "composite_sobjects": 1}


# ---------------------------------------------------------------- 2. REST record writes


def test_create_sets_system_fields(rest: Rest, worg: dict[str, Any]) -> None:
    rid = rest.ok("POST", "/sobjects/Account", {"Name": "Fresh"})["id"]
    rec = rest.ok("GET", f"/sobjects/Account/{rid}")
    assert rec["CreatedDate"] == rec["SystemModstamp"] == rec["LastModifiedDate"]
    assert rec["CreatedById"] == rec["LastModifiedById"] == rec["OwnerId"] == worg["user_id"]
    assert rec["IsDeleted"] is False and rid.startswith("001") and len(rid) == 18


def test_write_errors_have_salesforce_codes(rest: Rest) -> None:
    contact = rest.query("SELECT Id FROM Contact LIMIT 1")[0]["Id"]
    e = rest.fails("POST", "/sobjects/Account", {"Phone": "1"})
    assert e == {
        "message": "Required fields are missing: [Name]",
        "errorCode": "REQUIRED_FIELD_MISSING",
        "fields": ["Name"],
    }
    e = rest.fails("POST", "/sobjects/Opportunity", {"Name": "x"})
    assert e["errorCode"] == "REQUIRED_FIELD_MISSING" and set(e["fields"]) == {"StageName", "CloseDate"}
    e = rest.fails("POST", "/sobjects/Contact", {"LastName": "x", "AccountId": "not-an-id"})
    assert e["errorCode"] == "MALFORMED_ID" and e["fields"] == ["AccountId"]
    e = rest.fails("POST", "/sobjects/Contact", {"LastName": "x", "AccountId": make_id("001", 987654)})
    assert e["errorCode"] == "INVALID_CROSS_REFERENCE_KEY" and e["message"] == "invalid cross reference id"
    e = rest.fails("POST", "/sobjects/Contact", {"LastName": "x", "AccountId": contact})
    assert e["errorCode"] == "FIELD_INTEGRITY_EXCEPTION" and "id value of incorrect type" in e["message"]
    e = rest.fails("POST", "/sobjects/Account", {"Name": "x", "CreatedDate": "2020-01-01T00:00:00Z", "Id": None})
    assert e["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    e = rest.fails(
        "POST",
        "/sobjects/Account",
        {"Name": "x", "CreatedDate": "2020-01-01T00:00:00Z", "SystemModstamp": "2020-01-01T00:00:00Z"},
    )
    assert e["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE" and e["fields"] == ["CreatedDate", "SystemModstamp"]
    assert e["message"].startswith("Unable to create/update fields: CreatedDate, SystemModstamp.")
    e = rest.fails("POST", "/sobjects/Invoice__c", {"Name": "x", "Total_With_Tax__c": 3})
    assert e["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE" and e["fields"] == ["Total_With_Tax__c"]
    e = rest.fails("PATCH", f"/sobjects/Contact/{contact}", {"LastName": None})
    assert e["errorCode"] == "REQUIRED_FIELD_MISSING"
    e = rest.fails("PATCH", f"/sobjects/Contact/{contact}", {"Birthdate": "yesterday"})
    assert e["errorCode"] == "INVALID_TYPE_ON_FIELD_IN_RECORD"
    e = rest.fails("POST", "/sobjects/Invoice__c", {"Name": "x", "Status__c": "Lost"})
    assert e["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"


def test_audit_fields_on_insert_only_behind_the_org_switch(rest: Rest, wadmin: Admin) -> None:
    when = "2021-03-04T05:06:07.000+0000"
    wadmin.settings(audit_fields_on_insert=True)
    try:
        rid = rest.ok("POST", "/sobjects/Account", {"Name": "Old", "CreatedDate": when})["id"]
        assert rest.ok("GET", f"/sobjects/Account/{rid}")["CreatedDate"] == when
        e = rest.fails("PATCH", f"/sobjects/Account/{rid}", {"CreatedDate": when})
        assert e["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    finally:
        wadmin.settings(audit_fields_on_insert=False)


def test_duplicate_external_id_and_upserts(rest: Rest) -> None:
    rest.ok("POST", "/sobjects/Account", {"Name": "U1", "External_Id__c": "UP-1"})
    e = rest.fails("POST", "/sobjects/Account", {"Name": "U2", "External_Id__c": "UP-1"})
    assert e["errorCode"] == "DUPLICATE_VALUE" and e["fields"] == ["External_Id__c"]
    assert e["message"].startswith("duplicate value found: External_Id__c duplicates value on record with id: 001")
    r = rest.call("PATCH", "/sobjects/Account/External_Id__c/UP-2", {"Name": "U2"})
    assert r.status_code == 201 and r.json()["created"] is True
    r = rest.call("PATCH", "/sobjects/Account/External_Id__c/UP-2", {"Name": "U2b"})
    assert r.status_code == 200 and r.json() == {"id": r.json()["id"], "success": True, "errors": [], "created": False}
    out = rest.ok(
        "PATCH",
        "/composite/sobjects/Account/External_Id__c",
        {
            "allOrNone": False,
            "records": [
                {"attributes": {"type": "Account"}, "External_Id__c": "UP-2", "Name": "U2c"},
                {"attributes": {"type": "Account"}, "External_Id__c": "UP-3", "Name": "U3"},
                {"attributes": {"type": "Account"}, "External_Id__c": "UP-4"},
            ],
        },
    )
    assert [(o["success"], o.get("created")) for o in out] == [(True, False), (True, True), (False, None)]
    assert list(out[0]) == ["id", "success", "errors", "created"]
    assert out[2]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    names = {
        r["External_Id__c"]: r["Name"]
        for r in rest.query("SELECT External_Id__c, Name FROM Account WHERE External_Id__c LIKE 'UP-%'")
    }
    assert names == {"UP-1": "U1", "UP-2": "U2c", "UP-3": "U3"}


def test_all_or_none_rolls_everything_back(rest: Rest, wadmin: Admin) -> None:
    before = len(wadmin.ground_truth(["Account"], values=False)["objects"]["Account"])
    out = rest.ok(
        "POST",
        "/composite/sobjects",
        {
            "allOrNone": True,
            "records": [
                {"attributes": {"type": "Account"}, "Name": "Rolled back"},
                {"attributes": {"type": "Account"}},
            ],
        },
    )
    assert [o["errors"][0]["statusCode"] for o in out] == [
        "ALL_OR_NONE_OPERATION_ROLLED_BACK",
        "REQUIRED_FIELD_MISSING",
    ]
    assert len(wadmin.ground_truth(["Account"], values=False)["objects"]["Account"]) == before
    out = rest.ok(
        "POST",
        "/composite/sobjects",
        {
            "allOrNone": False,
            "records": [{"attributes": {"type": "Account"}, "Name": "Kept"}, {"attributes": {"type": "Account"}}],
        },
    )
    assert [o["success"] for o in out] == [True, False]
    assert len(wadmin.ground_truth(["Account"], values=False)["objects"]["Account"]) == before + 1


def test_inactive_owner_refused_unless_the_permission_is_on(rest: Rest, wadmin: Admin) -> None:
    inactive = rest.query("SELECT Id FROM User WHERE IsActive = false")
    assert inactive, "the seeded org has inactive users"
    uid = inactive[0]["Id"]
    e = rest.fails("POST", "/sobjects/Account", {"Name": "x", "OwnerId": uid})
    assert e["errorCode"] == "INACTIVE_OWNER_OR_USER" and uid in e["message"]
    wadmin.settings(inactive_owner_updates=True)
    try:
        rest.ok("POST", "/sobjects/Account", {"Name": "x", "OwnerId": uid})
    finally:
        wadmin.settings(inactive_owner_updates=False)


def test_validation_rule_switched_by_admin(rest: Rest, wadmin: Admin) -> None:
    rules = wadmin.validation_rules()
    assert rules["Opportunity.Amount_Not_Negative"]["active"] is True
    body = {"Name": "Neg", "StageName": "Prospecting", "CloseDate": "2026-01-01", "Amount": -5}
    e = rest.fails("POST", "/sobjects/Opportunity", body)
    assert e == {
        "message": "Amount must not be negative.",
        "errorCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
        "fields": ["Amount"],
    }
    wadmin.validation_rule("Opportunity.Amount_Not_Negative", False)
    try:
        rest.ok("POST", "/sobjects/Opportunity", body)
    finally:
        wadmin.validation_rule("Opportunity.Amount_Not_Negative", True)
    wadmin.validation_rule("Account.Hot_Account_Needs_Phone", True)
    try:
        e = rest.fails("POST", "/sobjects/Account", {"Name": "Hot", "Rating": "Hot"})
        assert e["errorCode"] == "FIELD_CUSTOM_VALIDATION_EXCEPTION" and e["fields"] == ["Phone"]
    finally:
        wadmin.validation_rule("Account.Hot_Account_Needs_Phone", False)
    rest.ok("POST", "/sobjects/Account", {"Name": "Hot", "Rating": "Hot"})


def test_describe_agrees_with_what_writes_accept(rest: Rest) -> None:
    for obj in ("Account", "Contact", "Opportunity", "Case", "Invoice__c"):
        fields = rest.ok("GET", f"/sobjects/{obj}/describe")["fields"]
        required = sorted(
            f["name"]
            for f in fields
            if f["createable"] and not f["nillable"] and not f["defaultedOnCreate"] and f["type"] != "boolean"
        )
        if required:
            e = rest.fails("POST", f"/sobjects/{obj}", {})
            assert e["errorCode"] == "REQUIRED_FIELD_MISSING" and sorted(e["fields"]) == required, obj
        else:
            rest.ok("POST", f"/sobjects/{obj}", {})
        for f in fields:
            if not f["createable"] and f["type"] not in ("address", "location"):
                e = rest.fails("POST", f"/sobjects/{obj}", {f["name"]: None})
                assert e["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE", (obj, f["name"])


def test_update_of_a_deleted_record_is_entity_is_deleted(rest: Rest) -> None:
    rid = rest.ok("POST", "/sobjects/Lead", {"LastName": "Gone", "Company": "Co", "Status": "Open - Not Contacted"})[
        "id"
    ]
    assert rest.call("DELETE", f"/sobjects/Lead/{rid}").status_code == 204
    e = rest.fails("PATCH", f"/sobjects/Lead/{rid}", {"LastName": "Back"}, status=404)
    assert e["errorCode"] == "ENTITY_IS_DELETED"
    out = rest.ok(
        "PATCH", "/composite/sobjects", {"records": [{"attributes": {"type": "Lead"}, "id": rid, "LastName": "B"}]}
    )
    assert out[0]["errors"][0]["statusCode"] == "ENTITY_IS_DELETED"
    out = rest.call("DELETE", "/composite/sobjects", params={"ids": f"{rid},001RM000003oLrB000"}).json()
    assert [o["errors"][0]["statusCode"] for o in out] == ["ENTITY_IS_DELETED", "MALFORMED_ID"]


# ---------------------------------------------------------------- 3. cascade delete


def test_describe_says_which_children_cascade(rest: Rest) -> None:
    rels = {
        (c["childSObject"], c["field"]): c["cascadeDelete"]
        for c in rest.ok("GET", "/sobjects/Account/describe")["childRelationships"]
    }
    assert rels[("Contact", "AccountId")] and rels[("Opportunity", "AccountId")]
    assert not rels[("Case", "AccountId")]  # restricted instead (the real Account describe): DELETE_FAILED
    assert rels[("Task", "WhatId")] and rels[("Attachment", "ParentId")]
    assert not rels[("Account", "ParentId")] and not rels[("Invoice__c", "Account__c")]


def test_account_delete_cascades_and_undelete_brings_the_family_back(rest: Rest, wadmin: Admin) -> None:
    acc, fam = family_of(rest)
    invoice = rest.ok("POST", "/sobjects/Invoice__c", {"Name": "Linked", "Account__c": acc})["id"]
    assert rest.call("DELETE", f"/sobjects/Account/{acc}").status_code == 204
    truth = wadmin.ground_truth(["Account", "Contact", "Opportunity", "Invoice__c"])
    assert acc in truth["recycle_bin"]["Account"]
    for obj, ids in fam.items():
        assert set(ids) <= set(truth["recycle_bin"][obj]) and not set(ids) & set(truth["objects"][obj])
    assert truth["objects"]["Invoice__c"][invoice]["Account__c"] is None  # a plain lookup is cleared
    alive = rest.query(f"SELECT Id FROM Contact WHERE Id IN ('{fam['Contact'][0]}')")
    assert alive == []
    wadmin.undelete("Account", ids=[acc])
    truth = wadmin.ground_truth(["Account", "Contact", "Opportunity", "Invoice__c"])
    assert acc in truth["objects"]["Account"]
    for obj, ids in fam.items():
        assert set(ids) <= set(truth["objects"][obj]) and not set(ids) & set(truth["recycle_bin"][obj])
        assert all(truth["objects"][obj][i]["AccountId"] == acc for i in ids)
    assert truth["objects"]["Invoice__c"][invoice]["Account__c"] == acc


def test_master_detail_children_go_with_their_parent(rest: Rest, wadmin: Admin) -> None:
    ship = rest.query("SELECT Id, Invoice__c FROM Shipment__c LIMIT 1")[0]
    invoice = ship["Invoice__c"]
    shipments = [r["Id"] for r in rest.query(f"SELECT Id FROM Shipment__c WHERE Invoice__c = '{invoice}'")]
    assert rest.call("DELETE", f"/sobjects/Invoice__c/{invoice}").status_code == 204
    assert set(shipments) <= set(wadmin.ground_truth(["Shipment__c"], values=False)["recycle_bin"]["Shipment__c"])
    assert soap(rest, "undelete", [shipments[0]]) == [(shipments[0], False, "UNDELETE_FAILED")]
    assert soap(rest, "undelete", [invoice]) == [(invoice, True, None)]
    assert set(shipments) <= set(wadmin.ground_truth(["Shipment__c"], values=False)["objects"]["Shipment__c"])


def test_collections_delete_cascades_and_purge_takes_the_family(rest: Rest, wadmin: Admin) -> None:
    acc, fam = family_of(rest)
    out = rest.call("DELETE", "/composite/sobjects", params={"ids": acc, "allOrNone": "true"}).json()
    assert out == [{"id": acc, "success": True, "errors": []}]
    wadmin.purge_recycle_bin(ids=[acc])
    truth = wadmin.ground_truth(["Account", "Contact", "Opportunity", "Case"], values=False)
    assert acc in truth["purged"]["Account"]
    for obj, ids in fam.items():
        assert set(ids) <= set(truth["purged"][obj])


def test_recycle_bin_empties_itself_after_15_days(rest: Rest, wadmin: Admin) -> None:
    acc, fam = family_of(rest)
    rest.call("DELETE", f"/sobjects/Account/{acc}")
    wadmin.advance_clock(14 * 86400)
    assert acc in wadmin.ground_truth(["Account"], values=False)["recycle_bin"]["Account"]
    wadmin.advance_clock(2 * 86400)
    try:
        truth = wadmin.ground_truth(["Account", "Contact"], values=False)
        assert acc in truth["purged"]["Account"] and set(fam["Contact"]) <= set(truth["purged"]["Contact"])
    finally:
        wadmin.reset_clock()


# ---------------------------------------------------------------- 4. SOAP partner undelete / emptyRecycleBin


def soap(rest: Rest, op: str, ids: list[str], session: str | None = None, all_or_none: bool = False) -> Any:
    """A jsforce-shaped partner call; its results as (id, success, statusCode) per Id, or the fault code."""
    import xml.etree.ElementTree as ET

    id_xml = "".join(f"<ns1:ids>{i}</ns1:ids>" for i in ids)
    body = (
        '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/'
        'envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-'
        'instance"><soapenv:Header xmlns="urn:partner.soap.sforce.com"><SessionHeader><sessionId>'
        f"{session or rest.token}</sessionId></SessionHeader>"
        + ("<AllOrNoneHeader><allOrNone>true</allOrNone></AllOrNoneHeader>" if all_or_none else "")
        + "</soapenv:Header>"
        f'<soapenv:Body xmlns="urn:partner.soap.sforce.com"><{op} xmlns="urn:partner.soap.sforce.com" '
        f'xmlns:ns1="sobject.partner.soap.sforce.com">{id_xml}</{op}></soapenv:Body></soapenv:Envelope>'
    )
    resp = rest.http.post(
        f"{rest.base}/services/Soap/u/62.0",
        data=body.encode(),
        headers={"Content-Type": "text/xml", "SOAPAction": '""', "Authorization": ""},
    )
    root = ET.fromstring(resp.content)
    assert root.tag == "{http://schemas.xmlsoap.org/soap/envelope/}Envelope"
    if resp.status_code == 500:
        return next(el.text for el in root.iter() if el.tag == "faultcode")
    assert resp.status_code == 200
    ns = "{urn:partner.soap.sforce.com}"
    out = []
    for r in root.iter(f"{ns}result"):
        code = r.find(f"{ns}errors/{ns}statusCode")
        out.append(
            (r.findtext(f"{ns}id"), r.findtext(f"{ns}success") == "true", code.text if code is not None else None)
        )
    return out


def test_soap_undelete_brings_back_families_and_reports_per_id(rest: Rest, wadmin: Admin) -> None:
    acc, fam = family_of(rest)
    live = rest.query("SELECT Id FROM Lead LIMIT 1")[0]["Id"]
    rest.call("DELETE", f"/sobjects/Account/{acc}")
    contact = fam["Contact"][0]
    assert soap(rest, "undelete", [contact]) == [(contact, False, "UNDELETE_FAILED")]  # its Account is in the bin
    wadmin.reset_accounting()
    out = soap(rest, "undelete", [contact, acc, live, "001bad"])
    assert out == [
        (contact, True, None),
        (acc, True, None),
        (live, False, "UNDELETE_FAILED"),
        ("", False, "MALFORMED_ID"),  # id xsi:nil,
    ]
    a = wadmin.accounting()
    assert a["write_calls"] == {"soap_partner": 1} and a["kinds"]["SOAP"] == 1
    truth = wadmin.ground_truth(["Account", "Contact", "Opportunity", "Case"], values=False)
    for obj, ids in {"Account": [acc], **fam}.items():
        assert set(ids) <= set(truth["objects"][obj])


def test_soap_empty_recycle_bin_then_undelete_fails(rest: Rest, wadmin: Admin) -> None:
    acc, fam = family_of(rest)
    rest.call("DELETE", f"/sobjects/Account/{acc}")
    live = rest.query("SELECT Id FROM Lead LIMIT 1")[0]["Id"]
    assert soap(rest, "emptyRecycleBin", [acc, live]) == [(acc, True, None), (live, False, "INVALID_ID_FIELD")]
    assert soap(rest, "undelete", [acc]) == [(acc, False, "UNDELETE_FAILED")]
    assert soap(rest, "emptyRecycleBin", [acc]) == [(acc, False, "ENTITY_IS_DELETED")]
    truth = wadmin.ground_truth(["Account", "Contact"], values=False)
    assert acc in truth["purged"]["Account"] and set(fam["Contact"]) <= set(truth["purged"]["Contact"])
    assert soap(rest, "undelete", [acc] * 201) == "sf:EXCEEDED_ID_LIMIT"
    lead = rest.ok("POST", "/sobjects/Lead", {"LastName": "AON", "Company": "C", "Status": "Open - Not Contacted"})[
        "id"
    ]
    rest.call("DELETE", f"/sobjects/Lead/{lead}")
    out = soap(rest, "undelete", [lead, acc], all_or_none=True)
    assert out == [(lead, False, "ALL_OR_NONE_OPERATION_ROLLED_BACK"), (acc, False, "UNDELETE_FAILED")]
    assert lead in wadmin.ground_truth(["Lead"], values=False)["recycle_bin"]["Lead"]
    assert soap(rest, "undelete", [acc], session="00Dbad!x") == "sf:INVALID_SESSION_ID"


# ---------------------------------------------------------------- 5. Bulk API 2.0 ingest


def ingest(rest: Rest, job: dict[str, Any], data: str, close: bool = True) -> dict[str, Any]:
    """Create, upload, close and wait for an ingest job (raw REST, as jsforce and simple-salesforce call it)."""
    info = rest.ok(
        "POST", "/jobs/ingest", {"contentType": "CSV", "lineEnding": "LF", "columnDelimiter": "COMMA", **job}
    )
    assert info["state"] == "Open" and info["jobType"] == "V2Ingest"
    put = rest.http.put(
        f"{rest.data}/jobs/ingest/{info['id']}/batches", data=data.encode(), headers={"Content-Type": "text/csv"}
    )
    assert put.status_code == 201 and put.content == b""
    if not close:
        return info
    assert rest.ok("PATCH", f"/jobs/ingest/{info['id']}", {"state": "UploadComplete"})["state"] == "UploadComplete"
    for _ in range(500):
        got = rest.ok("GET", f"/jobs/ingest/{info['id']}")
        if got["state"] in ("JobComplete", "Failed", "Aborted"):
            return dict(got)
        time.sleep(0.02)  # polling the job, as clients do
    raise AssertionError("ingest job did not finish")


def results(rest: Rest, job_id: str, kind: str) -> list[dict[str, str]]:
    resp = rest.call("GET", f"/jobs/ingest/{job_id}/{kind}")
    assert resp.status_code == 200 and resp.text.startswith('"')
    return list(csv.DictReader(io.StringIO(resp.text)))


def test_bulk_ingest_insert_update_upsert_with_per_row_errors(rest: Rest, wadmin: Admin) -> None:
    wadmin.reset_accounting()
    job = ingest(
        rest,
        {"object": "Account", "operation": "insert"},
        'Name,External_Id__c,Rating\nBulk "A",BK-1,Hot\n,BK-2,\nBulk C,BK-1,\n',
    )
    assert (job["state"], job["numberRecordsProcessed"], job["numberRecordsFailed"]) == ("JobComplete", 3, 2)
    ok = results(rest, job["id"], "successfulResults")
    assert [(r["sf__Created"], r["Name"], r["External_Id__c"]) for r in ok] == [("true", 'Bulk "A"', "BK-1")]
    assert list(ok[0]) == ["sf__Id", "sf__Created", "Name", "External_Id__c", "Rating"]
    first = ok[0]["sf__Id"]
    bad = results(rest, job["id"], "failedResults")
    errors = {r["Name"]: r["sf__Error"] for r in bad}
    assert errors[""] == "REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --"
    assert (
        errors["Bulk C"] == "DUPLICATE_VALUE:duplicate value found: External_Id__c duplicates value on record with id: "
        f"{first}:External_Id__c --"
    )
    assert list(bad[0]) == ["sf__Id", "sf__Error", "Name", "External_Id__c", "Rating"] and bad[0]["sf__Id"] == ""
    job = ingest(rest, {"object": "Account", "operation": "update"}, f"Id,Rating,Phone\n{first},#N/A,\n001bad,Hot,\n")
    assert job["numberRecordsFailed"] == 1
    assert rest.ok("GET", f"/sobjects/Account/{first}")["Rating"] is None
    assert results(rest, job["id"], "failedResults")[0]["sf__Error"].startswith("MALFORMED_ID:")
    job = ingest(
        rest,
        {"object": "Contact", "operation": "upsert", "externalIdFieldName": "Email"},
        "Email,LastName,Account.External_Id__c\nbk1@example.com,One,BK-1\nbk2@example.com,Two,NOPE\n",
    )
    ok = results(rest, job["id"], "successfulResults")
    assert [(r["sf__Created"], r["Email"]) for r in ok] == [("true", "bk1@example.com")]
    assert rest.ok("GET", f"/sobjects/Contact/{ok[0]['sf__Id']}")["AccountId"] == first
    assert "not found" in results(rest, job["id"], "failedResults")[0]["sf__Error"]
    job = ingest(
        rest,
        {"object": "Contact", "operation": "upsert", "externalIdFieldName": "Email"},
        "Email,LastName\nbk1@example.com,Uno\n",
    )
    assert [r["sf__Created"] for r in results(rest, job["id"], "successfulResults")] == ["false"]
    a = wadmin.accounting()
    assert a["write_calls"]["bulk2_ingest"] == 4 * 3 and a["writes"] == 12  # create, upload, close per job


def test_bulk_insert_checks_each_row_as_a_rest_create_does(rest: Rest) -> None:
    """An ingest insert writes its rows 200 at once, yet each row is checked as one REST create is: the same
    error (code and message) or the same stored record, row by row, whatever the rows before it did."""
    live = rest.query("SELECT Id FROM Account WHERE IsDeleted = false LIMIT 2")
    gone = rest.ok("POST", "/sobjects/Account", {"Name": "Gone parent"})["id"]
    rest.ok("DELETE", f"/sobjects/Account/{gone}")
    inactive = rest.query("SELECT Id FROM User WHERE IsActive = false LIMIT 1")
    assert live and inactive
    header = ["LastName", "FirstName", "Email", "AccountId", "OwnerId", "Birthdate"]
    rows = [
        ["Same1", "A", "same1@example.com", live[0]["Id"], "", "1980-02-03"],
        ["Same2", "B", "", gone, "", ""],  # ENTITY_IS_DELETED
        ["Same3", "", "", "001bad", "", ""],  # MALFORMED_ID
        ["Same4", "", "", make_id("001", 9_999_999), "", ""],  # INVALID_CROSS_REFERENCE_KEY
        ["Same5", "", "", live[1]["Id"], inactive[0]["Id"], ""],  # INACTIVE_OWNER_OR_USER
        ["", "NoLast", "", live[0]["Id"], "", ""],  # REQUIRED_FIELD_MISSING
        ["Same7", "", "", "", "", "not a date"],  # INVALID_TYPE_ON_FIELD_IN_RECORD
        ["Same8", "C", "", live[0]["Id"], "", ""],  # the same parent again: checked again, found again
        ["x" * 81, "", "", "", "", ""],  # STRING_TOO_LONG
        ["Same10", "", "", gone, "", ""],  # the same deleted parent again: the same error again
    ]
    data = "\n".join(",".join(r) for r in [header, *rows]) + "\n"
    job = ingest(rest, {"object": "Contact", "operation": "insert"}, data)
    assert job["numberRecordsProcessed"] == len(rows)
    bulk_ok = {r["LastName"]: r["sf__Id"] for r in results(rest, job["id"], "successfulResults")}
    bulk_bad = {r["LastName"]: r["sf__Error"] for r in results(rest, job["id"], "failedResults")}
    fields = ["LastName", "FirstName", "Name", "Email", "AccountId", "OwnerId", "Birthdate", "IsDeleted"]
    for row in rows:
        body = {h: v for h, v in zip(header, row, strict=True) if v != ""}
        resp = rest.call("POST", "/sobjects/Contact", body)
        if resp.status_code == 201:
            made = rest.query(f"SELECT {', '.join(fields)} FROM Contact WHERE Id = '{resp.json()['id']}'")
            bulk = rest.query(f"SELECT {', '.join(fields)} FROM Contact WHERE Id = '{bulk_ok[row[0]]}'")
            assert [{k: r[k] for k in fields} for r in bulk] == [{k: r[k] for k in fields} for r in made]
        else:
            error = resp.json()[0]
            assert bulk_bad[row[0]].startswith(f"{error['errorCode']}:{error['message']}:"), (row, error)
    assert sorted(bulk_ok) == ["Same1", "Same8"]


def test_bulk_insert_sees_rows_of_its_own_batch(rest: Rest) -> None:
    """Rows of one ingest insert written together still see each other: an external Id repeated in the batch
    is a DUPLICATE_VALUE of the first, and a parent named by the external Id of an earlier row is found."""
    data = (
        "Name,External_Id__c,Parent.External_Id__c\n"
        "Batch parent,BATCH-P1,\n"
        "Batch child,BATCH-C1,BATCH-P1\n"
        "Batch twin,BATCH-P1,\n"
    )
    job = ingest(rest, {"object": "Account", "operation": "insert"}, data)
    ok = {r["Name"]: r["sf__Id"] for r in results(rest, job["id"], "successfulResults")}
    bad = {r["Name"]: r["sf__Error"] for r in results(rest, job["id"], "failedResults")}
    assert sorted(ok) == ["Batch child", "Batch parent"]
    dup = "DUPLICATE_VALUE:duplicate value found: External_Id__c duplicates value on record with id: "
    assert bad["Batch twin"].startswith(dup + ok["Batch parent"])
    (child,) = rest.query(f"SELECT ParentId FROM Account WHERE Id = '{ok['Batch child']}'")
    assert child["ParentId"] == ok["Batch parent"]


def test_bulk_update_checks_each_row_as_a_rest_update_does(rest: Rest) -> None:
    """An ingest update writes its rows together, yet each row is checked as one REST update is, and sees the
    rows before it: a record updated twice keeps both changes, an external Id taken by an earlier row of the
    batch is a DUPLICATE_VALUE, a deleted or unknown record or parent fails with Salesforce's code, every time."""
    made = [rest.ok("POST", "/sobjects/Account", {"Name": f"Upd {n}"})["id"] for n in range(4)]
    gone = rest.ok("POST", "/sobjects/Account", {"Name": "Upd gone"})["id"]
    rest.ok("DELETE", f"/sobjects/Account/{gone}")
    unknown = make_id("001", 9_999_998)
    header = "Id,Name,Rating,ParentId,External_Id__c"
    rows = [
        f"{made[0]},,Hot,{made[1]},",
        f"{made[0]},Upd zero again,,,",  # the same record again: keeps the row before's changes
        f"{made[1]},,,{gone},",  # ENTITY_IS_DELETED (the parent)
        f"{made[2]},,,{gone},",  # the same deleted parent again: the same error again
        f"{gone},,Cold,,",  # ENTITY_IS_DELETED (the record)
        f"{unknown},,Cold,,",  # INVALID_CROSS_REFERENCE_KEY
        f"{made[2]},,,,UPD-X1",
        f"{made[3]},,,,UPD-X1",  # DUPLICATE_VALUE of the row before
        f"{made[3]},,,{made[0]},",
    ]
    job = ingest(rest, {"object": "Account", "operation": "update"}, "\n".join([header, *rows]) + "\n")
    assert (job["numberRecordsProcessed"], job["numberRecordsFailed"]) == (len(rows), 5)
    bad = [r["sf__Error"].split(":")[0] for r in results(rest, job["id"], "failedResults")]
    assert bad == [
        "ENTITY_IS_DELETED",
        "ENTITY_IS_DELETED",
        "ENTITY_IS_DELETED",
        "INVALID_CROSS_REFERENCE_KEY",
        "DUPLICATE_VALUE",
    ]
    got = {
        r["Id"]: r
        for r in rest.query(
            "SELECT Id, Name, Rating, ParentId, External_Id__c FROM Account WHERE Id IN ("
            + ",".join(f"'{i}'" for i in made)
            + ")"
        )
    }
    assert (got[made[0]]["Name"], got[made[0]]["Rating"], got[made[0]]["ParentId"]) == (
        "Upd zero again",
        "Hot",
        made[1],
    )
    assert got[made[1]]["ParentId"] is None and got[made[2]]["External_Id__c"] == "UPD-X1"
    assert (got[made[3]]["External_Id__c"], got[made[3]]["ParentId"]) == (None, made[0])


def test_bulk_ingest_delete_hard_delete_and_bad_jobs(rest: Rest, wadmin: Admin) -> None:
    ids = [
        rest.ok("POST", "/sobjects/Lead", {"LastName": f"L{i}", "Company": "C", "Status": "Open - Not Contacted"})["id"]
        for i in range(3)
    ]
    job = ingest(rest, {"object": "Lead", "operation": "delete"}, f"Id\n{ids[0]}\n{make_id('00Q', 999999)}\n")
    bad = results(rest, job["id"], "failedResults")
    assert bad[0]["sf__Error"] == "INVALID_CROSS_REFERENCE_KEY:invalid cross reference id:--"
    job = ingest(rest, {"object": "Lead", "operation": "hardDelete"}, f"Id\n{ids[1]}\n")
    assert job["numberRecordsFailed"] == 0
    truth = wadmin.ground_truth(["Lead"], values=False)
    assert ids[0] in truth["recycle_bin"]["Lead"] and ids[1] in truth["hard_deleted"]["Lead"]
    job = ingest(rest, {"object": "Lead", "operation": "insert"}, "LastName,Nope__c\nx,y\n")
    assert job["state"] == "Failed" and job["errorMessage"] == "InvalidBatch : Field name not found : Nope__c"
    e = rest.call("POST", "/jobs/ingest", {"object": "Lead", "operation": "insert", "externalIdFieldName": "Email"})
    assert e.status_code == 400 and e.json()[0]["errorCode"] == "INVALIDJOB"
    e = rest.call("POST", "/jobs/ingest", {"object": "Lead", "operation": "upsert"})
    assert e.status_code == 400
    open_job = ingest(rest, {"object": "Lead", "operation": "update"}, f"Id,LastName\n{ids[2]},Never\n", close=False)
    assert rest.ok("PATCH", f"/jobs/ingest/{open_job['id']}", {"state": "Aborted"})["state"] == "Aborted"
    assert [r["Id"] for r in results(rest, open_job["id"], "unprocessedrecords")] == [ids[2]]
    assert rest.ok("GET", f"/sobjects/Lead/{ids[2]}")["LastName"] == "L2"
    listed = {j["id"] for j in rest.ok("GET", "/jobs/ingest")["records"]}
    assert open_job["id"] in listed
    assert rest.call("DELETE", f"/jobs/ingest/{open_job['id']}").status_code == 204
    assert rest.call("GET", f"/jobs/ingest/{open_job['id']}").status_code == 404


def test_simple_salesforce_bulk2_insert(worg: dict[str, Any]) -> None:
    sf = simple_salesforce(worg)
    out = sf.bulk2.Invoice__c.insert(
        records=[{"Name": "SS1", "Amount__c": "10"}, {"Name": "SS2", "Amount__c": "-1"}], wait=0.05
    )
    assert out[0]["numberRecordsProcessed"] == 2 and out[0]["numberRecordsFailed"] == 1
    failed = sf.bulk2.Invoice__c.get_failed_records(out[0]["job_id"])
    assert "FIELD_CUSTOM_VALIDATION_EXCEPTION:Invoice amount must not be negative.:Amount__c --" in failed


# ---------------------------------------------------------------- 6. files


def test_content_version_json_then_multipart_new_version(rest: Rest, wadmin: Admin) -> None:
    acc = rest.query("SELECT Id FROM Account LIMIT 1")[0]["Id"]
    body1, body2 = b"first body \x00\xff", b"second body, longer \x01" * 10
    vid = rest.ok(
        "POST",
        "/sobjects/ContentVersion",
        {
            "Title": "report",
            "PathOnClient": "report.pdf",
            "VersionData": base64.b64encode(body1).decode(),
            "FirstPublishLocationId": acc,
        },
    )["id"]
    v1 = rest.ok("GET", f"/sobjects/ContentVersion/{vid}")
    doc = v1["ContentDocumentId"]
    assert (
        v1["IsLatest"] is True and v1["ContentSize"] == len(body1) and v1["Checksum"] == hashlib.md5(body1).hexdigest()
    )
    assert v1["FileExtension"] == "pdf" and v1["VersionNumber"] == "1"
    linked = {
        r["LinkedEntityId"]
        for r in rest.query(f"SELECT LinkedEntityId FROM ContentDocumentLink WHERE ContentDocumentId = '{doc}'")
    }
    assert acc in linked
    entity = json.dumps({"PathOnClient": "report.pdf", "ReasonForChange": "restore", "ContentDocumentId": doc})
    boundary = "boundary_string"
    multipart = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="entity_content";\r\n'
            "Content-Type: application/json\r\n\r\n"
            f"{entity}\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n"
            f'Content-Disposition: form-data; name="VersionData"; filename="report.pdf"\r\n\r\n'
        ).encode()
        + body2
        + f"\r\n--{boundary}--\r\n".encode()
    )
    resp = rest.http.post(
        f"{rest.data}/sobjects/ContentVersion",
        data=multipart,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert resp.status_code == 201, resp.text
    v2 = resp.json()["id"]
    versions = {
        r["Id"]: r["IsLatest"]
        for r in rest.query(f"SELECT Id, IsLatest FROM ContentVersion WHERE ContentDocumentId = '{doc}'")
    }
    assert versions == {vid: False, v2: True}
    assert rest.ok("GET", f"/sobjects/ContentDocument/{doc}")["LatestPublishedVersionId"] == v2
    blob = rest.call("GET", f"/sobjects/ContentVersion/{v2}/VersionData")
    assert blob.content == body2
    files = wadmin.ground_truth(["ContentVersion"], values=False)["files"]
    assert files[v2]["sha256"] == hashlib.sha256(body2).hexdigest() and files[vid]["size"] == len(body1)
    e = rest.fails("POST", "/sobjects/ContentVersion", {"PathOnClient": "x.txt"})
    assert e["errorCode"] == "REQUIRED_FIELD_MISSING" and e["fields"] == ["VersionData"]


def test_content_document_link_and_attachment_create(rest: Rest, wadmin: Admin) -> None:
    case = rest.query("SELECT Id FROM Case LIMIT 1")[0]["Id"]
    doc = rest.query("SELECT Id FROM ContentDocument LIMIT 1")[0]["Id"]
    link = {"ContentDocumentId": doc, "LinkedEntityId": case, "ShareType": "V", "Visibility": "AllUsers"}
    lid = rest.ok("POST", "/sobjects/ContentDocumentLink", link)["id"]
    got = rest.query(f"SELECT Id, ShareType FROM ContentDocumentLink WHERE LinkedEntityId = '{case}'")
    assert {"Id": lid, "ShareType": "V"} in [{k: r[k] for k in ("Id", "ShareType")} for r in got]
    assert rest.fails("POST", "/sobjects/ContentDocumentLink", link)["errorCode"] == "DUPLICATE_VALUE"
    body = b"attached \xe2\x9c\x93"
    aid = rest.ok(
        "POST",
        "/sobjects/Attachment",
        {"ParentId": case, "Name": "a.txt", "ContentType": "text/plain", "Body": base64.b64encode(body).decode()},
    )["id"]
    assert rest.ok("GET", f"/sobjects/Attachment/{aid}")["BodyLength"] == len(body)
    assert rest.call("GET", f"/sobjects/Attachment/{aid}/Body").content == body
    assert wadmin.ground_truth(["Attachment"], values=False)["files"][aid]["sha256"] == hashlib.sha256(body).hexdigest()
    e = rest.fails("POST", "/sobjects/Attachment", {"ParentId": make_id("001", 999998), "Name": "a", "Body": "eA=="})
    assert e["errorCode"] == "INVALID_CROSS_REFERENCE_KEY"


# ---------------------------------------------------------------- 7. Metadata deploy


def deploy_zip(files: dict[str, str], package: bool = True) -> io.BytesIO:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        if package:
            zf.writestr(
                "package.xml",
                '<?xml version="1.0" encoding="UTF-8"?><Package xmlns="http://soap.sforce.com/2006/04/metadata">'
                "<version>59.0</version></Package>",
            )
        for name, content in files.items():
            zf.writestr(name, content)
    buf.seek(0)
    return buf


def apex(truth: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["fullName"]: m for m in truth["metadata"] if m["type"] == "ApexClass"}


def test_deploy_apex_classes_and_a_custom_field(worg: dict[str, Any], wadmin: Admin) -> None:
    sf = simple_salesforce(worg)
    before = apex(wadmin.ground_truth(["Account"], values=False))
    a, b = sorted(before)[:2]
    files = {
        f"classes/{a}.cls": f"public with sharing class {a} {{\n    // restored '{{' \n"
        "    public void run() { }\n}\n",
        f"classes/{b}.cls": f"public class {b} {{ }}\n",
        "objects/Invoice__c.object": '<?xml version="1.0" encoding="UTF-8"?>'
        '<CustomObject xmlns="http://soap.sforce.com/2006/04/metadata"><fields><fullName>Restored_Note__c</fullName>'
        "<label>Restored Note</label><type>Text</type><length>80</length></fields><fields>"
        "<fullName>Amount__c</fullName><label>Invoice Amount</label><type>Currency</type></fields></CustomObject>",
    }
    wadmin.reset_accounting()
    job, state = sf.mdapi.deploy(deploy_zip(files), sandbox=False, checkOnly=True)
    assert state == "Queued"
    status, _, detail, _ = sf.mdapi.check_deploy_status(job)
    assert status == "Succeeded" and detail["failed_count"] == "0"
    assert apex(wadmin.ground_truth(["Account"], values=False)) == before  # validate-only deploys nothing
    job, _ = sf.mdapi.deploy(deploy_zip(files), sandbox=False)
    status, _, detail, _ = sf.mdapi.check_deploy_status(job)
    assert status == "Succeeded" and detail["deployed_count"] == detail["total_count"]
    after = apex(wadmin.ground_truth(["Account"], values=False))
    for name in (a, b):
        assert after[name]["sha256"] != before[name]["sha256"]
        assert after[name]["lastModifiedDate"] > before[name]["lastModifiedDate"]
    fields = {f["name"]: f for f in sf.Invoice__c.describe()["fields"]}
    assert fields["Restored_Note__c"]["type"] == "string" and fields["Amount__c"]["label"] == "Invoice Amount"
    listed = {p.fullName: p for p in sf.mdapi.list_metadata([sf.mdapi.ListMetadataQuery(type="ApexClass")])}
    assert listed[a].lastModifiedDate.strftime("%Y-%m-%dT%H:%M:%S") == after[a]["lastModifiedDate"][:19]
    async_id, _ = sf.mdapi.retrieve("x", unpackaged={"ApexClass": [a], "CustomObject": ["Invoice__c"]})
    _, _, _, zipped = sf.mdapi.retrieve_zip(async_id)
    z = zipfile.ZipFile(io.BytesIO(zipped))
    assert z.read(f"classes/{a}.cls").decode() == files[f"classes/{a}.cls"]
    obj = z.read("objects/Invoice__c.object").decode()
    assert "<fullName>Restored_Note__c</fullName>" in obj and "<label>Invoice Amount</label>" in obj
    a_ = wadmin.accounting()
    assert a_["write_calls"] == {"metadata_deploy": 2} and a_["calls"]["metadata_deploy"] == 4


def test_failed_validation_deploys_nothing_and_says_why(worg: dict[str, Any], wadmin: Admin) -> None:
    sf = simple_salesforce(worg)
    before = wadmin.ground_truth(["Account"], values=False)["metadata"]
    a, b, c = sorted(apex({"metadata": before}))[:3]
    files = {
        f"classes/{a}.cls": f"public class {a} {{ void x() {{ }}\n",  # a brace short
        f"classes/{b}.cls": f"public class {b} {{ }}\n",  # fine on its own
        f"classes/{c}.cls": "public class SomethingElse { }\n",  # the name does not match the file
        "objects/Invoice__c.object": '<CustomObject xmlns="http://soap.sforce.com/2006/04/metadata"><fields>'
        "<fullName>Bad__c</fullName><label>Bad</label><type>Banana</type></fields></CustomObject>",
    }
    job, _ = sf.mdapi.deploy(deploy_zip(files), sandbox=False)
    status, _, detail, _ = sf.mdapi.check_deploy_status(job)
    assert status == "Failed" and detail["failed_count"] == "3" and detail["deployed_count"] == "0"
    problems = {e["file"]: e["message"] for e in detail["errors"]}
    assert problems[f"classes/{a}.cls"] == "Missing '}' at '<EOF>'"
    assert "does not match the file name" in problems[f"classes/{c}.cls"]
    assert "'Banana' is not a valid value for the enum 'FieldType'" in problems["objects/Invoice__c.object"]
    assert all(e["status"] == "Error" for e in detail["errors"])
    assert wadmin.ground_truth(["Account"], values=False)["metadata"] == before
    assert "Bad__c" not in {f["name"] for f in sf.Invoice__c.describe()["fields"]}
    job, _ = sf.mdapi.deploy(deploy_zip({f"classes/{b}.cls": "x"}, package=False), sandbox=False)
    status, _, detail, _ = sf.mdapi.check_deploy_status(job)
    assert status == "Failed" and detail["errors"][0]["message"] == "No package.xml found"


# ---------------------------------------------------------------- 8. /composite


def test_composite_references_and_all_or_none(rest: Rest, wadmin: Admin) -> None:
    v = f"/services/data/v{rest.version}"
    wadmin.reset_accounting()
    out = rest.ok(
        "POST",
        "/composite",
        {
            "allOrNone": True,
            "compositeRequest": [
                {
                    "method": "POST",
                    "url": f"{v}/sobjects/Account",
                    "referenceId": "refAccount",
                    "body": {"Name": "Composite Co"},
                },
                {
                    "method": "POST",
                    "url": f"{v}/sobjects/Contact",
                    "referenceId": "refContact",
                    "body": {"LastName": "Sample", "AccountId": "@{refAccount.id}"},
                },
                {
                    "method": "GET",
                    "url": f"{v}/sobjects/Contact/@{{refContact.id}}?fields=AccountId",
                    "referenceId": "check",
                },
            ],
        },
    )["compositeResponse"]
    assert [r["httpStatusCode"] for r in out] == [201, 201, 200]
    assert out[0]["httpHeaders"]["Location"].endswith(out[0]["body"]["id"])
    assert out[2]["body"]["AccountId"] == out[0]["body"]["id"]
    a = wadmin.accounting()
    assert a["calls"]["composite"] == 1 and a["write_calls"] == {"composite": 1}
    before = len(wadmin.ground_truth(["Account"], values=False)["objects"]["Account"])
    out = rest.ok(
        "POST",
        "/composite",
        {
            "allOrNone": True,
            "compositeRequest": [
                {"method": "POST", "url": f"{v}/sobjects/Account", "referenceId": "a", "body": {"Name": "Rolled"}},
                {
                    "method": "POST",
                    "url": f"{v}/sobjects/Contact",
                    "referenceId": "c",
                    "body": {"AccountId": "@{a.id}"},
                },
                {"method": "POST", "url": f"{v}/sobjects/Account", "referenceId": "later", "body": {"Name": "Never"}},
            ],
        },
    )["compositeResponse"]
    assert [(r["httpStatusCode"], r["body"][0]["errorCode"]) for r in out] == [
        (400, "PROCESSING_HALTED"),
        (400, "REQUIRED_FIELD_MISSING"),
        (400, "PROCESSING_HALTED"),
    ]
    assert len(wadmin.ground_truth(["Account"], values=False)["objects"]["Account"]) == before
    out = rest.ok(
        "POST",
        "/composite",
        {
            "allOrNone": False,
            "compositeRequest": [
                {"method": "POST", "url": f"{v}/sobjects/Account", "referenceId": "bad", "body": {}},
                {
                    "method": "POST",
                    "url": f"{v}/sobjects/Contact",
                    "referenceId": "dep",
                    "body": {"LastName": "x", "AccountId": "@{bad.id}"},
                },
                {"method": "POST", "url": f"{v}/sobjects/Account", "referenceId": "free", "body": {"Name": "Kept"}},
            ],
        },
    )["compositeResponse"]
    assert [r["httpStatusCode"] for r in out] == [400, 400, 201]
    assert out[1]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert len(wadmin.ground_truth(["Account"], values=False)["objects"]["Account"]) == before + 1


def test_collection_all_or_none_inside_a_composite_rolls_back_only_itself(rest: Rest, wadmin: Admin) -> None:
    v = f"/services/data/v{rest.version}"
    before = len(wadmin.ground_truth(["Account"], values=False)["objects"]["Account"])
    records = [{"attributes": {"type": "Account"}, "Name": "In"}, {"attributes": {"type": "Account"}}]
    out = rest.ok(
        "POST",
        "/composite",
        {
            "compositeRequest": [
                {
                    "method": "POST",
                    "url": f"{v}/composite/sobjects",
                    "referenceId": "coll",
                    "body": {"allOrNone": True, "records": records},
                },
                {"method": "POST", "url": f"{v}/sobjects/Account", "referenceId": "one", "body": {"Name": "Out"}},
            ]
        },
    )["compositeResponse"]
    assert out[0]["httpStatusCode"] == 200 and [r["success"] for r in out[0]["body"]] == [False, False]
    assert out[1]["httpStatusCode"] == 201
    assert len(wadmin.ground_truth(["Account"], values=False)["objects"]["Account"]) == before + 1


def test_faults_by_write_endpoint_name(rest: Rest, wadmin: Admin) -> None:
    wadmin.fault("sobject_write", error_rate=1.0, count=1)
    try:
        assert rest.call("POST", "/sobjects/Account", {"Name": "Faulted"}).status_code == 503
        assert rest.call("GET", "/sobjects/Account/describe").status_code == 200  # reads are another endpoint
        assert rest.call("POST", "/sobjects/Account", {"Name": "Through"}).status_code == 201
        wadmin.fault("bulk2_ingest", error_rate=1.0, error="JOB_FAILED", count=1)
        job = ingest(rest, {"object": "Account", "operation": "insert"}, "Name\nNever\n")
        assert job["state"] == "Failed" and "Retried more than 15 times" in job["errorMessage"]
        wadmin.fault("soap_partner", error_rate=1.0, error="500", count=1)
        assert soap(rest, "undelete", [make_id("001", 1)]) == "sf:UNKNOWN_EXCEPTION"
    finally:
        wadmin.clear_faults()


def test_content_document_delete_takes_its_versions_and_links(rest: Rest, wadmin: Admin) -> None:
    doc = rest.query("SELECT Id FROM ContentDocument LIMIT 1")[0]["Id"]
    versions = [r["Id"] for r in rest.query(f"SELECT Id FROM ContentVersion WHERE ContentDocumentId = '{doc}'")]
    links = [r["Id"] for r in rest.query(f"SELECT Id FROM ContentDocumentLink WHERE ContentDocumentId = '{doc}'")]
    assert versions and links
    assert rest.call("DELETE", f"/sobjects/ContentDocument/{doc}").status_code == 204
    truth = wadmin.ground_truth(["ContentVersion", "ContentDocumentLink"], values=False)
    assert set(versions) <= set(truth["recycle_bin"]["ContentVersion"])
    assert set(links) <= set(truth["hard_deleted"]["ContentDocumentLink"])
    assert soap(rest, "undelete", [doc]) == [(doc, True, None)]
    assert set(versions) <= set(wadmin.ground_truth(["ContentVersion"], values=False)["objects"]["ContentVersion"])


def test_an_ids_counter_is_read_back_as_make_id_wrote_it() -> None:
    # (an API-created record's auto-number is its Id's counter)
    from sforg.ids import counter_of, make_id

    for n in (0, 1, 61, 62, 1234, 62**9 - 1):
        assert counter_of(make_id("500", n)) == n
