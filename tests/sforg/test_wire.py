"""Wire details that clients other than simple-salesforce rely on (WIRE.md): paths, headers, bodies."""

from __future__ import annotations

import base64
from typing import Any

import requests


def session(org: dict[str, Any], sf: Any) -> requests.Session:
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {sf.session_id}"
    return s


def test_paths_with_and_without_slashes_and_spaces(org: dict[str, Any], sf: Any) -> None:
    s = session(org, sf)
    base = org["instance_url"]
    versions = s.get(f"{base}/services/data/").json()
    assert {"label", "url", "version"} <= set(versions[0]) and versions[-1]["version"] == "62.0"
    labels = {v["version"]: v["label"] for v in versions}
    assert (labels["40.0"], labels["59.0"], labels["62.0"]) == ("Summer '17", "Winter '24", "Winter '25")
    for url in (
        f"{base}/services/data/v50.0/query?q=SELECT%20Id%20FROM%20User",
        f"{base}/services/data/v59.0/query/?q=SELECT+Id+FROM+User",
    ):
        resp = s.get(url)
        assert resp.status_code == 200
        assert resp.headers["Content-Type"] == "application/json;charset=UTF-8"
        assert resp.headers["Sforce-Limit-Info"].startswith("api-usage=")
        assert resp.json()["records"][0]["attributes"]["url"].startswith(url.split("/query")[0].removeprefix(base))
    assert s.get(f"{base}/services/data/v39.0/sobjects").status_code == 404
    unauth = requests.get(f"{base}/services/data/v59.0/sobjects", headers={"Authorization": "Bearer nope"})
    assert unauth.status_code == 401
    assert unauth.json() == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


def test_oauth_refresh_token_and_errors(org: dict[str, Any]) -> None:
    url = f"{org['login_url']}/any/prefix/services/oauth2/token"
    ok = requests.post(
        url,
        data={
            "grant_type": "refresh_token",
            "refresh_token": org["refresh_token"],
            "client_id": org["client_id"],
        },
    )
    body = ok.json()
    assert list(body)[:4] == ["access_token", "instance_url", "id", "token_type"]
    assert "refresh_token" not in body and "expires_in" not in body
    assert body["id"].endswith(f"/{org['org_id']}/{org['user_id']}")
    basic = base64.b64encode(f"{org['client_id']}:wrong".encode()).decode()
    bad = requests.post(url, data={"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {basic}"})
    assert bad.status_code == 400 and bad.json() == {
        "error": "invalid_client",
        "error_description": "invalid client credentials",
    }
    body_creds = requests.post(
        url,
        data={
            "grant_type": "client_credentials",
            "client_id": org["client_id"],
            "client_secret": org["client_secret"],
        },
    )
    assert body_creds.status_code == 200


def test_bulk2_job_lifecycle_and_csv_options(org: dict[str, Any], sf: Any) -> None:
    s = session(org, sf)
    jobs = f"{org['instance_url']}/services/data/v59.0/jobs/query"
    job = s.post(
        jobs,
        json={
            "operation": "query",
            "query": "SELECT Id, Name, IsActive FROM User",
            "columnDelimiter": "TAB",
            "lineEnding": "CRLF",
        },
    ).json()
    assert job["state"] == "UploadComplete" and job["apiVersion"] == 59.0
    info = s.get(f"{jobs}/{job['id']}").json()
    assert info["state"] == "JobComplete" and info["jobType"] == "V2Query"
    results = s.get(f"{jobs}/{job['id']}/results")
    assert results.headers["Sforce-Locator"] == "null"
    lines = results.text.split("\r\n")
    assert lines[0] == '"Id"\t"Name"\t"IsActive"'
    assert int(results.headers["Sforce-NumberOfRecords"]) == len(lines) - 2 == info["numberRecordsProcessed"]
    assert lines[1].endswith('\t"true"') or lines[1].endswith('\t"false"')
    assert job["id"] in {j["id"] for j in s.get(jobs).json()["records"]}
    assert s.patch(f"{jobs}/{job['id']}", json={"state": "Aborted"}).status_code == 400  # already complete
    assert s.delete(f"{jobs}/{job['id']}").status_code == 204
    assert s.get(f"{jobs}/{job['id']}").status_code == 404
    refused = s.post(jobs, json={"operation": "query", "query": "SELECT BillingAddress FROM Account"})
    assert refused.status_code == 400
    assert "compound" in refused.json()[0]["message"]


