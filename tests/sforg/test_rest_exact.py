"""REST as Salesforce answers it: field names case-insensitive on write, ?fields= checked, an Id of another object
refused with MALFORMED_ID, /composite/batch and /composite/tree, Sforce-Limit-Info everywhere; replays of
recorded responses (tests/sforg/recorded.py)."""

from __future__ import annotations

import datetime as dt
import urllib.parse
from typing import Any

import requests

from sforg.testing import Admin
from tests.sforg.recorded import recorded, same_shape

V = "62.0"


def call(org: dict[str, Any], sf: Any, method: str, path: str, **kw: Any) -> requests.Response:
    return requests.request(
        method,
        f"{org['instance_url']}/services/data/v{V}/{path}",
        headers={"Authorization": f"Bearer {sf.session_id}"},
        **kw,
    )


def test_field_names_are_case_insensitive_on_write(org: dict[str, Any], sf: Any, admin: Admin) -> None:
    created = call(org, sf, "POST", "sobjects/Account", json={"name": "Case Test", "INDUSTRY": "Banking"})
    assert created.status_code == 201
    aid = created.json()["id"]
    assert call(org, sf, "PATCH", f"sobjects/account/{aid}", json={"pHoNe": "555-0100"}).status_code == 204
    truth = admin.ground_truth(["Account"])["objects"]["Account"][aid]
    assert (truth["Name"], truth["Industry"], truth["Phone"]) == ("Case Test", "Banking", "555-0100")


def test_fields_parameter_names_real_fields_or_fails(org: dict[str, Any], sf: Any) -> None:
    aid = sf.query("SELECT Id FROM Account LIMIT 1")["records"][0]["Id"]
    ok = call(org, sf, "GET", f"sobjects/Account/{aid}", params={"fields": "name,INDUSTRY"})
    assert ok.status_code == 200 and list(ok.json()) == ["attributes", "Name", "Industry"]
    bad = call(org, sf, "GET", f"sobjects/Account/{aid}", params={"fields": "Name,Bogus__c"})
    assert bad.status_code == 400
    assert bad.json()[0]["errorCode"] == "INVALID_FIELD"
    assert bad.json()[0]["message"].startswith("No such column 'Bogus__c' on entity 'Account'.")


def test_replay_an_id_of_another_object_is_malformed(org: dict[str, Any], sf: Any, admin: Admin) -> None:
    real = recorded("update_malformed_id")
    cid = sf.query("SELECT Id FROM Contact LIMIT 1")["records"][0]["Id"]
    before = admin.ground_truth(["Contact"])["objects"]["Contact"][cid]
    for method, kw in (("PATCH", {"json": {"Name": "x"}}), ("GET", {}), ("DELETE", {})):
        resp = call(org, sf, method, f"sobjects/Account/{cid}", **kw)
        assert resp.status_code == real["status"]
        assert same_shape(real["body"], resp.json()) == []
        assert resp.json() == [
            {"message": f"Record ID: id value of incorrect type: {cid}", "errorCode": "MALFORMED_ID", "fields": ["Id"]}
        ]
    assert admin.ground_truth(["Contact"])["objects"]["Contact"][cid] == before


