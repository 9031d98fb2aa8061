"""A second unmodified client, aiosalesforce 0.6.2 (httpx), drives sforg end to end: OAuth client credentials,
queries with child subqueries, record create/get/update/delete, composite batch and composite with
references, Bulk API 2.0 ingest with a failing row, limits; every answer checked against the ground truth.

aiosalesforce only accepts `https://*.my.salesforce.com` base URLs, so its httpx client gets a transport that sends
that host's requests to the emulator (what DNS would do); the library itself is used as published."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import httpx
from aiosalesforce import ClientCredentialsFlow, Salesforce

from sforg.testing import Admin

BASE = "https://sforg.my.salesforce.com"


class ToEmulator(httpx.AsyncBaseTransport):
    def __init__(self, org: dict[str, Any]) -> None:
        self.port = int(org["port"])
        self.inner = httpx.AsyncHTTPTransport(verify=ssl.create_default_context(cafile=org["ca_file"]))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(host="127.0.0.1", port=self.port)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def run(org: dict[str, Any], scenario: Any) -> Any:
    async def main() -> Any:
        async with httpx.AsyncClient(transport=ToEmulator(org)) as http:
            sf = Salesforce(
                httpx_client=http,
                base_url=BASE,
                auth=ClientCredentialsFlow(client_id=org["client_id"], client_secret=org["client_secret"]),
                version="62.0",
            )
            return await scenario(sf)

    return asyncio.run(main())


def test_queries_with_child_subqueries(org: dict[str, Any], admin: Admin) -> None:
    truth = admin.ground_truth(["Account", "Contact"])["objects"]

    async def scenario(sf: Salesforce) -> list[dict[str, Any]]:
        return [r async for r in sf.query("SELECT Id, Name, (SELECT Id FROM Contacts) FROM Account")]

    got = run(org, scenario)
    assert {r["Id"]: r["Name"] for r in got} == {k: v["Name"] for k, v in truth["Account"].items()}
    for r in got:
        kids = {c for c, v in truth["Contact"].items() if v["AccountId"] == r["Id"]}
        assert ({c["Id"] for c in r["Contacts"]["records"]} if r["Contacts"] else set()) == kids

    async def every(sf: Salesforce) -> list[str]:
        return [r["Id"] async for r in sf.query("SELECT Id FROM Contact")]

    ids = run(org, every)
    assert len(ids) == len(set(ids)) == len(truth["Contact"])


def test_records_composite_and_bulk_ingest(org: dict[str, Any], admin: Admin) -> None:
    async def scenario(sf: Salesforce) -> dict[str, Any]:
        out: dict[str, Any] = {}
        rid = await sf.sobject.create("Account", {"Name": "aio one", "Industry": "Banking"})
        await sf.sobject.update("Account", rid, {"Phone": "555-0142"})
        out["got"] = await sf.sobject.get("Account", rid, fields=["Name", "Phone"])
        async with sf.composite.batch(halt_on_error=True) as batch:
            count = batch.query("SELECT COUNT() FROM Account")
            read = batch.sobject.get("Account", rid)
        out["count"], out["read"] = count.result, read.result
        async with sf.composite(all_or_none=True) as comp:
            parent = comp.sobject.create("Account", {"Name": "aio parent"})
            # aiosalesforce's Reference objects reach orjson as their bare name; the documented @{ref.field} form
            child = comp.sobject.create(
                "Contact", {"LastName": "aio child", "AccountId": f"@{{{parent.reference_id}.id}}"}
            )
        out["parent"], out["child"] = parent.response_body, child.response_body
        rows = [{"LastName": f"aio bulk {i}", "Email": f"b{i}@example.com"} for i in range(5)] + [{"FirstName": "x"}]
        # the ingest client's own call, polling every 50 ms instead of bulk_v2.insert's 5 s
        ingest = sf.bulk_v2.ingest
        (ingested,) = [r async for r in ingest.perform_operation("insert", "Contact", rows, polling_interval=0.05)]
        out["bulk"] = ingested
        gone = [{"Id": r["sf__Id"]} for r in ingested.successful_results]
        (deleted,) = [r async for r in ingest.perform_operation("delete", "Contact", gone, polling_interval=0.05)]
        out["deleted"] = deleted
        await sf.sobject.delete("Account", rid)
        out["limits"] = await sf.get_limits()
        out["rid"] = rid
        return out

    out = run(org, scenario)
    assert (out["got"]["Name"], out["got"]["Phone"]) == ("aio one", "555-0142")
    truth = admin.ground_truth(["Account", "Contact"])
    accounts, contacts = truth["objects"]["Account"], truth["objects"]["Contact"]
    assert out["count"]["totalSize"] == len(accounts)  # with the one deleted since, without the parent made since
    assert out["read"]["Phone"] == "555-0142"
    assert out["rid"] in truth["recycle_bin"]["Account"]
    pid, cid = out["parent"]["id"], out["child"]["id"]
    assert accounts[pid]["Name"] == "aio parent" and contacts[cid]["AccountId"] == pid
    bulk = out["bulk"]
    assert bulk.job_info.state == "JobComplete"
    assert len(bulk.successful_results) == 5 and len(bulk.failed_results) == 1
    assert bulk.failed_results[0]["sf__Error"].startswith("REQUIRED_FIELD_MISSING:")
    assert len(out["deleted"].successful_results) == 5
    assert not {r["sf__Id"] for r in bulk.successful_results} & set(contacts)
    assert out["limits"]["DailyApiRequests"]["Max"] > 0
