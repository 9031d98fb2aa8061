"""OrgWriter against sforg: Collections create / update / upsert with per-record errors, reads of the target's
state (by Id with the recycle bin, a whole object through Bulk), what the restoring user created since a time,
SOAP undelete, Bulk 2.0 ingest, every call counted; a create whose answer is lost is never sent again, an
update is retried."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from services.jobrunner import domain, salesforce_write
from services.jobrunner.salesforce import JobOrgClient
from services.jobrunner.salesforce_write import OrgWriter, WriteAnswerLost, parse_bulk_error
from services.sfclient import credentials_from_connection
from sforg.testing import Admin
from tests.jobrunner.conftest import connection

pytestmark = pytest.mark.integration


def writer(org: dict[str, Any]) -> OrgWriter:
    client = JobOrgClient(credentials_from_connection(connection(org)), timeout=10)
    return OrgWriter(client)


def test_parse_bulk_error() -> None:
    assert parse_bulk_error("REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --") == (
        "REQUIRED_FIELD_MISSING",
        "Required fields are missing: [Name]",
        ("Name",),
    )
    assert parse_bulk_error("INVALID_CROSS_REFERENCE_KEY:invalid cross reference id:--") == (
        "INVALID_CROSS_REFERENCE_KEY",
        "invalid cross reference id",
        (),
    )


def test_collections_write_and_read_back_with_per_record_errors(org: dict[str, Any], admin: Admin) -> None:
    w = writer(org)
    since = w.client.org_now() - dt.timedelta(seconds=1)
    results = w.create("Account", [{"Name": "Restored One", "Phone": "555"}, {"Phone": "no name"}])
    assert results[0].success and results[0].id and results[0].id.startswith("001")
    assert not results[1].success and results[1].code == "REQUIRED_FIELD_MISSING"
    new_id = str(results[0].id)
    rows = w.query_ids("Account", ["Name", "Phone", "IsDeleted"], [new_id])
    assert rows == [{"Id": new_id, "Name": "Restored One", "Phone": "555", "IsDeleted": False}]
    updated = w.update("Account", [{"Id": new_id, "Phone": "556"}, {"Id": "001000000000000AAA", "Phone": "1"}])
    assert updated[0].success and not updated[1].success and updated[1].code
    assert w.query_ids("Account", ["Phone"], [new_id])[0]["Phone"] == "556"
    mine = w.created_since("Account", w.user_id(), since, ["Name"])
    assert [r["Id"] for r in mine] == [new_id]
    assert w.write_calls == 2 and w.client.api_calls >= 5
    assert admin.accounting().get("writes", 0) >= 2


def test_a_lost_create_is_not_sent_again_an_update_is(org: dict[str, Any], admin: Admin) -> None:
    w = writer(org)
    admin.fault("composite_sobjects", error_rate=1.0, error="SERVER_UNAVAILABLE", count=1)
    before = w.client.api_calls
    with pytest.raises(WriteAnswerLost):
        w.create("Account", [{"Name": "Maybe created"}])
    assert w.client.api_calls == before + 1  # one attempt, never retried
    created = w.create("Account", [{"Name": "Surely created"}])
    admin.fault("composite_sobjects", error_rate=1.0, error="SERVER_UNAVAILABLE", count=1)
    updated = w.update("Account", [{"Id": created[0].id, "Phone": "42"}])  # idempotent: retried
    assert updated[0].success
    admin.clear_faults()


def test_a_whole_object_through_bulk_typed_as_rest(org: dict[str, Any]) -> None:
    w = writer(org)
    describe = w.describe("Account")
    types = {f["name"]: f["type"] for f in describe["fields"]}
    rows = list(w.query_object("Account", ["Name", "IsDeleted", "NumberOfEmployees"], types))
    truth = w.query_ids("Account", ["Name", "IsDeleted", "NumberOfEmployees"], [str(r["Id"]) for r in rows[:50]])
    by_id = {r["Id"]: r for r in rows}
    assert truth and all(by_id[t["Id"]] == t for t in truth)


def test_an_object_of_few_records_is_read_in_one_rest_call_a_larger_one_through_bulk(
    org: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    w = writer(org)
    fields = ["Name", "IsDeleted", "NumberOfEmployees", "AnnualRevenue"]
    types = {f["name"]: f["type"] for f in w.describe("Account")["fields"]}
    w.create("Account", [{"Name": f"Paged {n}", "NumberOfEmployees": n, "AnnualRevenue": n / 4} for n in range(200)])
    before = w.client.api_calls
    bulk = {r["Id"]: r for r in w.query_object("Account", fields, types)}
    assert w.client.api_calls - before >= 3 and 200 < len(bulk) < 2000  # a Bulk job: create, poll, results
    # up to a REST page of records (2,000): that page alone, one call, the same records typed alike
    before = w.client.api_calls
    assert {r["Id"]: r for r in w.query_object("Account", fields, types, few_first=True)} == bulk
    assert w.client.api_calls - before == 1
    # a query too long for a REST request line: the Bulk job at once, as without few_first
    monkeypatch.setattr(domain, "REST_LINE_LIMIT", 50)
    before = w.client.api_calls
    assert {r["Id"]: r for r in w.query_object("Account", fields, types, few_first=True)} == bulk
    assert w.client.api_calls - before >= 3
    monkeypatch.undo()
    # more than a page: the page's call, then the Bulk job
    monkeypatch.setattr(salesforce_write, "FEW_FIRST_PAGE", 200)
    before = w.client.api_calls
    assert {r["Id"]: r for r in w.query_object("Account", fields, types, few_first=True)} == bulk
    assert w.client.api_calls - before >= 4


def test_undelete_brings_a_family_back_with_its_ids(org: dict[str, Any], admin: Admin) -> None:
    w = writer(org)
    account = str(w.create("Account", [{"Name": "Family"}])[0].id)
    contact = str(w.create("Contact", [{"LastName": "Member", "AccountId": account}])[0].id)
    admin.soft_delete("Account", ids=[account])
    assert w.query_ids("Contact", ["IsDeleted"], [contact]) == [{"Id": contact, "IsDeleted": True}]
    results = w.undelete([account, "001000000000000AAA"])
    assert results[0].success and results[0].id == account
    assert not results[1].success and results[1].code
    assert w.query_ids("Account", ["IsDeleted"], [account]) == [{"Id": account, "IsDeleted": False}]
    assert w.query_ids("Contact", ["IsDeleted"], [contact]) == [{"Id": contact, "IsDeleted": False}]
    again = w.undelete([account])  # not in the recycle bin any more
    assert not again[0].success and again[0].code == "UNDELETE_FAILED"


def test_bulk_ingest_results_come_back_in_the_records_order(org: dict[str, Any]) -> None:
    w = writer(org)
    records = [
        {"Name": "Bulk, one", "NumberOfEmployees": 3, "Phone": None},
        {"Name": None, "Phone": "refused"},  # required Name missing
        {"Name": 'Bulk "two"\nlines', "NumberOfEmployees": 4.0, "Phone": "1"},
    ]
    calls = w.write_calls
    results = w.bulk_ingest("Account", "insert", records)
    assert [r.success for r in results] == [True, False, True]
    assert results[1].code == "REQUIRED_FIELD_MISSING" and results[1].id is None
    assert all(r.created for r in (results[0], results[2]))
    rows = {
        r["Id"]: r
        for r in w.query_ids("Account", ["Name", "NumberOfEmployees"], [str(results[0].id), str(results[2].id)])
    }
    assert rows[results[0].id]["Name"] == "Bulk, one" and rows[results[2].id]["NumberOfEmployees"] == 4
    assert rows[results[2].id]["Name"] == 'Bulk "two"\nlines'
    updated = w.bulk_ingest(
        "Account", "update", [{"Id": results[2].id, "Phone": None}, {"Id": results[0].id, "Phone": "9"}]
    )
    assert [r.success for r in updated] == [True, True]
    phones = {r["Id"]: r["Phone"] for r in w.query_ids("Account", ["Phone"], [str(results[0].id), str(results[2].id)])}
    assert phones == {results[0].id: "9", results[2].id: None}  # "#N/A" set the null
    assert w.write_calls == calls + 6  # create, upload, close per job


def test_bulk_result_rows_are_matched_in_order_then_by_their_cells() -> None:
    from services.jobrunner.salesforce_write import _RowMatch

    rows = [["a", "1", "true"], ["b", "2", ""], ["a", "1", "true"], ["c", "3", ""]]
    match = _RowMatch([hash("\x1f".join(cells)) for cells in rows], lambda: iter(rows))
    assert match.take(["a", "1", "true"]) == 0  # in upload order: as sent
    assert match.take(["c", "3.0", "#N/A"]) == 3  # out of order, echoed in another spelling
    assert match.take(["a", "1", "TRUE"]) == 2  # the identical row not taken yet
    assert match.take(["a", "1", "true"]) is None  # each uploaded row taken once
    match.restart()  # the next result file
    assert match.take(["b", "2", ""]) == 1
    assert match.take(["b", "2", ""]) is None


def test_an_ingest_job_is_polled_at_its_pace_never_ever_sooner_nor_later_than_its_own_time() -> None:
    from services.jobrunner.salesforce_write import next_poll_delay

    # 12,000 records expected in 2.5 s: half done at 5,000/s -> the rest at that pace
    assert next_poll_delay(12_000, 6_000, 1_000, 1.0, 2.5, 4_000, 0.5) == pytest.approx(6_000 / 5_000 * 1.05 + 0.05)
    # a job that waited behind others shows a slow pace since its close: three quarters of the known pace instead
    assert next_poll_delay(12_000, 2_800, 0, 3.9, 2.5, 8_000, 2.5) == pytest.approx(9_200 / 6_000 * 1.05 + 0.05)
    # nearly done: never sooner than a fifth of its expected time
    assert next_poll_delay(12_000, 11_900, 11_000, 0.2, 2.5, 8_000, 0.3) == pytest.approx(0.5)
    # no progress shown (queued): twice the wait before, at most the job's own expected time
    assert next_poll_delay(12_000, 0, 0, 0.3, 2.5, 4_000, 0.3) == pytest.approx(0.6)
    assert next_poll_delay(12_000, 0, 0, 2.0, 2.5, 4_000, 2.0) == pytest.approx(2.5)
    # at most 10 s, at least 0.1 s
    assert next_poll_delay(10**7, 10, 0, 1.0, 40.0, 100, 8.0) == 10.0
    assert next_poll_delay(10, 0, 0, 0.01, 0.05, 4_000, 0.01) == pytest.approx(0.1)


def test_an_ingest_pace_is_learned_from_the_org_s_own_time_else_from_the_wait() -> None:
    from services.jobrunner.salesforce_write import learned_rate

    assert learned_rate(4_000, 10_000, 2.0, 5.0, 3) == 5_000  # totalProcessingTime: the org's own pace
    assert learned_rate(4_000, 10_000, 0, 2.0, 1) == 7_500  # done at the first poll: may be faster still
    assert learned_rate(8_000, 10_000, 0, 5.0, 3) == 6_400  # slower than known: four fifths at once, no less
    assert learned_rate(4_000, 10_000, 0, 0, 1) == 4_000
