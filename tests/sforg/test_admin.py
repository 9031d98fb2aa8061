"""One test per admin switch (changes, clock, adversity, faults, accounting): what a client then sees."""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import time
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceOperationError,
    SalesforceRefusedRequest,
)

from sforg.org import Org, OrgError
from sforg.testing import Admin


def soql_stamp(rest_value: str) -> str:
    return rest_value.replace("+0000", "Z")


# ---------------------------------------------------------------- changes


def test_update_and_mass_update_share_one_modstamp(sf: Any, admin: Admin) -> None:
    one = admin.update("Account", ids=None, n=1, values={"Name": "Renamed Inc."})["ids"][0]
    assert sf.Account.get(one)["Name"] == "Renamed Inc."
    mass = admin.mass_update("Contact", n=50, values={"Title": "Bulk loaded"})
    got = sf.query_all(f"SELECT Id, Title FROM Contact WHERE SystemModstamp = {mass['modstamp']}")["records"]
    assert {r["Id"] for r in got} == set(mass["ids"])
    assert {r["Title"] for r in got} == {"Bulk loaded"}


def test_create_soft_delete_undelete(sf: Any, admin: Admin) -> None:
    created = admin.create("Invoice__c", n=3, values={"Amount__c": 10})["ids"]
    in_list = ", ".join(f"'{i}'" for i in created)
    assert sf.query(f"SELECT COUNT() FROM Invoice__c WHERE Id IN ({in_list})")["totalSize"] == 3
    found = sf.query_all("SELECT Id FROM Invoice__c WHERE Amount__c = 10")["records"]
    assert set(created) <= {r["Id"] for r in found}
    admin.soft_delete("Invoice__c", ids=created[:2])
    visible = {r["Id"] for r in sf.query_all("SELECT Id FROM Invoice__c WHERE Amount__c = 10")["records"]}
    assert created[2] in visible and not set(created[:2]) & visible
    admin.undelete("Invoice__c", ids=[created[0]])
    visible = {r["Id"] for r in sf.query_all("SELECT Id FROM Invoice__c WHERE Amount__c = 10")["records"]}
    assert created[0] in visible


def test_hard_delete_and_purge_leave_no_trace(sf: Any, admin: Admin) -> None:
    gone = admin.hard_delete("Case", n=2)["ids"]
    binned = admin.soft_delete("Case", n=2)["ids"]
    purged = admin.purge_recycle_bin("Case")["ids"]
    assert set(binned) <= set(purged)
    everything = {r["Id"] for r in sf.query_all("SELECT Id FROM Case", include_deleted=True)["records"]}
    assert not (set(gone) | set(binned)) & everything
    now = dt.datetime.now(dt.UTC)
    deleted = sf.Case.deleted(now - dt.timedelta(days=1), now + dt.timedelta(days=1))
    assert not {d["id"] for d in deleted["deletedRecords"]} & (set(gone) | set(binned))
    truth = admin.ground_truth(["Case"], values=False)
    assert set(gone) <= set(truth["hard_deleted"]["Case"])
    assert set(binned) <= set(truth["purged"]["Case"])


def test_junction_delete_skips_the_recycle_bin(sf: Any, admin: Admin) -> None:
    member = sf.query("SELECT Id FROM CampaignMember LIMIT 1")["records"][0]["Id"]
    assert sf.CampaignMember.delete(member) == 204
    assert member not in {
        r["Id"] for r in sf.query_all("SELECT Id FROM CampaignMember", include_deleted=True)["records"]
    }
    assert member in admin.ground_truth(["CampaignMember"], values=False)["hard_deleted"]["CampaignMember"]