def test_rest_tolerates_text_xml_bodies(org: dict[str, Any], sf: Any) -> None:
    s = session(org, sf)
    url = f"{org['instance_url']}/services/data/v59.0/sobjects/Account/"
    resp = s.post(
        url,
        data='{"Name": "From XML header"}',
        headers={"Content-Type": "text/xml", "SOAPAction": "retrieve"},
    )
    assert resp.status_code == 201 and resp.json()["success"] is True


def test_long_request_lines_and_offset_limit(org: dict[str, Any], sf: Any) -> None:
    user = sf.query("SELECT Id FROM User LIMIT 1")["records"][0]["Id"]
    ids = ", ".join([f"'{user}'"] * 500)  # a 10,500-character query: beyond aiohttp's default line limit
    assert sf.query(f"SELECT Id FROM User WHERE Id IN ({ids})")["totalSize"] == 1
    s = session(org, sf)
    resp = s.get(f"{org['instance_url']}/services/data/v59.0/query", params={"q": "SELECT Id, Id FROM User"})
    assert resp.json() == [{"message": "duplicate field selected: Id", "errorCode": "MALFORMED_QUERY"}]
    resp = s.get(f"{org['instance_url']}/services/data/v59.0/query", params={"q": "SELECT Id FROM User OFFSET 2001"})
    assert resp.status_code == 400 and resp.json()[0]["errorCode"] == "NUMBER_OUTSIDE_VALID_RANGE"


def test_bulk2_pages_concatenate_to_the_unpaged_result(org: dict[str, Any], sf: Any) -> None:
    """Pages of any size, gzipped or not, are the one unpaged result cut at line ends, byte for byte."""
    s = session(org, sf)
    base = f"{org['instance_url']}/services/data/v59.0"
    describe = s.get(f"{base}/sobjects/Contact/describe").json()
    names = [f["name"] for f in describe["fields"] if f["type"] not in ("address", "location", "base64")]
    for query in (f"SELECT {', '.join(names)} FROM Contact", "SELECT Id, Name FROM Contact ORDER BY Name, Id"):
        job = s.post(f"{base}/jobs/query", json={"operation": "queryAll", "query": query}).json()
        info = s.get(f"{base}/jobs/query/{job['id']}").json()
        url = f"{base}/jobs/query/{job['id']}/results"
        whole = s.get(url, headers={"Accept-Encoding": "identity"})
        assert "Content-Encoding" not in whole.headers and whole.headers["Sforce-Locator"] == "null"
        assert int(whole.headers["Sforce-NumberOfRecords"]) == info["numberRecordsProcessed"] > 300
        header, _, body = whole.content.partition(b"\n")
        for size, encoding in ((97, "gzip"), (100, "identity"), (info["numberRecordsProcessed"], "gzip")):
            pages, locator, counts = [], "", []
            while locator != "null":
                params = {"maxRecords": size, **({"locator": locator} if locator else {})}
                resp = s.get(url, params=params, headers={"Accept-Encoding": encoding})
                assert resp.headers.get("Content-Encoding") == ("gzip" if encoding == "gzip" else None)
                first, _, rest = resp.content.partition(b"\n")  # requests has gunzipped it
                assert first == header
                pages.append(rest)
                counts.append(int(resp.headers["Sforce-NumberOfRecords"]))
                locator = resp.headers["Sforce-Locator"]
            assert b"".join(pages) == body and sum(counts) == info["numberRecordsProcessed"]
