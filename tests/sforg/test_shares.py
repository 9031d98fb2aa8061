"""Owner sharing rows: every Account, Opportunity, Case and Lead has one row in its Share object for its owner
(RowCause Owner, the record's access level All), as a real org has them; created with the record, following its
owner, gone with it and back with it."""

from __future__ import annotations

from typing import Any

import pytest

LEVEL = {"Account": "AccountAccessLevel", "Opportunity": "OpportunityAccessLevel", "Case": "CaseAccessLevel"}
LEVEL["Lead"] = "LeadAccessLevel"


def owner_rows(sf: Any, obj: str, where: str = "") -> dict[str, dict[str, Any]]:
    rows = sf.query_all(
        f"SELECT Id, {obj}Id, UserOrGroupId, RowCause, {LEVEL[obj]} FROM {obj}Share WHERE RowCause = 'Owner' {where}"
    )["records"]
    return {r[f"{obj}Id"]: r for r in rows}


@pytest.mark.parametrize("obj", list(LEVEL))
def test_each_record_has_its_owners_row(sf: Any, obj: str) -> None:
    records = {r["Id"]: r["OwnerId"] for r in sf.query_all(f"SELECT Id, OwnerId FROM {obj}")["records"]}
    rows = owner_rows(sf, obj)
    assert records and set(rows) == set(records)
    assert all(rows[rid]["UserOrGroupId"] == owner for rid, owner in records.items())
    assert {r[LEVEL[obj]] for r in rows.values()} == {"All"}
    prefix = sf.describe()["sobjects"]
    share = next(o for o in prefix if o["name"] == f"{obj}Share")
    assert {r["Id"][:3] for r in rows.values()} == {share["keyPrefix"]}
    assert len({r["Id"] for r in rows.values()}) == len(rows)


def test_a_share_row_comes_with_the_record_follows_its_owner_and_goes_with_it(sf: Any, admin: Any) -> None:
    acc = sf.Account.create({"Name": "Shared Co"})["id"]
    me = sf.query(f"SELECT OwnerId FROM Account WHERE Id = '{acc}'")["records"][0]["OwnerId"]
    row = owner_rows(sf, "Account", f"AND AccountId = '{acc}'")[acc]
    assert row["UserOrGroupId"] == me and row["AccountAccessLevel"] == "All"
    other = sf.query(f"SELECT Id FROM User WHERE IsActive = true AND Id != '{me}' LIMIT 1")["records"][0]["Id"]
    sf.Account.update(acc, {"OwnerId": other})
    assert owner_rows(sf, "Account", f"AND AccountId = '{acc}'")[acc]["UserOrGroupId"] == other
    sf.Account.delete(acc)
    assert owner_rows(sf, "Account", f"AND AccountId = '{acc}'") == {}
    admin.undelete("Account", ids=[acc])
    back = owner_rows(sf, "Account", f"AND AccountId = '{acc}'")
    assert back[acc]["Id"] == row["Id"] and back[acc]["UserOrGroupId"] == other
    admin.hard_delete("Account", ids=[acc])
    assert sf.query_all(f"SELECT Id FROM AccountShare WHERE AccountId = '{acc}'")["records"] == []


def test_bulk_created_records_get_their_rows(sf: Any) -> None:
    made = sf.bulk2.Lead.insert(
        records=[{"LastName": f"Share {i}", "Company": "Bulk Co", "Status": "Open - Not Contacted"} for i in range(3)]
    )
    assert made[0]["numberRecordsProcessed"] == 3, made
    assert made[0]["numberRecordsFailed"] == 0, made
    leads = [r["Id"] for r in sf.query("SELECT Id FROM Lead WHERE Company = 'Bulk Co'")["records"]]
    ids = ", ".join(f"'{i}'" for i in leads)
    assert set(owner_rows(sf, "Lead", f"AND LeadId IN ({ids})")) == set(leads)
