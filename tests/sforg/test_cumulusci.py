"""A third unmodified client, CumulusCI's library (cumulusci 4.10.1), drives sforg end to end: its own
simple-salesforce connection factory from an OrgConfig, its data steps (the REST-or-Bulk choice made on
`limits/recordCount`, the REST query with its paging, REST Collections insert and delete with a failing row) and
its Metadata API listMetadata call (its own SOAP envelope and parser); every answer checked against the ground
truth, and its Metadata API retrieve (retrieve, then `checkStatus` until done, then checkRetrieveStatus for the zip).
CumulusCI's Bulk data steps speak Bulk API 1.0, which sforg does not emulate (README)."""

from __future__ import annotations

import hashlib
import logging
from types import SimpleNamespace
from typing import Any

from cumulusci.core.config import OrgConfig
from cumulusci.core.exceptions import ServiceNotConfigured
from cumulusci.salesforce_api.exceptions import MetadataApiError
from cumulusci.salesforce_api.metadata import ApiListMetadata, ApiRetrieveUnpackaged
from cumulusci.salesforce_api.utils import get_simple_salesforce_connection
from cumulusci.tasks.bulkdata.step import (
    DataApi,
    DataOperationStatus,
    DataOperationType,
    RestApiDmlOperation,
    RestApiQueryOperation,
    get_query_operation,
)

from sforg.testing import Admin

log = logging.getLogger("cumulusci-test")


class Keychain:
    """A keychain without services: CumulusCI names itself as the API client then."""

    def get_service(self, name: str) -> Any:
        raise ServiceNotConfigured(name)


def cumulusci_task(org: dict[str, Any], sf: Any) -> SimpleNamespace:
    """What CumulusCI's API calls read from a task: org_config (the token an OAuth login gave), project_config
    (the API version, a keychain) and a logger."""
    org_config = OrgConfig(
        {"instance_url": org["instance_url"], "access_token": sf.session_id, "org_id": org["org_id"]}, "sforg"
    )
    project = SimpleNamespace(project__package__api_version=org["api_version"], keychain=Keychain())
    return SimpleNamespace(org_config=org_config, project_config=project, logger=log)


def context(task: SimpleNamespace) -> SimpleNamespace:
    """The data steps' context: a connection from CumulusCI's own factory, no Bulk 1.0 client."""
    sf = get_simple_salesforce_connection(task.project_config, task.org_config)
    return SimpleNamespace(sf=sf, bulk=None, logger=log)


def test_cumulusci_query_picks_rest_by_record_count_and_pages(org: dict[str, Any], sf: Any, admin: Admin) -> None:
    ctx = context(cumulusci_task(org, sf))
    truth = admin.ground_truth(["Account", "Contact"])["objects"]
    fields = ["Id", "Name", "Industry"]
    op = get_query_operation(
        sobject="Account",
        fields=fields,
        api_options={},
        context=ctx,
        query="SELECT Id, Name, Industry FROM Account",
        api=DataApi.SMART,
    )
    assert isinstance(op, RestApiQueryOperation)  # fewer than 2,000 Accounts by limits/recordCount
    op.query()
    assert op.job_result.status is DataOperationStatus.SUCCESS
    assert op.job_result.records_processed == len(truth["Account"])
    rows = list(op.get_results())
    want = {rid: [rid, r["Name"], r["Industry"] or ""] for rid, r in truth["Account"].items()}
    assert {r[0]: r for r in rows} == want and len(rows) == len(want)
    # Pages of 200 rows (the connection's Sforce-Query-Options): get_results follows nextRecordsUrl with query_more.
    assert len(truth["Contact"]) > 400
    ctx.sf.headers["Sforce-Query-Options"] = "batchSize=200"
    contacts = RestApiQueryOperation(
        sobject="Contact",
        fields=["Id", "LastName"],
        api_options={},
        context=ctx,
        query="SELECT Id, LastName FROM Contact",
    )
    contacts.query()
    assert len(contacts.response["records"]) == 200 and contacts.response["nextRecordsUrl"]
    got = {rid: name for rid, name in contacts.get_results()}
    assert got == {rid: r["LastName"] for rid, r in truth["Contact"].items()}