def test_add_and_remove_field(sf: Any, admin: Admin, org: dict[str, Any]) -> None:
    url = f"{org['instance_url']}/services/data/v59.0/sobjects"
    headers = {"Authorization": f"Bearer {sf.session_id}"}
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    later = format_datetime(before + dt.timedelta(seconds=1), usegmt=True)
    assert sf.session.get(url, headers={**headers, "If-Modified-Since": later}).status_code == 304
    admin.add_field("Account", "Tier", "picklist", picklist=["Gold", "Silver"])
    since = format_datetime(before - dt.timedelta(seconds=1), usegmt=True)
    assert sf.session.get(url, headers={**headers, "If-Modified-Since": since}).status_code == 200
    assert "Tier__c" in {f["name"] for f in sf.Account.describe()["fields"]}
    rid = sf.query("SELECT Id FROM Account LIMIT 1")["records"][0]["Id"]
    sf.Account.update(rid, {"Tier__c": "Gold"})
    assert sf.query(f"SELECT Tier__c FROM Account WHERE Id = '{rid}'")["records"][0]["Tier__c"] == "Gold"
    admin.remove_field("Account", "Tier__c")
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.query("SELECT Tier__c FROM Account")
    assert err.value.content[0]["errorCode"] == "INVALID_FIELD"


def test_add_and_remove_object(sf: Any, admin: Admin) -> None:
    admin.add_object("Widget__c", records=5)
    assert "Widget__c" in {o["name"] for o in sf.describe()["sobjects"]}
    assert sf.query("SELECT COUNT() FROM Widget__c")["totalSize"] == 5
    assert "Widget__c" in {
        p.fullName for p in sf.mdapi.list_metadata([sf.mdapi.ListMetadataQuery(type="CustomObject")])
    }
    admin.remove_object("Widget__c")
    assert "Widget__c" not in {o["name"] for o in sf.describe()["sobjects"]}
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.query("SELECT Id FROM Widget__c")
    assert err.value.content[0]["errorCode"] == "INVALID_TYPE"


def test_change_metadata_component(sf: Any, admin: Admin) -> None:
    query = sf.mdapi.ListMetadataQuery(type="ApexClass")
    before = {p.fullName: p.lastModifiedDate for p in sf.mdapi.list_metadata([query])}
    name = sorted(before)[0]
    admin.advance_clock(3600)
    admin.change_metadata("ApexClass", name, "public class Changed {}\n")
    after = {p.fullName: p.lastModifiedDate for p in sf.mdapi.list_metadata([query])}
    assert after[name] > before[name]
    async_id, _ = sf.mdapi.retrieve("x", unpackaged={"ApexClass": [name]})
    import io
    import zipfile

    _, _, _, zipped = sf.mdapi.retrieve_zip(async_id)
    assert zipfile.ZipFile(io.BytesIO(zipped)).read(f"classes/{name}.cls") == b"public class Changed {}\n"


def test_add_file_version(sf: Any, admin: Admin) -> None:
    doc = sf.query("SELECT Id FROM ContentDocument LIMIT 1")["records"][0]["Id"]
    content = b"new version \x00\xff" * 1000
    added = admin.add_file_version(content, content_document_id=doc)
    latest = sf.query(
        f"SELECT Id, VersionNumber FROM ContentVersion WHERE ContentDocumentId = '{doc}' AND IsLatest = true"
    )["records"]
    assert [r["Id"] for r in latest] == [added["ContentVersionId"]]
    body = sf.ContentVersion.get_base64(added["ContentVersionId"], base64_field="VersionData")
    assert hashlib.sha256(body).hexdigest() == added["sha256"] == hashlib.sha256(content).hexdigest()


# ---------------------------------------------------------------- clock


def test_clock_expires_the_recycle_bin_after_15_days(sf: Any, admin: Admin) -> None:
    rid = admin.soft_delete("Lead", n=1)["ids"][0]
    assert rid in {r["Id"] for r in sf.query_all("SELECT Id FROM Lead", include_deleted=True)["records"]}
    before = dt.datetime.fromisoformat(admin.clock()["now"].replace("Z", "+00:00"))
    admin.advance_clock(16 * 86400)
    after = dt.datetime.fromisoformat(admin.clock()["now"].replace("Z", "+00:00"))
    assert after - before >= dt.timedelta(days=16)
    assert rid not in {r["Id"] for r in sf.query_all("SELECT Id FROM Lead", include_deleted=True)["records"]}
    deleted = sf.Lead.deleted(after - dt.timedelta(days=20), after)
    assert deleted["earliestDateAvailable"] > (after - dt.timedelta(days=16)).strftime("%Y-%m-%dT%H:%M")
    assert rid in admin.ground_truth(["Lead"], values=False)["purged"]["Lead"]


