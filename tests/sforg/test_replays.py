"""REST answers recorded from real orgs (heroku-applink-nodejs WireMock mappings, tests/sforg/fixtures/recorded/
heroku_rest_answers.json) replayed against sforg: status, body and key order as recorded."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

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
