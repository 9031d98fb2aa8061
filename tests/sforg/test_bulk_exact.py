"""Bulk API 2.0 details as Salesforce has them: control characters (NUL included) round-trip through REST and Bulk
(simple-salesforce strips NUL bytes from Bulk results, so Salesforce's carry them: WIRE.md §6.3), the locator and
Sforce-NumberOfRecords headers of every page, and a new ContentVersion moving IsLatest and SystemModstamp."""

from __future__ import annotations

import base64
import csv
import io
from typing import Any

import requests

from sforg.testing import Admin

V = "62.0"
CONTROL = "".join(chr(c) for c in range(32)) + "\x7f\u0085\u2028\u2029\ufeff"
NASTY = f'x{CONTROL}"q",;|y'


def call(org: dict[str, Any], sf: Any, method: str, path: str, **kw: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {sf.session_id}", **kw.pop("headers", {})}
    return requests.request(method, f"{org['instance_url']}/services/data/v{V}/{path}", headers=headers, **kw)


def bulk(org: dict[str, Any], sf: Any, soql: str, max_records: int | None = None) -> list[requests.Response]:
    job = call(org, sf, "POST", "jobs/query", json={"operation": "query", "query": soql}).json()
    status = call(org, sf, "GET", f"jobs/query/{job['id']}")
    assert status.json()["state"] == "JobComplete" and "Sforce-Locator" not in status.headers
    pages, locator = [], None
    while True:
        params: dict[str, Any] = {}
        if max_records:
            params["maxRecords"] = max_records
        if locator:
            params["locator"] = locator
        page = call(org, sf, "GET", f"jobs/query/{job['id']}/results", params=params)
        assert page.status_code == 200
        pages.append(page)
        locator = page.headers["Sforce-Locator"]
        if locator == "null":
            return pages


def rows(page: requests.Response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(page.content.decode(), newline="")))


def test_control_characters_round_trip_through_rest_and_bulk(org: dict[str, Any], sf: Any, admin: Admin) -> None:
    before = b"".join(p.content for p in bulk(org, sf, "SELECT Id, Name, AnnualRevenue, IsDeleted FROM Account"))
    aid = call(org, sf, "POST", "sobjects/Account", json={"Name": NASTY, "Description": NASTY}).json()["id"]
    assert call(org, sf, "GET", f"sobjects/Account/{aid}", params={"fields": "Name"}).json()["Name"] == NASTY
    assert sf.query(f"SELECT Name FROM Account WHERE Id = '{aid}'")["records"][0]["Name"] == NASTY
    assert admin.ground_truth(["Account"])["objects"]["Account"][aid]["Description"] == NASTY
    # plain fields (rendered inside SQLite) and a relationship path (rendered in Python) alike
    for soql in (
        f"SELECT Id, Name, Description FROM Account WHERE Id = '{aid}'",
        f"SELECT Id, Name, Owner.Name, Description FROM Account WHERE Id = '{aid}'",
    ):
        (page,) = bulk(org, sf, soql)
        header, line = rows(page)
        assert line[header.index("Name")] == NASTY and line[header.index("Description")] == NASTY
    # every other Account renders byte for byte as before (the NUL-safe rendering changes nothing else)
    after = b"".join(p.content for p in bulk(org, sf, "SELECT Id, Name, AnnualRevenue, IsDeleted FROM Account"))
    mine = f'"{aid}","{NASTY.replace(chr(34), chr(34) * 2)}","","false"\n'.encode()
    assert mine in after and after.replace(mine, b"") == before
    # Bulk ingest takes the same characters back
    content = f'Name,Description\n"{NASTY.replace(chr(34), chr(34) * 2)}","d{CONTROL}"\n'
    job = call(org, sf, "POST", "jobs/ingest", json={"object": "Account", "operation": "insert"}).json()
    put = call(
        org, sf, "PUT", f"jobs/ingest/{job['id']}/batches", data=content.encode(), headers={"Content-Type": "text/csv"}
    )
    assert put.status_code == 201
    call(org, sf, "PATCH", f"jobs/ingest/{job['id']}", json={"state": "UploadComplete"})
    ok = rows(call(org, sf, "GET", f"jobs/ingest/{job['id']}/successfulResults"))
    assert len(ok) == 2
    created = ok[1][ok[0].index("sf__Id")]
    got = admin.ground_truth(["Account"])["objects"]["Account"][created]
    assert (got["Name"], got["Description"]) == (NASTY, f"d{CONTROL}")


def test_locator_and_number_of_records_on_every_page(org: dict[str, Any], sf: Any, admin: Admin) -> None:
    n = len(admin.ground_truth(["Contact"], values=False)["objects"]["Contact"])
    pages = bulk(org, sf, "SELECT Id FROM Contact", max_records=n // 3 + 1)
    assert len(pages) == 3
    seen, offset = [], 0
    for i, page in enumerate(pages):
        header, *data = rows(page)
        assert header == ["Id"] and int(page.headers["Sforce-NumberOfRecords"]) == len(data)
        offset += len(data)
        locator = page.headers["Sforce-Locator"]
        if i < len(pages) - 1:
            assert locator != "null" and "=" not in locator
            assert base64.b64decode(locator + "=" * (-len(locator) % 4)).decode() == str(offset)
        seen += [r[0] for r in data]
    assert len(seen) == len(set(seen)) == n
    (whole,) = bulk(org, sf, "SELECT Id FROM Contact")
    assert whole.headers["Sforce-NumberOfRecords"] == str(n) and whole.headers["Sforce-Locator"] == "null"


def test_a_new_content_version_moves_is_latest_and_system_modstamp(org: dict[str, Any], sf: Any, admin: Admin) -> None:
    doc = sf.query("SELECT ContentDocumentId FROM ContentVersion WHERE IsLatest = true LIMIT 1")["records"][0][
        "ContentDocumentId"
    ]

    def versions() -> dict[str, dict[str, Any]]:
        fields = "Id, IsLatest, SystemModstamp, LastModifiedDate"
        recs = sf.query_all(f"SELECT {fields} FROM ContentVersion WHERE ContentDocumentId = '{doc}'")["records"]
        return {r["Id"]: r for r in recs}

    old = versions()
    (latest,) = [v for v, r in old.items() if r["IsLatest"]]
    admin.advance_clock(5)
    made = call(
        org,
        sf,
        "POST",
        "sobjects/ContentVersion",
        json={"ContentDocumentId": doc, "PathOnClient": "v2.txt", "VersionData": base64.b64encode(b"two").decode()},
    )
    assert made.status_code == 201
    new = versions()
    vid = made.json()["id"]
    assert {v for v, r in new.items() if r["IsLatest"]} == {vid}
    assert new[latest]["SystemModstamp"] > old[latest]["SystemModstamp"]
    assert new[latest]["LastModifiedDate"] == old[latest]["LastModifiedDate"]
    for v in old.keys() - {latest}:  # older versions were not the latest: untouched
        assert new[v] == old[v]
    # the admin path (a version added behind the API) does the same
    admin.advance_clock(5)
    added = admin.add_file_version(b"three", content_document_id=doc)
    third = versions()
    assert third[vid]["IsLatest"] is False and third[vid]["SystemModstamp"] > new[vid]["SystemModstamp"]
    assert [v for v, r in third.items() if r["IsLatest"]] == [added["ContentVersionId"]]