def test_clock_window_rules_for_updated(sf: Any, admin: Admin) -> None:
    admin.set_clock("2031-03-01T12:00:00Z", freeze=True)
    assert admin.clock()["now"] == "2031-03-01T12:00:00.000Z"
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Account.updated(dt.datetime(2031, 1, 1, tzinfo=dt.UTC), dt.datetime(2031, 1, 5, tzinfo=dt.UTC))
    assert err.value.content[0]["errorCode"] == "INVALID_REPLICATION_DATE"
    ok = sf.Account.updated(dt.datetime(2031, 2, 20, tzinfo=dt.UTC), dt.datetime(2031, 3, 5, tzinfo=dt.UTC))
    assert ok["latestDateCovered"] == "2031-03-01T12:00:00.000+0000"


# ---------------------------------------------------------------- adversity


def test_late_visible_commit(sf: Any, admin: Admin) -> None:
    admin.late_commits(300)
    rid = sf.query("SELECT Id FROM Account LIMIT 1")["records"][0]["Id"]
    change = admin.update("Account", ids=[rid], values={"Name": "Late Corp"})
    assert sf.Account.get(rid)["Name"] != "Late Corp"
    assert admin.ground_truth(["Account"], values=False)["pending"] >= 1
    admin.advance_clock(301)
    rec = sf.query(f"SELECT Name, SystemModstamp FROM Account WHERE Id = '{rid}'")["records"][0]
    assert rec["Name"] == "Late Corp"
    # The change shows up now, carrying a SystemModstamp from before the 300 s delay.
    modstamp = dt.datetime.strptime(rec["SystemModstamp"], "%Y-%m-%dT%H:%M:%S.%f%z")
    now = dt.datetime.fromisoformat(admin.clock()["now"].replace("Z", "+00:00"))
    assert now - modstamp >= dt.timedelta(seconds=300)
    assert change["ids"] == [rid]


def test_formula_drift_changes_values_without_modstamp(sf: Any, admin: Admin) -> None:
    soql_text = "SELECT Id, Days_Open__c, SystemModstamp FROM Case ORDER BY Id LIMIT 5"
    before = sf.query(soql_text)["records"]
    admin.advance_clock(3 * 86400)
    assert sf.query(soql_text)["records"] == before  # switch off: formulas stay put
    admin.formula_drift(True)
    after = sf.query(soql_text)["records"]
    for b, a in zip(before, after, strict=True):
        assert a["SystemModstamp"] == b["SystemModstamp"]
        assert a["Days_Open__c"] == b["Days_Open__c"] + 3


def test_field_level_security_hides_fields(sf: Any, admin: Admin) -> None:
    admin.hide_fields({"Account": ["AnnualRevenue"]})
    assert "AnnualRevenue" not in {f["name"] for f in sf.Account.describe()["fields"]}
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.query("SELECT AnnualRevenue FROM Account")
    assert err.value.content[0]["errorCode"] == "INVALID_FIELD"
    rid = sf.query("SELECT Id FROM Account LIMIT 1")["records"][0]["Id"]
    assert "AnnualRevenue" not in sf.Account.get(rid)
    assert "AnnualRevenue" not in admin.ground_truth(["Account"])["objects"]["Account"][rid]


# ---------------------------------------------------------------- faults


@pytest.mark.parametrize(
    "code,status,exc",
    [
        ("SERVER_UNAVAILABLE", 503, SalesforceGeneralError),
        ("500", 500, SalesforceGeneralError),
        ("QUERY_TIMEOUT", 400, SalesforceMalformedRequest),
    ],
)
def test_fault_error_rate(sf: Any, admin: Admin, code: str, status: int, exc: type[Exception]) -> None:
    admin.fault("query", error_rate=1.0, error=code, count=1)
    with pytest.raises(exc) as err:
        sf.query("SELECT Id FROM Account LIMIT 1")
    assert err.value.status == status  # type: ignore[attr-defined]
    assert sf.query("SELECT Id FROM Account LIMIT 1")["totalSize"] == 1


