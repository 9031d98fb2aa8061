"""The Salesforce reads a job makes (port SalesforceReads): the fake org, loaded with sforg's ground truth, and
OrgReader against sforg give the same answers to the queries domain.build_soql writes: REST pages in key order,
a keyset resume, a SystemModstamp window, Bulk pages, the recycle bin through queryAll."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from sfvault.jobs.v1 import jobs_pb2

from services.jobrunner.domain import Key, build_soql, parse_sf_datetime
from services.jobrunner.ports import SalesforceReads
from services.jobrunner.salesforce import JobOrgClient
from services.sfclient import SalesforceError, is_transient
from sforg.testing import Admin
from tests.jobrunner.conftest import connection
from tests.jobrunner.fakes import FakeOrg

OBJECT = "Account"
FIELDS = ["Id", "Name", "SystemModstamp"]

pytestmark = pytest.mark.integration


@pytest.fixture(params=["fake", "sforg"])
def reads(request: pytest.FixtureRequest, org: dict[str, Any], admin: Admin) -> Iterator[SalesforceReads]:
    if request.param == "sforg":
        client = JobOrgClient.for_job(jobs_pb2.JobSpec(connection=connection(org)), timeout=30)
        yield client.reads(0)
        return
    truth = admin.ground_truth(objects=[OBJECT])
    fake = FakeOrg()
    fake.put(OBJECT, *({**values, "Id": rid} for rid, values in truth["objects"][OBJECT].items()))
    fake.put(OBJECT, *({"Id": rid, "IsDeleted": True} for rid in truth["recycle_bin"][OBJECT]))
    yield fake


@pytest.fixture(scope="module", autouse=True)
def content(admin: Admin) -> None:
    """Enough records for several REST pages of 200, a few in the recycle bin."""
    admin.create(OBJECT, n=400)
    admin.soft_delete(OBJECT, n=3)


def rest(reads: SalesforceReads, soql: str, *, query_all: bool = False, batch: int = 200) -> list[dict[str, Any]]:
    page = reads.query_page(soql, query_all=query_all, batch_size=batch)
    total, rows = page.total_size, list(page.records)
    assert len(page.records) <= batch
    while page.next_url:
        page = reads.query_more(page.next_url, batch_size=batch)
        rows.extend(page.records)
    assert total == len(rows)
    return rows


def keys(rows: list[dict[str, Any]]) -> list[tuple[dt.datetime, str]]:
    return [(parse_sf_datetime(str(r["SystemModstamp"])), str(r["Id"])) for r in rows]


def test_rest_pages_in_id_order_and_a_keyset_resume(reads: SalesforceReads, admin: Admin) -> None:
    live = set(admin.ground_truth(objects=[OBJECT])["objects"][OBJECT])
    rows = rest(reads, build_soql(OBJECT, FIELDS, ordered="id"))
    ids = [str(r["Id"]) for r in rows]
    assert ids == sorted(live) and len(ids) > 400  # several pages

    after = build_soql(OBJECT, FIELDS, ordered="id", after=Key(None, ids[249]))
    assert [str(r["Id"]) for r in rest(reads, after)] == ids[250:]


def test_a_window_in_systemmodstamp_order_and_its_resume(reads: SalesforceReads, admin: Admin) -> None:
    everything = keys(rest(reads, build_soql(OBJECT, FIELDS, ordered="modstamp")))
    assert everything == sorted(everything)
    start, end = everything[len(everything) // 4][0], everything[3 * len(everything) // 4][0]
    window = keys(rest(reads, build_soql(OBJECT, FIELDS, start=start, end=end, ordered="modstamp")))
    assert window == [k for k in everything if start <= k[0] <= end]
    cut = window[len(window) // 2]
    resumed = build_soql(OBJECT, FIELDS, start=start, end=end, ordered="modstamp", after=Key(_sf(cut[0]), cut[1]))
    assert keys(rest(reads, resumed)) == [k for k in window if k > cut]


def test_query_all_includes_the_recycle_bin(reads: SalesforceReads, admin: Admin) -> None:
    truth = admin.ground_truth(objects=[OBJECT])
    binned = set(truth["recycle_bin"][OBJECT])
    assert len(binned) >= 3
    every = rest(reads, build_soql(OBJECT, ["Id", "IsDeleted"], ordered="id"), query_all=True)
    assert {str(r["Id"]) for r in every} == set(truth["objects"][OBJECT]) | binned
    assert {str(r["Id"]) for r in every if r["IsDeleted"]} == binned


def test_bulk_pages_hold_what_rest_returns(reads: SalesforceReads) -> None:
    job_id = reads.bulk_create(build_soql(OBJECT, FIELDS), query_all=False)
    job = reads.bulk_wait(job_id)
    assert job.state == "JobComplete"
    ids: list[str] = []
    locator = ""
    while True:
        count, locator, rows = reads.bulk_page(job_id, locator, 150)
        header = next(rows)
        assert header == FIELDS
        page = [row[0] for row in rows]
        assert len(page) == count <= 150
        ids.extend(page)
        if not locator:
            break
    assert job.records == len(ids)
    assert sorted(ids) == [str(r["Id"]) for r in rest(reads, build_soql(OBJECT, FIELDS, ordered="id"))]


@pytest.mark.parametrize("refusal", ["API_DISABLED_FOR_ORG", "FEATURENOTENABLED"])
def test_a_refused_bulk_job_is_a_salesforce_error_with_its_code(
    reads: SalesforceReads, admin: Admin, refusal: str
) -> None:
    if isinstance(reads, FakeOrg):
        reads.refuse_bulk = refusal
    else:
        admin.fault(endpoint="bulk2_create", error_rate=1.0, error=refusal)
    try:
        with pytest.raises(SalesforceError) as refused:
            reads.bulk_create(build_soql(OBJECT, ["Id"]), query_all=True)
    finally:
        admin.clear_faults()
    assert refused.value.code == refusal and not is_transient(refused.value)


def test_a_query_timing_out_is_a_salesforce_error_with_its_code(reads: SalesforceReads, admin: Admin) -> None:
    """What OrgReader raises once OrgClient's six tries all timed out."""
    if isinstance(reads, FakeOrg):
        reads.refuse_query = "QUERY_TIMEOUT"
    else:
        admin.fault(endpoint="query", error_rate=1.0, error="QUERY_TIMEOUT", count=6)
    try:
        with pytest.raises(SalesforceError) as refused:
            reads.query_page(build_soql(OBJECT, ["Id"], ordered="id"))
    finally:
        admin.clear_faults()
    assert refused.value.code == "QUERY_TIMEOUT"


def _sf(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}+0000"
