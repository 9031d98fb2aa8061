"""Tooling API over the org's metadata components: query, describeGlobal, describe, records; replays of the
recorded Tooling query answers (tests/sforg/recorded.py)."""

from __future__ import annotations

import hashlib
from typing import Any

import requests

from sforg.clock import rest_datetime
from sforg.testing import Admin
from tests.sforg.recorded import recorded, same_shape

V = "62.0"


def tooling(org: dict[str, Any], sf: Any, path: str, **params: str) -> requests.Response:
    return requests.get(
        f"{org['instance_url']}/services/data/v{V}/tooling/{path}",
        params=params,
        headers={"Authorization": f"Bearer {sf.session_id}"},
    )


def components(admin: Admin, mtype: str) -> dict[str, dict[str, Any]]:
    return {m["fullName"]: m for m in admin.ground_truth([])["metadata"] if m["type"] == mtype and m["id"]}


def test_replay_tooling_query_answers(org: dict[str, Any], sf: Any, admin: Admin) -> None:
    empty = recorded("tooling_query_empty")
    real = recorded("tooling_query_apexclass")
    none = tooling(org, sf, "query/", q=real["request"]["q"])  # the recorded query: no *_TEST* class here
    assert none.status_code == 200 and none.json() == empty["body"]
    got = tooling(
        org, sf, "query/", q="SELECT Id, Name FROM ApexClass WHERE NamespacePrefix = null AND (Name LIKE '%Helper%')"
    )
    body = got.json()
    assert same_shape(real["body"], body) == []
    classes = {n: c for n, c in components(admin, "ApexClass").items() if "Helper" in n}
    assert body["size"] == body["totalSize"] == len(classes) > 0 and body["entityTypeName"] == "ApexClass"
    assert {r["Name"]: r["Id"] for r in body["records"]} == {n: c["id"] for n, c in classes.items()}
    for r in body["records"]:
        assert r["attributes"] == {
            "type": "ApexClass",
            "url": f"/services/data/v{V}/tooling/sobjects/ApexClass/{r['Id']}",
        }
    # simple-salesforce's own Tooling call parses the same answer
    assert sf.toolingexecute("query/?q=SELECT+Name+FROM+ApexTrigger")["totalSize"] == len(
        components(admin, "ApexTrigger")
    )


def test_tooling_rows_follow_the_metadata_components(org: dict[str, Any], sf: Any, admin: Admin) -> None:
    triggers = tooling(
        org, sf, "query", q="SELECT Name, TableEnumOrId, UsageBeforeInsert, Body FROM ApexTrigger"
    ).json()
    assert triggers["records"] and all(
        r["TableEnumOrId"] in r["Body"] and r["UsageBeforeInsert"] is ("before insert" in r["Body"])
        for r in triggers["records"]
    )
    objects = components(admin, "CustomObject")
    co = tooling(org, sf, "query", q="SELECT Id, DeveloperName FROM CustomObject ORDER BY DeveloperName").json()
    assert [(r["DeveloperName"], r["Id"]) for r in co["records"]] == sorted(
        (n.removesuffix("__c"), m["id"]) for n, m in objects.items()
    )
    inv = objects["Invoice__c"]["id"]
    fields = tooling(org, sf, "query", q=f"SELECT DeveloperName FROM CustomField WHERE TableEnumOrId = '{inv}'").json()
    assert sorted(r["DeveloperName"] for r in fields["records"]) == sorted(
        n.split(".", 1)[1].removesuffix("__c") for n in components(admin, "CustomField") if n.startswith("Invoice__c.")
    )
    std = tooling(org, sf, "query", q="SELECT COUNT() FROM CustomField WHERE TableEnumOrId = 'Account'")
    assert std.status_code == 400  # aggregates are not served (README)
    # a change of the component shows in the Tooling record
    name, cls = next(iter(components(admin, "ApexClass").items()))
    body = f"public class {name} {{\n    // tooling test\n}}\n"
    admin.change_metadata("ApexClass", name, body)
    rec = tooling(org, sf, f"sobjects/ApexClass/{cls['id']}").json()
    after = components(admin, "ApexClass")[name]
    assert rec["Body"] == body and hashlib.sha256(body.encode()).hexdigest() == after["sha256"]
    assert rec["LastModifiedDate"] == rest_datetime(after["lastModifiedDate"])
    assert rec["attributes"]["url"].endswith(f"/tooling/sobjects/ApexClass/{cls['id']}")
    assert rec["Status"] == "Active" and rec["IsValid"] is True and rec["ApiVersion"] == 62.0


def test_tooling_describe_and_errors(org: dict[str, Any], sf: Any) -> None:
    glob = tooling(org, sf, "sobjects").json()
    names = {s["name"] for s in glob["sobjects"]}
    assert {"ApexClass", "ApexTrigger", "CustomField", "CustomObject"} <= names
    assert all(s["urls"]["sobject"].startswith(f"/services/data/v{V}/tooling/sobjects/") for s in glob["sobjects"])
    d = tooling(org, sf, "sobjects/ApexClass/describe").json()
    assert {"Id", "Name", "Body", "ApiVersion", "Status", "LengthWithoutComments"} <= {f["name"] for f in d["fields"]}
    bad = tooling(org, sf, "query", q="SELECT Id FROM Nope")
    assert bad.status_code == 400 and bad.json()[0]["errorCode"] == "INVALID_TYPE"
    assert bad.headers["Sforce-Limit-Info"].startswith("api-usage=")
    assert tooling(org, sf, "sobjects/Nope/describe").status_code == 404