def test_fault_latency(sf: Any, admin: Admin) -> None:
    admin.fault("limits", latency=0.5, count=1)
    started = time.monotonic()
    sf.limits()
    assert time.monotonic() - started >= 0.5


def test_fault_hang(sf: Any, admin: Admin) -> None:
    admin.fault("describe_global", hang=True, count=1)
    with pytest.raises(requests.exceptions.ReadTimeout):
        sf.describe(timeout=1)


def test_fault_stall_mid_body(sf: Any, admin: Admin, org: dict[str, Any]) -> None:
    files = admin.ground_truth(["ContentVersion"], values=False)["files"]
    rid, meta = max(files.items(), key=lambda kv: kv[1]["size"])
    admin.fault("blob", stall_after=1000, count=1)
    url = f"{org['instance_url']}/services/data/v59.0/sobjects/ContentVersion/{rid}/VersionData"
    got = b""
    with pytest.raises(requests.exceptions.ConnectionError):
        with sf.session.get(url, headers={"Authorization": f"Bearer {sf.session_id}"}, stream=True, timeout=1) as resp:
            assert int(resp.headers["Content-Length"]) == meta["size"]
            for chunk in resp.iter_content(1):
                got += chunk
    assert len(got) == 1000 < meta["size"]


def test_token_revocation_and_expiry(sf: Any, admin: Admin, org: dict[str, Any]) -> None:
    bare = Salesforce(instance_url=org["instance_url"], session_id=sf.session_id)
    assert bare.query("SELECT Id FROM User LIMIT 1")["totalSize"] == 1
    admin.revoke_tokens()
    with pytest.raises(SalesforceExpiredSession) as err:
        bare.query("SELECT Id FROM User LIMIT 1")
    assert err.value.content[0]["errorCode"] == "INVALID_SESSION_ID"
    assert sf.query("SELECT Id FROM User LIMIT 1")["totalSize"] == 1  # logs in again by itself
    bare = Salesforce(instance_url=org["instance_url"], session_id=sf.session_id)
    admin.advance_clock(7201)
    with pytest.raises(SalesforceExpiredSession):
        bare.query("SELECT Id FROM User LIMIT 1")


def test_expired_query_locators(sf: Any, admin: Admin) -> None:
    first = sf.query("SELECT Id FROM Contact", headers={"Sforce-Query-Options": "batchSize=200"})
    admin.expire_locators()
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    assert err.value.content == [{"message": "invalid query locator", "errorCode": "INVALID_QUERY_LOCATOR"}]
    first = sf.query("SELECT Id FROM Contact", headers={"Sforce-Query-Options": "batchSize=200"})
    admin.advance_clock(901)  # idle locators expire after 15 minutes
    with pytest.raises(SalesforceMalformedRequest):
        sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)