def test_cumulusci_rest_insert_and_delete(org: dict[str, Any], sf: Any, admin: Admin) -> None:
    ctx = context(cumulusci_task(org, sf))
    account = next(iter(admin.ground_truth(["Account"])["objects"]["Account"]))
    fields = ["LastName", "FirstName", "AccountId", "HasOptedOutOfEmail"]
    insert = RestApiDmlOperation(
        sobject="Contact", operation=DataOperationType.INSERT, api_options={}, context=ctx, fields=fields
    )
    insert.start()
    insert.load_records(
        iter(
            [
                ["Cumulus", "Ada", account, "true"],
                ["Cumulus", "", account, ""],  # empty cells are left out on insert; the boolean becomes false
                ["", "NoLastName", account, "false"],  # REQUIRED_FIELD_MISSING
            ]
        )
    )
    insert.end()
    assert insert.job_result.status is DataOperationStatus.ROW_FAILURE
    assert (insert.job_result.records_processed, insert.job_result.total_row_errors) == (3, 1)
    results = list(insert.get_results())
    assert [r.success for r in results] == [True, True, False]
    assert "REQUIRED_FIELD_MISSING" in (results[2].error or "")
    ids = [r.id for r in results[:2]]
    live = admin.ground_truth(["Contact"])["objects"]["Contact"]
    assert [
        (live[i]["FirstName"], live[i]["LastName"], live[i]["AccountId"], live[i]["HasOptedOutOfEmail"]) for i in ids
    ] == [("Ada", "Cumulus", account, True), (None, "Cumulus", account, False)]

    delete = RestApiDmlOperation(
        sobject="Contact", operation=DataOperationType.DELETE, api_options={}, context=ctx, fields=["Id"]
    )
    delete.start()
    delete.load_records(iter([[i] for i in ids]))
    delete.end()
    assert delete.job_result.status is DataOperationStatus.SUCCESS
    assert [r.success for r in delete.get_results()] == [True, True]
    truth = admin.ground_truth(["Contact"])
    assert not set(ids) & set(truth["objects"]["Contact"]) and set(ids) <= set(truth["recycle_bin"]["Contact"])


def test_cumulusci_list_metadata(org: dict[str, Any], sf: Any, admin: Admin) -> None:
    task = cumulusci_task(org, sf)
    listed = ApiListMetadata(task, "ApexClass", as_of_version=org["api_version"])()
    truth = [m for m in admin.ground_truth([])["metadata"] if m["type"] == "ApexClass"]
    assert truth
    assert {m["fullName"]: (m["fileName"], m["id"], m["type"]) for m in listed["ApexClass"]} == {
        m["fullName"]: (m["fileName"], m["id"], "ApexClass") for m in truth
    }
    # lastModifiedDate parsed by CumulusCI into a datetime, the instant the org recorded
    by_name = {m["fullName"]: m for m in truth}
    for m in listed["ApexClass"]:
        assert m["lastModifiedDate"].strftime("%Y-%m-%dT%H:%M:%S") == by_name[m["fullName"]]["lastModifiedDate"][:19]


PACKAGE = """<?xml version="1.0" encoding="UTF-8"?>
<Package xmlns="http://soap.sforce.com/2006/04/metadata">
    <types>
        <members>*</members>
        <name>ApexClass</name>
    </types>
    <version>{version}</version>
</Package>"""


def test_cumulusci_retrieve_polls_check_status_then_reads_the_zip(org: dict[str, Any], sf: Any, admin: Admin) -> None:
    task = cumulusci_task(org, sf)
    api = ApiRetrieveUnpackaged(task, PACKAGE.format(version=org["api_version"]), org["api_version"])
    zf = api()
    assert api.status == "Done" and api.process_id.startswith("09S")
    truth = {m["fullName"]: m for m in admin.ground_truth([])["metadata"] if m["type"] == "ApexClass"}
    names = set(zf.namelist())
    assert "package.xml" in names
    assert {n for n in names if n.endswith(".cls")} == {f"classes/{name}.cls" for name in truth}
    for name, m in truth.items():
        assert f"classes/{name}.cls-meta.xml" in names
        body = zf.read(f"classes/{name}.cls")  # the class body the org holds, byte for byte
        assert hashlib.sha256(body).hexdigest() == m["sha256"], name


def test_check_status_answers_each_id_and_refuses_an_unknown_one(org: dict[str, Any], sf: Any) -> None:
    task = cumulusci_task(org, sf)
    api = ApiRetrieveUnpackaged(task, PACKAGE.format(version=org["api_version"]), org["api_version"])
    api.process_id = "09SDx0000000000AAA"
    envelope = api._build_envelope_status()
    try:
        api._call_mdapi(api._build_headers("checkStatus", envelope), envelope)
    except MetadataApiError as exc:
        assert "INVALID_ID_FIELD" in str(exc)
    else:
        raise AssertionError("an unknown id was answered")
