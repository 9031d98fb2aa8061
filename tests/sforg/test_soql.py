"""SOQL: the parser on its own (no I/O), then query semantics checked against the ground truth."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from simple_salesforce.exceptions import SalesforceMalformedRequest

from sforg import soql
from sforg.ids import checksum, is_valid, make_id
from sforg.testing import Admin


def test_parser_builds_the_full_grammar() -> None:
    q = soql.parse(
        "SELECT Id, Account.Owner.Name, COUNT(Id) cnt FROM Contact WHERE (Name LIKE 'a%' OR Id IN "
        "('003000000000001AAA')) AND NOT CreatedDate > 2024-01-01T00:00:00Z AND Birthdate < 2024-01-01 "
        "AND CreatedDate = LAST_N_DAYS:3 AND Email != null ORDER BY Name DESC NULLS LAST, Id "
        "LIMIT 10 OFFSET 5"
    )
    assert q.sobject == "Contact" and q.limit == 10 and q.offset == 5
    assert [o.desc for o in q.order] == [True, False]
    assert [o.nulls_first for o in q.order] == [False, True]
    assert isinstance(q.where, soql.BoolOp) and q.where.op == "AND"


@pytest.mark.parametrize(
    "text,column",
    [
        ("SELECT Id FROM", 15),
        ("SELECT Id, FROM Account", 12),
        ("SELECT Id FROM A WHERE", 23),
        ("SELECT Id FROM A ORDER Name", 24),
    ],
)
def test_parser_errors_point_at_the_token(text: str, column: int) -> None:
    with pytest.raises(soql.SoqlError) as err:
        soql.parse(text)
    assert err.value.code == "MALFORMED_QUERY"
    assert f"ERROR at Row:1:Column:{column}\n" in err.value.message


@given(st.integers(min_value=0, max_value=62**9 - 1), st.sampled_from(["001", "003", "a00", "00Q"]))
def test_ids_are_18_chars_with_a_valid_checksum(counter: int, prefix: str) -> None:
    rid = make_id(prefix, counter)
    assert len(rid) == 18 and rid.startswith(prefix) and is_valid(rid)
    assert checksum(rid[:15]) == rid[15:]


def test_real_id_checksum() -> None:
    assert checksum("0015500001QdQWf") == "AAN"


def _truth(admin: Admin, obj: str) -> dict[str, dict[str, Any]]:
    return admin.ground_truth([obj])["objects"][obj]


def test_where_and_or_not_in_null(sf: Any, admin: Admin) -> None:
    truth = _truth(admin, "Account")
    got = sf.query_all(
        "SELECT Id FROM Account WHERE (Industry IN ('Banking', 'Retail') OR AnnualRevenue > "
        "2500000) AND NOT Rating = 'Hot' AND Phone != null"
    )["records"]
    expected = {
        rid
        for rid, v in truth.items()
        if (v["Industry"] in ("Banking", "Retail") or (v["AnnualRevenue"] or 0) > 2500000)
        and v["Rating"] != "Hot"
        and v["Phone"] is not None
    }
    assert {r["Id"] for r in got} == expected
    nulls = sf.query_all("SELECT Id FROM Account WHERE Industry = null")["records"]
    assert {r["Id"] for r in nulls} == {rid for rid, v in truth.items() if v["Industry"] is None}


def test_dates_order_limit_offset_count(sf: Any, admin: Admin) -> None:
    truth = _truth(admin, "Opportunity")
    soql_text = (
        "SELECT Id, CloseDate, Amount FROM Opportunity WHERE CloseDate >= 2025-01-01 AND "
        "CreatedDate < 2099-01-01T00:00:00Z ORDER BY CloseDate DESC NULLS LAST, Amount ASC NULLS FIRST, Id"
    )
    got = sf.query_all(soql_text)["records"]
    rows = [v for v in truth.values() if v["CloseDate"] and v["CloseDate"] >= "2025-01-01"]

    def key(v: dict[str, Any]) -> Any:
        return v["CloseDate"], -(v["Amount"] if v["Amount"] is not None else -1e18)

    rows.sort(key=key, reverse=True)
    assert [(r["CloseDate"], r["Amount"]) for r in got] == [(v["CloseDate"], v["Amount"]) for v in rows]
    page = sf.query(soql_text + " LIMIT 7 OFFSET 3")["records"]
    assert [r["Id"] for r in page] == [r["Id"] for r in got[3:10]]
    assert sf.query("SELECT COUNT() FROM Opportunity WHERE CloseDate >= 2025-01-01")["totalSize"] == len(rows)
    agg = sf.query("SELECT COUNT(Id) n FROM Opportunity")["records"][0]
    assert agg["attributes"] == {"type": "AggregateResult"} and agg["n"] == len(truth)


def test_relative_dates_and_like(sf: Any, admin: Admin) -> None:
    truth = _truth(admin, "Contact")
    now = dt.datetime.now(dt.UTC)
    recent = sf.query_all("SELECT Id FROM Contact WHERE SystemModstamp = LAST_N_DAYS:7")["records"]
    cutoff = (now.date() - dt.timedelta(days=7)).isoformat()
    assert {r["Id"] for r in recent} == {rid for rid, v in truth.items() if v["SystemModstamp"][:10] >= cutoff}
    like = sf.query_all("SELECT Id FROM Contact WHERE LastName LIKE 'o\\'b%'")["records"]
    assert {r["Id"] for r in like} == {rid for rid, v in truth.items() if v["LastName"].lower().startswith("o'b")}


def test_parent_fields_in_where_and_child_subquery(sf: Any, admin: Admin) -> None:
    truth = admin.ground_truth(["Contact", "Account"])["objects"]
    got = sf.query_all("SELECT Id, Account.Name FROM Contact WHERE Account.Industry = 'Banking'")["records"]
    banking = {rid for rid, v in truth["Account"].items() if v["Industry"] == "Banking"}
    assert {r["Id"] for r in got} == {rid for rid, v in truth["Contact"].items() if v["AccountId"] in banking}
    accounts = sf.query_all("SELECT Id, (SELECT Id FROM Contacts) FROM Account")["records"]
    for a in accounts:
        children = {rid for rid, v in truth["Contact"].items() if v["AccountId"] == a["Id"]}
        if not children:
            assert a["Contacts"] is None
        else:
            assert {c["Id"] for c in a["Contacts"]["records"]} == children


def test_bad_literal_types_are_rejected(sf: Any) -> None:
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.query("SELECT Id FROM Account WHERE CreatedDate > '2024-01-01'")
    assert err.value.content[0]["errorCode"] == "INVALID_FIELD"