def test_daily_api_limit(sf: Any, admin: Admin) -> None:
    admin.api_usage(used=1000, max=1000)
    with pytest.raises(SalesforceRefusedRequest) as err:
        sf.query("SELECT Id FROM User LIMIT 1")
    assert err.value.content == [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    admin.api_usage(used=10, max=1000)
    sf.query("SELECT Id FROM User LIMIT 1")
    assert sf.api_usage["api-usage"].used == 11
    assert sf.api_usage["api-usage"].total == 1000


def test_concurrent_long_running_limit(sf: Any, admin: Admin, org: dict[str, Any]) -> None:
    admin.concurrency_limit(1, long_running_seconds=0.2)
    admin.fault("limits", latency=4.0, count=1)
    slow = threading.Thread(target=sf.limits)
    slow.start()
    refused = None
    deadline = time.monotonic() + 4.0
    while time.monotonic() < deadline and refused is None:
        try:
            sf.query("SELECT Id FROM User LIMIT 1")
        except SalesforceRefusedRequest as exc:
            refused = exc
    slow.join()
    assert refused is not None
    assert refused.content[0]["message"] == "ConcurrentPerOrgLongTxn Limit exceeded."


# ---------------------------------------------------------------- accounting


def test_accounting_by_endpoint_and_kind(sf: Any, admin: Admin) -> None:
    admin.reset_accounting()
    sf.query("SELECT Id FROM Account LIMIT 5")
    list(sf.bulk2.Account.query("SELECT Id FROM Account", wait=0.05))
    sf.mdapi.describe_metadata()
    files = admin.ground_truth(["Attachment"], values=False)["files"]
    rid, meta = next(iter(files.items()))
    sf.Attachment.get_base64(rid)
    acc = admin.accounting()
    assert acc["calls"]["query"] == 1 and acc["calls"]["blob"] == 1
    assert acc["calls"]["bulk2_create"] == 1 and acc["calls"]["bulk2_results"] >= 1
    assert acc["kinds"]["REST"] >= 2 and acc["kinds"]["Bulk"] >= 3 and acc["kinds"]["Metadata"] == 1
    assert acc["bytes"]["blob"] == meta["size"]
    assert acc["bytes_total"] > meta["size"]


def test_bulk_job_failure_fault(sf: Any, admin: Admin) -> None:
    admin.fault("bulk2_create", error_rate=1.0, error="JOB_FAILED", count=1)
    with pytest.raises(SalesforceOperationError) as err:
        list(sf.bulk2.Account.query("SELECT Id FROM Account", wait=0.05))
    assert "Retried more than 15 times" in str(err.value)


def test_bulk_daily_job_limit_and_unsupported_object(sf: Any, admin: Admin) -> None:
    admin.api_usage(bulk_jobs=10000)
    with pytest.raises(SalesforceMalformedRequest) as err:
        list(sf.bulk2.Account.query("SELECT Id FROM Account", wait=0.05))
    assert err.value.content[0]["errorCode"] == "LIMIT_EXCEEDED"
    assert sf.limits()["DailyBulkV2QueryJobs"]["Remaining"] == 0
    admin.api_usage(bulk_jobs=0)
    with pytest.raises(SalesforceMalformedRequest) as err:
        list(sf.bulk2.Attachment.query("SELECT Id FROM Attachment", wait=0.05))
    assert err.value.content[0]["errorCode"] == "INVALIDENTITY"


def test_many_added_fields_make_a_wide_object(sf: Any, admin: Admin) -> None:
    names = [admin.add_field("Shipment__c", f"Wide{i}", "double" if i % 2 else "string")["field"] for i in range(140)]
    try:
        fields = [f["name"] for f in sf.Shipment__c.describe()["fields"] if f["type"] not in ("location",)]
        rows = sf.query_all(f"SELECT {', '.join(fields)} FROM Shipment__c")["records"]
        truth = admin.ground_truth(["Shipment__c"])["objects"]["Shipment__c"]
        assert {r["Id"]: {k: v for k, v in r.items() if k != "attributes"} for r in rows} == {
            rid: {k: v for k, v in vals.items() if k != "Destination__c"} for rid, vals in truth.items()
        }
        pages = list(sf.bulk2.Shipment__c.query(f"SELECT {', '.join(fields)} FROM Shipment__c", wait=0.05))
        assert pages[0].count("\n") == len(truth) + 1
    finally:
        for name in names:
            admin.remove_field("Shipment__c", name)


def test_an_admin_update_of_an_object_nobody_updates_is_refused_by_name(tmp_path: Path) -> None:
    # field history has no field a user may change: a clear 400, not a 500 (bench's 1 % update hit it)
    org = Org(tmp_path / "o", "tiny", 1)
    org.create_records("Account", 1)  # a new record's history: its "created" row
    with pytest.raises(OrgError) as refused:
        org.update_records("AccountHistory", fraction=1.0)
    assert refused.value.status == 400 and refused.value.code == "INVALID_TYPE_FOR_OPERATION"
    assert "AccountHistory" in str(refused.value)
