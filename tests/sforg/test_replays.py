"""REST answers recorded from real orgs (heroku-applink-nodejs WireMock mappings, tests/sforg/fixtures/recorded/
heroku_rest_answers.json) replayed against sforg: status, body and key order as recorded."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from sforg.testing import Admin
from tests.sforg.recorded import RECORDED, same_shape

CASES = json.loads((RECORDED / "heroku_rest_answers.json").read_text())


@pytest.mark.parametrize("case", CASES, ids=[c["source"].split("/")[-1].split(" ")[0] for c in CASES])
def test_replay_rest_answer(case: dict[str, Any], org: dict[str, Any], sf: Any) -> None:
    auth = {"Authorization": f"Bearer {sf.session_id}"}
    base = org["instance_url"]
    path = case["path"]
    if "{deleted_account}" in path:
        aid = requests.post(f"{base}/services/data/v51.0/sobjects/Account", json={"Name": "gone"}, headers=auth).json()
        assert requests.delete(f"{base}/services/data/v51.0/sobjects/Account/{aid['id']}", headers=auth).ok
        path = path.replace("{deleted_account}", aid["id"])
    resp = requests.request(
        case["method"],
        base + path,
        params={"q": case["q"]} if "q" in case else None,
        json=case.get("body"),
        headers=auth,
    )
    assert resp.status_code == case["status"], resp.text
    assert resp.headers["Content-Type"] == "application/json;charset=UTF-8"
    assert resp.headers["Sforce-Limit-Info"].startswith("api-usage=")
    expected = json.loads(case["response"])
    got = resp.json()
    assert same_shape(json.loads(case.get("recorded", case["response"])), got) == []
    if case["status"] >= 400:
        assert got == expected
        return
    # a query page: every record of this org in the recorded shape, VersionData as the blob's relative URL
    assert got["done"] is True and got["totalSize"] == len(got["records"]) > 0
    for rec in got["records"]:
        url = rec["attributes"]["url"]
        assert (
            url.startswith("/services/data/v55.0/sobjects/ContentVersion/")
            and rec["VersionData"] == url + "/VersionData"
        )


# ------------------------------------------------------------------ CumulusCI's cassettes (recorded from real orgs)

CUMULUSCI = json.loads((RECORDED / "cumulusci_rest_answers.json").read_text())


def _cumulusci_case(note: str) -> dict[str, Any]:
    (case,) = [c for c in CUMULUSCI if c["note"] == note]
    return case


def test_replay_record_counts(org: dict[str, Any], sf: Any, admin: Admin) -> None:
    """An object with records: its count under the recorded keys; one without records is left out, as recorded;
    an object the org lacks is ignored (documented: "If a listed object isn't found in the org, it's ignored")."""
    auth = {"Authorization": f"Bearer {sf.session_id}"}
    with_records = _cumulusci_case("an object with records")
    got = requests.get(org["instance_url"] + with_records["path"], headers=auth)
    assert got.status_code == with_records["status"]
    assert same_shape(json.loads(with_records["response"]), got.json()) == []
    live = admin.ground_truth(["Account"], values=False)["objects"]["Account"]
    assert got.json() == {"sObjects": [{"count": len(live), "name": "Account"}]}
    admin.add_object("Empty")  # a custom object without records, as the scratch org's Opportunity was
    try:
        without = _cumulusci_case("an object without records (none inserted yet)")
        path = without["path"].replace("Opportunity", "Empty__c")
        got = requests.get(org["instance_url"] + path, headers=auth)
        assert (got.status_code, got.json()) == (without["status"], json.loads(without["response"]))
        both = requests.get(
            f"{org['instance_url']}/services/data/v62.0/limits/recordCount",
            params={"sObjects": "account,Empty__c,NoSuchObject__c"},
            headers=auth,
        )
        assert both.json() == {"sObjects": [{"count": len(live), "name": "Account"}]}
    finally:
        admin.remove_object("Empty__c")


def test_replay_upserts_on_id(org: dict[str, Any], sf: Any, admin: Admin) -> None:
    """PATCH composite/sobjects/X/Id: a null Id creates (created true), an existing Id updates (created false), in
    the recorded keys and order; the recorded org's Ids are replaced by this org's."""
    auth = {"Authorization": f"Bearer {sf.session_id}"}
    created: list[tuple[str, str]] = []
    try:
        for note in ("upsert on Id: a null Id creates", "upsert on Id: existing Ids update, null Ids create"):
            case = _cumulusci_case(note)
            records = [dict(r) for r in case["body"]["records"]]
            obj = records[0]["attributes"]["type"]
            ours = iter(admin.ground_truth([obj], values=False)["objects"][obj])
            for r in records:
                if r["Id"] is not None:
                    r["Id"] = next(ours)
            got = requests.patch(
                org["instance_url"] + case["path"], json={**case["body"], "records": records}, headers=auth
            )
            assert got.status_code == case["status"], got.text
            recorded = json.loads(case["response"])
            answer = got.json()
            assert same_shape(recorded, answer) == []
            assert [a["created"] for a in answer] == [r["created"] for r in recorded]
            assert all(a["success"] and a["errors"] == [] for a in answer)
            assert [a["id"] for a in answer if not a["created"]] == [r["Id"] for r in records if r["Id"]]
            created += [(obj, a["id"]) for a in answer if a["created"]]
            truth = admin.ground_truth([obj])["objects"][obj]
            for r, a in zip(records, answer, strict=True):
                assert truth[a["id"]]["LastName" if obj == "Contact" else "Name"] == r.get("LastName", r.get("Name"))
    finally:
        for obj, rid in created:
            requests.delete(f"{org['instance_url']}/services/data/v62.0/sobjects/{obj}/{rid}", headers=auth)