def test_replay_composite_batch_with_an_aliased_aggregate(org: dict[str, Any], sf: Any, admin: Admin) -> None:
    real = recorded("composite_batch_query")
    truth = admin.ground_truth(["Case", "Account"])["objects"]
    aid = next(iter(truth["Account"]))
    resp = call(
        org,
        sf,
        "POST",
        "composite/batch",
        json={
            "batchRequests": [
                {"method": "GET", "url": f"v{V}/query?q=SELECT+COUNT(Id)+Number_Of_Service_Requests+FROM+Case"},
                {"method": "PATCH", "url": f"v{V}/sobjects/Account/{aid}", "richInput": {"Phone": "555-0199"}},
                {"method": "GET", "url": f"v{V}/sobjects/Account/{aid}?fields=Phone"},
                {"method": "GET", "url": f"v{V}/sobjects/Account/{aid}?fields=Nope"},
            ]
        },
    )
    assert resp.status_code == 200
    body = resp.json()
    assert same_shape(real["body"]["results"][0], body["results"][0]) == []
    assert body["results"][0]["result"]["records"][0]["Number_Of_Service_Requests"] == len(truth["Case"])
    assert [r["statusCode"] for r in body["results"]] == [200, 204, 200, 400]
    assert body["results"][1]["result"] is None
    assert body["results"][2]["result"]["Phone"] == "555-0199"
    assert body["results"][3]["result"][0]["errorCode"] == "INVALID_FIELD"
    assert body["hasErrors"] is True
    halted = call(
        org,
        sf,
        "POST",
        "composite/batch",
        json={
            "haltOnError": True,
            "batchRequests": [
                {"method": "PATCH", "url": f"v{V}/sobjects/Account/{aid}", "richInput": {"Bogus": 1}},
                {"method": "PATCH", "url": f"v{V}/sobjects/Account/{aid}", "richInput": {"Phone": "555-0111"}},
            ],
        },
    ).json()
    assert [r["statusCode"] for r in halted["results"]] == [400, 412]
    assert halted["results"][1]["result"][0]["errorCode"] == "BATCH_PROCESSING_HALTED"
    assert admin.ground_truth(["Account"])["objects"]["Account"][aid]["Phone"] == "555-0199"


def test_replay_composite_tree_creates_parents_then_children(org: dict[str, Any], sf: Any, admin: Admin) -> None:
    real = recorded("composite_tree_contacts")
    tree = {
        "records": [
            {
                "attributes": {"type": "Account", "referenceId": "acme"},
                "Name": "Tree Acme",
                "Contacts": {
                    "records": [
                        {
                            "attributes": {"type": "Contact", "referenceId": "John"},
                            "LastName": "Doe",
                            "Tasks": {
                                "records": [
                                    {
                                        "attributes": {"type": "Task", "referenceId": "t1"},
                                        "Subject": "Call",
                                        "Status": "Not Started",
                                        "Priority": "Normal",
                                    }
                                ]
                            },
                        },
                        {"attributes": {"type": "Contact", "referenceId": "Jane"}, "LastName": "Roe"},
                    ]
                },
            }
        ]
    }
    resp = call(org, sf, "POST", "composite/tree/Account", json=tree)
    assert resp.status_code == real["status"], resp.text
    body = resp.json()
    assert same_shape(real["body"], body) == []
    assert [r["referenceId"] for r in body["results"]] == ["acme", "John", "t1", "Jane"]
    ids = {r["referenceId"]: r["id"] for r in body["results"]}
    truth = admin.ground_truth(["Account", "Contact", "Task"])["objects"]
    assert truth["Account"][ids["acme"]]["Name"] == "Tree Acme"
    assert truth["Contact"][ids["John"]]["AccountId"] == ids["acme"]
    assert truth["Contact"][ids["Jane"]]["AccountId"] == ids["acme"]
    assert truth["Task"][ids["t1"]]["WhoId"] == ids["John"]
    counts = {o: len(v) for o, v in truth.items()}
    broken = {
        "records": [
            {
                "attributes": {"type": "Account", "referenceId": "a"},
                "Name": "Never",
                "Contacts": {"records": [{"attributes": {"type": "Contact", "referenceId": "c"}, "FirstName": "No"}]},
            }
        ]
    }
    failed = call(org, sf, "POST", "composite/tree/Account", json=broken)
    assert failed.status_code == 400
    err = failed.json()
    assert err["hasErrors"] is True and [r["referenceId"] for r in err["results"]] == ["c"]
    assert err["results"][0]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    assert err["results"][0]["errors"][0]["fields"] == ["LastName"]
    after = admin.ground_truth(["Account", "Contact", "Task"])["objects"]
    assert {o: len(v) for o, v in after.items()} == counts  # all or nothing


def test_sforce_limit_info_on_every_rest_and_bulk_response(org: dict[str, Any], sf: Any) -> None:
    aid = sf.query("SELECT Id FROM Account LIMIT 1")["records"][0]["Id"]
    cv = sf.query("SELECT Id FROM ContentVersion LIMIT 1")["records"][0]["Id"]
    base = org["instance_url"]
    auth = {"Authorization": f"Bearer {sf.session_id}"}
    responses = [
        requests.get(f"{base}/services/data", headers=auth),
        requests.get(f"{base}/services/data/v{V}/", headers=auth),
        requests.get(f"{base}/services/data/v{V}/sobjects/Account/describe", headers=auth),
        requests.get(f"{base}/services/data/v{V}/sobjects/Account/{aid}", headers=auth),
        requests.get(f"{base}/services/data/v{V}/sobjects/Nope__c/{aid}", headers=auth),
        requests.get(f"{base}/services/data/v{V}/query", params={"q": "SELEKT"}, headers=auth),
        requests.get(f"{base}/services/data/v{V}/sobjects/ContentVersion/{cv}/VersionData", headers=auth),
        requests.get(f"{base}/services/data/v{V}/nothing/here", headers=auth),
        requests.get(f"{base}/services/data/v{V}/limits", headers={"Authorization": "Bearer wrong"}),
        requests.post(f"{base}/services/data/v{V}/composite/batch", json={"batchRequests": []}, headers=auth),
        requests.post(
            f"{base}/services/data/v{V}/jobs/query",
            json={"operation": "query", "query": "SELECT Id FROM Account"},
            headers=auth,
        ),
    ]
    for r in responses:
        assert r.headers.get("Sforce-Limit-Info", "").startswith("api-usage="), (r.url, r.status_code)


def test_a_composite_get_deleted_answers_as_the_resource_alone(org: dict[str, Any], sf: Any, admin: Admin) -> None:
    # "Composite is supported for ... all sObject resources": the delete log among them (sfvault's incremental
    # jobs send their first reads as one composite request)
    gone = admin.soft_delete("Lead", n=2)["ids"]
    admin.advance_clock(120)  # the log covers whole minutes up to a minute ago
    row = sf.query_all(f"SELECT SystemModstamp FROM Lead WHERE Id = '{gone[0]}'", include_deleted=True)["records"][0]
    now = dt.datetime.strptime(row["SystemModstamp"][:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.UTC)  # the org's
    window = urllib.parse.urlencode(
        {
            "start": f"{now - dt.timedelta(days=1):%Y-%m-%dT%H:%M:%S+00:00}",
            "end": f"{now + dt.timedelta(days=1):%Y-%m-%dT%H:%M:%S+00:00}",
        }
    )
    alone = call(org, sf, "GET", f"sobjects/Lead/deleted/?{window}").json()
    resp = call(
        org,
        sf,
        "POST",
        "composite",
        json={
            "compositeRequest": [
                {"method": "GET", "url": f"/services/data/v{V}/sobjects/Lead/deleted/?{window}", "referenceId": "d"},
                {"method": "GET", "url": f"/services/data/v{V}/sobjects/Lead/deleted/", "referenceId": "bad"},
            ]
        },
    )
    assert resp.status_code == 200
    answers = resp.json()["compositeResponse"]
    assert answers[0]["httpStatusCode"] == 200
    assert answers[0]["body"]["deletedRecords"] == alone["deletedRecords"]  # (earliestDateAvailable: now - 15 days)
    assert set(gone) <= {r["id"] for r in alone["deletedRecords"]}
    assert answers[1]["httpStatusCode"] == 400 and answers[1]["body"][0]["errorCode"] == "MISSING_ARGUMENT"
